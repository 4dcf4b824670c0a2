"""Everything the battery measures for one backbone: load it, run the CAM engine, the sanity check, the weight
statistics and the cost count, and return a :class:`BackboneResult` with its arrays. Writes no files."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputDataError, ResourceError
from ..inputs.config import AnalysisConfig
from ..inputs.decoded import DecodedInputs
from ..inputs.decoding import load_rgb
from ..inputs.images import ImageRecord, ImageSet
from ..inputs.labels import IMAGENET_CLASSES, LabelSpace
from ..results import arrays as keys
from ..results.schema import (BackboneResult, CamStatus, CorruptionRun, Cost, Estimand, FaithfulnessRun,
                              FeatureCka, FeatureStats, TaskRun,
                              Prediction, RankedClass, RunStatus,
                              SanityRun, SanityStatus, SanityStep, SlimmingRun, SlimmingStatus, WeightsInfo,
                              WeightsMode, WeightStats)
from ..results.stats import weight_summary
from ..results.views import views_of
from ..scoring.measures import cam_similarity
from .corruptions import common_crop_of, corrupted_predictions, input_view
from .cost import TimedCandidate, measure_cost, time_in_sessions, timing_outcome, timing_plan
from .faithfulness import road
from .classifier import install_linear_head, pooled_features
from .heads import HeadPlan
from .probe import ProbeSetup, explaining_head, explaining_sample, finish_probe, labels_of
from .environment import release_memory
from .engine import BackboneAnalysis, analyse_backbone, forward_probs
from .models import LoadedModel, input_batch, load_model, on_device, zeros_batch
from .sanity import SanityAnalysis, cascading_randomisation
from .slimming import SlimUnit, choose_unit, deep_layer_after_removal, kl_divergence, parameters_in, without
from .transforms import eval_transform, split
from .weights import WeightsPlan

Progress = Callable[[str], None]
OnBatch = Callable[[str, str, int, int], None]  # (backbone, stage, images done, total)
IMAGENET_HEAD = HeadPlan(Estimand.IMAGENET_HEAD, IMAGENET_CLASSES, IMAGENET_CLASSES)  # a candidate's stock head


class Batches:
    """Re-iterable batches of model inputs, made one batch at a time: memory holds one batch, whatever the
    number of images. Pixels come from the run's decoded-input cache when it holds this transform's geometry
    (no decoding); otherwise each image is decoded here."""

    def __init__(self, records: Sequence[ImageRecord], transform, batch_size: int,
                 decoded: Optional[DecodedInputs] = None, positions: Optional[Sequence[int]] = None):
        self.records, self.transform, self.batch_size, self.decoded = tuple(records), transform, batch_size, decoded
        # positions of these records in the decoded cache (a subset's are not 0..n-1)
        self.positions = tuple(positions) if positions is not None else tuple(range(len(self.records)))
        self.geometry, _, self.tensor_part = split(transform)

    @property
    def from_cache(self) -> bool:
        return self.decoded is not None and self.decoded.has(self.geometry)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.records), self.batch_size):
            stop = min(start + self.batch_size, len(self.records))
            if self.from_cache:
                pixels = self.decoded.read(self.geometry, self.positions[start:stop])
                yield input_batch(torch.stack([self.tensor_part(Image.fromarray(p, mode="RGB")) for p in pixels]))
            else:
                yield input_batch(torch.stack([self.transform(load_rgb(r.path)) for r in self.records[start:stop]]))

    def __len__(self) -> int:
        return -(-len(self.records) // self.batch_size)

    def with_batch_size(self, batch_size: int) -> "Batches":
        return Batches(self.records, self.transform, batch_size, self.decoded, self.positions)

    def subset(self, rows: Sequence[int]) -> "Batches":
        return Batches([self.records[r] for r in rows], self.transform, self.batch_size, self.decoded,
                       [self.positions[r] for r in rows])

    def crops(self) -> list[np.ndarray]:
        """(H, W, 3) uint8 model-input crops (resize and crop, before to-tensor and normalisation)."""
        if self.from_cache:
            return list(self.decoded.read(self.geometry, self.positions))
        _, pil_part, _ = split(self.transform)
        return [np.asarray(pil_part(load_rgb(r.path)).convert("RGB"), dtype=np.uint8) for r in self.records]


@dataclass(frozen=True)
class MeasuredBackbone:
    result: BackboneResult
    arrays: dict  # array name (results.arrays) -> ndarray
    timings: dict  # stage -> seconds
    cost: Optional[Cost]  # machine-dependent: goes to cost.json, not into the result (None: not measured)


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What every backbone of one run is measured on and with: the images, the label space, the settings, the device
    (built once per run; the pipeline's ``BatteryRun`` holds it)."""
    image_set: ImageSet
    class_names: LabelSpace  # the run's label space
    config: AnalysisConfig
    device: str = "cpu"
    weights_mode: str = "pretrained"
    decoded: Optional[DecodedInputs] = None  # the run's decoded inputs (read, never written; None: decode here)
    train_set: Optional[ImageSet] = None  # labelled training images for a probe (None: cross-validation)
    keep_merge_state: bool = False  # a shard keeps what merging needs (and fits its probe after the merge)
    with_cost: bool = True  # a shard after a backbone's first skips it: latency does not depend on the images
    progress: Progress = lambda message: None
    on_batch: OnBatch = lambda name, stage, done, total: None


