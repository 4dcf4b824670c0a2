"""The decision: which backbone to pick for these images and this budget, with every source of noise carried to
the verdict. Returns data; the report phrases it. Every threshold and weight comes from the config.

The criteria are one table (:mod:`reportgen.scoring.criteria`), the constraints another
(:mod:`reportgen.scoring.constraints`); :func:`decide` reads as its stages: measure, choose weights, check
constraints, shared criteria, rank, assemble, status.

Each criterion is on a fixed scale of points that does not depend on which other candidates are in the run, so
adding or removing a candidate never reorders the others, except through latency within a timing class, whose
members' timings are measurements of one latency (:func:`~reportgen.scoring.timing.timing_classes`); higher is
better. The scales are the rows of :data:`~reportgen.scoring.criteria.CRITERIA` (docs/decision.md lists them).
Candidates are compared on the criteria they share: a criterion that a compared candidate has no value for is left
out for every candidate (scoring each on its own subset would not be neutral, since criteria sit at very different
typical levels), and page 1 says which criterion was left out for whom. A score is the weighted mean of those. In
a draw, a candidate that lacks one of them there has no score (it cannot win that draw) and the others keep theirs,
so each candidate's scores read its own values only; the size mix is the boxed images' and the labelled count the
images' own, so neither depends on who else is in the run (issue 32: tests/test_invariance.py).

Noise: one paired bootstrap (:mod:`reportgen.scoring.bootstrap`) resamples the images for every candidate and
criterion at once and, in the same draws, every candidate's latency from its interleaved timing sessions
(:mod:`reportgen.scoring.timing`; older cost.json: its timed passes resampled); as in SMAA, each draw also draws
the weights around the user's. P(best) is the share of draws in which a candidate ranks first (a win is shared
only on an exact tie, so a candidate worse in every draw never changes another's P(best)). The leader is the
candidate with the highest score at the point estimates (the margin and what would change the pick are about it);
it is recommended only when its P(best) reaches ``min_win_probability``; otherwise there is no clear winner.
Constraints on top-1 and latency pass, fail or are *uncertain* (their interval straddles the limit); uncertain
candidates stay in, marked. Untrained weights make the decision illustrative only.
"""
from __future__ import annotations

from functools import lru_cache
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..inputs.config import MAX_WEIGHT, DecisionSettings
from ..inputs.manifest import SIZES
from ..results.schema import CostReport, Machine, Metrics, RunIndex, SlimmingScore
from ..strenum import StrEnum
from .bootstrap import PairedDraws, nanmean
from .constraints import (FAILING, Check, ConstraintCheck, ConstraintInputs, check_candidate, degenerate_candidates,
                          limits, mark_degenerate)
from .criteria import (CriterionInputs, CriterionValues, Measure, cost_criteria, criteria, labelled_images,
                       measure_criteria, measured, shown_measure, size_mix, why_dropped, why_missing)
from .ranking import McNemar, Ranking, Score, WeightChange, candidate_score, pareto, paired_test, rank, \
    weight_sensitivity
from .timing import (SESSIONS, SessionLayout, busy_latency, latency_ratios, session_layout, timing_classes,
                     timing_notes)
from .vectors import Vectors, run_draws


class DecisionStatus(StrEnum):
    RECOMMENDED = "recommended"
    ONLY_CANDIDATE = "only candidate"
    NO_CLEAR_WINNER = "no clear winner"
    NONE_PASS = "nothing passes"


@dataclass(frozen=True, kw_only=True)
class Candidate:
    backbone: str
    display_name: str
    family: str
    top1: Optional[float]  # accuracy on the labelled images
    top1_ci: tuple[Optional[float], Optional[float]]  # (low, high), or (None, None)
    labelled: int
    localisation: dict  # size -> deep mass_ratio (None: no boxed image of that size)
    localisation_score: Measure  # mass_ratio by the set's size mix, with its interval from the draws
    clutter_retention: Measure  # cluttered / clean deep mass_ratio
    clutter_drop: Optional[float]  # clean - cluttered deep mass_ratio
    calibration: Measure  # top-1 Brier score: mean (top-1 confidence - top-1 correct)^2 over the labelled images
    corruption: Measure  # change in top-1 (or agreement) under the common corruptions (corrupted - clean, 0..1 scale)
    faithfulness: Measure  # ROAD gap of the deep-layer CAM
    latency: Measure  # latency at batch 1 (ms): random-effects interval over the timing sessions (older files: passes)
    params_m: float
    gmacs: float
    slimming: Optional[SlimmingScore]
    checks: tuple[ConstraintCheck, ...]  # per constraint set
    failed: tuple[tuple[str, str], ...]  # (constraint key, text) of the failed ones
    uncertain: tuple[tuple[str, str], ...]  # (constraint key, text) of the uncertain ones
    violation: float  # sum of relative excesses over the constraints it fails
    utilities: dict  # criterion -> points at the point estimate (criteria it has)
    missing: tuple  # weighted criteria it has no value for (left out for every candidate it is compared with)
    score: Optional[Score]  # passing candidates only
    p_best: Optional[float]  # share of draws in which it ranks first (passing candidates)
    pareto: bool
    rank: Optional[int]
    # latency / the fastest candidate's, its interval from the differences within the shared timing sessions (the
    # session effect cancels); Measure(None): not timed in sessions
    latency_vs_fastest: Measure = field(default_factory=lambda: Measure(None))

    @property
    def latency_ms(self) -> Optional[float]:
        return self.latency.value


