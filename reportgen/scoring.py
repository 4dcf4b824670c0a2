"""From saved CAMs to ``metrics.json``: per-image localisation, baselines and grouped aggregates
with bootstrap intervals. Pure numpy: runs again on saved results without torch."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from .config import AnalysisConfig
from .metrics import (bootstrap_ci, centred_gaussian, linear_cka_from_grams, localisation, uniform_map,
                      upsample)
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
    """Per backbone: linear CKA between the last three layers' features, and Wasserstein-1 between their
    standardised weight distributions (from stored quantiles)."""
    out = {}
    for entry in index["backbones"]:
        arrays = arrays_of(entry["name"])
        layers = entry["last_three"]
        grams = [arrays[f"gram__{layer}"] for layer in layers]
        cka = [[linear_cka_from_grams(a, b) for b in grams] for a in grams]
        standardised = []
        for layer in layers:
            q = arrays[f"quantiles__{layer}"].astype(np.float64)
            stats = entry["weight_stats"][layer]
            standardised.append((q - stats["mean"]) / stats["std"] if stats["std"] else q * 0)
        w1 = [float(np.mean(np.abs(standardised[i] - standardised[i + 1]))) for i in range(len(layers) - 1)]
        out[entry["name"]] = {
            "layers": layers,
            "cka": cka,
            "weight_w1_consecutive": w1,
            "feature_variance": [entry["feature_stats"][layer]["variance"] for layer in layers],
        }
    return out


def score(index: dict, arrays_of: Callable[[str], dict], config: AnalysisConfig) -> dict:
    rows = per_image_rows(index, arrays_of, config)
    return {
        "schema_version": index["schema_version"],
        "per_image": rows,
        "aggregates": aggregate(rows, config),
        "last_three": last_three_summary(index, arrays_of),
    }


def find(aggregates: list[dict], scope: str, name: str, role: str, group: str, metric: str) -> dict | None:
    for row in aggregates:
        if (row["scope"], row["name"], row["role"], row["group"], row["metric"]) == (scope, name, role, group, metric):
            return row
    return None