# The line each stage says when it starts (the Grad-CAM pass and the sanity check say theirs where they begin).
STAGE_LINES = {"slimming": "slimming, {total} images through the model without its unit",
               "corruptions": "corruptions, {total} forward passes of clean and corrupted crops",
               "faithfulness": "faithfulness (ROAD), {total} images"}


@dataclass(frozen=True, kw_only=True)
class BackboneJob:
    """One backbone to measure: its weights, the run it belongs to, the head it is scored through in the run's label
    space, and (probe candidates of a sharded run) the explaining head a driver fit for every shard."""
    plan: WeightsPlan
    run: RunSettings
    head: HeadPlan = IMAGENET_HEAD
    setup: Optional[ProbeSetup] = None

    @property
    def backbone(self):
        return self.plan.backbone

    @property
    def probed(self) -> bool:
        return self.head.estimand == Estimand.LINEAR_PROBE

    def say(self, line: str) -> None:
        self.run.progress(f"{self.backbone.name}: {line}")

    def count(self, stage: str, total: Optional[int] = None) -> Callable[[int], None]:
        """A per-batch callback that reports images done so far in this stage (its first use says the stage)."""
        total = len(self.run.image_set.records) if total is None else total
        if stage in STAGE_LINES:
            self.say(STAGE_LINES[stage].format(total=total))
        done = [0]

        def step(n):
            done[0] += n
            self.run.on_batch(self.backbone.name, stage, done[0], total)
        return step


@dataclass(frozen=True)
class Loaded:
    """One backbone in memory, loaded once per job: the model on the run's device, where its weights came from, and
    the run's images as batches through its transform (after the CAM pass: the batch size that fit)."""
    model: torch.nn.Module
    weights: LoadedModel
    batches: Batches

    @property
    def data_config(self) -> dict:
        return self.weights.data_config


def load_backbone(job: BackboneJob) -> Loaded:
    """The job's model with its head, seeded, on the run's device, and its batches of the run's images."""
    run = job.run
    torch.manual_seed(run.config.seed)
    weights: LoadedModel = load_model(job.plan, run.config.seed, job.head)
    model = on_device(weights.model, run.device)
    return Loaded(model, weights, Batches(run.image_set.records, eval_transform(weights.data_config),
                                          run.config.batch_size, run.decoded))


def weight_stats(model: torch.nn.Module, backbone, config: AnalysisConfig) -> dict:
    """Per last-three layer: statistics of the weight tensors (ndim >= 2) of the module that owns its weights."""
    modules = dict(model.named_modules())
    out = {}
    for name in backbone.last_three:
        owner = modules[backbone.weights_module(name)]
        tensors = [p.detach() for pname, p in owner.named_parameters() if pname.endswith("weight") and p.dim() >= 2]
        # One float32 copy, sorted in place by weight_summary (a VGG fc layer holds 100 M weights).
        flat = np.empty(sum(t.numel() for t in tensors), dtype=np.float32)
        start = 0
        for t in tensors:
            flat[start:start + t.numel()] = _storage_order(t.float().cpu()).numpy()
            start += t.numel()
        out[name] = weight_summary(flat, config.histogram_bins, config.weight_quantiles, config.near_zero_fraction,
                                   sort_in_place=True)
        del flat
    return out