@dataclass(frozen=True, kw_only=True)
class Decision:
    status: DecisionStatus
    recommended: Optional[str]  # backbone name; None unless recommended (or the only candidate)
    leader: Optional[str]  # highest score at the point estimates among the passing candidates (ties: higher P(best))
    runner_up: Optional[str]  # the next by score at the point estimates
    margin: Optional[Score]  # score of the leader minus the runner-up's (never negative), interval from the draws
    least_violating: Optional[str]  # when nothing passes
    candidates: tuple[Candidate, ...]  # ranked ones first
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


@dataclass(frozen=True, kw_only=True)
class DecisionInputs:
    """What the decision is computed from, handed to the gate (:mod:`reportgen.scoring.gate`) so that it reads the
    same numbers instead of computing them again."""
    values: CriterionValues  # every criterion's point values and draws per candidate
    timing_classes: dict  # :func:`~reportgen.scoring.timing.timing_classes`
    size_mix: dict  # size -> share of the boxed images
    vectors: Vectors
    labelled: int  # labelled images
    sizes: np.ndarray  # each image's size class ("" without one)
    backgrounds: np.ndarray  # each image's background ("" without one)
    # criterion -> weight of every criterion this run can weigh, before comparing like with like: the gate compares
    # a pair on those both have, so that a third candidate lacking one cannot change the pair's row
    weighable: dict
    # names of the candidates timed on a busy machine (load per core above busy_load_per_core), whatever the weights
    timed_busy: tuple
    sessions: Optional[SessionLayout] = None  # the run's timing sessions (timing.session_layout)
    latency_ratios: dict = field(default_factory=dict)  # name -> (latency / the fastest's, low, high)


@dataclass(frozen=True, kw_only=True)
class _Checked:
    """The constraint stage's outcome, per candidate in the index's order."""
    limits: dict
    latency: list  # Measure
    top1: list  # Measure
    checked: list  # (ConstraintCheck tuple, violation)
    degenerate: tuple  # Degeneracy
    passing: list  # indices of the candidates that fail no check


def decision_inputs(index: RunIndex, metrics: Metrics, cost: CostReport, draws: PairedDraws,
                    arrays_of: Optional[Callable[[str], dict]] = None) -> DecisionInputs:
    """Stage 1, measure: every criterion for every candidate, on the run's paired draws."""
    vectors = Vectors(index, metrics.per_image)
    mix = size_mix(index)
    classes = timing_classes(index, cost)
    sessions = session_layout(index, cost, classes)
    measuring = CriterionInputs(index=index, vectors=vectors, draws=draws, cost=cost, classes=classes, mix=mix,
                                by_class={SESSIONS: sessions},
                                # corruption and faithfulness read the same candidate's arrays: load them once
                                arrays_of=lru_cache(maxsize=1)(arrays_of) if arrays_of is not None else None,
                                sizes=np.array([image.size or "" for image in index.images]),
                                backgrounds=np.array([image.background or "" for image in index.images]))
    values = measure_criteria(measuring)
    weighable, _ = _choose_weights(index, cost, values, index.config.decision)
    return DecisionInputs(values=values, timing_classes=classes, size_mix=mix, vectors=vectors,
                          labelled=labelled_images(index), sizes=measuring.sizes, backgrounds=measuring.backgrounds,
                          weighable=weighable, sessions=sessions,
                          timed_busy=_timed_busy(index, cost),
                          latency_ratios=latency_ratios(sessions, classes, [b.name for b in index.backbones],
                                                        index.config.decision.confidence))


def _timed_busy(index: RunIndex, cost: CostReport) -> tuple:
    busy = {shown for shown, _ in busy_latency(index, cost, index.config.decision.busy_load_per_core)}
    return tuple(b.name for b in index.backbones if b.display_name in busy)


