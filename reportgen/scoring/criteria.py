"""The decision's criteria as one table: each is a :class:`Criterion` row (its key in ``[decision] weights``, its
page-1 words, its fixed scale in points, how it is measured, why it can be missing) and one measure function.
``decide()``, the gate, page 1, ``compare`` and docs/decision.md all read :data:`CRITERIA`; a new criterion is one
row here, one measure function, and its key and default weight in :mod:`reportgen.inputs.config` (which cannot
import scoring: the layers contract), checked at import.

Every measure has one signature, ``measure(inputs, k, name) -> (point, (B,) draws)`` of the raw value for the k-th
candidate of the index (NaN where it has none); every scale maps raw values (arrays allowed) to points on a scale
that does not depend on which other candidates are in the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..inputs import config
from ..inputs.manifest import SIZES
from ..results.schema import CostReport, RunIndex, RunStatus
from .beyond_paper import corruption_vectors, road_vectors, top1_change_of
from .bootstrap import PairedDraws, interval, nanmean
from .calibration import top1_brier
from .proportion import brier_interval, share_interval
from .timing import SESSIONS, class_latency, different_machines, latency_interval, session_layout
from .vectors import Vectors, widened


@dataclass(frozen=True)
class Measure:
    """A raw criterion value with its interval from the draws."""
    value: Optional[float]
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None


def measured(point, drawn, level, exact: Optional[tuple] = None) -> Measure:
    """``exact``: the criterion's own interval at ``level`` (latency's random-effects t interval), in place of the
    draws' percentiles."""
    if point is None or not np.isfinite(point):
        return Measure(None)
    low, high = exact if exact is not None else interval(drawn, level)
    return Measure(float(point), low, high)


@dataclass(frozen=True, kw_only=True)
class CriterionInputs:
    """What the measure functions read: the run, its per-image vectors and draws, the cost report and timing classes
    (:func:`~reportgen.scoring.timing.timing_classes`), the set's size mix and the saved arrays (None: corruption
    and faithfulness are not measured)."""
    index: RunIndex
    vectors: Vectors
    draws: PairedDraws
    cost: CostReport
    classes: dict
    mix: dict
    arrays_of: Optional[Callable[[str], dict]]
    sizes: np.ndarray  # each image's size class ("" without one)
    backgrounds: np.ndarray  # each image's background ("" without one)
    by_class: dict = field(default_factory=dict)  # a timing class's latency, computed once for all its members

    @property
    def missing(self) -> tuple:
        return np.nan, np.full(self.draws.samples, np.nan)


@dataclass(frozen=True)
class CriterionValues:
    """Per criterion: point values (K,) and draws (B, K) of the raw measure, NaN where missing."""
    point: dict = field(default_factory=dict)
    draws: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)  # key -> {k: (low, high)} where a criterion has its own interval

    def exact(self, key: str, k: int) -> Optional[tuple]:
        return self.intervals.get(key, {}).get(k)


@dataclass(frozen=True, kw_only=True)
class Criterion:
    key: str  # as in [decision] weights
    label: str  # page-1 words ("top-1 accuracy", "corruptions")
    points: str  # the scale in words (docs/decision.md's criteria table)
    scale: Callable  # raw value(s), float64 -> points
    measure: Callable[[CriterionInputs, int, str], tuple]  # -> (point, (B,) draws) of the raw value
    why_missing: str  # why no candidate has a value (the criterion is then dropped)
    why_lacking: str = ""  # why one candidate has none ("" = why_missing)
    cost: bool = False  # a cost (latency, size) rather than a quality
    analysis: bool = False  # measured by an analysis run with its own status and the saved arrays
    # why the criterion cannot be weighed in this run even where it has values (None: it can)
    unusable: Optional[Callable[[RunIndex, CostReport], Optional[str]]] = None
    own_task_label: str = ""  # the label on the user's own classes ("" = label)
    # (entry, Measure from the draws, level) -> the interval page 1 shows and a constraint checks, where the draws'
    # percentile interval claims more precision than it has (None: that one; scoring/proportion.py)
    shown: Optional[Callable] = None
    # (inputs, k, name, level) -> the interval page 1 shows where it is not the draws' percentiles (None: it is)
    exact: Optional[Callable[[CriterionInputs, int, str, float], Optional[tuple]]] = None

    def label_for(self, own_task: bool) -> str:
        return self.own_task_label if own_task and self.own_task_label else self.label