def _storage_order(tensor: torch.Tensor) -> torch.Tensor:
    """The elements as a flat view in storage order (the statistics do not depend on order): a channels-last
    weight flattened in logical order would be copied first (400 MB for VGG19's fc1, a 7x7 conv)."""
    if tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last):
        return tensor.permute(0, 2, 3, 1).reshape(-1)
    return tensor.reshape(-1)


def count_macs(model: torch.nn.Module, input_size, device: str) -> tuple[float, dict]:
    """MACs of one batch-1 forward pass: the total, and per module path (each module's subtree), so the MACs a
    removed unit accounted for come from the same pass."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(zeros_batch(1, input_size, device))
    root = type(model).__name__ + "."
    by_module = {name[len(root):]: sum(counts.values()) / 2.0
                 for name, counts in counter.get_flop_counts().items() if name.startswith(root)}
    return counter.get_total_flops() / 2.0, by_module


def with_oom_retry(work: Callable, batches: Batches, name: str, progress: Callable[[str], None]):
    """Run ``work(batches)``; on a CUDA out-of-memory error retry once at half the batch size, then stop
    with advice. Returns (result, the batches that worked)."""
    try:
        return work(batches), batches
    except torch.OutOfMemoryError:
        if batches.batch_size <= 1:
            raise ResourceError(f"{name}: out of GPU memory at batch size 1; use --device cpu or a larger GPU.") from None
    smaller = batches.with_batch_size(max(1, batches.batch_size // 2))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    progress(f"{name}: out of GPU memory at batch size {batches.batch_size}; retrying at {smaller.batch_size}")
    try:
        return work(smaller), smaller
    except torch.OutOfMemoryError:
        raise ResourceError(f"{name}: out of GPU memory at batch size {batches.batch_size} and again at "
                            f"{smaller.batch_size}; pass --batch-size {max(1, smaller.batch_size // 2)} or "
                            "use --device cpu.") from None


def predictions_of(analysis: BackboneAnalysis, image_set: ImageSet, class_names: LabelSpace) -> tuple[Prediction, ...]:
    """Per image: the class its CAM explains and the head's top-k (k = min(5, classes))."""
    top_index, top_prob = analysis.top5_index, analysis.top5_prob
    out = []
    for position, record in enumerate(image_set.records):
        target = int(analysis.targets[position])
        top5 = tuple(RankedClass(int(i), class_names.name(int(i)), float(p))
                     for i, p in zip(top_index[position], top_prob[position]))
        labelled = record.class_index is not None
        out.append(Prediction(
            target, class_names.name(target),
            "prediction" if analysis.target_from_prediction[position] else "manifest", top5,
            bool(Prediction.top1_of(top5).index == record.class_index) if labelled else None,
            any(t.index == record.class_index for t in top5) if labelled else None))
    return tuple(out)


def _sanity(job: BackboneJob, loaded: Loaded, analysis: BackboneAnalysis) -> tuple[SanityRun, dict]:
    """The randomisation test when it applies, as (record, arrays)."""
    run, config, backbone = job.run, job.run.config, job.backbone
    if run.weights_mode == WeightsMode.RANDOM or not config.sanity_check or not backbone.randomisation:
        reason = "untrained weights" if run.weights_mode == WeightsMode.RANDOM else "disabled in the config"
        return SanityRun(SanityStatus.SKIPPED, reason, ()), {}
    sample = run.image_set.sample_positions(config.sanity_max_images, config.seed)
    job.say(f"sanity check, {len(backbone.randomisation)} randomisation steps on "
            f"{len(sample)} of {len(loaded.batches.records)} images")
    depth_layers = list(dict.fromkeys(backbone.depth_layers.values()))
    sanity: SanityAnalysis = cascading_randomisation(
        loaded.model, loaded.batches.subset(sample), depth_layers, [int(analysis.targets[i]) for i in sample],
        backbone.randomisation, config.cam_method, run.device, config.seed,
        on_batch=job.count("sanity", len(sample) * len(backbone.randomisation)), layouts=dict(backbone.layouts))
    steps = tuple(SanityStep(step.label, tuple(step.modules), int(step.parameters),
                             {layer: tuple(s) for layer, s in step.cam_status.items() if layer in step.cams})
                  for step in sanity.steps)
    arrays = {keys.sanity_cam(number, layer): cam.astype(np.float32)
              for number, step in enumerate(sanity.steps) for layer, cam in step.cams.items()}
    return SanityRun(SanityStatus.DONE, "", steps, tuple(sample)), arrays


