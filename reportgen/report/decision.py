"""The decision: which backbone to pick for these images and this budget, and why. Returns data; the templates
phrase it. Every threshold and weight comes from the config's ``decision`` settings.

Candidates that fail a hard constraint (params, GMACs, latency, top-1) are listed with what they fail. The rest
are ranked by a weighted score of criteria each scaled to [0, 1] across the candidates (best = 1): top-1 on
labelled images, deep-layer localisation (mass_ratio) by object size weighted by the image set's own size mix,
robustness (the drop in mass_ratio from clean to cluttered backgrounds, smaller is better), latency and size.
The images are resampled (bootstrap) to give the score an interval; when the interval of the difference between
the top two includes zero there is **no clear winner**. Untrained weights make the decision illustrative only.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..inputs.config import DECISION_CRITERIA, DecisionSettings
from ..results.schema import CostReport, Machine, Metrics, RunIndex, SlimmingScore
from ..scoring.measures import stable_seed
from ..strenum import StrEnum

SIZES = ("small", "medium", "large")


class DecisionStatus(StrEnum):
    RECOMMENDED = "recommended"
    NO_CLEAR_WINNER = "no clear winner"
    NONE_PASS = "nothing passes"


@dataclass(frozen=True)
class Score:
    mean: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Candidate:
    backbone: str
    display_name: str
    family: str
    top1: Optional[float]  # accuracy on the labelled images
    top1_ci: tuple  # (low, high) bootstrap, or (None, None)
    labelled: int
    localisation: dict  # size -> deep mass_ratio (None: no boxed image of that size)
    localisation_score: Optional[float]  # by the size mix
    clutter_drop: Optional[float]  # clean - cluttered deep mass_ratio
    latency_ms: Optional[float]
    params_m: float
    gmacs: float
    slimming: Optional[SlimmingScore]
    failed: tuple  # (constraint key, text) per failed hard constraint
    violation: float  # sum of relative excesses over the constraints it fails
    score: Optional[Score]  # passing candidates only
    pareto: bool
    rank: Optional[int]


@dataclass(frozen=True)
class Decision:
    status: DecisionStatus
    recommended: Optional[str]  # backbone name; None unless status is "recommended"
    leader: Optional[str]  # the top-ranked candidate (recommended, or first of two without a clear winner)
    runner_up: Optional[str]
    margin: Optional[Score]  # score of the first minus the second
    least_violating: Optional[str]  # when nothing passes
    candidates: tuple  # Candidate, ranked ones first
    weights: dict  # criterion -> weight used (criteria without data dropped)
    dropped: tuple  # (criterion, why) left out of the score
    constraints: dict  # key -> limit, only those set
    size_mix: dict  # size -> share of the boxed images
    quality_axis: str  # what the chart's vertical axis shows: "top-1 accuracy" or "localisation"
    illustrative: bool  # untrained weights: never a recommendation
    machine: Optional[Machine]  # where latency was measured
    confidence: float

    def quality_of(self, candidate: Candidate) -> Optional[float]:
        """The chart's vertical value for a candidate (None: not measured)."""
        return candidate.top1 if self.quality_axis == "top-1 accuracy" else candidate.localisation_score

    @property
    def chartable(self) -> tuple:
        """Candidates with both a quality value and a latency."""
        return tuple(c for c in self.candidates if self.quality_of(c) is not None and c.latency_ms is not None)

    def candidate(self, name: Optional[str]) -> Optional[Candidate]:
        return next((c for c in self.candidates if c.backbone == name), None)


@dataclass(frozen=True)
class _Samples:
    """Per candidate, per image: correct top-1 (NaN unlabelled) and deep mass_ratio (NaN without a value)."""
    correct: np.ndarray  # (K, N)
    mass: np.ndarray  # (K, N)
    sizes: np.ndarray  # (N,) size class or ""
    backgrounds: np.ndarray  # (N,)