# --- the measures ---------------------------------------------------------------------------------------------------

def _correct(predictions) -> np.ndarray:
    return np.array([np.nan if p.correct_top1 is None else float(p.correct_top1) for p in predictions])


def accuracy(inputs: CriterionInputs, k: int, name: str) -> tuple:
    entry = inputs.index.backbones[k]
    correct = _correct(entry.predictions)
    point = nanmean(correct)
    # A cross-validated probe's draws widened by its refit variance ratio: the interval includes refitting.
    return point, widened(point, inputs.draws.means(correct), entry.task.refit_ratio if entry.task else None)


def _accuracy_shown(entry, found: Measure, level: float) -> tuple:
    correct = _correct(entry.predictions)
    return share_interval(found.value, int(np.isfinite(correct).sum()), found.ci_low, found.ci_high, level)


def _brier_shown(entry, found: Measure, level: float) -> tuple:
    return brier_interval(np.array([p.top1.prob for p in entry.predictions]), _correct(entry.predictions),
                          found.ci_low, found.ci_high, level)


def localisation(inputs: CriterionInputs, k: int, name: str) -> tuple:
    if not inputs.mix:
        return inputs.missing
    mass = inputs.vectors.backbone(name, "deep", "mass_ratio")
    sizes, draws = inputs.sizes, inputs.draws
    point = sum(share * nanmean(mass[sizes == size]) for size, share in inputs.mix.items())
    drawn = sum(share * draws.means(mass, sizes == size) for size, share in inputs.mix.items())
    return point, drawn


def clutter(inputs: CriterionInputs, k: int, name: str) -> tuple:
    mass = inputs.vectors.backbone(name, "deep", "mass_ratio")
    clean, cluttered = inputs.backgrounds == "clean", inputs.backgrounds == "cluttered"
    with np.errstate(divide="ignore", invalid="ignore"):
        point = nanmean(mass[cluttered]) / nanmean(mass[clean])
        drawn = inputs.draws.means(mass, cluttered) / inputs.draws.means(mass, clean)
    return point, drawn


def calibration(inputs: CriterionInputs, k: int, name: str) -> tuple:
    predictions = inputs.index.backbones[k].predictions
    correct = _correct(predictions)
    have = np.isfinite(correct)
    if have.sum() < 2:
        return inputs.missing
    confidence = np.array([p.top1.prob for p in predictions])
    values = top1_brier(confidence, correct)  # NaN where unlabelled
    return float(values[have].mean()), inputs.draws.means(values)


def corruption(inputs: CriterionInputs, k: int, name: str) -> tuple:
    entry = inputs.index.backbones[k]
    if entry.corruption.status != RunStatus.DONE or inputs.arrays_of is None:
        return inputs.missing
    _, clean, corrupted = corruption_vectors(inputs.index, entry, inputs.arrays_of(name))
    point, drawn = top1_change_of(clean, corrupted, inputs.draws)
    return (np.nan, drawn) if point is None else (point, drawn)


def faithfulness(inputs: CriterionInputs, k: int, name: str) -> tuple:
    entry = inputs.index.backbones[k]
    if entry.faithfulness.status != RunStatus.DONE or inputs.arrays_of is None:
        return inputs.missing
    values = road_vectors(inputs.index, entry, inputs.arrays_of(name))
    gap = (values[:, 0, 1] - values[:, 0, 0]) / 2
    return (float(nanmean(gap)) if np.isfinite(gap).any() else np.nan), inputs.draws.means(gap)


def _sessions(inputs: CriterionInputs):
    if SESSIONS not in inputs.by_class:  # the run's session table, once
        inputs.by_class[SESSIONS] = session_layout(inputs.index, inputs.cost, inputs.classes)
    return inputs.by_class[SESSIONS]