def _beyond_paper_skip(weights_mode: str, config: AnalysisConfig, sample_size: int) -> str:
    """Why the corruption or faithfulness check does not run here ("" when it does; a shard whose slice holds none
    of the sampled images runs it on none)."""
    if weights_mode == WeightsMode.RANDOM and not config.beyond_paper_on_untrained:
        return "untrained weights (beyond_paper_on_untrained = true runs it anyway)"
    if sample_size == 0:
        return "the sample size is 0 in the config"
    return ""


def analysis_input_size(batches: Batches) -> tuple:
    """(C, H, W) of the model inputs (an empty sample still needs the shape)."""
    crop = batches.crops()[:1] if batches.records else []
    return (3,) + (crop[0].shape[:2] if crop else (1, 1))


def _corruption(job: BackboneJob, loaded: Loaded) -> tuple[CorruptionRun, dict]:
    """Top-1 on the clean and on each corrupted common 224 x 224 crop of the hashed sample (ImageNet-C's crop, the
    same pixels for every backbone), each through the backbone's own resize and normalisation."""
    image_set, config = job.run.image_set, job.run.config
    sample = image_set.sample_positions(config.corruption_max_images, config.seed)
    why = _beyond_paper_skip(job.run.weights_mode, config, config.corruption_max_images) or (
        "" if config.corruptions else "no corruptions configured")
    if why:
        return CorruptionRun(RunStatus.SKIPPED, why), {}
    records = [image_set.records[i] for i in sample]
    cells = len(config.corruptions) * (len(config.corruption_severities) if config.corruption_design == "full" else 1)
    clean, top1 = corrupted_predictions(loaded.model, [common_crop_of(r) for r in records],
                                        [r.sha256 for r in records], input_view(loaded.batches.transform),
                                        config.corruptions, config.corruption_severities, config.seed,
                                        job.run.device, max(config.batch_size, 16), config.corruption_design,
                                        on_batch=job.count("corruptions", len(sample) * (1 + cells)))
    return (CorruptionRun(RunStatus.DONE, "", tuple(config.corruptions), tuple(config.corruption_severities),
                          tuple(sample), config.corruption_design),
            {keys.CORRUPT_TOP1: top1, keys.CORRUPT_CLEAN: clean})


def _faithfulness(job: BackboneJob, loaded: Loaded, analysis: BackboneAnalysis) -> tuple[FaithfulnessRun, dict]:
    """ROAD of the deep-layer CAM and of the random and Gaussian maps on the hashed sample."""
    image_set, config, batches = job.run.image_set, job.run.config, loaded.batches
    sample = image_set.sample_positions(config.faithfulness_max_images, config.seed)
    deep = job.backbone.depth_layers["deep"]
    layer = analysis.layer(deep)
    why = _beyond_paper_skip(job.run.weights_mode, config, config.faithfulness_max_images) or (
        "" if layer.cam is not None else f"the deep layer {deep} has no spatial map")
    if why:
        return FaithfulnessRun(status=RunStatus.SKIPPED, reason=why, layer=deep), {}
    inputs = torch.cat(list(batches.subset(sample).with_batch_size(max(1, len(sample))))) if sample else \
        torch.zeros((0,) + tuple(analysis_input_size(batches)))
    cams = [layer.cam[i] if layer.cam_status[i] == CamStatus.OK else None for i in sample]
    scores = road(loaded.model, inputs, cams, [int(analysis.targets[i]) for i in sample],
                  [image_set.records[i].sha256 for i in sample], config.faithfulness_percentiles, config.seed,
                  job.run.device, config.faithfulness_imputation_side, config.faithfulness_design,
                  on_image=job.count("faithfulness", len(sample)), cam_shape=layer.cam.shape[1:])
    return (FaithfulnessRun(status=RunStatus.DONE, reason="", layer=deep,
                            percentiles=tuple(config.faithfulness_percentiles),
                            imputation_side=config.faithfulness_imputation_side, images=tuple(sample),
                            design=config.faithfulness_design),
            {keys.ROAD: scores.values})


