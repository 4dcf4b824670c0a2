"""The decision: which backbone to pick for these images and this budget, with every source of noise carried to
the verdict. Returns data; the report phrases it. Every threshold and weight comes from the config.

Criteria (each on a fixed scale of points that does not depend on which other candidates are in the run, so adding
or removing a candidate never reorders the others, except through latency within a timing class, whose members'
timings are measurements of one latency (:func:`timing_classes`); higher is better):
- accuracy: 100 x top-1 on the labelled images;
- localisation: 100 x (1 - 1 / mass_ratio) of the deep-layer CAM, mass_ratio averaged over the object sizes in the
  set's own mix (0 = no better than a uniform map, 50 = twice the box's share of the mass, 100 = all of it);
- clutter: 100 x cluttered / clean mass_ratio (the share of localisation kept on cluttered backgrounds);
- calibration: 100 x (1 - top-1 Brier score): the mean over the labelled images of (top-1 confidence - top-1
  correct)^2, a proper scoring rule and a mean over images, so its bootstrap is centred on it (ECE's is biased
  upward, by a different amount per candidate; ECE is shown beside it in section 3.4);
- corruption: 100 x (1 + the change in top-1 accuracy, or in agreement with the clean prediction, under the common
  corruptions), pooled over corruptions and severities on the same images: 100 = nothing lost, 90 = 10 top-1 points
  lost (a difference, not the share kept: it has no pole where a draw's clean top-1 is 0, so every draw counts);
- faithfulness: 100 x the ROAD gap of the deep-layer CAM (the change in the target's probability when its least
  relevant pixels go, minus when its most relevant go, halved);
- latency: 100 x (1 - log10(ms) / 3): 100 at 1 ms, 0 at 1 s, 10 points per halving;
- size: 100 x (1 - log10(params / 0.1 M) / 3): 100 at 0.1 M, 0 at 100 M, 10 points per halving.
Candidates are compared on the criteria they share: a criterion that a compared candidate has no value for is left
out for every candidate (scoring each on its own subset would not be neutral, since criteria sit at very different
typical levels), and page 1 says which criterion was left out for whom. A score is the weighted mean of those.

Noise: one paired bootstrap (:mod:`reportgen.scoring.bootstrap`) resamples the images for every candidate and
criterion at once and, in the same draws, every candidate's timed latency passes; as in SMAA, each draw also draws
the weights around the user's. P(best) is the share of draws in which a candidate ranks first (a win is shared
only on an exact tie, so a candidate worse in every draw never changes another's P(best)). The leader is the
candidate with the highest score at the point estimates (the margin and what would change the pick are about it);
it is recommended only when its P(best) reaches ``min_win_probability``; otherwise there is no clear winner.
Constraints on top-1 and latency pass, fail or are *uncertain* (their interval straddles the limit); uncertain
candidates stay in, marked. Untrained weights make the decision illustrative only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..inputs.config import DECISION_CRITERIA, MAX_WEIGHT, DecisionSettings
from ..inputs.manifest import SIZES
from ..results.schema import Cost, CostReport, Machine, Metrics, RunIndex, RunStatus, SlimmingScore
from ..strenum import StrEnum
from .beyond_paper import corruption_vectors, road_vectors, top1_change_of
from .degenerate import Degeneracy, assess
from .bootstrap import PairedDraws, interval, nanmean, stable_seed
from .calibration import top1_brier
from .vectors import Vectors, run_draws

COST_CRITERIA = ("latency", "size")
SENSITIVITY_STEP = 0.01
WHY_MISSING = {"accuracy": "no labelled images", "localisation": "no boxed images with a size class",
               "clutter": "no boxed images on both clean and cluttered backgrounds",
               "calibration": "too few labelled images", "corruption": "not measured",
               "faithfulness": "not measured", "latency": "latency not measured", "size": "no parameter count"}


class DecisionStatus(StrEnum):
    RECOMMENDED = "recommended"
    ONLY_CANDIDATE = "only candidate"
    NO_CLEAR_WINNER = "no clear winner"
    NONE_PASS = "nothing passes"


class Check(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNCERTAIN = "uncertain"  # the interval straddles the limit


@dataclass(frozen=True)
class Score:
    mean: float
    ci_low: Optional[float]
    ci_high: Optional[float]


@dataclass(frozen=True)
class Measure:
    """A raw criterion value with its interval from the draws."""
    value: Optional[float]
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None


@dataclass(frozen=True, kw_only=True)
class ConstraintCheck:
    key: str
    outcome: Check
    text: str


@dataclass(frozen=True, kw_only=True)
class Candidate:
    backbone: str
    display_name: str
    family: str
    top1: Optional[float]  # accuracy on the labelled images
    top1_ci: tuple  # (low, high), or (None, None)
    labelled: int
    localisation: dict  # size -> deep mass_ratio (None: no boxed image of that size)
    localisation_score: Measure  # mass_ratio by the set's size mix, with its interval from the draws
    clutter_retention: Measure  # cluttered / clean deep mass_ratio
    clutter_drop: Optional[float]  # clean - cluttered deep mass_ratio
    calibration: Measure  # top-1 Brier score: mean (top-1 confidence - top-1 correct)^2 over the labelled images
    corruption: Measure  # change in top-1 (or agreement) under the common corruptions (corrupted - clean, 0..1 scale)
    faithfulness: Measure  # ROAD gap of the deep-layer CAM
    latency: Measure  # median latency at batch 1 (ms), interval from the resampled passes
    params_m: float
    gmacs: float
    slimming: Optional[SlimmingScore]
    checks: tuple  # ConstraintCheck per constraint set
    failed: tuple  # (constraint key, text) of the failed ones
    uncertain: tuple  # (constraint key, text) of the uncertain ones
    violation: float  # sum of relative excesses over the constraints it fails
    utilities: dict  # criterion -> points at the point estimate (criteria it has)
    missing: tuple  # weighted criteria it has no value for (left out for every candidate it is compared with)
    score: Optional[Score]  # passing candidates only
    p_best: Optional[float]  # share of draws in which it ranks first (passing candidates)
    pareto: bool
    rank: Optional[int]

    @property
    def latency_ms(self) -> Optional[float]:
        return self.latency.value


@dataclass(frozen=True)
class WeightChange:
    """The smallest change of one weight that puts another candidate first."""
    criterion: str
    weight: float  # the weight used
    to: float  # the weight at which the pick changes
    new_first: str  # display name of the candidate first then


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two candidates' top-1 on the same labelled images."""
    first: str
    second: str
    first_only: int  # images the first gets right and the second wrong
    second_only: int
    p_value: float
    labelled: int