def _choose_weights(index: RunIndex, cost: CostReport, values: CriterionValues,
                    settings: DecisionSettings) -> tuple[dict, list]:
    """Stage 2: the weight of each criterion that can be weighed, in the table's order (the order of every score's
    float sum), and (criterion, why) of those dropped for every candidate."""
    effective = settings.effective_weights()
    weights, dropped = {}, []
    for found in criteria():
        weight = effective[found.key]
        if weight <= 0:
            continue
        unusable = found.unusable(index, cost) if found.unusable is not None else None
        if unusable:
            dropped.append((found.key, unusable))
        elif not np.isfinite(values.point[found.key]).any():
            dropped.append((found.key, why_dropped(found, index)))
        else:
            weights[found.key] = weight
    return weights, dropped


def _check_constraints(index: RunIndex, inputs: DecisionInputs, settings: DecisionSettings) -> _Checked:
    """Stage 3: every candidate against the constraints set, and the degenerate ones marked failed."""
    values, level, count = inputs.values, settings.confidence, len(index.backbones)
    set_limits = limits(settings)
    latency = [measured(values.point["latency"][k], values.draws["latency"][:, k], level, values.exact("latency", k))
               for k in range(count)]
    top1 = [shown_measure("accuracy", index.backbones[k], values.point["accuracy"][k], values.draws["accuracy"][:, k],
                          level, values.exact("accuracy", k)) for k in range(count)]
    checked = [check_candidate(ConstraintInputs(params_m=values.point["size"][k], gmacs=index.backbones[k].macs / 1e9,
                                                latency=latency[k], top1=top1[k], labelled=inputs.labelled),
                               set_limits) for k in range(count)]
    degenerate = degenerate_candidates(index, top1, settings)
    mark_degenerate(checked, degenerate, [b.name for b in index.backbones])
    passing = [k for k in range(count) if all(c.outcome not in FAILING for c in checked[k][0])]
    return _Checked(limits=set_limits, latency=latency, top1=top1, checked=checked, degenerate=degenerate,
                    passing=passing)


def _shared(index: RunIndex, values: CriterionValues, weights: dict, passing: list,
            arrays_of: Optional[Callable[[str], dict]]) -> tuple[dict, tuple]:
    """Stage 4, compare like with like: a criterion that some compared candidate has no value for is left out for
    all of them. The weights of the criteria they share, and (criterion, ((display name, why), ...)) of the others."""
    shared, unshared = dict(weights), []
    if passing:  # one candidate too: each score reads every criterion weighed (ranking.weighted_scores)
        for criterion in weights:
            lacking = [k for k in passing if not np.isfinite(values.point[criterion][k])]
            if lacking:
                unshared.append((criterion, tuple((index.backbones[k].display_name,
                                                   why_missing(criterion, index.backbones[k], arrays_of))
                                                  for k in lacking)))
                del shared[criterion]
    return shared, tuple(unshared)


def _quality_axis(index: RunIndex, weights: dict) -> str:
    accuracy_axis = "task accuracy" if index.own_task else "top-1 accuracy"
    return accuracy_axis if "accuracy" in weights else "localisation"


def _front(index: RunIndex, values: CriterionValues, passing: list, quality_axis: str) -> set:
    names = [b.name for b in index.backbones]
    quality = values.point["localisation"] if quality_axis == "localisation" else values.point["accuracy"]
    return pareto({names[k]: (float(np.nan_to_num(quality[k], nan=-np.inf)),
                              float(np.nan_to_num(values.point["latency"][k], nan=np.inf))) for k in passing})


def _candidate(k: int, index: RunIndex, metrics: Metrics, inputs: DecisionInputs, checked: _Checked,
               ranking: Ranking, usable: dict, weights: dict, front: set, level: float) -> Candidate:
    """Stage 6, assemble: one candidate's record."""
    entry, values = index.backbones[k], inputs.values
    mass = inputs.vectors.backbone(entry.name, "deep", "mass_ratio")
    sizes, backgrounds = inputs.sizes, inputs.backgrounds
    by_size = {size: (float(nanmean(mass[sizes == size])) if np.isfinite(mass[sizes == size]).any() else None)
               for size in SIZES}
    clean, cluttered = nanmean(mass[backgrounds == "clean"]), nanmean(mass[backgrounds == "cluttered"])
    checks, violation = checked.checked[k]
    top1 = checked.top1[k]

    def measure(criterion):
        return shown_measure(criterion, entry, values.point[criterion][k], values.draws[criterion][:, k], level,
                             values.exact(criterion, k))
    return Candidate(
        backbone=entry.name, display_name=entry.display_name, family=entry.family, top1=top1.value,
        top1_ci=(top1.ci_low, top1.ci_high), labelled=inputs.labelled, localisation=by_size,
        localisation_score=measure("localisation"), clutter_retention=measure("clutter"),
        clutter_drop=float(clean - cluttered) if np.isfinite(clean - cluttered) else None,
        calibration=measure("calibration"), corruption=measure("corruption"), faithfulness=measure("faithfulness"),
        latency=checked.latency[k], params_m=float(values.point["size"][k]), gmacs=float(entry.macs / 1e9),
        slimming=metrics.slimming.get(entry.name), checks=checks,
        failed=tuple((c.key, c.text) for c in checks if c.outcome in FAILING),
        uncertain=tuple((c.key, c.text) for c in checks if c.outcome == Check.UNCERTAIN), violation=violation,
        utilities={c: float(u[k]) for c, u in ranking.point_utilities.items() if np.isfinite(u[k])},
        missing=tuple(c for c in usable if not np.isfinite(values.point[c][k])),
        score=candidate_score(ranking, k, level),
        p_best=float(ranking.p_best[k]) if k in ranking.passing and weights else None, pareto=entry.name in front,
        rank=ranking.ranked.index(k) + 1 if k in ranking.ranked else None,
        latency_vs_fastest=Measure(*inputs.latency_ratios.get(entry.name, (None,))))


