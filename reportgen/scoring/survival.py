"""Whether the pick survives the flagged images (issue 34, point 4): the decision, and the gate when ``[gate]`` is
set, recomputed with the images the data check flags left out (duplicates collapsed to one, leaked images and
likely label errors removed), beside the decision on the data as given.

The main decision stays on the images as given: the labels are the user's to fix, and a check's flags are
likely, not certain. This is a second decision on the kept images, through the same stages: the run restricted to
them (:mod:`reportgen.results.subset`: as if the others had never been in the set), its own paired draws from the
run's seed (:func:`~reportgen.scoring.vectors.run_draws`: the same stratified bootstrap, now over the kept images),
:func:`~reportgen.scoring.decision.decision_inputs`, :func:`~reportgen.scoring.decision.decide` and
:func:`~reportgen.scoring.gate.evaluate_gate` with the gate's own settings. Latency and size do not depend on the
images and are the same numbers both ways (latency's draws are seeded by the candidates, not the images). Nothing
is refit: a probe's out-of-fold outcomes on the kept images are those of folds fit with the flagged ones in.

It is not recomputed when nothing is flagged, or when fewer than ``[decision] survival_min_images`` images would
remain (the record says so and why). Returns data; page 1 phrases it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from ..results.schema import CostReport, Metrics, RunIndex
from ..results.subset import kept_positions, restricted_arrays, restricted_index, restricted_metrics
from ..strenum import StrEnum
from .constraints import Check
from .decision import Decision, DecisionStatus, decide, decision_inputs
from .gate import GateReport, evaluate_gate
from .vectors import run_draws


class LeftOutReason(StrEnum):
    """Why an image is left out, in precedence order: an image flagged for several reasons counts under the first
    (a leaked image scores the training set, whatever its label; a wrong label is wrong in every copy)."""
    LEAKED = "leaked"
    LABEL_ERROR = "likely label error"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class LeftOut:
    """The images to leave out (by ``ImageEntry.file``, the run's relative path) and why, sorted by file."""
    images: tuple[tuple[str, LeftOutReason], ...] = ()

    @property
    def files(self) -> frozenset:
        return frozenset(file for file, _ in self.images)

    def counts(self) -> tuple:
        """(LeftOutReason, images) of each reason that has any, in precedence order."""
        found = [reason for _, reason in self.images]
        return tuple((reason, found.count(reason)) for reason in LeftOutReason if found.count(reason))


NOTHING_LEFT_OUT = LeftOut()


def images_to_leave_out(*, duplicates: Iterable[str] = (), leaked: Iterable[str] = (),
                        label_errors: Iterable[str] = ()) -> LeftOut:
    """The flags of the data check as the images to leave out: the copies named in ``duplicates`` (the data check
    groups them and chooses the one of each group it keeps: one grouping rule, scoring/datacheck.py); every leaked
    image (a near-copy of a training image); every likely label error. Deterministic: the same flags give the same
    images whatever their order; an image flagged for several reasons counts once, as leaked before mislabelled
    before copied."""
    reasons: dict = {}
    for file in leaked:
        reasons.setdefault(file, LeftOutReason.LEAKED)
    for file in label_errors:
        reasons.setdefault(file, LeftOutReason.LABEL_ERROR)
    for file in duplicates:
        reasons.setdefault(file, LeftOutReason.DUPLICATE)
    return LeftOut(tuple(sorted(reasons.items())))


class SurvivalStatus(StrEnum):
    RECOMPUTED = "recomputed"
    NOTHING_LEFT_OUT = "nothing left out"
    TOO_FEW_IMAGES = "not recomputed: too few images would remain"


@dataclass(frozen=True)
class ReasonCount:
    reason: LeftOutReason
    images: int


@dataclass(frozen=True, kw_only=True)
class PickChance:
    """A candidate's P(best) with the images as given and without the flagged ones (None: not ranked there, e.g.
    it fails a constraint; without: also when not recomputed)."""
    backbone: str
    display_name: str
    given: Optional[float]
    without: Optional[float]


@dataclass(frozen=True, kw_only=True)
class GateHold:
    """One challenger's gate outcome both ways (pass: every condition counts as pass)."""
    challenger: str
    display_name: str
    given: Check
    without: Optional[Check]  # None: not recomputed
    holds: Optional[bool]
    changed: tuple[str, ...] = ()  # conditions whose counted outcome differs without the flagged images


@dataclass(frozen=True, kw_only=True)
class Survival:
    status: SurvivalStatus
    reason: str  # why it was not recomputed ("" when it was, or when nothing was left out)
    images: int  # the run's images
    kept: int  # images the recomputation is on (== images when nothing was left out)
    min_images: int  # [decision] survival_min_images
    left_out: tuple[str, ...]  # files left out, sorted
    counts: tuple[ReasonCount, ...]  # per reason that has any, in precedence order
    verdict_given: DecisionStatus
    verdict_without: Optional[DecisionStatus]
    leader_given: Optional[str]
    leader_without: Optional[str]
    recommended_given: Optional[str]
    recommended_without: Optional[str]
    # the same verdict and the same leader both ways (None: not recomputed)
    pick_holds: Optional[bool]
    p_best: tuple[PickChance, ...]  # per candidate, in the decision's order as given
    min_win_probability: float
    # (criterion, why) weighed as given but left out without the flagged images (e.g. too few labelled images remain)
    dropped_without: tuple[tuple[str, str], ...] = ()
    gate_given: Optional[Check] = None  # None: no [gate]
    gate_without: Optional[Check] = None
    gate_holds: Optional[bool] = None
    gate: tuple[GateHold, ...] = ()  # per challenger

    @property
    def recomputed(self) -> bool:
        return self.status == SurvivalStatus.RECOMPUTED

    def chance(self, name: Optional[str]) -> Optional[PickChance]:
        return next((c for c in self.p_best if c.backbone == name), None)


def _gate_holds(given: GateReport, without: Optional[GateReport]) -> tuple:
    out = []
    for name in dict.fromkeys(row.challenger for row in given.rows):
        rows = [row for row in given.rows if row.challenger == name]
        passed = Check.PASS if all(row.counts_as == Check.PASS for row in rows) else Check.FAIL
        if without is None:
            out.append(GateHold(challenger=name, display_name=rows[0].display_name, given=passed, without=None,
                                holds=None))
            continue
        after = {row.condition: row.counts_as for row in without.rows if row.challenger == name}
        passed_after = Check.PASS if all(v == Check.PASS for v in after.values()) else Check.FAIL
        out.append(GateHold(challenger=name, display_name=rows[0].display_name, given=passed, without=passed_after,
                            holds=passed == passed_after,
                            changed=tuple(row.condition for row in rows if after.get(row.condition) != row.counts_as)))
    return tuple(out)


def _record(index: RunIndex, decision: Decision, gate: Optional[GateReport], left_out: LeftOut, kept: int,
            status: SurvivalStatus, reason: str = "", without: Optional[Decision] = None,
            gate_without: Optional[GateReport] = None) -> Survival:
    def p_best(found: Optional[Decision], name: str) -> Optional[float]:
        candidate = found.candidate(name) if found is not None else None
        return candidate.p_best if candidate is not None else None
    done = without is not None
    return Survival(
        status=status, reason=reason, images=len(index.images), kept=kept,
        min_images=index.config.decision.survival_min_images, left_out=tuple(sorted(left_out.files)),
        counts=tuple(ReasonCount(r, n) for r, n in left_out.counts()), verdict_given=decision.status,
        verdict_without=without.status if done else None, leader_given=decision.leader,
        leader_without=without.leader if done else None, recommended_given=decision.recommended,
        recommended_without=without.recommended if done else None,
        pick_holds=(without.status == decision.status and without.leader == decision.leader) if done else None,
        p_best=tuple(PickChance(backbone=c.backbone, display_name=c.display_name, given=c.p_best,
                                without=p_best(without, c.backbone)) for c in decision.candidates),
        min_win_probability=decision.min_win_probability,
        dropped_without=tuple((c, why) for c, why in without.dropped if c in decision.weights) if done else (),
        gate_given=gate.verdict if gate is not None else None,
        gate_without=gate_without.verdict if gate_without is not None else None,
        gate_holds=(gate.verdict == gate_without.verdict) if gate is not None and gate_without is not None else None,
        gate=_gate_holds(gate, gate_without) if gate is not None else ())


def decide_without(index: RunIndex, metrics: Metrics, cost: CostReport, kept: tuple,
                   arrays_of: Optional[Callable[[str], dict]] = None, gate_settings=None) -> tuple:
    """(Decision, GateReport or None) on the images at ``kept`` (positions, increasing), through the main
    decision's stages on the restricted run and its own draws; ``gate_settings``: the gate's (None: no gate).
    Keeping every image gives the main decision exactly."""
    count = len(index.images)
    restricted = restricted_index(index, kept)
    sub_metrics = restricted_metrics(metrics, index, kept)
    sub_arrays = None
    if arrays_of is not None:
        def sub_arrays(name: str) -> dict:
            return restricted_arrays(index.backbone(name), arrays_of(name), kept, count)
    draws = run_draws(restricted)
    inputs = decision_inputs(restricted, sub_metrics, cost, draws, sub_arrays)
    decision = decide(restricted, sub_metrics, cost, draws, sub_arrays, inputs)
    gate = None
    if gate_settings is not None and gate_settings.enabled:
        settings = restricted.config.decision
        gate = evaluate_gate(decision, inputs, [b.name for b in restricted.backbones], gate_settings, draws,
                             settings.weight_uncertainty, settings.confidence)
    return decision, gate


def pick_survival(index: RunIndex, metrics: Metrics, cost: CostReport, decision: Decision,
                  gate: Optional[GateReport], left_out: LeftOut,
                  arrays_of: Optional[Callable[[str], dict]] = None) -> Survival:
    """Whether ``decision`` (and ``gate``, None without one), computed on the images as given, hold without the
    images of ``left_out``."""
    kept = kept_positions(index, left_out.files)
    if not left_out.files:
        return _record(index, decision, gate, left_out, len(kept), SurvivalStatus.NOTHING_LEFT_OUT)
    minimum = index.config.decision.survival_min_images
    if len(kept) < minimum:
        return _record(index, decision, gate, left_out, len(kept), SurvivalStatus.TOO_FEW_IMAGES,
                       reason=f"{len(kept):,} of the {len(index.images):,} images would remain, fewer than "
                              f"survival_min_images ({minimum:,})")
    without, gate_without = decide_without(index, metrics, cost, kept, arrays_of,
                                           gate.settings if gate is not None else None)
    return _record(index, decision, gate, left_out, len(kept), SurvivalStatus.RECOMPUTED, without=without,
                   gate_without=gate_without)
