"""The results format, as a typed contract.

``results.json`` is a :class:`RunIndex`, each finished backbone a :class:`BackboneResult`, ``metrics.json`` a
:class:`Metrics`. Every record converts itself with ``to_json()`` / ``from_json()`` (driven by its field types,
so the two can never disagree); modules pass these objects around and never read the files by string keys.
Bump :data:`SCHEMA_VERSION` whenever a field changes meaning or is added or removed.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import typing
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any, Optional, Union

from ..inputs.config import AnalysisConfig
from ..inputs.images import SkippedImage
from ..inputs.label_space import LabelSpace, imagenet_space
from ..strenum import StrEnum

# 2: per-backbone files under backbones/, streamed CKA, skipped images
# 3: weight_modules (last-three taps read after their BN, weights from the conv)
# 4: slimming by intervention (BackboneResult.slimming, Metrics.slimming); cost.json beside the results
# 6: ImageSetInfo.from_subfolders (class folders label their sub-folders)
# 7: one paired bootstrap for every interval (family aggregates over images, not image x backbone rows); cost.json
#    keeps every latency pass and the machine fingerprint
# 8: logits saved; corruption and faithfulness runs; calibration, corruption and faithfulness scores
# 9: corruptions of ImageNet-C's common 224 x 224 crop (the same pixels for every backbone) and its clean top-1
#    (corruptclean), the retention's reference; metrics.json says the device and the sample sizes (SampleSize);
#    cost.json the latency's precision and stopping rule
# 10: the run's label space (RunIndex.label_space: ImageNet-1k or the user's classes), each candidate's head in it
#    (BackboneResult.task: own head or linear probe, with the transfer measures), Metrics.task
# 11: the report's metrics.json is versioned whole: its decision (Decision, Candidate: tied, degenerate and unshared
#    were added after 10 without a version), conclusions and gate records are recorded per version in
#    tests/data/metrics_contract.json (docs/design.md, "The results contract")
# 12: issue 32 (page 1 moves only with the candidates and the images): latency timed in interleaved sessions
#    (cost.json), held-out scoring of the probes' corruption and faithfulness, the gate's 'not measured' outcome,
#    and the decision records that changed with them
# 13: issues 33 (where two candidates differ, image by image) and 34 (your data, checked: the label reading of
#    numbered folders, duplicates, leakage, label errors, class balance, the pick without the flagged images)
SCHEMA_VERSION = 13


class CamStatus(StrEnum):
    OK = "ok"
    ZERO = "zero"
    NAN = "nan"
    NOT_SPATIAL = "not-spatial"
    OVERWRITTEN = "overwritten-in-place"


class WeightsSource(StrEnum):
    CHECKPOINT = "checkpoint"
    HF_CACHE = "hf-cache"
    HF_HUB = "hf-hub"
    URL_CACHE = "url-cache"
    URL = "url"
    LITE_PACKAGE = "lite-package"
    RANDOM = "random"
    MISSING = "missing"


class WeightsMode(StrEnum):
    PRETRAINED = "pretrained"
    RANDOM = "random"


class Estimand(StrEnum):
    """What a candidate's accuracy on the run's classes measures."""
    IMAGENET_HEAD = "ImageNet head"  # the stock head, ImageNet-1k classes
    OWN_HEAD = "own head"  # a checkpoint's head for the user's classes
    LINEAR_PROBE = "linear probe"  # out-of-fold logistic regression on frozen features: a lower bound on fine-tuning


class SanityStatus(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"


# --- conversion, driven by the field types -------------------------------------------------------------

def _encode(value):
    if isinstance(value, JsonRecord):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an inputs record the index keeps as is
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.metadata.get("saved", True)}
    if isinstance(value, AnalysisConfig):
        return value.to_dict()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    return value


def _decode(kind, value):
    if value is None or kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value)) if args else tuple(value)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in value.items()} if args else dict(value)
    if isinstance(kind, type):
        if issubclass(kind, JsonRecord):
            return kind.from_json(value)
        if kind is AnalysisConfig:
            return AnalysisConfig.from_dict(value)
        if issubclass(kind, Enum):
            return kind(value)
        if dataclasses.is_dataclass(kind):
            hints = _hints(kind)
            return kind(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)
                           if f.name in value})
    return value


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


class JsonRecord:
    """Mixin for frozen dataclasses: ``to_json`` gives plain JSON data, ``from_json`` the record back.
    Optional fields marked ``omit_if_none`` are left out of the JSON while they are None."""

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_if_none"):
                continue
            out[f.name] = _encode(value)
        return out

    @classmethod
    def from_json(cls, data: dict):
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = _decode(hints[f.name], data[f.name])
        return cls(**values)


def _optional():
    return field(default=None, metadata={"omit_if_none": True})


# --- results.json ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ImageEntry(JsonRecord):
    file: str
    sha256: str
    width: int
    height: int
    class_index: Optional[int]
    class_name: Optional[str]
    box: Optional[tuple[float, ...]]
    box_share: Optional[float]
    size: Optional[str]
    background: Optional[str]
    source: str
    licence: str
    notes: str
    decoding: str
    size_source: str
    background_source: str
    box_source: str
    display_copy: str
    in_subfolder: bool = False  # below its class folder (labelled with the class folder's class)


@dataclass(frozen=True)
class ImageSetInfo(JsonRecord):
    root_name: str
    sha256: str
    count: int
    labels: str = "none"  # where the classes came from: manifest | class folders | VOC annotation files | none
    labels_note: str = ""  # e.g. "annotations.csv gives the labels; the class folders were not used"
    from_subfolders: int = 0  # images below their class folder (labelled with its class, as ImageFolder does)


# The run's label space is stored as it is: ``inputs.label_space.LabelSpace`` (kind, source, source_detail, names,
# note; its ImageNet names provider is not saved).


@dataclass(frozen=True)
class ExcludedClass(JsonRecord):
    """A class left out of the linear probe, and why (too few labelled images for the folds)."""
    index: int
    name: str  # "" until named (analysis.transfer names it only when given the class names)
    images: int  # cross-validation: its labelled images; with a training set: its training images
    reason: str  # e.g. "3 labelled images, fewer than the 5 folds need"


@dataclass(frozen=True, kw_only=True)
class TaskRun(JsonRecord):
    """How a candidate was scored on the user's classes. Its probabilities (the ``logits`` array: log-probabilities
    for a probe) are out-of-fold for a probe; the heatmaps explain the probe fit on a per-class sample of at most
    half the labelled images (or on --train-images)."""
    estimand: Estimand
    head_outputs: int  # outputs of the head stored with the weights
    protocol: str = ""  # a probe's: "5-fold stratified cross-validation, 5 repeats" | "fit on N training images"
    folds: int = 0
    classes_used: tuple[int, ...] = ()
    excluded: tuple[ExcludedClass, ...] = ()
    feature_dim: int = 0
    knn_k: int = 0
    logme: Optional[float] = None
    note: str = ""  # why there is no probe, when there is none
    logme_note: str = ""  # why LogME is not measured, when it is not
    explained_by: int = 0  # images the head the heatmaps explain was fit on (a per-class sample, or --train-images)
    # Positions (in the run's images) of the per-class sample it was fit on; () with --train-images. The sanity,
    # corruption and faithfulness samples hold none of them (a head scores only images it did not see).
    explained_images: tuple[int, ...] = ()
    repeats: int = 0  # a cross-validated probe's repeats (its probabilities and k-NN votes averaged over them)
    # The variance of the refit cross-validated accuracy over that of the fixed out-of-fold outcomes' mean (>= 1):
    # the paired bootstrap's spread of the probe's (the k-NN's) accuracy is scaled by its square root, so the
    # interval includes refitting. None: not measured (a training set: the fitted probe's own interval).
    refit_ratio: Optional[float] = None
    knn_refit_ratio: Optional[float] = None


@dataclass(frozen=True)
class WeightsInfo(JsonRecord):
    mode: WeightsMode
    source: WeightsSource
    location: str
    file_sha256: str
    state_sha256: str


@dataclass(frozen=True)
class View(JsonRecord):
    """The part of the image a backbone saw (original pixels) and the box in model-input pixels."""
    crop: tuple[float, ...]
    width: int
    height: int
    box: Optional[tuple[float, ...]]


@dataclass(frozen=True)
class RankedClass(JsonRecord):
    index: int
    name: str
    prob: float


@dataclass(frozen=True)
class Prediction(JsonRecord):
    target: int
    target_name: str
    target_source: str  # manifest | prediction
    top5: tuple[RankedClass, ...]  # k = min(5, classes), best first
    correct_top1: Optional[bool]
    correct_top5: Optional[bool]

    @property
    def top1(self) -> RankedClass:
        """The prediction: the head's most probable class."""
        return Prediction.top1_of(self.top5)

    @staticmethod
    def top1_of(ranking: tuple[RankedClass, ...]) -> RankedClass:
        """The most probable class of a ranking (best first), before its Prediction is built."""
        return ranking[0]


