"""The decision's hard constraints as one table, applied by one loop (as scikit-learn applies an estimator's
``_parameter_constraints``): each :class:`Constraint` row says which ``[decision]`` key sets its limit, how to read
the candidate's value, whether the value must stay under the limit or over it, and how to say the outcome. A
measured value with an interval passes or fails only when its whole interval does, and is *uncertain* when the
interval straddles the limit. A value that is missing is *not measured*, which counts as failed. A degenerate
candidate gets a failed check of its own."""
from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Callable

from ..inputs.config import DecisionSettings
from ..results.schema import RunIndex
from ..strenum import StrEnum
from .criteria import Measure
from .degenerate import Degeneracy, assess


class Check(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNCERTAIN = "uncertain"  # the interval straddles the limit
    # nothing to judge (no labelled image, no timing, no criterion shared): never a pass, whatever on_uncertain says
    NOT_MEASURED = "not measured"


# What is not met: a limit the value cannot be checked against is not met either (issue 32: the gate passed a
# challenger on nothing measured).
FAILING = frozenset({Check.FAIL, Check.NOT_MEASURED})


@dataclass(frozen=True, kw_only=True)
class ConstraintCheck:
    key: str
    outcome: Check
    text: str


@dataclass(frozen=True, kw_only=True)
class ConstraintInputs:
    """One candidate's values that the constraints read."""
    params_m: float
    gmacs: float
    latency: Measure  # median latency at batch 1 (ms), with its interval
    top1: Measure
    labelled: int


@dataclass(frozen=True, kw_only=True)
class Constraint:
    key: str  # the [decision] key that sets the limit
    label: str  # page 1's words before the limit ("params (M) ≤")
    value_of: Callable[[ConstraintInputs], Measure]
    upper: bool  # the value must stay at or under the limit (else at or over it)
    share: bool = False  # the limit is a share (0..1), shown in percent
    unit: str = ""  # the value's unit
    missing: str = ""  # the failed check's text when the candidate has no value
    # (value, low, high, relation, limit, labelled images) -> the check's text
    text: Callable[[float, float, float, str, float, int], str]


def _params_text(value, low, high, relation, limit, labelled) -> str:
    return f"params {value:.3g} M {relation} {limit:g} M"


def _gmacs_text(value, low, high, relation, limit, labelled) -> str:
    return f"GMACs {value:.3g} {relation} {limit:g}"


def _latency_text(value, low, high, relation, limit, labelled) -> str:
    return f"latency {value:.3g} ms [{low:.3g}, {high:.3g}] {relation} {limit:g} ms"


def _top1_text(value, low, high, relation, limit, labelled) -> str:
    return (f"top-1 {100 * value:.1f} % [{100 * low:.1f}, {100 * high:.1f}] on {labelled} images {relation} "
            f"{100 * limit:.1f} %")


def _exact(name: str) -> Callable[[ConstraintInputs], Measure]:
    """A value known exactly (no interval)."""
    return lambda inputs: Measure(getattr(inputs, name))


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint(key="max_params_m", label="params (M) ≤", value_of=_exact("params_m"), upper=True, unit="M",
               text=_params_text),
    Constraint(key="max_gmacs", label="GMACs ≤", value_of=_exact("gmacs"), upper=True, unit="GMACs",
               text=_gmacs_text),
    Constraint(key="max_latency_ms", label="latency (ms) ≤", value_of=attrgetter("latency"), upper=True, unit="ms",
               missing="latency not measured", text=_latency_text),
    Constraint(key="min_top1", label="top-1 ≥", value_of=attrgetter("top1"), upper=False, share=True,
               missing="no labelled images to measure top-1", text=_top1_text),
)

_RELATION = {(Check.FAIL, True): ">", (Check.PASS, True): "≤", (Check.FAIL, False): "<", (Check.PASS, False): "≥",
             (Check.UNCERTAIN, True): "straddles", (Check.UNCERTAIN, False): "straddles"}


def constraint(key: str) -> Constraint:
    return next(c for c in CONSTRAINTS if c.key == key)


def limits(settings: DecisionSettings) -> dict:
    """key -> limit of the constraints set, in the table's order."""
    return {c.key: getattr(settings, c.key) for c in CONSTRAINTS if getattr(settings, c.key) is not None}


def against_limit(measure: Measure, limit: float, upper: bool) -> tuple:
    """(low, high, outcome) of a measured value against a limit it must stay under (``upper``) or over: it fails
    or passes only when its whole interval does, and is uncertain when the interval straddles the limit."""
    low = measure.ci_low if measure.ci_low is not None else measure.value
    high = measure.ci_high if measure.ci_high is not None else measure.value
    beyond, within = (low > limit, high <= limit) if upper else (high < limit, low >= limit)
    return low, high, Check.FAIL if beyond else Check.PASS if within else Check.UNCERTAIN


def check_candidate(inputs: ConstraintInputs, limits_set: dict) -> tuple[tuple[ConstraintCheck, ...], float]:
    """ConstraintCheck per constraint set, and the sum of relative excesses over those failed."""
    checks, violation = [], 0.0
    for found in CONSTRAINTS:
        if found.key not in limits_set:
            continue
        limit = limits_set[found.key]
        measure = found.value_of(inputs)
        if measure.value is None:
            outcome, text, excess = Check.NOT_MEASURED, found.missing, 1.0
        else:
            value = measure.value
            low, high, outcome = against_limit(measure, limit, found.upper)
            text = found.text(value, low, high, _RELATION[outcome, found.upper], limit, inputs.labelled)
            excess = value / limit - 1 if found.upper else (limit - value) / max(limit, 1e-9)
        checks.append(ConstraintCheck(key=found.key, outcome=outcome, text=text))
        if outcome in FAILING:
            violation += excess
    return tuple(checks), violation


def _degeneracy(entry, top1: Measure, settings: DecisionSettings, classes: int) -> Degeneracy:
    deep = entry.depth_layers.get("deep")
    if entry.task is not None and entry.task.note:  # no probe could be fit: its placeholder head says nothing
        return assess(entry.name, entry.display_name, (), (), None, None, settings, classes)
    return assess(entry.name, entry.display_name, entry.predictions, entry.cam_status.get(deep, ()), top1.value,
                  top1.ci_high, settings, classes)


def degenerate_candidates(index: RunIndex, top1: list, settings: DecisionSettings) -> tuple:
    """Degeneracy of each candidate whose outputs are degenerate. Untrained weights are degenerate on purpose (the
    report is bannered as illustrative): nothing to name."""
    if index.untrained:
        return ()
    found = (_degeneracy(entry, top1[k], settings, index.class_count()) for k, entry in enumerate(index.backbones))
    return tuple(one for one in found if one.flagged)


def mark_degenerate(checked: list, degenerate: tuple, names: list) -> None:
    """A failed check of its own for each degenerate candidate: never recommended, ranked after every other."""
    for found in degenerate:
        k = names.index(found.backbone)
        checks, _ = checked[k]
        failed = ConstraintCheck(key="degenerate", outcome=Check.FAIL, text="degenerate outputs (see above)")
        checked[k] = (checks + (failed,), math.inf)