def latency(inputs: CriterionInputs, k: int, name: str) -> tuple:
    members = tuple(sorted(inputs.classes.get(name, (name,))))  # by name: the battery's order changes no draw
    if members not in inputs.by_class:
        inputs.by_class[members] = class_latency(members, inputs.cost, inputs.draws, _sessions(inputs))
    return inputs.by_class[members]


def latency_exact(inputs: CriterionInputs, k: int, name: str, level: float) -> Optional[tuple]:
    """The random-effects interval over the sessions (None: an older cost.json: the draws' percentiles)."""
    return latency_interval(_sessions(inputs), tuple(sorted(inputs.classes.get(name, (name,)))), level)


def size(inputs: CriterionInputs, k: int, name: str) -> tuple:
    params = inputs.index.backbones[k].params / 1e6
    return params, np.full(inputs.draws.samples, params)


def labelled_images(index: RunIndex) -> int:
    """The run's labelled images, counted from the images (their class), not from a candidate's predictions: a probe
    that could not be fit scores none, and the count (calibration's minimum, page 1's "on n images") must not
    depend on which candidate the battery lists first (issue 32, defect 11)."""
    return sum(image.class_index is not None for image in index.images)


def _too_few_labelled(index: RunIndex, cost: CostReport) -> Optional[str]:
    labelled = labelled_images(index)
    if labelled < index.config.calibration_min_labelled:
        return (f"{labelled} labelled images, fewer than calibration_min_labelled "
                f"({index.config.calibration_min_labelled})")
    return None


# --- the scales (each one branch of the former utility() if-chain, verbatim) ----------------------------------------

def _times_100(value):
    return 100.0 * value


def _localisation_points(value):
    return 100.0 * (1.0 - 1.0 / np.maximum(value, 1e-6))


def _corruption_points(value):  # the change in top-1 (0 = nothing lost)
    return 100.0 * (1.0 + value)


def _calibration_points(value):  # top-1 Brier score: 100 = every right answer at 1, every wrong at 0
    return 100.0 * (1.0 - value)


def _latency_points(value):
    return 100.0 * (1.0 - np.log10(np.maximum(value, 1e-6)) / 3.0)


def _size_points(value):
    return 100.0 * (1.0 - np.log10(np.maximum(value, 1e-9) / 0.1) / 3.0)


CRITERIA: tuple[Criterion, ...] = (
    Criterion(key="accuracy", label="top-1 accuracy", own_task_label="task accuracy", points="100 × top-1",
              scale=_times_100, measure=accuracy, why_missing="no labelled images", shown=_accuracy_shown),
    Criterion(key="localisation", label="localisation", points="100 × (1 − 1/mass_ratio)",
              scale=_localisation_points, measure=localisation, why_missing="no boxed images with a size class",
              why_lacking="no usable deep-layer CAM on the boxed images of a size class in the set"),
    Criterion(key="clutter", label="clutter", points="100 × cluttered / clean mass_ratio", scale=_times_100,
              measure=clutter, why_missing="no boxed images on both clean and cluttered backgrounds",
              why_lacking="no usable deep-layer CAM on boxed images of both backgrounds"),
    Criterion(key="calibration", label="calibration", points="100 × (1 − top-1 Brier score)",
              scale=_calibration_points, measure=calibration, why_missing="too few labelled images",
              unusable=_too_few_labelled, shown=_brier_shown),
    Criterion(key="corruption", label="corruptions",
              points="100 × (1 + change in top-1, or in agreement, under corruption)", scale=_corruption_points,
              measure=corruption, why_missing="not measured", analysis=True),
    Criterion(key="faithfulness", label="faithfulness", points="100 × ROAD gap", scale=_times_100,
              measure=faithfulness, why_missing="not measured", analysis=True),
    Criterion(key="latency", label="latency", points="100 × (1 − log10(ms) / 3)", scale=_latency_points,
              measure=latency, why_missing="latency not measured", cost=True, unusable=different_machines,
              exact=latency_exact),
    Criterion(key="size", label="size", points="100 × (1 − log10(params / 0.1 M) / 3)", scale=_size_points,
              measure=size, why_missing="no parameter count", cost=True),
)


