"""The battery: load each backbone in turn, run the analyses, save results. Imports torch and timm."""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import timm
import timm.data
import torch

from . import __version__
from .config import AnalysisConfig
from .engine import analyse_backbone
from .imageset import ImageSet, crop_window, load_rgb
from .metrics import weight_summary
from .models import load_model
from .registry import Backbone
from .sanity import cascading_randomisation
from .scoring import score
from .store import INDEX, METRICS, SCHEMA_VERSION, TIMINGS, write_arrays, write_json
from .weights import WeightsPlan

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
    import pytorch_grad_cam  # noqa: F401
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
    copy = image.copy()
    copy.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    copy.save(path, format="PNG")


def run_battery(plans: tuple[WeightsPlan, ...], image_set: ImageSet, class_names: ClassNames,
                config: AnalysisConfig, results_dir: Path, device: str = "cpu", weights_mode: str = "pretrained",
                progress: Callable[[str], None] = lambda message: None) -> Path:
    results_dir = Path(results_dir)
    (results_dir / "images").mkdir(parents=True, exist_ok=True)
    timings: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backbones": {}}
    images = [load_rgb(record.path) for record in image_set.records]
    image_entries = []
    for position, (record, image) in enumerate(zip(image_set.records, images)):
        copy_name = f"images/{position:03d}.png"
        _display_copy(image, results_dir / copy_name)
        image_entries.append({
            "file": record.file, "sha256": record.sha256, "width": record.width, "height": record.height,
            "class_index": record.class_index,
            "class_name": class_names.name(record.class_index) if record.class_index is not None else None,
            "box": list(record.box) if record.box else None, "box_share": record.box_share,
            "size": record.size_class, "background": record.background, "source": record.source,
            "licence": record.licence, "notes": record.notes, "display_copy": copy_name,
        })

    entries = []
    arrays_by_backbone: dict = {}
    for plan in plans:
        backbone = plan.backbone
        progress(f"{backbone.name}: loading weights ({plan.source})")
        started = time.perf_counter()
        torch.manual_seed(config.seed)
        loaded = load_model(plan, config.seed)
        model = loaded.model.to(device)
        loaded_at = time.perf_counter()
        transform = timm.data.create_transform(**loaded.data_config)
        batch = torch.stack([transform(image) for image in images])
        targets = [record.class_index for record in image_set.records]
        layers = backbone.all_layers()
        chunks = [batch[i:i + config.batch_size] for i in range(0, len(batch), config.batch_size)]
        progress(f"{backbone.name}: Grad-CAM on {len(images)} images, {len(layers)} layers")
        analysis = analyse_backbone(model, chunks, layers, targets, config.cam_method, device)
        cam_done = time.perf_counter()
        sanity_entry = {"status": "skipped", "reason": "untrained weights" if weights_mode == "random" else
                        "disabled in the config", "steps": []}
        sanity_cams = {}
        if config.sanity_check and weights_mode != "random" and backbone.randomisation:
            progress(f"{backbone.name}: sanity check, {len(backbone.randomisation)} randomisation steps")
            depth_layers = list(dict.fromkeys(backbone.depth_layers.values()))
            sanity = cascading_randomisation(model, chunks, depth_layers, [int(t) for t in analysis.targets],
                                             backbone.randomisation, config.cam_method, device, config.seed)
            sanity_entry = {"status": "done", "reason": "", "steps": [
                {"label": step.label, "modules": list(step.modules), "parameters": int(step.parameters),
                 "cam_status": {layer: list(s) for layer, s in step.cam_status.items() if layer in step.cams}}
                for step in sanity.steps]}
            for number, step in enumerate(sanity.steps):
                for layer, cam in step.cams.items():
                    sanity_cams[f"sanitycam__{number}__{layer}"] = cam.astype(np.float32)
        sanity_done = time.perf_counter()
        wstats = weight_stats(model, backbone.last_three, config)
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, loaded.data_config["input_size"], device)
        finished = time.perf_counter()

        arrays, cam_status, feature_stats = dict(sanity_cams), {}, {}
        for layer in analysis.layers:
            cam_status[layer.name] = list(layer.cam_status)
            if layer.cam is not None:
                arrays[f"cam__{layer.name}"] = layer.cam.astype(np.float32)
            if layer.feature_map is not None:
                arrays[f"featmap__{layer.name}"] = layer.feature_map.astype(np.float32)
            if layer.feature_vector is not None:
                arrays[f"featvec__{layer.name}"] = layer.feature_vector.astype(np.float32)
            arrays[f"gram__{layer.name}"] = layer.gram
            feature_stats[layer.name] = {"variance": layer.feature_variance, "dim": layer.feature_dim}
        stats_json = {}
        for layer, summary in wstats.items():
            for key in ("hist_counts", "hist_edges", "quantiles"):
                arrays[f"{key.replace('_', '')}__{layer}"] = summary[key]
            stats_json[layer] = {k: v for k, v in summary.items() if k not in ("hist_counts", "hist_edges", "quantiles")}
        arrays_name = f"{backbone.name}.npz"
        write_arrays(results_dir / arrays_name, arrays)
        arrays_by_backbone[backbone.name] = arrays

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
        entries.append({
            "name": backbone.name, "timm_id": backbone.timm_id, "architecture": backbone.architecture,
            "display_name": backbone.display_name, "family": backbone.family,
            "depth_layers": backbone.depth_layers, "last_three": list(backbone.last_three), "layers": list(layers),
            "weights": {"mode": weights_mode, "source": loaded.weights_source, "location": loaded.weights_location,
                        "file_sha256": loaded.weights_file_sha256, "state_sha256": loaded.state_sha256},
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
            "params": int(params), "macs": float(macs),
            "cam_status": cam_status, "feature_stats": feature_stats, "weight_stats": stats_json,
            "views": views, "predictions": predictions, "sanity": sanity_entry, "arrays": arrays_name,
        })
        timings["backbones"][backbone.name] = {"load_s": loaded_at - started, "cam_s": cam_done - loaded_at,
                                              "sanity_s": sanity_done - cam_done,
                                              "weights_and_flops_s": finished - sanity_done}
        del model, loaded
        progress(f"{backbone.name}: done in {finished - started:.1f}s")

    index = {
        "schema_version": SCHEMA_VERSION,
        "versions": library_versions(),
        "config": config.to_dict(),
        "seed": config.seed,
        "weights_mode": weights_mode,
        "device": device,
        "image_set": {"root_name": image_set.root.name, "sha256": image_set.sha256, "count": len(image_entries)},
        "images": image_entries,
        "backbones": entries,
    }
    progress("scoring CAMs")
    metrics = score(index, arrays_by_backbone.__getitem__, config)
    write_json(results_dir / METRICS, metrics)
    write_json(results_dir / INDEX, index)
    timings["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(results_dir / TIMINGS, timings)
    return results_dir