def check_targets(model, image_set: ImageSet, name: str) -> None:
    """Every class a CAM is asked to explain must be an output of the head (pytorch-grad-cam's
    ClassifierOutputTarget would index past it)."""
    labels = [r.class_index for r in image_set.records if r.class_index is not None]
    if not labels:
        return
    classifier = model.get_classifier()
    if not isinstance(classifier, torch.nn.Linear):
        return
    outputs = int(classifier.out_features)
    if outputs == 1:  # a sigmoid head seen as two logits
        outputs = 2
    if max(labels) >= outputs:
        raise InputDataError(f"{name}: the images name class {max(labels)} but its head has {outputs} outputs; pass "
                             "the label list the head was trained with (--labels FILE).")


def _slim_unit(model, backbone, input_size) -> tuple[SlimUnit, str]:
    if backbone.slim_unit is not None or backbone.slim_reason:
        return SlimUnit(backbone.slim_unit, backbone.slim_reason), "registry"
    return choose_unit(model, backbone, input_size), "automatic"


def _slimming(job: BackboneJob, loaded: Loaded, analysis: BackboneAnalysis,
              macs_by_module: dict) -> tuple[SlimmingRun, dict]:
    """Remove the unit, run the images through the slimmed model, keep per-image outcomes. (Its latency comes
    from the cost measurement, which times the unit inside the full model's passes.)"""
    model, batches, backbone = loaded.model, loaded.batches, job.backbone
    config, device = job.run.config, job.run.device
    unit, source = _slim_unit(model, backbone, loaded.data_config["input_size"])
    if unit.module is None:
        return SlimmingRun(status=SlimmingStatus.NOT_POSSIBLE, unit=None, unit_source=source, reason=unit.reason,
                           params_removed=0, macs_removed=0.0, deep_cam_layer=None), {}
    # Identity costs nothing: what is removed is what the unit's subtree counted in the full model's pass.
    macs_removed = macs_by_module.get(unit.module, 0.0)
    if job.run.weights_mode == WeightsMode.RANDOM:
        # Like the sanity check: removing a unit from an untrained model says nothing about the backbone.
        reason = f"{unit.reason}; not run on the images: untrained weights"
        removed = parameters_in(model, unit.module)
        return SlimmingRun(status=SlimmingStatus.SKIPPED, unit=unit.module, unit_source=source, reason=reason,
                           params_removed=removed, macs_removed=float(macs_removed), deep_cam_layer=None), {}
    slim, removed = without(model, unit.module)
    deep = backbone.depth_layers["deep"]
    deep_slim = deep_layer_after_removal(deep, unit.module) if config.slimming_cams else None
    if deep_slim:
        slim_analysis = analyse_backbone(slim, batches, [deep_slim], [int(t) for t in analysis.targets],
                                         config.cam_method, device, on_batch=job.count("slimming"),
                                         layouts=dict(backbone.layouts))
        slim_probs = slim_analysis.probs
    else:
        slim_probs = forward_probs(slim, batches, device, on_batch=job.count("slimming"))
    arrays = {keys.SLIM_TOP1: np.argmax(slim_probs, axis=1).astype(np.int64),
              keys.SLIM_KL: kl_divergence(analysis.probs, slim_probs).astype(np.float64)}
    if deep_slim:
        full_cam, slim_cam = analysis.layer(deep), slim_analysis.layer(deep_slim)
        spearman = np.full(len(analysis.targets), np.nan)
        if full_cam.cam is not None and slim_cam.cam is not None:
            for i, (a, b) in enumerate(zip(full_cam.cam_status, slim_cam.cam_status)):
                if a == CamStatus.OK and b == CamStatus.OK:
                    spearman[i] = cam_similarity(full_cam.cam[i], slim_cam.cam[i], config.sanity_resolution)[0]
        arrays[keys.SLIM_SPEARMAN] = spearman
    run = SlimmingRun(status=SlimmingStatus.DONE, unit=unit.module, unit_source=source, reason=unit.reason,
                      params_removed=removed, macs_removed=float(macs_removed), deep_cam_layer=deep_slim)
    return run, arrays