def _check_table() -> None:
    """The table covers exactly the config's criteria, in their order (the weights' order is the float summation
    order of every score), each with a default weight."""
    keys = tuple(c.key for c in CRITERIA)
    if keys != config.DECISION_CRITERIA or tuple(config.DEFAULT_DECISION_WEIGHTS) != keys:
        raise RuntimeError(f"CRITERIA {keys} must cover DECISION_CRITERIA {config.DECISION_CRITERIA} and "
                           f"DEFAULT_DECISION_WEIGHTS {tuple(config.DEFAULT_DECISION_WEIGHTS)}, in that order")


_check_table()


def criteria() -> tuple:
    """The table as it stands now (read at call time, so a test can register a criterion)."""
    return CRITERIA


def criterion(key: str) -> Criterion:
    for found in CRITERIA:
        if found.key == key:
            return found
    raise KeyError(key)


def shown_measure(key: str, entry, point, drawn, level: float, exact: Optional[tuple] = None) -> Measure:
    """A criterion's value for one candidate (``entry``) with the interval page 1 shows: the draws' percentile
    interval (or the criterion's ``exact`` one), widened by the row's ``shown`` where that claims more than it has."""
    found = measured(point, drawn, level, exact)
    shown = criterion(key).shown
    if found.value is None or shown is None:
        return found
    return Measure(found.value, *shown(entry, found, level))


def cost_criteria() -> tuple:
    return tuple(c.key for c in CRITERIA if c.cost)


def utility(key: str, value):
    """Points of a raw criterion value (arrays allowed); NaN where the value is missing."""
    scale = criterion(key).scale
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return scale(value)


def size_mix(index: RunIndex) -> dict:
    """size -> share of the boxed images with a size class: the set's own mix, from the images alone. Counting only
    the images some candidate has a CAM value on made every candidate's localisation weights depend on who else was
    in the run (a dominated candidate with CAMs on small objects flipped the pick: issue 32, defect 3); a candidate
    with no value on a size class of the mix now lacks localisation itself."""
    boxed = [image.size for image in index.images if image.size in SIZES and image.box is not None]
    return {size: boxed.count(size) / len(boxed) for size in SIZES if boxed.count(size)} if boxed else {}


def measure_criteria(inputs: CriterionInputs) -> CriterionValues:
    """Every criterion's point values and draws per candidate, in the table's order."""
    names = [b.name for b in inputs.index.backbones]
    # Candidate by candidate, so that a cached ``arrays_of`` (decision_inputs) loads each one's arrays once for the
    # criteria that read them; every measure is independent of the others, so the order changes no number.
    measured = [[found.measure(inputs, k, name) for found in CRITERIA] for k, name in enumerate(names)]
    values = CriterionValues()
    for j, found in enumerate(CRITERIA):
        values.point[found.key] = np.array([row[j][0] for row in measured], dtype=np.float64)
        values.draws[found.key] = np.stack([row[j][1] for row in measured], axis=1)
        if found.exact is not None:
            level = inputs.index.config.decision.confidence
            found_exact = {k: found.exact(inputs, k, name, level) for k, name in enumerate(names)}
            values.intervals[found.key] = {k: v for k, v in found_exact.items() if v is not None}
    return values


def why_dropped(found: Criterion, index: RunIndex) -> str:
    """Why no candidate has a value for a criterion."""
    if found.analysis:
        runs = {getattr(b, found.key).reason for b in index.backbones if getattr(b, found.key).reason}
        return f"not measured ({'; '.join(sorted(runs)) or 'no saved arrays'})"
    return found.why_missing


def why_missing(key: str, entry, arrays_of) -> str:
    """Why a backbone has no value for a criterion, in a few words."""
    found = criterion(key)
    if found.analysis:
        run = getattr(entry, key)
        if run.status != RunStatus.DONE:
            return f"not measured: {run.reason}" if run.reason else "not measured"
        if arrays_of is None:
            return "no saved arrays"
    return found.why_lacking or found.why_missing