@dataclass(frozen=True)
class FeatureStats(JsonRecord):
    variance: Optional[float]
    dim: int


@dataclass(frozen=True)
class WeightStats(JsonRecord):
    count: int
    mean: float
    std: float
    variance: float
    excess_kurtosis: Optional[float]
    near_zero_share: float


@dataclass(frozen=True)
class FeatureCka(JsonRecord):
    layers: tuple[str, ...]
    matrix: tuple[tuple[Optional[float], ...], ...]
    features: str


@dataclass(frozen=True)
class SanityStep(JsonRecord):
    label: str
    modules: tuple[str, ...]
    parameters: int
    cam_status: dict[str, tuple[CamStatus, ...]]


@dataclass(frozen=True)
class SanityRun(JsonRecord):
    status: SanityStatus
    reason: str
    steps: tuple[SanityStep, ...]  # cam_status per sampled image, in the order of ``images``
    images: tuple[int, ...] = ()  # positions of the sampled images in the set (sanity arrays follow this order)


class SlimmingStatus(StrEnum):
    DONE = "done"
    NOT_POSSIBLE = "not-possible"  # no unit can be replaced by identity (the reason says why)
    SKIPPED = "skipped"  # untrained weights: the unit is named and sized, the images are not run


@dataclass(frozen=True, kw_only=True)
class SlimmingRun(JsonRecord):
    """The unit removed (replaced by identity, no retraining) and what it cost the model; the per-image
    outcomes (top-1, KL, deep-CAM Spearman of the slimmed model) are arrays, scored into Metrics.slimming."""
    status: SlimmingStatus
    unit: Optional[str]
    unit_source: str  # registry | automatic
    reason: str
    params_removed: int
    macs_removed: float
    deep_cam_layer: Optional[str]  # where the slimmed model's deep CAM is read (None: not measured)