@dataclass(frozen=True, kw_only=True)
class Decision:
    status: DecisionStatus
    recommended: Optional[str]  # backbone name; None unless recommended (or the only candidate)
    leader: Optional[str]  # highest score at the point estimates among the passing candidates (ties: higher P(best))
    runner_up: Optional[str]  # the next by score at the point estimates
    margin: Optional[Score]  # score of the leader minus the runner-up's (never negative), interval from the draws
    least_violating: Optional[str]  # when nothing passes
    candidates: tuple  # Candidate, ranked ones first
    weights: dict  # criterion -> weight used (criteria without data dropped)
    weight_sources: dict  # criterion -> "yours" | "default"
    aliases: tuple  # (old name, new name) used in the weights table
    dropped: tuple  # (criterion, why) left out of every score
    constraints: dict  # key -> limit, only those set
    size_mix: dict  # size -> share of the boxed images
    # the chart's vertical axis: "top-1 accuracy" ("task accuracy" on the user's classes) or "localisation"
    quality_axis: str
    illustrative: bool  # untrained weights: never a recommendation
    machine: Optional[Machine]  # where latency was measured
    confidence: float
    cost_alone: bool  # only latency and size decided
    draws: int
    weight_uncertainty: float
    min_win_probability: float
    sensitivity: Optional[WeightChange]  # None: no single weight change within 0..MAX_WEIGHT changes the pick
    sensitivity_range: float
    mcnemar: Optional[McNemar]
    latency_noise: bool  # timing samples were resampled (cost.json of this version)
    notes: tuple = field(default_factory=tuple)  # anything else the reader must know (e.g. latency dropped)
    # (display name, load average per core) of each candidate whose latency was timed on a busy machine, while
    # latency is a criterion; busy means above busy_load_per_core
    busy_latency: tuple = ()
    busy_load_per_core: float = 0.0
    # (criterion, ((display name, why), ...)): criteria some compared candidates have no value for, so left out for
    # every candidate (candidates are compared on the criteria they share)
    unshared: tuple = ()
    degenerate: tuple = ()  # Degeneracy of each candidate whose outputs are degenerate (never recommended)
    # the leader and the runner-up have the same value on every criterion scored, at the point and in every draw (so
    # the same score in every draw: identical models, one timing class); the leader is then never recommended
    tied: bool = False

    def quality_of(self, candidate: Candidate) -> Optional[float]:
        """The chart's vertical value for a candidate (None: not measured)."""
        return candidate.localisation_score.value if self.quality_axis == "localisation" else candidate.top1

    @property
    def chartable(self) -> tuple:
        """Candidates with both a quality value and a latency."""
        return tuple(c for c in self.candidates if self.quality_of(c) is not None and c.latency_ms is not None)

    def candidate(self, name: Optional[str]) -> Optional[Candidate]:
        return next((c for c in self.candidates if c.backbone == name), None)

    @property
    def criteria_used(self) -> tuple:
        return tuple(self.weights)


# --- the criteria on fixed scales ----------------------------------------------------------------------------------

