"""From saved CAMs to ``metrics.json``: per-image localisation, baselines and grouped aggregates
with bootstrap intervals. Pure numpy: runs again on saved results without torch."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from .config import AnalysisConfig
from .metrics import (bootstrap_ci, cam_similarity, centred_gaussian, ks_from_quantiles,
                      localisation, uniform_map, upsample)
from .registry import DEPTHS

METRIC_NAMES = ("mass_in_box", "mass_ratio", "pointing_hit", "spread", "entropy")
BASELINES = {"uniform": uniform_map, "gaussian": centred_gaussian}


def _groups(size, background):
    yield "all"
    if size:
        yield f"size={size}"
    if background:
        yield f"background={background}"
    if size and background:
        yield f"size={size},background={background}"


def per_image_rows(index: dict, arrays_of: Callable[[str], dict], config: AnalysisConfig) -> list[dict]:
    rows = []
    for entry in index["backbones"]:
        arrays = arrays_of(entry["name"])
        roles = {layer: role for role, layer in entry["depth_layers"].items()}
        for position, image in enumerate(index["images"]):
            view = entry["views"][position]
            width, height = view["width"], view["height"]
            for layer in entry["layers"]:
                key = f"cam__{layer}"
                if key not in arrays:
                    continue
                status = entry["cam_status"][layer][position]
                row = {"image": image["file"], "backbone": entry["name"], "family": entry["family"],
                       "layer": layer, "role": roles.get(layer, "last_three"), "size": image["size"],
                       "background": image["background"], "cam_status": status}
                found = localisation(upsample(arrays[key][position], width, height), view["box"],
                                     config.spread_level) if status == "ok" else None
                for name in METRIC_NAMES:
                    row[name] = getattr(found, name) if found is not None else None
                rows.append(row)
            for baseline, make in BASELINES.items():
                found = localisation(make(width, height), view["box"], config.spread_level)
                row = {"image": image["file"], "backbone": entry["name"], "family": entry["family"],
                       "layer": f"baseline:{baseline}", "role": f"baseline:{baseline}", "size": image["size"],
                       "background": image["background"], "cam_status": "ok"}
                for name in METRIC_NAMES:
                    row[name] = getattr(found, name)
                rows.append(row)
    return rows


def aggregate(rows: list[dict], config: AnalysisConfig) -> list[dict]:
    buckets: dict = defaultdict(list)
    for row in rows:
        for group in _groups(row["size"], row["background"]):
            buckets[("backbone", row["backbone"], row["role"], group)].append(row)
            if row["role"] in DEPTHS or row["role"].startswith("baseline:"):
                buckets[("family", row["family"], row["role"], group)].append(row)
    out = []
    for seed_offset, ((scope, name, role, group), members) in enumerate(sorted(buckets.items())):
        for metric in METRIC_NAMES:
            values = [float(m[metric]) for m in members if m[metric] is not None]
            mean, low, high = bootstrap_ci(values, config.bootstrap_samples, config.seed + seed_offset)
            out.append({"scope": scope, "name": name, "role": role, "group": group, "metric": metric,
                        "mean": mean, "ci_low": low, "ci_high": high, "n": len(values),
                        "small_group": len(values) < config.rules.min_group_size})
    return out


def last_three_summary(index: dict, arrays_of: Callable[[str], dict]) -> dict:
    """Per backbone: linear CKA between the last three layers' features (measured over all images by the
    engine), and Wasserstein-1 / Kolmogorov-Smirnov between their standardised weight distributions
    (from stored quantiles)."""
    out = {}
    for entry in index["backbones"]:
        arrays = arrays_of(entry["name"])
        layers = entry["last_three"]
        cka = entry["feature_cka"]["matrix"] or [[None] * len(layers) for _ in layers]
        standardised = []
        for layer in layers:
            q = arrays[f"quantiles__{layer}"].astype(np.float64)
            stats = entry["weight_stats"][layer]
            standardised.append((q - stats["mean"]) / stats["std"] if stats["std"] else q * 0)
        w1 = [float(np.mean(np.abs(standardised[i] - standardised[i + 1]))) for i in range(len(layers) - 1)]
        ks = [ks_from_quantiles(standardised[i], standardised[i + 1]) for i in range(len(layers) - 1)]
        out[entry["name"]] = {
            "layers": layers,
            "cka": cka,
            "weight_w1_consecutive": w1,
            "weight_ks_consecutive": ks,
            "feature_variance": [entry["feature_stats"][layer]["variance"] for layer in layers],
        }
    return out


def sanity_summary(index: dict, arrays_of: Callable[[str], dict], config: AnalysisConfig) -> dict:
    """Per backbone and depth layer: similarity of the trained CAMs to those after each randomisation step.

    Images whose trained CAM is flagged are left out. A randomised CAM that is all zero counts as
    Spearman 0 (it ranks nothing) and its SSIM is computed against the zero map."""
    thresholds = config.rules
    out = {}
    for entry in index["backbones"]:
        sanity = entry.get("sanity", {"status": "skipped", "reason": "not run", "steps": []})
        if sanity["status"] != "done":
            out[entry["name"]] = {"status": sanity["status"], "reason": sanity["reason"], "layers": {}}
            continue
        arrays = arrays_of(entry["name"])
        layers = {}
        for seed_offset, (role, layer) in enumerate(entry["depth_layers"].items()):
            if f"cam__{layer}" not in arrays:
                continue
            trained = arrays[f"cam__{layer}"]
            usable = [i for i, st in enumerate(entry["cam_status"][layer]) if st == "ok"]
            # Reference point: the trained CAMs against themselves (1.0 unless the similarity code is broken).
            reference = [cam_similarity(trained[i], trained[i], config.sanity_resolution) for i in usable]
            steps = [{"step": "none (trained)", "parameters": 0, "zero_maps": 0,
                      "spearman": _mean_only([p[0] for p in reference]), "ssim": _mean_only([p[1] for p in reference])}]
            for number, step in enumerate(sanity["steps"]):
                randomised = arrays[f"sanitycam__{number}__{layer}"]
                pairs = [cam_similarity(trained[i], randomised[i], config.sanity_resolution) for i in usable]
                row = {"step": step["label"], "parameters": step["parameters"],
                       "zero_maps": sum(step["cam_status"][layer][i] != "ok" for i in usable)}
                for k, name in enumerate(("spearman", "ssim")):
                    mean, low, high = bootstrap_ci([p[k] for p in pairs], config.bootstrap_samples,
                                                   config.seed + 100 * seed_offset + number)
                    row[name] = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(pairs)}
                steps.append(row)
            final = steps[-1] if steps else None
            stays_similar = bool(final and final["spearman"]["mean"] is not None and (
                final["spearman"]["mean"] >= thresholds.sanity_max_spearman
                or final["ssim"]["mean"] >= thresholds.sanity_max_ssim))
            layers[layer] = {"role": role, "steps": steps, "flagged": stays_similar}
        out[entry["name"]] = {"status": "done", "reason": "", "layers": layers}
    return out


def _mean_only(values) -> dict:
    return {"mean": float(np.mean(values)) if values else None, "ci_low": None, "ci_high": None, "n": len(values)}


def predictions_table(index: dict) -> list[dict]:
    """Per image and backbone: the class the CAM explains, top-5 with probabilities, correct or not."""
    rows = []
    for entry in index["backbones"]:
        for image, prediction in zip(index["images"], entry["predictions"]):
            rows.append({"image": image["file"], "backbone": entry["name"], "class_index": image["class_index"],
                         **prediction})
    return rows


def score(index: dict, arrays_of: Callable[[str], dict], config: AnalysisConfig) -> dict:
    rows = per_image_rows(index, arrays_of, config)
    return {
        "schema_version": index["schema_version"],
        "per_image": rows,
        "predictions": predictions_table(index),
        "aggregates": aggregate(rows, config),
        "last_three": last_three_summary(index, arrays_of),
        "sanity": sanity_summary(index, arrays_of, config),
    }


def aggregate_lookup(aggregates: list[dict]) -> Callable[..., dict | None]:
    """lookup(scope, name, role, group, metric) -> the aggregate row or None, from one pass over the list."""
    rows = {(r["scope"], r["name"], r["role"], r["group"], r["metric"]): r for r in aggregates}
    return lambda scope, name, role, group, metric: rows.get((scope, name, role, group, metric))


def find(aggregates: list[dict], scope: str, name: str, role: str, group: str, metric: str) -> dict | None:
    """One lookup; callers with many use aggregate_lookup."""
    return aggregate_lookup(aggregates)(scope, name, role, group, metric)