class RunStatus(StrEnum):
    DONE = "done"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CorruptionRun(JsonRecord):
    """Common corruptions of ImageNet-C's common 224 x 224 crop of each image of a hashed sample; the top-1 classes
    are arrays: corrupted (sample x corruption x severity) and clean (sample), both through the backbone's own
    resize and normalisation."""
    status: RunStatus
    reason: str
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = ()
    images: tuple[int, ...] = ()  # positions of the sampled images in the set (the array follows this order)
    design: str = ""  # balanced (each corruption once per image, rotating severities) | full


@dataclass(frozen=True, kw_only=True)
class FaithfulnessRun(JsonRecord):
    """ROAD of the deep-layer CAM and two baseline maps on a hashed sample; the scores are an array
    (sample x map x order)."""
    status: RunStatus
    reason: str
    layer: str = ""
    percentiles: tuple[int, ...] = ()
    imputation_side: int = 0
    images: tuple[int, ...] = ()
    design: str = ""  # balanced (one percentile per image, drawn from its content hash) | full


NOT_RUN = "not measured by this version"


@dataclass(frozen=True, kw_only=True)
class BackboneResult(JsonRecord):
    """Everything measured for one backbone; its arrays live in the .npz named by ``arrays``."""
    name: str
    timm_id: str
    architecture: str
    display_name: str
    family: str
    family_source: str
    layer_source: str
    depth_layers: dict[str, str]
    last_three: tuple[str, ...]
    weight_modules: dict[str, str]  # last-three tap -> module whose weights it reports, where they differ
    layers: tuple[str, ...]
    weights: WeightsInfo
    data_config: dict[str, Any]
    params: int
    macs: float
    cam_status: dict[str, tuple[CamStatus, ...]]
    feature_stats: dict[str, FeatureStats]
    weight_stats: dict[str, WeightStats]
    feature_cka: FeatureCka
    views: tuple[View, ...]
    predictions: tuple[Prediction, ...]
    sanity: SanityRun
    slimming: SlimmingRun
    batch_size: int  # smaller than asked after an out-of-memory retry
    corruption: CorruptionRun = CorruptionRun(RunStatus.SKIPPED, NOT_RUN)
    faithfulness: FaithfulnessRun = FaithfulnessRun(status=RunStatus.SKIPPED, reason=NOT_RUN)
    cache_key: str = ""
    arrays: str = ""  # path of the .npz, relative to the results folder
    task: Optional[TaskRun] = _optional()  # the user's classes only

    @property
    def estimand(self) -> Estimand:
        return self.task.estimand if self.task is not None else Estimand.IMAGENET_HEAD

    def weights_module(self, layer: str) -> str:
        return self.weight_modules.get(layer, layer)

    @property
    def labelled_predictions(self) -> tuple[Prediction, ...]:
        return tuple(p for p in self.predictions if p.correct_top1 is not None)

    def spatial_statuses(self) -> list[CamStatus]:
        return [s for layer in self.cam_status.values() for s in layer if s != CamStatus.NOT_SPATIAL]