def _layer_arrays(analysis: BackboneAnalysis, keep_merge_state: bool) -> dict:
    arrays = {}
    for layer in analysis.layers:
        if layer.cam is not None:
            arrays[keys.cam(layer.name)] = layer.cam.astype(np.float32)
        if layer.feature_map is not None:
            arrays[keys.feature_map(layer.name)] = layer.feature_map.astype(np.float32)
        if layer.feature_vector is not None:
            arrays[keys.feature_vector(layer.name)] = layer.feature_vector.astype(np.float32)
    if keep_merge_state:
        for name, moments in analysis.moments.items():
            arrays.update(moments.state(keys.moments_prefix(name)))
        arrays.update({keys.pooled(name): features for name, features in analysis.pooled.items()})
    return arrays


def _weight_records(summaries: dict) -> tuple[dict, dict]:
    """Weight summaries -> (WeightStats per layer, histogram and quantile arrays)."""
    records, arrays = {}, {}
    for layer, summary in summaries.items():
        arrays[keys.hist_counts(layer)] = summary["hist_counts"]
        arrays[keys.hist_edges(layer)] = summary["hist_edges"]
        arrays[keys.quantiles(layer)] = summary["quantiles"]
        records[layer] = WeightStats(summary["count"], summary["mean"], summary["std"], summary["variance"],
                                     summary["excess_kurtosis"], summary["near_zero_share"])
    return records, arrays


def session_costs(plans: Sequence[WeightsPlan], config: AnalysisConfig, device: str, units: dict, batch_sizes: dict,
                  heads: Optional[dict] = None, host: str = "",
                  progress: Callable[[str], None] = lambda message: None) -> dict:
    """The timing stage, after the analyses, on this machine: every candidate loaded again as analysed (its weights
    and head; random weights rebuilt from the run's seed) and timed in ``config.latency_sessions`` interleaved
    sessions (:func:`~reportgen.analysis.cost.time_in_sessions`). ``units``/``batch_sizes``: per backbone name, the
    unit slimming removes and the batch size its analysis ran at. name -> Cost."""
    heads = heads or {}

    def loader(plan: WeightsPlan):
        def load() -> tuple:
            torch.manual_seed(config.seed)
            head = heads.get(plan.backbone.name)
            loaded: LoadedModel = load_model(plan, config.seed, head)
            if head is not None and head.estimand == Estimand.LINEAR_PROBE:
                # the explaining head's shape, as analysed (its values do not change a dense layer's arithmetic)
                loaded.model.reset_classifier(head.classes)
            return on_device(loaded.model, device), loaded.data_config["input_size"]
        return load
    candidates = [TimedCandidate(plan.backbone.name, loader(plan), batch_sizes.get(plan.backbone.name,
                                                                                   config.batch_size),
                                 units.get(plan.backbone.name)) for plan in plans]
    try:
        return time_in_sessions(candidates, device, config.latency_sessions, config.latency_budget_s, host=host,
                                progress=progress)
    finally:
        release_memory()


def current_machine(device: str) -> tuple:
    """This process's machine fingerprint (device, CPU/GPU model, threads, torch) for comparing cached costs."""
    from .cost import machine

    return machine(device).fingerprint


def _stage_timer(timings: dict):
    """``with stage(name):`` records the block's seconds as ``timings[name]`` and then, unless ``release=False``,
    returns cached device memory (stages that leave large temporaries behind)."""
    @contextmanager
    def stage(name: str, release: bool = True):
        mark = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - mark
        if release:
            release_memory()
    return stage


