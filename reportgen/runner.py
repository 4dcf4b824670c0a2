"""The battery: load each backbone in turn, run the analyses, save results. Imports torch and timm."""
from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import timm
import timm.data
import torch

from . import __version__
from .config import AnalysisConfig
from .engine import analyse_backbone
from .errors import ResourceError
from .imageset import ImageRecord, ImageSet, crop_window, load_rgb
from .metrics import weight_summary
from .models import load_model
from .sanity import cascading_randomisation
from .scoring import score
from .store import (BACKBONES_DIR, INDEX, METRICS, SCHEMA_VERSION, TIMINGS, atomic_write_bytes, load_arrays,
                    read_backbone, remove_stale_temp_files, write_arrays, write_json)
from .weights import WeightsPlan, sha256_file

DISPLAY_MAX_SIDE = 512


class ClassNames:
    """ImageNet-1k names through timm's ImageNetInfo; accepts an index, a WordNet id or an exact name."""

    def __init__(self):
        self.info = timm.data.ImageNetInfo()
        self.wnids = self.info.label_names()
        self.descriptions = [self.info.index_to_description(i) for i in range(len(self.wnids))]

    def resolve(self, value: str) -> int:
        text = value.strip()
        if text.isdigit():
            index = int(text)
            if index >= len(self.wnids):
                raise ValueError(f"class index {index} is out of range 0..{len(self.wnids) - 1}.")
            return index
        if text in self.wnids:
            return self.wnids.index(text)
        for i, description in enumerate(self.descriptions):
            if text.lower() in [part.strip().lower() for part in description.split(",")] or text == description:
                return i
        raise ValueError(f"unknown ImageNet class {text!r}; give an index 0-999, a WordNet id (n02123045) or an exact name.")

    def name(self, index: int) -> str:
        return self.descriptions[index]


def library_versions() -> dict:
    import jinja2
    import matplotlib
    from importlib.metadata import version

    return {"reportgen": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "grad-cam": version("grad-cam"), "numpy": np.__version__,
            "jinja2": jinja2.__version__, "matplotlib": matplotlib.__version__}


def weight_stats(model: torch.nn.Module, layer_names, config: AnalysisConfig) -> dict:
    """Statistics of the weight tensors (ndim >= 2) under each named module."""
    modules = dict(model.named_modules())
    out = {}
    for name in layer_names:
        tensors = [p.detach().float().cpu().reshape(-1) for pname, p in modules[name].named_parameters()
                   if pname.endswith("weight") and p.dim() >= 2]
        out[name] = weight_summary(torch.cat(tensors).numpy(), config.histogram_bins, config.weight_quantiles,
                                   config.near_zero_fraction)
    return out


def count_macs(model: torch.nn.Module, input_size, device: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1,) + tuple(input_size), device=device))
    return counter.get_total_flops() / 2.0


def _display_copy(image, path: Path) -> None:
    import io

    copy = image.copy()
    copy.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