@dataclass(frozen=True, kw_only=True)
class RunIndex(JsonRecord):
    """``results.json``: what was run, on what, with what, and each backbone's result."""
    schema_version: int
    versions: dict[str, str]
    config: AnalysisConfig
    seed: int
    weights_mode: WeightsMode
    device: str
    image_set: ImageSetInfo
    images: tuple[ImageEntry, ...]
    skipped_images: tuple[SkippedImage, ...]
    backbones: tuple[BackboneResult, ...]
    timings_file: str
    battery_file: dict[str, Any]
    shards: Optional[tuple[str, ...]] = _optional()  # merged runs: the shard folders
    label_space: LabelSpace = imagenet_space()
    # Images byte-identical (sha256) to an image of --train-images: the probe was fit on them, so its accuracy on
    # them is inflated (page 1 warns; the sanity, corruption and faithfulness samples leave them out).
    train_copies: tuple[str, ...] = ()
    # Schema 13: the --train-images files in the order of a probe's saved training features (``trainprelogits``), so
    # the data check names the training image an evaluation image nearly copies.
    train_files: tuple[str, ...] = ()

    @property
    def own_task(self) -> bool:
        return not self.label_space.is_imagenet

    def class_count(self) -> int:
        return self.label_space.size

    @property
    def top5_informative(self) -> bool:
        """More than five classes: with five or fewer every top-5 holds the label, so top-5 says nothing."""
        return self.class_count() > 5

    @property
    def untrained(self) -> bool:
        return self.weights_mode == WeightsMode.RANDOM

    def backbone(self, name: str) -> BackboneResult:
        for entry in self.backbones:
            if entry.name == name:
                return entry
        raise KeyError(name)


# --- metrics.json ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PerImageRow(JsonRecord):
    image: str
    backbone: str
    family: str
    layer: str
    role: str  # shallow | middle | deep | last_three | baseline:<name>
    size: Optional[str]
    background: Optional[str]
    cam_status: CamStatus
    mass_in_box: Optional[float]
    mass_ratio: Optional[float]
    pointing_hit: Optional[bool]
    spread: Optional[float]
    entropy: Optional[float]

    def value(self, metric: str) -> Optional[float]:
        return getattr(self, metric)


@dataclass(frozen=True, kw_only=True)
class PredictionRow(JsonRecord):
    image: str
    backbone: str
    class_index: Optional[int]
    target: int
    target_name: str
    target_source: str
    top5: tuple[RankedClass, ...]
    correct_top1: Optional[bool]
    correct_top5: Optional[bool]


@dataclass(frozen=True, kw_only=True)
class Aggregate(JsonRecord):
    scope: str  # backbone | family
    name: str
    role: str
    group: str  # all | size=.. | background=.. | size=..,background=..
    metric: str
    mean: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    small_group: bool

    def __post_init__(self):
        _finite_or_none(self, "mean", "ci_low", "ci_high")


def _finite_or_none(record, *names) -> None:
    """A measurement that left no value is None, never NaN or inf: every reader then has one case to handle."""
    for name in names:
        value = getattr(record, name)
        if value is not None and not math.isfinite(value):
            object.__setattr__(record, name, None)


@dataclass(frozen=True)
class Interval(JsonRecord):
    mean: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int

    def __post_init__(self):
        _finite_or_none(self, "mean", "ci_low", "ci_high")
        if self.mean is None:  # bounds without a mean describe nothing
            object.__setattr__(self, "ci_low", None)
            object.__setattr__(self, "ci_high", None)


def measured(found: Optional[Interval]) -> bool:
    """The interval holds a value (a measurement can leave it empty: too few images, degenerate maps)."""
    return found is not None and found.mean is not None