def utility(criterion: str, value):
    """Points of a raw criterion value (arrays allowed); NaN where the value is missing."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if criterion == "accuracy":
            return 100.0 * value
        if criterion == "localisation":
            return 100.0 * (1.0 - 1.0 / np.maximum(value, 1e-6))
        if criterion in ("clutter", "faithfulness"):
            return 100.0 * value
        if criterion == "corruption":  # the change in top-1 (0 = nothing lost)
            return 100.0 * (1.0 + value)
        if criterion == "calibration":  # top-1 Brier score: 100 = every right answer at 1, every wrong at 0
            return 100.0 * (1.0 - value)
        if criterion == "latency":
            return 100.0 * (1.0 - np.log10(np.maximum(value, 1e-6)) / 3.0)
        if criterion == "size":
            return 100.0 * (1.0 - np.log10(np.maximum(value, 1e-9) / 0.1) / 3.0)
    raise KeyError(criterion)


@dataclass
class _Raw:
    """Per criterion: point values (K,) and draws (B, K) of the raw measure, NaN where missing."""
    point: dict = field(default_factory=dict)
    draws: dict = field(default_factory=dict)


def _size_mix(index: RunIndex, vectors: Vectors) -> dict:
    boxed = [image.size for n, image in enumerate(index.images) if image.size in SIZES and image.box is not None
             and any(np.isfinite(vectors.backbone(b.name, "deep", "mass_ratio")[n]) for b in index.backbones)]
    return {size: boxed.count(size) / len(boxed) for size in SIZES if boxed.count(size)} if boxed else {}


def _raw_values(index: RunIndex, vectors: Vectors, draws: PairedDraws, cost: CostReport, classes: dict, mix: dict,
                arrays_of: Optional[Callable[[str], dict]]) -> _Raw:
    names = [b.name for b in index.backbones]
    raw = _Raw()
    sizes = np.array([image.size or "" for image in index.images])
    backgrounds = np.array([image.background or "" for image in index.images])

    def per_candidate(function):
        points, columns = [], []
        for k, name in enumerate(names):
            point, drawn = function(k, name)
            points.append(point)
            columns.append(drawn)
        return np.array(points, dtype=np.float64), np.stack(columns, axis=1)

    def accuracy(k, name):
        correct = np.array([np.nan if p.correct_top1 is None else float(p.correct_top1)
                            for p in index.backbones[k].predictions])
        return nanmean(correct), draws.means(correct)

    def localisation(k, name):
        mass = vectors.backbone(name, "deep", "mass_ratio")
        if not mix:
            return np.nan, np.full(draws.samples, np.nan)
        point = sum(share * nanmean(mass[sizes == size]) for size, share in mix.items())
        drawn = sum(share * draws.means(mass, sizes == size) for size, share in mix.items())
        return point, drawn

    def clutter(k, name):
        mass = vectors.backbone(name, "deep", "mass_ratio")
        clean, cluttered = backgrounds == "clean", backgrounds == "cluttered"
        with np.errstate(divide="ignore", invalid="ignore"):
            point = nanmean(mass[cluttered]) / nanmean(mass[clean])
            drawn = draws.means(mass, cluttered) / draws.means(mass, clean)
        return point, drawn

    def timed(name):
        found: Optional[Cost] = cost.backbones.get(name)
        if found is None:
            return np.nan, np.full(draws.samples, np.nan)
        if found.latency_ms_samples:
            return float(np.median(found.latency_ms_samples)), draws.resampled_medians(found.latency_ms_samples, name)
        return found.latency_ms_median, np.full(draws.samples, found.latency_ms_median)  # an older cost.json

    by_class: dict = {}  # a timing class's latency, computed once for all its members

    def latency(k, name):
        members = tuple(sorted(classes.get(name, (name,))))  # by name: the battery's order changes no draw
        if members not in by_class:
            by_class[members] = class_latency(members)
        return by_class[members]

    def class_latency(members):
        # One timing class, one true latency: its members' timings are measurements of it (their spread is the
        # machine's drift between measurements), so each member gets their geometric mean, drawn the same way.
        timings = [timed(member) for member in members]
        if len(timings) == 1:
            return timings[0]  # its own timing, bit for bit (exp(log(x)) need not give x back)
        with np.errstate(divide="ignore", invalid="ignore"):
            point = float(np.exp(np.mean([np.log(p) for p, _ in timings])))
            logs = np.log(np.stack([d for _, d in timings]))  # (members, B)
            # The drift between the members' sessions is noise each one's resampled passes do not hold (16.4
            # against 12.9 ms, each within ±3.4 %): each draw also resamples the sessions (the members, with
            # replacement), so the class's interval spans the spread its timings showed instead of narrowing below
            # each one's. Seeded by the class, so every member gets the same draws.
            rng = np.random.default_rng(stable_seed(draws.seed, "timing class", *members))
            sessions = rng.integers(0, len(members), size=(draws.samples, len(members)))
            logs = logs[sessions, np.arange(draws.samples)[:, None]].T
            drawn = np.exp(np.mean(logs, axis=0))
        return point, drawn

    def size(k, name):
        params = index.backbones[k].params / 1e6
        return params, np.full(draws.samples, params)

    missing = (np.nan, np.full(draws.samples, np.nan))

    def calibration(k, name):
        predictions = index.backbones[k].predictions
        correct = np.array([np.nan if p.correct_top1 is None else float(p.correct_top1) for p in predictions])
        have = np.isfinite(correct)
        if have.sum() < 2:
            return missing
        confidence = np.array([p.top5[0].prob for p in predictions])
        values = top1_brier(confidence, correct)  # NaN where unlabelled
        return float(values[have].mean()), draws.means(values)

    def corruption(k, name):
        entry = index.backbones[k]
        if entry.corruption.status != RunStatus.DONE or arrays_of is None:
            return missing
        _, clean, corrupted = corruption_vectors(index, entry, arrays_of(name))
        point, drawn = top1_change_of(clean, corrupted, draws)
        return (np.nan, drawn) if point is None else (point, drawn)

    def faithfulness(k, name):
        entry = index.backbones[k]
        if entry.faithfulness.status != RunStatus.DONE or arrays_of is None:
            return missing
        values = road_vectors(index, entry, arrays_of(name))
        gap = (values[:, 0, 1] - values[:, 0, 0]) / 2
        return (float(nanmean(gap)) if np.isfinite(gap).any() else np.nan), draws.means(gap)

    for criterion, function in (("accuracy", accuracy), ("localisation", localisation), ("clutter", clutter),
                                ("calibration", calibration), ("corruption", corruption),
                                ("faithfulness", faithfulness), ("latency", latency), ("size", size)):
        raw.point[criterion], raw.draws[criterion] = per_candidate(function)
    return raw


# --- constraints ---------------------------------------------------------------------------------------------------

_RELATION = {(Check.FAIL, True): ">", (Check.PASS, True): "≤", (Check.FAIL, False): "<", (Check.PASS, False): "≥",
             (Check.UNCERTAIN, True): "straddles", (Check.UNCERTAIN, False): "straddles"}


def _against_limit(measure: Measure, limit: float, upper: bool) -> tuple:
    """(low, high, outcome) of a measured value against a limit it must stay under (``upper``) or over: it fails
    or passes only when its whole interval does, and is uncertain when the interval straddles the limit."""
    low = measure.ci_low if measure.ci_low is not None else measure.value
    high = measure.ci_high if measure.ci_high is not None else measure.value
    beyond, within = (low > limit, high <= limit) if upper else (high < limit, low >= limit)
    return low, high, Check.FAIL if beyond else Check.PASS if within else Check.UNCERTAIN


def _checks(params_m, gmacs, latency: Measure, top1: Measure, labelled: int, limits: dict) -> tuple[tuple, float]:
    """ConstraintCheck per constraint set, and the sum of relative excesses over those failed."""
    checks, violation = [], 0.0

    def add(key, outcome, text, excess=0.0):
        nonlocal violation
        checks.append(ConstraintCheck(key=key, outcome=outcome, text=text))
        if outcome == Check.FAIL:
            violation += excess

    if "max_params_m" in limits:
        limit = limits["max_params_m"]
        add("max_params_m", Check.FAIL if params_m > limit else Check.PASS,
            f"params {params_m:.3g} M {'>' if params_m > limit else '≤'} {limit:g} M", params_m / limit - 1)
    if "max_gmacs" in limits:
        limit = limits["max_gmacs"]
        add("max_gmacs", Check.FAIL if gmacs > limit else Check.PASS,
            f"GMACs {gmacs:.3g} {'>' if gmacs > limit else '≤'} {limit:g}", gmacs / limit - 1)
    if "max_latency_ms" in limits:
        limit = limits["max_latency_ms"]
        if latency.value is None:
            add("max_latency_ms", Check.FAIL, "latency not measured", 1.0)
        else:
            low, high, outcome = _against_limit(latency, limit, upper=True)
            add("max_latency_ms", outcome, f"latency {latency.value:.3g} ms [{low:.3g}, {high:.3g}] "
                f"{_RELATION[outcome, True]} {limit:g} ms", latency.value / limit - 1)
    if "min_top1" in limits:
        limit = limits["min_top1"]
        if top1.value is None:
            add("min_top1", Check.FAIL, "no labelled images to measure top-1", 1.0)
        else:
            low, high, outcome = _against_limit(top1, limit, upper=False)
            add("min_top1", outcome, f"top-1 {100 * top1.value:.1f} % [{100 * low:.1f}, {100 * high:.1f}] on "
                f"{labelled} images {_RELATION[outcome, False]} {100 * limit:.1f} %",
                (limit - top1.value) / max(limit, 1e-9))
    return tuple(checks), violation


def _constraints(settings: DecisionSettings) -> dict:
    return {k: getattr(settings, k) for k in ("max_params_m", "max_gmacs", "max_latency_ms", "min_top1")
            if getattr(settings, k) is not None}


def _pareto(points: dict) -> set:
    """Names not dominated in (quality higher, latency lower)."""
    front = set()
    for name, (quality, latency) in points.items():
        dominated = any(q >= quality and lat <= latency and (q > quality or lat < latency)
                        for other, (q, lat) in points.items() if other != name)
        if not dominated:
            front.add(name)
    return front


# --- scores, win probabilities, sensitivity --------------------------------------------------------------------------

def weighted_scores(utilities: dict, weights: dict) -> np.ndarray:
    """Weighted mean of the criteria the candidates share. ``utilities[c]``: (..., K) points, NaN = missing;
    ``weights[c]``: scalar or (...,) per draw. In each row (a draw, or the point estimates) a criterion counts only
    where every one of the K candidates has a value, so all are scored on the same criteria (a candidate scored on
    the mean of its own subset would gain or lose by what it lacks: criteria sit at very different typical levels).
    Returns (..., K); NaN where the candidates share no criterion."""
    total = weighted = None
    for criterion, points in utilities.items():
        weight = np.asarray(weights[criterion], dtype=np.float64)
        if weight.ndim:
            weight = weight[..., None]
        have = np.broadcast_to(np.isfinite(points).all(axis=-1, keepdims=True), np.shape(points))
        term_w = np.where(have, weight, 0.0)
        term = np.where(have, points, 0.0) * term_w
        total = term_w if total is None else total + term_w
        weighted = term if weighted is None else weighted + term
    with np.errstate(invalid="ignore", divide="ignore"):
        return weighted / total


def win_shares(scores: np.ndarray) -> np.ndarray:
    """(B, K) scores -> (K,) share of rows in which each column is first; a win is shared only on an exact tie (so a
    column below the best in every row never changes another's share); NaN never first. A row in which no column
    has a score (a draw that lost every criterion) decides nothing and is left out, so the shares sum to 1."""
    filled = np.where(np.isfinite(scores), scores, -np.inf)
    best = filled.max(axis=1, keepdims=True)
    first = (filled == best) & np.isfinite(best)
    counts = first.sum(axis=1, keepdims=True)
    decided = counts[:, 0] > 0
    if not decided.any():
        return np.zeros(scores.shape[1])
    return (first[decided] / counts[decided]).mean(axis=0)


def _sensitivity(points: dict, weights: dict, leader: int, names: list) -> Optional[WeightChange]:
    """The smallest single-weight change (within 0..MAX_WEIGHT) after which another candidate scores highest."""
    grid = np.round(np.arange(0.0, MAX_WEIGHT + SENSITIVITY_STEP / 2, SENSITIVITY_STEP), 10)
    best = None
    for criterion, weight in weights.items():
        trial = {c: (grid if c == criterion else np.full(grid.shape, w)) for c, w in weights.items()}
        scores = weighted_scores(points, trial)  # (G, K)
        filled = np.where(np.isfinite(scores), scores, -np.inf)
        others = np.delete(filled, leader, axis=1)
        overtaken = others.max(axis=1) > filled[:, leader]
        if not overtaken.any():
            continue
        at = int(np.argmin(np.where(overtaken, np.abs(grid - weight), np.inf)))
        change = abs(grid[at] - weight)
        if best is None or change < best[0]:
            first = int(np.argmax(filled[at]))
            best = (change, WeightChange(criterion, float(weight), float(grid[at]), names[first]))
    return best[1] if best else None


def mcnemar(first: np.ndarray, second: np.ndarray) -> tuple[int, int, float]:
    """(first right & second wrong, first wrong & second right, exact two-sided p) over paired outcomes."""
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    n = b + c
    if n == 0:
        return b, c, 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return b, c, min(1.0, 2.0 * tail)


def _mcnemar(index: RunIndex, first: int, second: int) -> Optional[McNemar]:
    a, b = index.backbones[first], index.backbones[second]
    pairs = [(p.correct_top1, q.correct_top1) for p, q in zip(a.predictions, b.predictions)
             if p.correct_top1 is not None and q.correct_top1 is not None]
    if not pairs:
        return None
    x, y = (np.array(v, dtype=bool) for v in zip(*pairs))
    only_first, only_second, p = mcnemar(x, y)
    return McNemar(a.display_name, b.display_name, only_first, only_second, p, len(pairs))


def _why_missing(criterion: str, entry, arrays_of) -> str:
    """Why a backbone has no value for a criterion, in a few words."""
    if criterion in ("corruption", "faithfulness"):
        run = getattr(entry, criterion)
        if run.status != RunStatus.DONE:
            return f"not measured: {run.reason}" if run.reason else "not measured"
        if arrays_of is None:
            return "no saved arrays"
    if criterion == "localisation":
        return "no usable deep-layer CAM on a boxed image with a size class"
    if criterion == "clutter":
        return "no usable deep-layer CAM on boxed images of both backgrounds"
    return WHY_MISSING[criterion]


def _measure(point, drawn, level) -> Measure:
    if point is None or not np.isfinite(point):
        return Measure(None)
    low, high = interval(drawn, level)
    return Measure(float(point), low, high)


def timing_class(entry, found: Optional[Cost]) -> Optional[tuple]:
    """What a candidate's batch-1 latency depends on: the architecture, its size (parameters, MACs, so its head),
    the input shape and the machine it was timed on (its fingerprint), not the weights' values (dense kernels do
    the same arithmetic whatever the numbers). Two candidates of one class have the same true latency: their timed
    difference is noise by construction. None: not timed."""
    if found is None:
        return None
    return (entry.architecture, entry.params, round(entry.macs), tuple(entry.data_config.get("input_size", ())),
            found.machine.fingerprint)


def timing_classes(index: RunIndex, cost: CostReport) -> dict:
    """name -> the names of its :func:`timing_class` (in the index's order), for the candidates that share theirs
    with another; the others are absent."""
    keys = {b.name: timing_class(b, cost.backbones.get(b.name)) for b in index.backbones}
    groups: dict = {}
    for name, key in keys.items():
        if key is not None:
            groups.setdefault(key, []).append(name)
    return {name: tuple(members) for members in groups.values() if len(members) > 1 for name in members}


def decide(index: RunIndex, metrics: Metrics, cost: CostReport, draws: Optional[PairedDraws] = None,
           arrays_of: Optional[Callable[[str], dict]] = None, inputs: Optional[dict] = None) -> Decision:
    """``arrays_of(name)``: a backbone's saved arrays (corruption and faithfulness criteria); without it those two
    criteria are left out. ``inputs``: when given, receives what the decision was computed from (``raw``: every
    criterion's point values and draws per candidate; ``timing_classes``: :func:`timing_classes`), so the gate
    (:mod:`reportgen.scoring.gate`) reads the same numbers instead of computing them again."""
    settings = index.config.decision
    level = settings.confidence
    draws = draws or run_draws(index)
    vectors = Vectors(index, metrics.per_image)
    names = [b.name for b in index.backbones]
    mix = _size_mix(index, vectors)
    classes = timing_classes(index, cost)
    raw = _raw_values(index, vectors, draws, cost, classes, mix, arrays_of)
    labelled = int(sum(p.correct_top1 is not None for p in index.backbones[0].predictions)) if names else 0

    notes = []
    effective = settings.effective_weights()
    fingerprints = {c.machine.fingerprint for n, c in cost.backbones.items() if n in names}
    weights, dropped = {}, []
    for criterion in DECISION_CRITERIA:
        weight = effective[criterion]
        if weight <= 0:
            continue
        if criterion == "latency" and len(fingerprints) > 1:
            dropped.append((criterion, "measured on different machines, so not comparable"))
        elif criterion == "calibration" and labelled < index.config.calibration_min_labelled:
            dropped.append((criterion, f"{labelled} labelled images, fewer than calibration_min_labelled "
                                       f"({index.config.calibration_min_labelled})"))
        elif not np.isfinite(raw.point[criterion]).any():
            why = WHY_MISSING[criterion]
            if criterion in ("corruption", "faithfulness"):
                runs = {getattr(b, criterion).reason for b in index.backbones if getattr(b, criterion).reason}
                why = f"not measured ({'; '.join(sorted(runs)) or 'no saved arrays'})"
            dropped.append((criterion, why))
        else:
            weights[criterion] = weight

    limits = _constraints(settings)
    latency = [_measure(raw.point["latency"][k], raw.draws["latency"][:, k], level) for k in range(len(names))]
    top1 = [_measure(raw.point["accuracy"][k], raw.draws["accuracy"][:, k], level) for k in range(len(names))]
    params = raw.point["size"]
    gmacs = np.array([b.macs / 1e9 for b in index.backbones])
    checked = [_checks(params[k], gmacs[k], latency[k], top1[k], labelled, limits) for k in range(len(names))]
    # Untrained weights are degenerate on purpose (the report is bannered as illustrative): nothing to name.
    degenerate = () if index.untrained else tuple(
        found for found in (_degeneracy(entry, top1[k], settings, index.class_count())
                  for k, entry in enumerate(index.backbones))
        if found.flagged)
    for found in degenerate:  # a failed check of its own: never recommended, ranked after every other candidate
        k = names.index(found.backbone)
        checks, _ = checked[k]
        checked[k] = (checks + (ConstraintCheck(key="degenerate", outcome=Check.FAIL, text="degenerate outputs (see above)"),), math.inf)
    passing = [k for k in range(len(names)) if all(c.outcome != Check.FAIL for c in checked[k][0])]

    if inputs is not None:
        inputs["raw"] = raw
        inputs["timing_classes"] = classes
    # Compare like with like: a criterion that some compared candidate has no value for is left out for all of them.
    weighted, unshared = dict(weights), []
    if len(passing) > 1:
        for criterion in list(weights):
            lacking = [k for k in passing if not np.isfinite(raw.point[criterion][k])]
            if lacking:
                unshared.append((criterion, tuple((index.backbones[k].display_name,
                                                   _why_missing(criterion, index.backbones[k], arrays_of))
                                                  for k in lacking)))
                del weights[criterion]

    point_utilities = {c: utility(c, raw.point[c]) for c in weights}
    draw_utilities = {c: utility(c, raw.draws[c]) for c in weights}
    cols = np.array(passing, dtype=int)
    p_best = np.zeros(len(names))
    margin = runner_up = leader = None
    tied = False
    point_scores = draw_scores = None
    if passing and weights:
        point_scores = weighted_scores({c: u[cols] for c, u in point_utilities.items()}, weights)
        drawn_weights = draws.criterion_weights(weights, settings.weight_uncertainty, "decision")
        draw_scores = weighted_scores({c: u[:, cols] for c, u in draw_utilities.items()}, drawn_weights)
        p_best[cols] = win_shares(draw_scores)
        # One leader for the verdict, the margin and what would change it: the highest score at the point
        # estimates (ties: the higher P(best)); it is recommended only if it also ranks first in enough draws.
        order = sorted(range(len(passing)), key=lambda j: (-np.nan_to_num(point_scores[j], nan=-np.inf),
                                                           -p_best[passing[j]], j))
        leader = passing[order[0]]
        if len(passing) > 1:
            runner_up = passing[order[1]]
            difference = draw_scores[:, order[0]] - draw_scores[:, order[1]]
            low, high = interval(difference, level)
            margin = Score(float(point_scores[order[0]] - point_scores[order[1]]), low, high)
            # Checked on every draw, not on the margin's interval (its percentiles are 0 with up to 2.5 % of the
            # draws on either side apart), so that page 1 can say "tie in every draw" and mean it.
            tied = all(raw.point[c][leader] == raw.point[c][runner_up]
                       and np.array_equal(raw.draws[c][:, leader], raw.draws[c][:, runner_up], equal_nan=True)
                       for c in weights)
    elif passing:
        leader = passing[0]

    accuracy_axis = "task accuracy" if index.own_task else "top-1 accuracy"
    quality_axis = accuracy_axis if "accuracy" in weights else "localisation"
    quality = raw.point["localisation"] if quality_axis == "localisation" else raw.point["accuracy"]
    front = _pareto({names[k]: (float(np.nan_to_num(quality[k], nan=-np.inf)),
                                float(np.nan_to_num(raw.point["latency"][k], nan=np.inf))) for k in passing})
    ranked = [passing[j] for j in order] if point_scores is not None else list(passing)

    candidates = []
    for k in ranked + sorted((k for k in range(len(names)) if k not in ranked), key=lambda k: checked[k][1]):
        entry = index.backbones[k]
        mass = vectors.backbone(entry.name, "deep", "mass_ratio")
        sizes = np.array([image.size or "" for image in index.images])
        by_size = {size: (float(nanmean(mass[sizes == size])) if np.isfinite(mass[sizes == size]).any() else None)
                   for size in SIZES}
        backgrounds = np.array([image.background or "" for image in index.images])
        clean, cluttered = nanmean(mass[backgrounds == "clean"]), nanmean(mass[backgrounds == "cluttered"])
        score = None
        if k in passing and point_scores is not None:
            j = passing.index(k)
            low, high = interval(draw_scores[:, j], level)
            score = Score(float(point_scores[j]), low, high) if np.isfinite(point_scores[j]) else None
        checks, violation = checked[k]
        candidates.append(Candidate(
            backbone=entry.name, display_name=entry.display_name, family=entry.family, top1=top1[k].value,
            top1_ci=(top1[k].ci_low, top1[k].ci_high), labelled=labelled, localisation=by_size,
            localisation_score=_measure(raw.point["localisation"][k], raw.draws["localisation"][:, k], level),
            clutter_retention=_measure(raw.point["clutter"][k], raw.draws["clutter"][:, k], level),
            clutter_drop=float(clean - cluttered) if np.isfinite(clean - cluttered) else None,
            calibration=_measure(raw.point["calibration"][k], raw.draws["calibration"][:, k], level),
            corruption=_measure(raw.point["corruption"][k], raw.draws["corruption"][:, k], level),
            faithfulness=_measure(raw.point["faithfulness"][k], raw.draws["faithfulness"][:, k], level),
            latency=latency[k], params_m=float(params[k]), gmacs=float(gmacs[k]),
            slimming=metrics.slimming.get(entry.name), checks=checks,
            failed=tuple((c.key, c.text) for c in checks if c.outcome == Check.FAIL),
            uncertain=tuple((c.key, c.text) for c in checks if c.outcome == Check.UNCERTAIN), violation=violation,
            utilities={c: float(u[k]) for c, u in point_utilities.items() if np.isfinite(u[k])},
            missing=tuple(c for c in weighted if not np.isfinite(raw.point[c][k])),
            score=score, p_best=float(p_best[k]) if k in passing and weights else None, pareto=entry.name in front,
            rank=ranked.index(k) + 1 if k in ranked else None))

    least = None
    if not passing:
        status = DecisionStatus.NONE_PASS
        least = min(names, key=lambda n: checked[names.index(n)][1]) if names else None
    elif len(passing) == 1:
        status = DecisionStatus.ONLY_CANDIDATE
    elif p_best[leader] >= settings.min_win_probability and not tied:  # min_win_probability 0.5: not over a twin
        status = DecisionStatus.RECOMMENDED
    else:
        status = DecisionStatus.NO_CLEAR_WINNER
    recommended = names[leader] if status in (DecisionStatus.RECOMMENDED, DecisionStatus.ONLY_CANDIDATE) else None

    sensitivity = None
    if leader is not None and len(passing) > 1 and weights:
        sensitivity = _sensitivity({c: u[cols] for c, u in point_utilities.items()}, weights,
                                   passing.index(leader), [index.backbones[k].display_name for k in passing])
    test = _mcnemar(index, leader, runner_up) if leader is not None and runner_up is not None else None
    machines = [cost.backbones[n].machine for n in names if n in cost.backbones]
    # Whether or not latency is weighed, page 1's table and the max_latency_ms check show the class's latency.
    for members in dict.fromkeys(classes.values()):
        shown = [index.backbones[names.index(m)].display_name for m in members]
        timings = " and ".join(f"{cost.backbones[m].latency_ms_median:.3g}" for m in members)
        hosts = list(dict.fromkeys(cost.backbones[m].machine.host for m in members))
        # The fingerprint leaves out the host: members may have been timed on identical nodes (Ray) or machines.
        where = ("on one machine" if len(hosts) == 1 else
                 f"on identical machines ({', '.join(host or 'unnamed' for host in hosts)})")
        pooled = latency[names.index(members[0])]
        spread = "" if pooled.ci_low is None else \
            f"; its interval [{pooled.ci_low:.3g}, {pooled.ci_high:.3g}] ms resamples the timings, not only the passes"
        notes.append(f"{' and '.join(shown)} share one architecture, size and input {where}, so one latency: "
                     f"{pooled.value:.3g} ms, the geometric mean of their timings ({timings} ms; what separates them "
                     f"is the machine's drift between two measurements, not the weights){spread}")
    if any(not cost.backbones[n].latency_ms_samples for n in names if n in cost.backbones):
        notes.append("latency of an older cost.json has no timed passes to resample: its noise is not in the intervals")
    busy = tuple((index.backbones[k].display_name, cost.backbones[n].load_per_core) for k, n in enumerate(names)
                 if n in cost.backbones and (cost.backbones[n].load_per_core or 0) > settings.busy_load_per_core)
    return Decision(
        status=status, recommended=recommended, leader=names[leader] if leader is not None else None,
        runner_up=names[runner_up] if runner_up is not None else None, margin=margin, least_violating=least,
        candidates=tuple(candidates), weights=weights,
        weight_sources={c: settings.weight_source(c) for c in DECISION_CRITERIA}, aliases=settings.aliases_used(),
        dropped=tuple(dropped), constraints=limits, size_mix=mix, quality_axis=quality_axis,
        illustrative=index.untrained, machine=machines[0] if machines else None, confidence=level,
        cost_alone=bool(weights) and set(weights) <= set(COST_CRITERIA), draws=draws.samples,
        weight_uncertainty=settings.weight_uncertainty, min_win_probability=settings.min_win_probability,
        sensitivity=sensitivity, sensitivity_range=MAX_WEIGHT, mcnemar=test,
        latency_noise=bool(machines) and all(cost.backbones[n].latency_ms_samples for n in names
                                             if n in cost.backbones),
        notes=tuple(notes), busy_latency=busy if weights.get("latency") else (),
        busy_load_per_core=settings.busy_load_per_core, unshared=tuple(unshared), degenerate=degenerate, tied=tied)


def _degeneracy(entry, top1: Measure, settings: DecisionSettings, classes: int) -> Degeneracy:
    deep = entry.depth_layers.get("deep")
    if entry.task is not None and entry.task.note:  # no probe could be fit: its placeholder head says nothing
        return assess(entry.name, entry.display_name, (), (), None, None, settings, classes)
    return assess(entry.name, entry.display_name, entry.predictions, entry.cam_status.get(deep, ()), top1.value,
                  top1.ci_high, settings, classes)