class Batches:
    """Re-iterable batches of model inputs, decoded and transformed one batch at a time: memory holds
    one batch, whatever the number of images."""

    def __init__(self, records: Sequence[ImageRecord], transform, batch_size: int):
        self.records, self.transform, self.batch_size = tuple(records), transform, batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.records), self.batch_size):
            chunk = self.records[start:start + self.batch_size]
            yield torch.stack([self.transform(load_rgb(record.path)) for record in chunk])

    def __len__(self) -> int:
        return -(-len(self.records) // self.batch_size)


# Config fields that change what the models compute. Scoring and rule settings are left out: changing
# them re-scores saved results without running a model again.
MODEL_SIDE_CONFIG = ("cam_method", "seed", "histogram_bins", "weight_quantiles", "near_zero_fraction", "sanity_check")


def weights_identity(plan: WeightsPlan, seed: int) -> str:
    """What fixes the weights before they are loaded: a file's SHA-256, or the hub tag, or the seed."""
    if plan.source in ("checkpoint", "hf-cache", "url-cache", "lite-package"):
        return f"file:{sha256_file(plan.location)}"
    if plan.source == "random":
        return f"random:seed={seed}"
    return f"{plan.source}:{plan.location}"


def analysis_key(plan: WeightsPlan, image_set: ImageSet, config: AnalysisConfig, versions: dict) -> str:
    backbone = plan.backbone
    spec = {
        "backbone": [backbone.timm_id, list(backbone.cam_layers), list(backbone.last_three),
                     [list(step) for step in backbone.randomisation], list(backbone.layouts), backbone.family],
        "weights": weights_identity(plan, config.seed),
        "images": image_set.sha256,
        "config": {k: getattr(config, k) for k in MODEL_SIDE_CONFIG},
        "versions": {k: versions[k] for k in ("reportgen", "torch", "timm", "grad-cam")},
        "schema": SCHEMA_VERSION,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class BatteryOutcome:
    results_dir: Path
    status: dict = field(default_factory=dict)  # backbone -> computed | cached
    timings: dict = field(default_factory=dict)


def image_entries(image_set: ImageSet, class_names: ClassNames) -> list[dict]:
    return [{
        "file": record.file, "sha256": record.sha256, "width": record.width, "height": record.height,
        "class_index": record.class_index,
        "class_name": class_names.name(record.class_index) if record.class_index is not None else None,
        "box": list(record.box) if record.box else None, "box_share": record.box_share,
        "size": record.size_class, "background": record.background, "source": record.source,
        "licence": record.licence, "notes": record.notes, "decoding": record.decoding,
        "size_source": record.size_source, "background_source": record.background_source,
        "box_source": record.box_source,
        "display_copy": f"images/{position:03d}.png",
    } for position, record in enumerate(image_set.records)]


def analyse_one(plan: WeightsPlan, image_set: ImageSet, class_names: ClassNames, config: AnalysisConfig,
                device: str, weights_mode: str, progress: Callable[[str], None],
                on_batch: Callable[[str, int, int], None] = lambda stage, done, total: None,
                keep_merge_state: bool = False):
    """Everything the battery measures for one backbone: (entry for results.json, arrays, stage timings)."""
    backbone = plan.backbone
    timings = {}
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    loaded = load_model(plan, config.seed)
    model = loaded.model.to(device)
    timings["load_s"] = time.perf_counter() - started
    transform = timm.data.create_transform(**loaded.data_config)
    batches = Batches(image_set.records, transform, config.batch_size)
    targets = [record.class_index for record in image_set.records]
    layers = backbone.all_layers()
    total = len(image_set.records)
    progress(f"{backbone.name}: Grad-CAM and features on {total} images, {len(layers)} layers")

    def count(stage, stage_total=total):
        """A per-batch callback that reports images done so far in this stage."""
        done = [0]

        def step(n):
            done[0] += n
            on_batch(stage, done[0], stage_total)
        return step

    mark = time.perf_counter()

    def analyse(current):
        return analyse_backbone(model, current, layers, targets, config.cam_method, device,
                                cka_layers=backbone.last_three, on_batch=count("cam"), layouts=dict(backbone.layouts))

    analysis, batches = with_oom_retry(analyse, batches, backbone.name, progress)
    timings["cam_and_features_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    sanity_entry = {"status": "skipped", "reason": "untrained weights" if weights_mode == "random" else
                    "disabled in the config", "steps": []}
    arrays = {}
    if config.sanity_check and weights_mode != "random" and backbone.randomisation:
        progress(f"{backbone.name}: sanity check, {len(backbone.randomisation)} randomisation steps")
        depth_layers = list(dict.fromkeys(backbone.depth_layers.values()))
        sanity = cascading_randomisation(model, batches, depth_layers, [int(t) for t in analysis.targets],
                                         backbone.randomisation, config.cam_method, device, config.seed,
                                         on_batch=count("sanity", total * len(backbone.randomisation)),
                                         layouts=dict(backbone.layouts))
        sanity_entry = {"status": "done", "reason": "", "steps": [
            {"label": step.label, "modules": list(step.modules), "parameters": int(step.parameters),
             "cam_status": {layer: list(s) for layer, s in step.cam_status.items() if layer in step.cams}}
            for step in sanity.steps]}
        for number, step in enumerate(sanity.steps):
            for layer, cam in step.cams.items():
                arrays[f"sanitycam__{number}__{layer}"] = cam.astype(np.float32)
    timings["sanity_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    wstats = weight_stats(model, backbone.last_three, config)
    timings["weights_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, loaded.data_config["input_size"], device)
    timings["flops_s"] = time.perf_counter() - mark

    cam_status, feature_stats = {}, {}
    for layer in analysis.layers:
        cam_status[layer.name] = list(layer.cam_status)
        if layer.cam is not None:
            arrays[f"cam__{layer.name}"] = layer.cam.astype(np.float32)
        if layer.feature_map is not None:
            arrays[f"featmap__{layer.name}"] = layer.feature_map.astype(np.float32)
        if layer.feature_vector is not None:
            arrays[f"featvec__{layer.name}"] = layer.feature_vector.astype(np.float32)
        feature_stats[layer.name] = {"variance": layer.feature_variance, "dim": layer.feature_dim}
    if keep_merge_state:
        arrays.update(merge_state_arrays(analysis))
    stats_json = {}
    for layer, summary in wstats.items():
        for key in ("hist_counts", "hist_edges", "quantiles"):
            arrays[f"{key.replace('_', '')}__{layer}"] = summary[key]
        stats_json[layer] = {k: v for k, v in summary.items() if k not in ("hist_counts", "hist_edges", "quantiles")}

    views, predictions = [], []
    for position, record in enumerate(image_set.records):
        window = crop_window(record.width, record.height, loaded.data_config)
        views.append({"crop": list(window.as_tuple()[:4]), "width": window.out_width,
                      "height": window.out_height, "box": window.map_box(record.box)})
        target = int(analysis.targets[position])
        top5 = [{"index": int(i), "name": class_names.name(int(i)), "prob": float(p)}
                for i, p in zip(analysis.top5_index[position], analysis.top5_prob[position])]
        predictions.append({
            "target": target, "target_name": class_names.name(target),
            "target_source": "prediction" if analysis.target_from_prediction[position] else "manifest",
            "top5": top5,
            "correct_top1": None if record.class_index is None else bool(top5[0]["index"] == record.class_index),
            "correct_top5": None if record.class_index is None else any(t["index"] == record.class_index for t in top5),
        })
    entry = {
        "name": backbone.name, "timm_id": backbone.timm_id, "architecture": backbone.architecture,
        "display_name": backbone.display_name, "family": backbone.family,
        "family_source": backbone.family_source, "layer_source": backbone.layer_source,
        "depth_layers": backbone.depth_layers, "last_three": list(backbone.last_three), "layers": list(layers),
        "weights": {"mode": weights_mode, "source": loaded.weights_source, "location": loaded.weights_location,
                    "file_sha256": loaded.weights_file_sha256, "state_sha256": loaded.state_sha256},
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "params": int(params), "macs": float(macs),
        "cam_status": cam_status, "feature_stats": feature_stats, "weight_stats": stats_json,
        "feature_cka": {"layers": list(analysis.cka_layers), "matrix": [list(row) for row in analysis.cka],
                        "features": "channel means (spatial and token layers) or the vector itself"},
        "views": views, "predictions": predictions, "sanity": sanity_entry,
        "batch_size": batches.batch_size,  # smaller than asked after an out-of-memory retry
    }
    del model, loaded
    return entry, arrays, timings


def with_oom_retry(work: Callable, batches: Batches, name: str, progress: Callable[[str], None]):
    """Run ``work(batches)``; on a CUDA out-of-memory error retry once at half the batch size, then stop
    with advice. Returns (result, the batches that worked)."""
    try:
        return work(batches), batches
    except torch.OutOfMemoryError:
        if batches.batch_size <= 1:
            raise ResourceError(f"{name}: out of GPU memory at batch size 1; use --device cpu or a larger GPU.") from None
    smaller = Batches(batches.records, batches.transform, max(1, batches.batch_size // 2))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    progress(f"{name}: out of GPU memory at batch size {batches.batch_size}; retrying at {smaller.batch_size}")
    try:
        return work(smaller), smaller
    except torch.OutOfMemoryError:
        raise ResourceError(f"{name}: out of GPU memory at batch size {batches.batch_size} and again at "
                            f"{smaller.batch_size}; pass --batch-size {max(1, smaller.batch_size // 2)} or "
                            "use --device cpu.") from None


def merge_state_arrays(analysis) -> dict:
    """Running statistics a shard keeps so shards of one image set can be merged exactly."""
    arrays = {}
    for name, moments in analysis.moments.items():
        arrays.update(moments.state(f"mstate__{name}"))
    if analysis.co_moments is not None:
        arrays.update(analysis.co_moments.state())
    return arrays


def run_battery(plans: tuple[WeightsPlan, ...], image_set: ImageSet, class_names: ClassNames,
                config: AnalysisConfig, results_dir: Path, device: str = "cpu", weights_mode: str = "pretrained",
                progress: Callable[[str], None] = lambda message: None, fresh: bool = False,
                on_batch: Callable[[str, str, int, int], None] = lambda name, stage, done, total: None,
                keep_merge_state: bool = False, battery_file: Optional[dict] = None) -> BatteryOutcome:
    """Run every backbone (or reuse its saved result), then write results.json / metrics.json.

    Each backbone's result is saved under ``backbones/`` as soon as it finishes, named by a key of
    everything that determines it, so an interrupted run resumes where it stopped and an unchanged
    battery is not recomputed. ``fresh`` ignores saved results."""
    results_dir = Path(results_dir)
    (results_dir / "images").mkdir(parents=True, exist_ok=True)
    (results_dir / BACKBONES_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(results_dir)
    outcome = BatteryOutcome(results_dir)
    outcome.timings = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backbones": {}}
    versions = library_versions()
    for position, record in enumerate(image_set.records):
        _display_copy(load_rgb(record.path), results_dir / f"images/{position:03d}.png")

    entries = []
    for plan in plans:
        name = plan.backbone.name
        key = analysis_key(plan, image_set, config, versions) + ("-shard" if keep_merge_state else "")
        stem = f"{name}-{key[:16]}"
        saved = None if fresh else read_backbone(results_dir / BACKBONES_DIR, stem, key)
        if saved is not None:
            progress(f"{name}: unchanged since the last run, reusing {BACKBONES_DIR}/{stem}")
            entry = saved
            outcome.status[name] = "cached"
            outcome.timings["backbones"][name] = {"cached": True}
        else:
            progress(f"{name}: loading weights ({plan.source})")
            started = time.perf_counter()
            entry, arrays, timings = analyse_one(plan, image_set, class_names, config, device, weights_mode, progress,
                                                 lambda stage, done, total, name=name: on_batch(name, stage, done, total),
                                                 keep_merge_state)
            entry["cache_key"] = key
            entry["arrays"] = f"{BACKBONES_DIR}/{stem}.npz"
            # Arrays first, then the entry: the entry file is what marks the backbone as finished.
            write_arrays(results_dir / entry["arrays"], arrays)
            write_json(results_dir / BACKBONES_DIR / f"{stem}.json", entry)
            outcome.status[name] = "computed"
            outcome.timings["backbones"][name] = timings
            progress(f"{name}: done in {time.perf_counter() - started:.1f}s")
        entries.append(entry)
        on_batch(name, "backbones", len(entries), len(plans))

    index = {
        "schema_version": SCHEMA_VERSION,
        "versions": versions,
        "config": config.to_dict(),
        "seed": config.seed,
        "weights_mode": weights_mode,
        "device": device,
        "image_set": {"root_name": image_set.root.name, "sha256": image_set.sha256, "count": len(image_set.records)},
        "images": image_entries(image_set, class_names),
        "skipped_images": [{"file": s.file, "reason": s.reason} for s in image_set.skipped],
        "backbones": entries,
        "timings_file": TIMINGS,
        "battery_file": battery_file or {},
    }
    progress("scoring CAMs")
    mark = time.perf_counter()
    metrics = score(index, _arrays_loader(results_dir, index), config)
    outcome.timings["scoring_s"] = time.perf_counter() - mark
    write_json(results_dir / METRICS, metrics)
    write_json(results_dir / INDEX, index)
    outcome.timings["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(results_dir / TIMINGS, outcome.timings)
    return outcome


def _arrays_loader(results_dir: Path, index: dict):
    """arrays_of(name) for scoring: one backbone's arrays in memory at a time."""
    files = {entry["name"]: results_dir / entry["arrays"] for entry in index["backbones"]}
    held: dict = {}

    def arrays_of(name: str) -> dict:
        if name not in held:
            held.clear()
            held[name] = load_arrays(files[name])
        return held[name]
    return arrays_of