def probe_setup(job: BackboneJob, loaded: Loaded) -> ProbeSetup:
    """The head a probe candidate's heatmaps explain, fit before its CAM pass: on the run's training set (every
    training image's features), else on a per-class hashed sample of at most half the labelled images (the run's
    hashed samples leave these out: :func:`~reportgen.analysis.probe.evaluation_set`)."""
    run, head, batches = job.run, job.head, loaded.batches
    if run.train_set is not None:
        train = run.train_set
        job.say(f"pooled features of {len(train.records)} training images for the linear probe")
        train_batches = Batches(train.records, batches.transform, batches.batch_size, None)
        features = pooled_features(loaded.model, train_batches, run.device, job.count("features", len(train.records)))
        labels = labels_of(train)
        return ProbeSetup(explaining_head(features, labels, head.classes, run.config), int(features.shape[1]),
                          len(labels), features, labels)
    sample = explaining_sample(run.image_set, head.classes, run.config)
    job.say(f"the head the heatmaps explain, a linear probe fit on {len(sample)} labelled images "
            f"(at most {run.config.probe_explain_per_class} per class)")
    features = pooled_features(loaded.model, batches.subset(sample), run.device, job.count("features", len(sample))) \
        if sample else pooled_features(loaded.model, batches.subset([0]), run.device)
    labels = labels_of(run.image_set)[list(sample)] if sample else np.full(1, -1)
    return ProbeSetup(explaining_head(features, labels, head.classes, run.config), int(features.shape[1]), len(sample),
                      fit_positions=tuple(int(i) for i in sample))


def fit_probe_setup(job: BackboneJob) -> ProbeSetup:
    """:func:`probe_setup` with its own model: a sharded run's driver fits it once and hands it to every shard."""
    loaded = load_backbone(job)
    try:
        return probe_setup(job, loaded)
    finally:
        del loaded
        release_memory()


def _attach_probe(model, setup: ProbeSetup, head: HeadPlan) -> None:
    if setup.explaining is not None:
        install_linear_head(model, setup.explaining.weight, setup.explaining.bias)
    else:  # under two usable classes: a head of zeros, so the heatmaps say nothing rather than explain ImageNet's
        install_linear_head(model, np.zeros((head.classes, setup.feature_dim), np.float32),
                            np.zeros(head.classes, np.float32))


def measure_backbone(job: BackboneJob) -> MeasuredBackbone:
    """Everything the battery measures for one backbone (pure: no files, no printing beyond the run's ``progress``;
    its decoded inputs are read, not written). A probe candidate's explaining head is fit here unless the job
    brings one (a sharded run's driver fit it for every shard, and a shard keeps the features for the probe, fit
    after the merge)."""
    timings: dict = {}
    stage = _stage_timer(timings)
    with stage("load_s", release=False):
        loaded = load_backbone(job)
    with stage("task_head_s"):
        if job.probed:
            job = replace(job, setup=job.setup or probe_setup(job, loaded))
            _attach_probe(loaded.model, job.setup, job.head)
    check_targets(loaded.model, job.run.image_set, job.backbone.name)
    with stage("cam_and_features_s"):
        analysis, loaded = _cam_pass(job, loaded)
    with stage("sanity_s"):
        sanity, sanity_arrays = _sanity(job, loaded, analysis)
    with stage("flops_s", release=False):
        params = sum(p.numel() for p in loaded.model.parameters())
        macs, macs_by_module = count_macs(loaded.model, loaded.data_config["input_size"], job.run.device)
    with stage("slimming_s"):
        slimming, slim_arrays = _slimming(job, loaded, analysis, macs_by_module)
    with stage("corruption_s", release=False):
        corruption, corruption_arrays = _corruption(job, loaded)
    with stage("faithfulness_s"):
        faithfulness, faithfulness_arrays = _faithfulness(job, loaded, analysis)
    with stage("cost_s", release=False):
        cost = _cost(job, loaded, slimming.unit)
    with stage("weights_s", release=False):
        weight_records, weight_arrays = _weight_records(weight_stats(loaded.model, job.backbone, job.run.config))

    result = _result(job, loaded, analysis, params=int(params), macs=float(macs), weight_stats=weight_records,
                     sanity=sanity, slimming=slimming, corruption=corruption, faithfulness=faithfulness)
    arrays = {**sanity_arrays, **slim_arrays, **_layer_arrays(analysis, job.run.keep_merge_state), **weight_arrays,
              **corruption_arrays, **faithfulness_arrays, keys.LOGITS: analysis.logits.astype(np.float32)}
    # Every candidate keeps its pooled pre-logit features (read in the CAM pass, no pass of its own): the probe fits on
    # them, and the data check (scoring/datacheck.py) finds near-duplicates by their cosine similarity.
    if analysis.prelogits is not None:
        arrays[keys.PRELOGITS] = analysis.prelogits
    if job.probed and job.setup.train_features is not None:  # computed for the probe: the leakage check reads them
        arrays[keys.TRAIN_PRELOGITS] = job.setup.train_features.astype(np.float32)
    if job.probed:
        result = replace(result, task=replace(result.task, explained_by=job.setup.fit_images,
                                              explained_images=job.setup.fit_positions,
                                              feature_dim=job.setup.feature_dim))
        if not job.run.keep_merge_state:  # one process: the probe now; a shard keeps the features for the merge
            with stage("probe_s", release=False):
                result, arrays = finish_probe(result, arrays, labels_of(job.run.image_set), job.run.class_names.name,
                                              job.run.config, job.setup,
                                              groups=[r.sha256 for r in job.run.image_set.records])
    del loaded
    return MeasuredBackbone(result, arrays, timings, cost)


