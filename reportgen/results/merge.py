"""Combine shard results folders (one backbone x a slice of the images each) into one index and one set of
per-backbone files, exactly as if everything had run in one process.

Shards of one backbone over disjoint image slices are concatenated image-wise; unit variances are merged from
running moments and the last-three CKA is recomputed from the concatenated pooled features, never averaged. Every backbone of the merged
battery must cover the same images. Plain numpy: no torch.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputDataError, UsageError
from ..inputs.images import image_set_digest
from . import arrays as keys
from .schema import BackboneResult, CostReport, FeatureStats, ImageEntry, ImageSetInfo, RunIndex
from .stats import RunningMoments, linear_cka
from .store import BACKBONES_DIR, COST, INDEX, SavedResults, load_arrays, load_results, write_arrays, write_json


def load_shard(folder: Path) -> SavedResults:
    folder = Path(folder)
    if (folder / "results" / INDEX).is_file():
        folder = folder / "results"
    return load_results(folder)


def _check_compatible(shards: Sequence[SavedResults]) -> None:
    first = shards[0].index
    for shard in shards[1:]:
        for key in ("schema_version", "weights_mode", "label_space"):
            if getattr(shard.index, key) != getattr(first, key):
                raise InputDataError(f"{shard.root}: {key} {getattr(shard.index, key)!r} differs from "
                                     f"{getattr(first, key)!r}; merge shards of one battery only.")
        if replace(shard.index.config, batch_size=1) != replace(first.config, batch_size=1):
            raise InputDataError(f"{shard.root}: analysis config differs from the first shard's; merge shards "
                                 "run with one config.")


@dataclass(frozen=True)
class Placement:
    """Where each global image position comes from for one backbone: (piece number, row in that piece)."""
    rows: tuple  # (piece, row) per global position, in position order

    def pick(self, per_piece: Sequence[Sequence]) -> tuple:
        return tuple(per_piece[piece][row] for piece, row in self.rows)


def _placement(name: str, pieces: Sequence[tuple[SavedResults, BackboneResult]], position_of: dict,
               image_count: int) -> Placement:
    order = [(position_of[(image.file, image.sha256)], number, row)
             for number, (shard, _) in enumerate(pieces) for row, image in enumerate(shard.index.images)]
    positions = [p for p, _, _ in order]
    if len(set(positions)) != len(positions):
        raise InputDataError(f"backbone {name}: an image appears in two shards; give each image to one shard.")
    if sorted(positions) != list(range(image_count)):
        raise InputDataError(f"backbone {name} covers {len(positions)} of the {image_count} images in these "
                             "shards; every backbone must see every image.")
    return Placement(tuple((number, row) for _, number, row in sorted(order)))


def _merged_moments(entry: BackboneResult, loaded: Sequence[dict]) -> tuple[dict, dict]:
    """Feature variance per layer and the merged moment arrays."""
    stats, arrays = {}, {}
    for layer, found in entry.feature_stats.items():
        moments = RunningMoments()
        for data in loaded:
            moments.merge(RunningMoments.from_state(data, keys.moments_prefix(layer)))
        stats[layer] = FeatureStats(moments.mean_variance(), found.dim)
        arrays.update(moments.state(keys.moments_prefix(layer)))
    return stats, arrays


def _merged_cka(entry: BackboneResult, loaded: Sequence[dict], arrays: dict) -> tuple:
    """The CKA matrix over all shards' images, from their pooled features (merged image-wise into ``arrays``);
    empty (not available) when a shard kept none because a last-three layer was too wide."""
    layers = entry.feature_cka.layers
    if not layers or not all(keys.pooled(layer) in data for data in loaded for layer in layers):
        return ()
    return tuple(tuple(row) for row in linear_cka([arrays[keys.pooled(layer)] for layer in layers]))


def _merge_backbone(name: str, pieces, position_of: dict, image_count: int, out: Path) -> BackboneResult:
    placement = _placement(name, pieces, position_of, image_count)
    if len({entry.weights.state_sha256 for _, entry in pieces}) != 1:
        raise InputDataError(f"backbone {name}: shards used different weights; merge shards of one run only.")
    loaded = [load_arrays(shard.root / entry.arrays) for shard, entry in pieces]
    entries = [entry for _, entry in pieces]
    base = entries[0]
    arrays = {}

    def sampled(run: str, positions_of) -> list:
        """(merged position, shard number, row) of each sampled image, in merged image order: the shards sampled
        from the whole set's hashed sample, so together they hold exactly one process's sample."""
        return sorted((position_of[(shard.index.images[position].file, shard.index.images[position].sha256)],
                       number, row)
                      for number, (shard, entry) in enumerate(pieces)
                      for row, position in enumerate(positions_of(entry, shard)))
    samples = {
        "sanity": sampled("sanity", lambda e, shard: (e.sanity.images or range(len(shard.index.images)))
                          if e.sanity.steps else ()),
        "corruption": sampled("corruption", lambda e, shard: e.corruption.images),
        "faithfulness": sampled("faithfulness", lambda e, shard: e.faithfulness.images),
    }
    sample = samples["sanity"]
    every_key = {key: data[key] for data in reversed(loaded) for key in data}  # a key some shard lacks still merges
    for key, value in every_key.items():
        if keys.is_per_image(key):
            if all(key in data for data in loaded):  # a shard may keep no pooled features (too wide)
                arrays[key] = np.stack(placement.pick([data[key] for data in loaded]))
        elif keys.is_per_sample(key):
            rows = [loaded[number][key][row] for _, number, row in samples[keys.sample_of(key)]]
            arrays[key] = np.stack(rows) if rows else value[:0]
        elif not keys.is_merge_state(key):
            arrays[key] = value
    feature_stats, moment_arrays = _merged_moments(base, loaded)
    matrix = _merged_cka(base, loaded, arrays)
    steps = tuple(replace(step, cam_status={layer: tuple(entries[number].sanity.steps[step_number].cam_status[layer][row]
                                                         for _, number, row in sample)
                                            for layer in step.cam_status})
                  for step_number, step in enumerate(base.sanity.steps))
    stem = f"{name}-merged"
    merged = replace(
        base,
        cam_status={layer: placement.pick([e.cam_status[layer] for e in entries]) for layer in base.cam_status},
        views=placement.pick([e.views for e in entries]),
        predictions=placement.pick([e.predictions for e in entries]),
        sanity=replace(base.sanity, steps=steps, images=tuple(position for position, _, _ in sample)),
        corruption=replace(next((e.corruption for e in entries if e.corruption.status == "done"), base.corruption),
                           images=tuple(p for p, _, _ in samples["corruption"])),
        faithfulness=replace(next((e.faithfulness for e in entries if e.faithfulness.status == "done"),
                                  base.faithfulness), images=tuple(p for p, _, _ in samples["faithfulness"])),
        feature_stats=feature_stats,
        feature_cka=replace(base.feature_cka, matrix=matrix),
        arrays=f"{BACKBONES_DIR}/{stem}.npz",
        cache_key="merged:" + ",".join(sorted(e.cache_key for e in entries)))
    write_arrays(out / merged.arrays, {**arrays, **moment_arrays})
    write_json(out / BACKBONES_DIR / f"{stem}.json", merged)
    return merged


def merge_shards(shard_dirs: Sequence[Path | str], out_dir: Path | str) -> tuple[RunIndex, Path]:
    """Merge shard results folders into ``out_dir/results`` (per-backbone files and display copies);
    returns the merged index (not yet written: scoring writes it with metrics.json) and that folder."""
    if not shard_dirs:
        raise UsageError("merge: give at least one shard folder.")
    shards = [load_shard(Path(d)) for d in shard_dirs]
    _check_compatible(shards)

    # Global image order: first appearance; one image is identified by its name and content hash.
    images: list[tuple[SavedResults, ImageEntry]] = []
    position_of: dict = {}
    for shard in shards:
        for image in shard.index.images:
            if (image.file, image.sha256) not in position_of:
                position_of[(image.file, image.sha256)] = len(images)
                images.append((shard, image))
    parts: dict[str, list] = {}
    for shard in shards:
        for entry in shard.index.backbones:
            parts.setdefault(entry.name, []).append((shard, entry))

    out = Path(out_dir) / "results"
    (out / BACKBONES_DIR).mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    merged_images = []
    for position, (shard, image) in enumerate(images):
        copy = f"images/{position:03d}{Path(image.display_copy).suffix}"
        shutil.copyfile(shard.root / image.display_copy, out / copy)
        merged_images.append(replace(image, display_copy=copy))
    entries = tuple(_merge_backbone(name, pieces, position_of, len(images), out) for name, pieces in parts.items())
    digest = image_set_digest((i.file, i.sha256, i.class_index, i.box, i.size, i.background) for i in merged_images)
    first = shards[0].index.image_set
    # Shards of one driver carry its set's name, labels and skipped images (image_slices / the Ray driver).
    root_name = first.root_name if all(s.index.image_set.root_name == first.root_name for s in shards) \
        else "merged shards"
    skipped = tuple(dict.fromkeys(skip for s in shards for skip in s.index.skipped_images))
    index = replace(shards[0].index, images=tuple(merged_images), backbones=entries, skipped_images=skipped,
                    image_set=ImageSetInfo(root_name, digest, len(merged_images), first.labels, first.labels_note,
                                           sum(1 for image in merged_images if image.in_subfolder)),
                    shards=tuple(str(s.root) for s in shards))
    write_json(out / "timings.json", {"merged_from": [s.timings for s in shards]})
    # Latency does not depend on the images: each backbone's cost as its first shard measured it.
    costs = {}
    for shard in shards:
        for name, cost in shard.cost.backbones.items():
            costs.setdefault(name, cost)
    write_json(out / COST, CostReport(costs))
    return index, out