@dataclass(frozen=True)
class LastThreeSummary(JsonRecord):
    layers: tuple[str, ...]
    cka: tuple[tuple[Optional[float], ...], ...]
    weight_w1_consecutive: tuple[float, ...]
    weight_ks_consecutive: tuple[float, ...]
    feature_variance: tuple[Optional[float], ...]


@dataclass(frozen=True)
class SanityStepScore(JsonRecord):
    step: str
    parameters: int
    zero_maps: int
    spearman: Interval
    ssim: Interval


@dataclass(frozen=True)
class SanityLayer(JsonRecord):
    role: str
    steps: tuple[SanityStepScore, ...]
    flagged: bool


@dataclass(frozen=True)
class SanitySummary(JsonRecord):
    status: SanityStatus
    reason: str
    layers: dict[str, SanityLayer]


@dataclass(frozen=True, kw_only=True)
class SlimmingScore(JsonRecord):
    """The slimmed model against the full one over the image set (intervals: bootstrap over images)."""
    status: SlimmingStatus
    unit: Optional[str]
    reason: str
    params_removed: int
    macs_removed: float
    agreement: Optional[Interval]  # share of images whose top-1 is unchanged
    top1_full: Optional[float]  # accuracy on the labelled images
    top1_slim: Optional[float]
    top1_change: Optional[Interval]  # slim - full, on the labelled images
    kl: Optional[Interval]  # mean KL(full || slim) of the softmax outputs
    deep_cam_spearman: Optional[Interval]  # slimmed vs full model's deep-layer CAM


@dataclass(frozen=True)
class ReliabilityBin(JsonRecord):
    confidence: float  # mean top-1 confidence in the bin
    accuracy: float
    images: int


@dataclass(frozen=True, kw_only=True)
class CalibrationScore(JsonRecord):
    """Calibration on the labelled images (intervals: the paired bootstrap)."""
    status: RunStatus
    reason: str
    labelled: int
    ece: Optional[Interval] = None  # expected calibration error, 15 equal-width bins of top-1 confidence
    nll: Optional[Interval] = None
    brier: Optional[Interval] = None
    ece_scaled: Optional[Interval] = None  # after temperature scaling (each image by the other half's fit), one ECE
    temperatures: tuple[float, ...] = ()  # fitted on the first half, on the second
    reliability: tuple[ReliabilityBin, ...] = ()
    brier_top1: Optional[Interval] = None  # mean (top-1 confidence - top-1 correct)^2: the decision's criterion


@dataclass(frozen=True)
class CorruptionCell(JsonRecord):
    corruption: str
    severity: int
    value: Interval  # top-1 accuracy (labelled) or agreement with the clean prediction


@dataclass(frozen=True, kw_only=True)
class CorruptionScore(JsonRecord):
    status: RunStatus
    reason: str
    measure: str = ""  # "top-1" (labelled images) | "agreement" (with the clean prediction)
    images: int = 0
    clean: Optional[Interval] = None  # the same measure on the clean crops (agreement: 1)
    retention: Optional[Interval] = None  # corrupted / clean, averaged over corruptions and severities
    cells: tuple[CorruptionCell, ...] = ()


@dataclass(frozen=True)
class RoadScore(JsonRecord):
    map: str  # cam | random | gaussian
    morf: Optional[Interval]  # mean change of the target probability, most relevant removed first
    lerf: Optional[Interval]
    gap: Optional[Interval]  # (LeRF - MoRF) / 2: higher is more faithful


@dataclass(frozen=True, kw_only=True)
class FaithfulnessScore(JsonRecord):
    status: RunStatus
    reason: str
    layer: str = ""
    images: int = 0
    maps: tuple[RoadScore, ...] = ()
    over_random: Optional[Interval] = None  # CAM gap minus the random map's gap, paired per image
    beats_random: Optional[bool] = None  # its interval lies above zero (None: not measured)


@dataclass(frozen=True)
class SampleSize(JsonRecord):
    """How many images a sampled check ran on, and where its limit came from."""
    check: str  # corruptions | faithfulness
    key: str  # the config key (corruption_max_images | faithfulness_max_images)
    limit: int  # its value in this run
    source: str  # battery file | cpu default | cuda default | config (a library caller's AnalysisConfig)
    images: int  # images in the sample: the limit, or every image of a smaller set
    ran: bool  # False: skipped for every backbone (untrained weights, a limit of 0, ...)