def _cam_pass(job: BackboneJob, loaded: Loaded) -> tuple[BackboneAnalysis, Loaded]:
    """Grad-CAM and features of every layer on every image (at half the batch size after running out of GPU
    memory): the analysis, and the loaded backbone with the batches that worked."""
    run, backbone = job.run, job.backbone
    layers = backbone.all_layers()
    job.say(f"Grad-CAM and features on {len(run.image_set.records)} images, {len(layers)} layers")
    analysis, batches = with_oom_retry(
        lambda current: analyse_backbone(loaded.model, current, layers, [r.class_index for r in run.image_set.records],
                                         run.config.cam_method, run.device, cka_layers=backbone.last_three,
                                         on_batch=job.count("cam"), layouts=dict(backbone.layouts),
                                         prelogits=True),
        loaded.batches, backbone.name, run.progress)
    return analysis, replace(loaded, batches=batches)


def _cost(job: BackboneJob, loaded: Loaded, slim_unit: Optional[str]) -> Optional[Cost]:
    """Latency, throughput and memory of the model as loaded (None when the run does not measure it here)."""
    if not job.run.with_cost:
        return None
    job.say(timing_plan())
    cost = measure_cost(loaded.model, loaded.data_config["input_size"], job.run.device, loaded.batches.batch_size,
                        slim_unit)
    job.say(timing_outcome(cost))
    return cost


def _result(job: BackboneJob, loaded: Loaded, analysis: BackboneAnalysis, **measured) -> BackboneResult:
    """The backbone's record: what the registry and the loaded weights say, what the CAM pass found, and the
    ``measured`` records of the other stages (BackboneResult fields by name)."""
    backbone, image_set, data_config, weights = job.backbone, job.run.image_set, loaded.data_config, loaded.weights
    return BackboneResult(
        name=backbone.name, timm_id=backbone.timm_id, architecture=backbone.architecture,
        display_name=backbone.display_name, family=backbone.family, family_source=backbone.family_source,
        layer_source=backbone.layer_source, depth_layers=backbone.depth_layers, last_three=tuple(backbone.last_three),
        weight_modules=dict(backbone.weight_modules), layers=tuple(backbone.all_layers()),
        weights=WeightsInfo(WeightsMode(job.run.weights_mode), weights.weights_source, weights.weights_location,
                            weights.weights_file_sha256, weights.state_sha256),
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()},
        cam_status={layer.name: tuple(layer.cam_status) for layer in analysis.layers},
        feature_stats={layer.name: FeatureStats(layer.feature_variance, layer.feature_dim) for layer in analysis.layers},
        feature_cka=FeatureCka(tuple(analysis.cka_layers), tuple(tuple(row) for row in analysis.cka),
                               "channel means (spatial and token layers) or the vector itself"),
        views=views_of(image_set, data_config),
        predictions=predictions_of(analysis, image_set, job.run.class_names),
        batch_size=loaded.batches.batch_size,
        task=(None if job.head.estimand == Estimand.IMAGENET_HEAD
              else TaskRun(estimand=job.head.estimand, head_outputs=job.head.outputs)),
        **measured)