def _samples(index: RunIndex, metrics: Metrics) -> _Samples:
    files = [image.file for image in index.images]
    position = {f: i for i, f in enumerate(files)}
    correct = np.full((len(index.backbones), len(files)), np.nan)
    mass = np.full_like(correct, np.nan)
    order = {b.name: k for k, b in enumerate(index.backbones)}
    for k, entry in enumerate(index.backbones):
        for i, prediction in enumerate(entry.predictions):
            if prediction.correct_top1 is not None:
                correct[k, i] = float(prediction.correct_top1)
    for row in metrics.per_image:
        if row.role == "deep" and row.mass_ratio is not None and row.image in position and row.backbone in order:
            mass[order[row.backbone], position[row.image]] = row.mass_ratio
    return _Samples(correct, mass, np.array([image.size or "" for image in index.images]),
                    np.array([image.background or "" for image in index.images]))


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _criteria(samples: _Samples, idx: np.ndarray, mix: dict) -> dict:
    """Raw criterion values (higher is better), shape (B, K), for image resamples ``idx`` (B, N)."""
    correct = samples.correct[:, idx].transpose(1, 0, 2)  # (B, K, N)
    mass = samples.mass[:, idx].transpose(1, 0, 2)
    sizes, backgrounds = samples.sizes[idx][:, None, :], samples.backgrounds[idx][:, None, :]
    out = {"accuracy": _nanmean(correct, axis=2)}
    if mix:
        terms = [share * _nanmean(np.where(sizes == size, mass, np.nan), axis=2) for size, share in mix.items()]
        out["localisation"] = np.sum(terms, axis=0)
    clean = _nanmean(np.where(backgrounds == "clean", mass, np.nan), axis=2)
    cluttered = _nanmean(np.where(backgrounds == "cluttered", mass, np.nan), axis=2)
    out["robustness"] = -(clean - cluttered)
    return out