@dataclass(frozen=True, kw_only=True)
class Metrics(JsonRecord):
    """``metrics.json``: the numbers behind every table, computed from the index and the arrays."""
    schema_version: int
    per_image: tuple[PerImageRow, ...]
    predictions: tuple[PredictionRow, ...]
    aggregates: tuple[Aggregate, ...]
    last_three: dict[str, LastThreeSummary]
    sanity: dict[str, SanitySummary]
    slimming: dict[str, SlimmingScore]
    calibration: dict[str, CalibrationScore] = field(default_factory=dict)
    corruption: dict[str, CorruptionScore] = field(default_factory=dict)
    faithfulness: dict[str, FaithfulnessScore] = field(default_factory=dict)
    device: str = ""  # the run's device (cpu | cuda): it sets the sample sizes the battery file leaves out
    sample_sizes: tuple[SampleSize, ...] = ()
    task: Optional["TaskReport"] = _optional()  # the user's classes only
    train_copies: tuple[str, ...] = ()  # images also in --train-images (byte-identical): as in results.json
    data: Optional["DataCheck"] = _optional()  # schema 13: "Your data" (duplicates, leakage, label issues, balance)


@dataclass(frozen=True)
class TaskClass(JsonRecord):
    index: int
    name: str
    images: int  # labelled images of the class in the set


@dataclass(frozen=True, kw_only=True)
class LabelOrder(JsonRecord):
    """The label-order check of a head: the best assignment of its outputs to the labels against the order given.
    ``accuracy_mapped`` and ``gain``: the mapping chosen on all images and graded on them (selection-biased: a
    guessing head "gains" +0.26 at 10 classes, 40 images); ``accuracy_heldout`` and ``heldout_gain``: each image
    mapped by the assignment chosen on the other half, the numbers the flag rests on and the warnings show."""
    flagged: bool
    mapping: tuple[tuple[int, int], ...]  # (head output, label it most likely means), where they differ
    accuracy_as_is: float
    accuracy_mapped: float
    gain: Interval
    accuracy_heldout: Optional[float] = None
    heldout_gain: Optional[Interval] = None