def _status(ranking: Ranking, checked: _Checked, settings: DecisionSettings,
            names: list) -> tuple[DecisionStatus, Optional[str], Optional[str]]:
    """Stage 7: (status, the recommended candidate, the least violating when nothing passes)."""
    passing, leader, least = ranking.passing, ranking.leader, None
    if not passing:
        status = DecisionStatus.NONE_PASS
        least = min(names, key=lambda n: checked.checked[names.index(n)][1]) if names else None
    elif len(passing) == 1:
        status = DecisionStatus.ONLY_CANDIDATE
    elif ranking.p_best[leader] >= settings.min_win_probability and not ranking.tied:  # 0.5: not over a twin
        status = DecisionStatus.RECOMMENDED
    else:
        status = DecisionStatus.NO_CLEAR_WINNER
    recommended = names[leader] if status in (DecisionStatus.RECOMMENDED, DecisionStatus.ONLY_CANDIDATE) else None
    return status, recommended, least


def decide(index: RunIndex, metrics: Metrics, cost: CostReport, draws: Optional[PairedDraws] = None,
           arrays_of: Optional[Callable[[str], dict]] = None, inputs: Optional[DecisionInputs] = None) -> Decision:
    """``arrays_of(name)``: a backbone's saved arrays (corruption and faithfulness criteria); without it those two
    criteria are left out. ``inputs``: what :func:`decision_inputs` measured on the same draws (measured here when
    not given)."""
    settings = index.config.decision
    draws = draws or run_draws(index)
    inputs = inputs or decision_inputs(index, metrics, cost, draws, arrays_of)
    names, values = [b.name for b in index.backbones], inputs.values
    usable, dropped = _choose_weights(index, cost, values, settings)
    checked = _check_constraints(index, inputs, settings)
    weights, unshared = _shared(index, values, usable, checked.passing, arrays_of)
    ranking = rank(values, weights, checked.passing, len(names), draws, settings)
    quality_axis = _quality_axis(index, weights)
    front = _front(index, values, checked.passing, quality_axis)
    failing = sorted((k for k in range(len(names)) if k not in ranking.ranked), key=lambda k: checked.checked[k][1])
    candidates = tuple(_candidate(k, index, metrics, inputs, checked, ranking, usable, weights, front,
                                  settings.confidence) for k in ranking.ranked + failing)
    status, recommended, least = _status(ranking, checked, settings, names)
    machines = [cost.backbones[n].machine for n in names if n in cost.backbones]
    busy = busy_latency(index, cost, settings.busy_load_per_core)
    return Decision(
        status=status, recommended=recommended, leader=names[ranking.leader] if ranking.leader is not None else None,
        runner_up=names[ranking.runner_up] if ranking.runner_up is not None else None, margin=ranking.margin,
        least_violating=least, candidates=candidates, weights=weights,
        weight_sources={c.key: settings.weight_source(c.key) for c in criteria()}, aliases=settings.aliases_used(),
        dropped=tuple(dropped), constraints=checked.limits, size_mix=inputs.size_mix, quality_axis=quality_axis,
        illustrative=index.untrained, machine=machines[0] if machines else None, confidence=settings.confidence,
        cost_alone=bool(weights) and set(weights) <= set(cost_criteria()), draws=draws.samples,
        weight_uncertainty=settings.weight_uncertainty, min_win_probability=settings.min_win_probability,
        sensitivity=weight_sensitivity(index, ranking, weights), sensitivity_range=MAX_WEIGHT,
        mcnemar=paired_test(index, ranking.leader, ranking.runner_up),
        latency_noise=bool(machines) and all(cost.backbones[n].latency_ms_samples for n in names
                                             if n in cost.backbones),
        notes=tuple(timing_notes(index, cost, inputs.timing_classes, checked.latency, inputs.sessions)),
        busy_latency=busy if weights.get("latency") else (), busy_load_per_core=settings.busy_load_per_core,
        unshared=unshared, degenerate=checked.degenerate, tied=ranking.tied)