def _scaled(values: np.ndarray) -> np.ndarray:
    """Each row scaled across candidates to [0, 1] (best = 1); a row without spread gives 1 to all."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample without any image of a group: all NaN
        low, high = np.nanmin(values, axis=-1, keepdims=True), np.nanmax(values, axis=-1, keepdims=True)
        scaled = np.where(high > low, (values - low) / (high - low), 1.0)
    return np.nan_to_num(scaled, nan=0.0)


def _constraints(settings: DecisionSettings) -> dict:
    return {k: getattr(settings, k) for k in ("max_params_m", "max_gmacs", "max_latency_ms", "min_top1")
            if getattr(settings, k) is not None}


def _failures(params_m, gmacs, latency, top1, limits: dict) -> tuple[tuple, float]:
    failed, violation = [], 0.0

    def over(key, value, text):
        nonlocal violation
        failed.append((key, text))
        violation += value

    if "max_params_m" in limits and params_m > limits["max_params_m"]:
        over("max_params_m", params_m / limits["max_params_m"] - 1, f"params {params_m:.3g} M > {limits['max_params_m']:g} M")
    if "max_gmacs" in limits and gmacs > limits["max_gmacs"]:
        over("max_gmacs", gmacs / limits["max_gmacs"] - 1, f"GMACs {gmacs:.3g} > {limits['max_gmacs']:g}")
    if "max_latency_ms" in limits:
        if latency is None:
            over("max_latency_ms", 1.0, "latency not measured")
        elif latency > limits["max_latency_ms"]:
            over("max_latency_ms", latency / limits["max_latency_ms"] - 1,
                 f"latency {latency:.3g} ms > {limits['max_latency_ms']:g} ms")
    if "min_top1" in limits:
        if top1 is None:
            over("min_top1", 1.0, "no labelled images to measure top-1")
        elif top1 < limits["min_top1"]:
            over("min_top1", (limits["min_top1"] - top1) / max(limits["min_top1"], 1e-9),
                 f"top-1 {100 * top1:.1f} % < {100 * limits['min_top1']:.1f} %")
    return tuple(failed), violation


def _pareto(points: dict) -> set:
    """Names not dominated in (quality higher, latency lower)."""
    front = set()
    for name, (quality, latency) in points.items():
        dominated = any(q >= quality and lat <= latency and (q > quality or lat < latency)
                        for other, (q, lat) in points.items() if other != name)
        if not dominated:
            front.add(name)
    return front


def decide(index: RunIndex, metrics: Metrics, cost: CostReport) -> Decision:
    settings = index.config.decision
    samples = _samples(index, metrics)
    boxed = [s for s, m in zip(samples.sizes, np.isfinite(samples.mass).any(axis=0)) if s in SIZES and m]
    mix = {size: boxed.count(size) / len(boxed) for size in SIZES if boxed.count(size)} if boxed else {}
    names = [b.name for b in index.backbones]
    # Row 0: the images as they are; rows 1..: bootstrap resamples (one draw serves every criterion and candidate).
    rng = np.random.default_rng(stable_seed(index.config.seed, "decision"))
    draws = rng.integers(0, len(index.images), size=(settings.bootstrap_samples, len(index.images)))
    resampled = _criteria(samples, np.vstack([np.arange(len(index.images))[None, :], draws]), mix)
    point = {k: v[0] for k, v in resampled.items()}
    latency = np.array([cost.backbones[n].latency_ms_median if n in cost.backbones else np.nan for n in names])
    params = np.array([b.params / 1e6 for b in index.backbones])
    gmacs = np.array([b.macs / 1e9 for b in index.backbones])
    labelled = int(np.isfinite(samples.correct[0]).sum()) if names else 0

    weights, dropped = {}, []
    for criterion in DECISION_CRITERIA:
        weight = settings.weight(criterion)
        if weight <= 0:
            continue
        values = {"accuracy": point["accuracy"], "localisation": point.get("localisation"),
                  "robustness": point["robustness"], "latency": latency, "size": params}[criterion]
        if values is None or not np.isfinite(values).any():
            why = {"accuracy": "no labelled images", "localisation": "no boxed images with a size class",
                   "robustness": "no boxed images on both clean and cluttered backgrounds",
                   "latency": "latency not measured"}.get(criterion, "no data")
            dropped.append((criterion, why))
        else:
            weights[criterion] = weight

    limits = _constraints(settings)
    failures = {n: _failures(params[k], gmacs[k], None if np.isnan(latency[k]) else float(latency[k]),
                             None if not np.isfinite(point["accuracy"][k]) else float(point["accuracy"][k]), limits)
                for k, n in enumerate(names)}
    passing = [k for k, n in enumerate(names) if not failures[n][0]]

    scores = np.zeros((settings.bootstrap_samples + 1, len(names)))
    if passing and weights:
        fixed = {"latency": -latency, "size": -params}
        total = sum(weights.values())
        for criterion, weight in weights.items():
            values = resampled[criterion] if criterion in resampled else np.broadcast_to(fixed[criterion], scores.shape)
            scores[:, passing] += weight * _scaled(values[:, passing]) / total
    tail = (1 - settings.confidence) / 2 * 100

    def interval(values) -> Score:
        low, high = np.percentile(values[1:], [tail, 100 - tail])
        return Score(float(values[0]), float(low), float(high))

    ranked = sorted(passing, key=lambda k: -scores[0, k])
    quality_axis = "top-1 accuracy" if "accuracy" in weights else "localisation"
    quality = point["accuracy"] if quality_axis == "top-1 accuracy" else point.get("localisation", point["accuracy"])
    front = _pareto({names[k]: (float(np.nan_to_num(quality[k], nan=-np.inf)), float(np.nan_to_num(latency[k], nan=np.inf)))
                     for k in passing})
    top1_draws = resampled["accuracy"][1:]

    candidates = []
    for k in ranked + [k for k in range(len(names)) if k not in ranked]:
        entry = index.backbones[k]
        top1 = float(point["accuracy"][k]) if np.isfinite(point["accuracy"][k]) else None
        ci = tuple(float(v) for v in np.nanpercentile(top1_draws[:, k], [tail, 100 - tail])) if top1 is not None \
            else (None, None)
        localisation = {}
        for size in SIZES:
            values = samples.mass[k][samples.sizes == size]
            localisation[size] = float(_nanmean(values, axis=0)) if np.isfinite(values).any() else None
        loc = point.get("localisation")
        candidates.append(Candidate(
            entry.name, entry.display_name, entry.family, top1, ci, labelled, localisation,
            float(loc[k]) if loc is not None and np.isfinite(loc[k]) else None,
            float(-point["robustness"][k]) if np.isfinite(point["robustness"][k]) else None,
            None if np.isnan(latency[k]) else float(latency[k]), float(params[k]), float(gmacs[k]),
            metrics.slimming.get(entry.name), failures[entry.name][0], failures[entry.name][1],
            interval(scores[:, k]) if k in passing and weights else None, entry.name in front,
            ranked.index(k) + 1 if k in ranked else None))

    leader = names[ranked[0]] if ranked else None
    runner_up = margin = least = None
    if not passing:
        status = DecisionStatus.NONE_PASS
        least = min(names, key=lambda n: failures[n][1]) if names else None
    elif len(ranked) == 1 or not weights:
        status = DecisionStatus.RECOMMENDED
    else:
        first, second = ranked[0], ranked[1]
        margin = interval(scores[:, first] - scores[:, second])
        runner_up = names[second]
        status = DecisionStatus.NO_CLEAR_WINNER if margin.ci_low <= 0 else DecisionStatus.RECOMMENDED
    recommended = leader if status == DecisionStatus.RECOMMENDED else None
    machines = [c.machine for c in cost.backbones.values()]
    return Decision(status, recommended, leader, runner_up, margin, least, tuple(candidates), weights, tuple(dropped), limits,
                    mix, quality_axis, index.untrained, machines[0] if machines else None, settings.confidence)