@dataclass(frozen=True, kw_only=True)
class TaskScore(JsonRecord):
    """One candidate on the user's classes: accuracy, macro-F1 and per-class recall of its head or out-of-fold probe,
    with intervals from the run's paired bootstrap; the confusion matrix; the transfer measures of a probe."""
    estimand: Estimand
    accuracy: Interval
    macro_f1: Interval
    per_class_recall: tuple[Interval, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true class, columns: predicted
    knn_accuracy: Optional[Interval] = None
    logme: Optional[float] = None
    label_order: Optional[LabelOrder] = None
    excluded: tuple[ExcludedClass, ...] = ()
    protocol: str = ""
    logme_note: str = ""


@dataclass(frozen=True)
class TransferRanking(JsonRecord):
    """First place among the probed candidates by each transfer measure: ``first`` and ``tied`` among the candidates
    every measure ranked (``TaskReport.compared``; the measure's own order when fewer than two are), ``order`` all
    the candidates this measure ranked."""
    measure: str  # linear probe | k-NN | LogME
    first: str
    order: tuple[str, ...]
    tied: tuple[str, ...] = ()  # every candidate sharing the first place's value (two or more: no first place)


@dataclass(frozen=True)
class TaskReport(JsonRecord):
    label_space: LabelSpace
    classes: tuple[TaskClass, ...]
    labelled_images: int
    scores: dict[str, TaskScore]
    rankings: tuple[TransferRanking, ...] = ()
    # None: fewer than two probed candidates or measures, fewer than two candidates every measure ranked, or a tie
    rankings_agree: Optional[bool] = None

    @property
    def compared(self) -> tuple[str, ...]:
        """The candidates every measure ranked, in the first ranking's order: the agreement is judged over them."""
        if not self.rankings:
            return ()
        common = set.intersection(*(set(r.order) for r in self.rankings))
        return tuple(n for n in self.rankings[0].order if n in common)


# --- "Your data": duplicates, leakage, likely label errors, class balance (scoring/datacheck.py) ----------------

class FlagReason(StrEnum):
    """Why an image is flagged; one flag per (image, reason). Duplicates flag every copy but the first of a group
    (by position in the run), so leaving the flagged ones out keeps one of each."""
    EXACT_DUPLICATE = "exact_duplicate"  # the same bytes (content sha256) as an earlier image of --images
    NEAR_DUPLICATE = "near_duplicate"  # pooled features at least near_duplicate_cosine similar (mean over candidates)
    TRAIN_EVAL_COPY = "train_eval_copy"  # the same bytes as a --train-images image: leakage
    TRAIN_EVAL_NEAR_COPY = "train_eval_near_copy"  # a near-copy of a --train-images image: leakage
    LABEL_ISSUE = "label_issue"  # cleanlab's confident learning on out-of-fold probabilities: likely mislabelled


@dataclass(frozen=True, kw_only=True)
class Flag(JsonRecord):
    """One flagged image of --images: what it is flagged for and the evidence."""
    image: str  # file, relative to --images (as ImageEntry.file)
    position: int  # in the run's images
    reason: FlagReason
    other: str = ""  # the image it copies: an earlier image of --images, or a --train-images file
    other_position: Optional[int] = None  # the other image's position in the run's images (None: a training image)
    similarity: Optional[float] = None  # cosine of the pooled features (the mean over the candidates compared)
    given: str = ""  # label issues: the given class
    suggested: str = ""  # label issues: the class the out-of-fold probabilities favour
    score: Optional[float] = None  # label issues: cleanlab's label quality (self-confidence, 0..1; lower: likelier)
    rank: int = 0  # label issues: 1 = the likeliest label error


class CheckName(StrEnum):
    EXACT_DUPLICATES = "exact duplicates"
    NEAR_DUPLICATES = "near-duplicates"
    TRAIN_EVAL = "training and evaluation overlap"
    LABEL_ISSUES = "likely label errors"
    CLASS_BALANCE = "class balance"


@dataclass(frozen=True)
class DataCheckRun(JsonRecord):
    """One check of the data: whether it ran, on what (or why not), and how many images it flagged."""
    check: CheckName
    status: RunStatus
    basis: str  # what it ran on ("content sha256 of 60 images", "out-of-fold probabilities of ...") or why not
    flagged: int = 0


@dataclass(frozen=True, kw_only=True)
class ClassCount(JsonRecord):
    """One class of the labelled images and what its count does to its intervals."""
    index: int
    name: str
    images: int
    share: float  # of the labelled images
    # The widest a 95 % interval on an accuracy (a per-class recall) measured on this many images can be: the Wilson
    # interval's half-width at 50 % (None: no image). It shrinks as 1/sqrt(images).
    half_width: Optional[float] = None
    smallest: bool = False  # among the classes with the fewest images


@dataclass(frozen=True, kw_only=True)
class DataCheck(JsonRecord):
    """The checks of the user's images (``scoring.datacheck.check_data``): every flagged image with its reason, the
    checks that ran and why others did not, and the class counts. Nothing of the user's is changed."""
    images: int
    labelled: int
    checks: tuple[DataCheckRun, ...]
    flags: tuple[Flag, ...]
    classes: tuple[ClassCount, ...] = ()
    near_threshold: float = 0.0  # the cosine similarity from which two images are near-duplicates
    features_from: tuple[str, ...] = ()  # candidates whose pooled features were compared (similarity averaged)
    probabilities_from: tuple[str, ...] = ()  # candidates whose held-out probabilities cleanlab read (averaged)
    imbalance: Optional[float] = None  # the largest class's count over the smallest's (None: under two classes)
    # Held-out labelled images the label check could not flag: the only one of their class (cleanlab never flags a
    # class's last image), counted so that "0 likely label errors" is not claimed over them.
    alone_in_class: int = 0

    def flagged(self, reason: "FlagReason") -> tuple[Flag, ...]:
        return tuple(f for f in self.flags if f.reason == reason)

    def run_of(self, check: "CheckName") -> Optional[DataCheckRun]:
        return next((c for c in self.checks if c.check == check), None)

    @property
    def leaked(self) -> tuple[str, ...]:
        """Images that copy a training image, byte for byte or nearly (each once, in the run's order)."""
        seen = {f.position: f.image for f in self.flags
                if f.reason in (FlagReason.TRAIN_EVAL_COPY, FlagReason.TRAIN_EVAL_NEAR_COPY)}
        return tuple(seen[p] for p in sorted(seen))


# --- cost.json (machine-dependent, kept apart from the reproducible files like timings.json) ------------------

@dataclass(frozen=True)
class Machine(JsonRecord):
    device: str  # cpu | cuda
    device_name: str
    cpu_model: str
    threads: int
    torch: str
    host: str = ""  # where it was measured (host name; on Ray also the node id): named in the report

    @property
    def fingerprint(self) -> tuple:
        """What makes two latency measurements comparable: the same device, CPU/GPU model, threads and torch. A
        cached cost whose fingerprint differs from the run's is measured again, never mixed with the others."""
        return (self.device, self.device_name, self.cpu_model, self.threads, self.torch)


# What stopped the latency timing (Cost.stopped_because; older files say "stable median" or "budget").
PRECISION_REACHED, TIME_BUDGET, MAXIMUM_PASSES = "precision reached", "time budget", "maximum passes"


@dataclass(frozen=True, kw_only=True)
class LatencySession(JsonRecord):
    """One candidate's timing in one session of the run's timing stage: every candidate is timed once per session,
    in the same order (A B C, B C A, C A B ...), after the analyses, on one machine."""
    session: int  # 0, 1, ...: the round
    position: int  # its place in the whole timing order (0: timed first), so the interleaving can be checked
    samples_ms: tuple[float, ...]  # every timed pass of this session, in order
    warmup_passes: int = 0
    stopped_because: str = ""  # precision reached | time budget | maximum passes
    load_per_core: Optional[float] = None  # the 1-minute load average per core right after the session's passes


@dataclass(frozen=True, kw_only=True)
class Cost(JsonRecord):
    """Measured on the run's device: latency of timed forward passes under inference_mode after warm-up."""
    latency_ms_median: float  # batch 1
    latency_ms_q1: float
    latency_ms_q3: float
    latency_repeats: int
    images_per_s: float  # at throughput_batch_size (how: throughput_method)
    throughput_batch_size: int
    memory_mb: float
    memory_method: str  # how memory_mb was measured
    # the slimmed model, batch 1: each timed pass minus the time inside the removed unit (None: no unit)
    slim_latency_ms_median: Optional[float]
    machine: Machine
    # every timed batch-1 pass, in order: the decision resamples them with the images (timing noise reaches it)
    latency_ms_samples: tuple[float, ...] = ()
    slim_latency_ms_samples: tuple[float, ...] = ()  # each pass minus its time inside the unit (empty: no unit)
    warmup_passes: int = 0
    stopped_because: str = ""  # precision reached | time budget | maximum passes (older files: stable median | budget)
    # the machine's 1-minute load average per core right after the timed passes (None: not known on this OS)
    load_per_core: Optional[float] = None
    # The stopping rule: timed until the median's distribution-free interval (at latency_confidence) lay within
    # ±latency_target_precision of it, or latency_budget_s of timed passes. What it reached: the interval, and how
    # far it reaches from the median as a share of it (None: fewer passes than any such interval needs, or an
    # older file).
    latency_precision: Optional[float] = None
    latency_ms_ci: tuple[float, ...] = ()
    latency_target_precision: Optional[float] = None
    latency_confidence: Optional[float] = None
    latency_budget_s: Optional[float] = None
    throughput_method: str = ""  # timed at throughput_batch_size, or derived from the batch-1 latency (batch 1)
    # Schema 12: the sessions the latency was timed in (latency_ms_samples: their passes in session order; the
    # median fields: the geometric mean of the session medians). Empty: an older cost.json, timed once, whose
    # session drift is in no interval.
    latency_sessions: tuple[LatencySession, ...] = ()

    @property
    def session_medians_ms(self) -> tuple:
        """Each session's median latency, in session order (empty: timed in no sessions)."""
        return tuple(statistics.median(s.samples_ms) for s in sorted(self.latency_sessions, key=lambda s: s.session))


@dataclass(frozen=True)
class CostReport(JsonRecord):
    backbones: dict[str, Cost]


AggregateKey = tuple[str, str, str, str, str]  # scope, name, role, group, metric


class AggregateLookup:
    """``lookup(scope, name, role, group, metric)`` -> the Aggregate or None, indexed once."""

    def __init__(self, aggregates: typing.Iterable[Aggregate]):
        self._rows = {(a.scope, a.name, a.role, a.group, a.metric): a for a in aggregates}

    def __call__(self, scope: str, name: str, role: str, group: str, metric: str) -> Optional[Aggregate]:
        return self._rows.get((scope, name, role, group, metric))
