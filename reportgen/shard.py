"""Fan a large battery out: ``run_shard`` analyses one backbone on a slice of the images and writes an
ordinary results folder (plus the running statistics needed to merge); ``merge_shards`` combines
shards into one results folder, exactly as if everything had run in one process.

Shards of one backbone over disjoint image slices are concatenated image-wise; unit variances and the
last-three CKA are merged from running moments (Chan et al.), not averaged. Every backbone of the
merged battery must cover the same images. Only ``run_shard`` imports torch; merging does not.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import AnalysisConfig
from .errors import InputDataError, UsageError
from .imageset import image_set_digest
from .scoring import score
from .store import (BACKBONES_DIR, INDEX, METRICS, TIMINGS, load_arrays, load_results, write_arrays,
                    write_json)

PER_IMAGE_PREFIXES = ("cam__", "featmap__", "featvec__", "sanitycam__")


def run_shard(backbone, image_paths: Sequence[Path | str], out_dir: Path | str,
              config: AnalysisConfig = AnalysisConfig(), weights: str = "pretrained", device: str = "cpu",
              checkpoint: Path | str | None = None, offline: bool = False) -> Path:
    """Analyse one backbone (registry name, timm id or Backbone) on ``image_paths`` -> ``out_dir/results``.

    Images keep the annotations of the ``annotations.csv`` in their folder. Pure apart from the folder it
    writes; safe to call from a Ray task or a submitit job."""
    from .imageset import ImageSet, load_image_set
    from .runner import ClassNames, run_battery
    from .weights import plan_weights, require_available

    if isinstance(backbone, str):
        from .autolayers import resolve_backbones

        chosen, = resolve_backbones("paper", (backbone,))
    else:
        chosen = backbone
    class_names = ClassNames()
    wanted = [Path(p).resolve() for p in image_paths]
    if not wanted:
        raise UsageError("run_shard: no images given.")
    by_folder: dict[Path, list[Path]] = {}
    for path in wanted:
        by_folder.setdefault(path.parent, []).append(path)
    records = []
    for folder, paths in by_folder.items():
        found = {r.path.resolve(): r for r in load_image_set(folder, class_names.resolve, config).records}
        missing = [p.name for p in paths if p not in found]
        if missing:
            raise InputDataError(f"{folder}: {', '.join(missing[:3])} not in its image set "
                                 "(not an image, or not listed in annotations.csv).")
        records += [found[p] for p in paths]
    image_set = ImageSet(Path(next(iter(by_folder))), tuple(records))
    checkpoints = {chosen.name: Path(checkpoint)} if checkpoint else {}
    plans = plan_weights((chosen,), weights, checkpoints, offline=offline)
    require_available(plans)
    results = Path(out_dir) / "results"
    run_battery(plans, image_set, class_names, config, results, device=device, weights_mode=weights,
                keep_merge_state=True)
    return results


def _load_shard(folder: Path):
    folder = Path(folder)
    if (folder / "results" / INDEX).is_file():
        folder = folder / "results"
    return load_results(folder)


def merge_shards(shard_dirs: Sequence[Path | str], out_dir: Path | str) -> Path:
    """Merge shard results folders into ``out_dir/results`` (index, metrics, arrays); returns that folder."""
    from .engine import RunningCoMoments, RunningMoments

    shards = [_load_shard(Path(d)) for d in shard_dirs]
    if not shards:
        raise UsageError("merge: give at least one shard folder.")
    first = shards[0].index
    for shard in shards[1:]:
        for key in ("schema_version", "weights_mode"):
            if shard.index[key] != first[key]:
                raise InputDataError(f"{shard.root}: {key} {shard.index[key]!r} differs from {first[key]!r}; "
                                     "merge shards of one battery only.")
        model_side = {k: v for k, v in shard.index["config"].items() if k != "batch_size"}
        if model_side != {k: v for k, v in first["config"].items() if k != "batch_size"}:
            raise InputDataError(f"{shard.root}: analysis config differs from the first shard's; merge shards "
                                 "run with one config.")

    # Global image order: first appearance; one image is identified by its name and content hash.
    images, position_of = [], {}
    for shard in shards:
        for image in shard.index["images"]:
            key = (image["file"], image["sha256"])
            if key not in position_of:
                position_of[key] = len(images)
                images.append((shard, image))

    # Per backbone: its parts (shard, entry) in shard order.
    parts: dict[str, list] = {}
    for shard in shards:
        for entry in shard.index["backbones"]:
            parts.setdefault(entry["name"], []).append((shard, entry))

    out = Path(out_dir) / "results"
    (out / BACKBONES_DIR).mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    merged_images = []
    for position, (shard, image) in enumerate(images):
        copy = f"images/{position:03d}.png"
        shutil.copyfile(shard.root / image["display_copy"], out / copy)
        merged_images.append({**image, "display_copy": copy})

    entries = []
    for name, pieces in parts.items():
        order = []  # (piece number, row in that piece) per global image position
        for number, (shard, entry) in enumerate(pieces):
            for row, image in enumerate(shard.index["images"]):
                order.append((position_of[(image["file"], image["sha256"])], number, row))
        positions = [p for p, _, _ in order]
        if len(set(positions)) != len(positions):
            raise InputDataError(f"backbone {name}: an image appears in two shards; give each image to one shard.")
        if sorted(positions) != list(range(len(images))):
            raise InputDataError(f"backbone {name} covers {len(positions)} of the {len(images)} images in these "
                                 "shards; every backbone must see every image.")
        order.sort()
        hashes = {entry["weights"]["state_sha256"] for _, entry in pieces}
        if len(hashes) != 1:
            raise InputDataError(f"backbone {name}: shards used different weights; merge shards of one run only.")
        loaded = [load_arrays(shard.root / entry["arrays"]) for shard, entry in pieces]
        base = pieces[0][1]
        arrays = {}
        for key, value in loaded[0].items():
            if key.startswith(PER_IMAGE_PREFIXES):
                arrays[key] = np.stack([loaded[number][key][row] for _, number, row in order])
            elif not key.startswith(("mstate_", "costate_")):
                arrays[key] = value

        def per_image(getter):
            return [getter(pieces[number][1])[row] for _, number, row in order]

        entry = json.loads(json.dumps(base))
        entry["cam_status"] = {layer: per_image(lambda e, layer=layer: e["cam_status"][layer])
                               for layer in base["cam_status"]}
        entry["views"] = per_image(lambda e: e["views"])
        entry["predictions"] = per_image(lambda e: e["predictions"])
        for step_number, step in enumerate(entry["sanity"]["steps"]):
            step["cam_status"] = {layer: per_image(lambda e, layer=layer: e["sanity"]["steps"][step_number]["cam_status"][layer])
                                  for layer in step["cam_status"]}
        for layer in base["feature_stats"]:
            moments = RunningMoments()
            for data in loaded:
                moments.merge(RunningMoments.from_state(data, f"mstate__{layer}"))
            entry["feature_stats"][layer]["variance"] = moments.mean_variance()
            arrays.update(moments.state(f"mstate__{layer}"))
        layers = base["feature_cka"]["layers"]
        if layers:
            co = RunningCoMoments(layers)
            for data in loaded:
                co.merge(RunningCoMoments.from_state(data, layers))
            entry["feature_cka"]["matrix"] = co.cka()
            arrays.update(co.state())
        stem = f"{name}-merged"
        entry["arrays"] = f"{BACKBONES_DIR}/{stem}.npz"
        entry["cache_key"] = "merged:" + ",".join(sorted(e["cache_key"] for _, e in pieces))
        write_arrays(out / entry["arrays"], arrays)
        write_json(out / BACKBONES_DIR / f"{stem}.json", entry)
        entries.append(entry)

    index = {k: v for k, v in first.items() if k not in ("images", "backbones", "image_set")}
    digest = image_set_digest((i["file"], i["sha256"], i["class_index"], i["box"], i["size"], i["background"])
                              for i in merged_images)
    index.update({
        "images": merged_images,
        "backbones": entries,
        "image_set": {"root_name": "merged shards", "sha256": digest, "count": len(merged_images)},
        "shards": [str(s.root) for s in shards],
    })
    config = AnalysisConfig.from_dict(index["config"])
    arrays_files = {e["name"]: out / e["arrays"] for e in entries}
    metrics = score(index, lambda n: load_arrays(arrays_files[n]), config)
    write_json(out / METRICS, metrics)
    write_json(out / INDEX, index)
    write_json(out / TIMINGS, {"merged_from": [s.timings for s in shards]})
    return out
