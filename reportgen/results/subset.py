"""A run restricted to some of its images, as if the others had never been in the set: the index, the per-image rows
of metrics.json and a backbone's saved arrays, each image-position field renumbered to the kept images' new
positions (in the set's order). What page 1's "does the pick survive" line recomputes the decision on
(:mod:`reportgen.scoring.survival`); nothing is refit or re-measured, so a probe's out-of-fold outcomes on the kept
images stay those of folds fit with the others in.

Every field that holds one value per image, or the positions of a hashed sample, is listed here, as
:mod:`reportgen.results.merge` lists them for shards; the arrays follow :mod:`reportgen.results.arrays`' kinds.
Keeping every image returns the records unchanged (the same objects), so the decision on them is the main one.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from . import arrays as keys
from .schema import BackboneResult, Metrics, RunIndex, RunStatus


def _renumbered(positions: Sequence[int], new: dict) -> tuple[list, tuple]:
    """(rows of ``positions`` that are kept, their new positions)."""
    rows = [row for row, position in enumerate(positions) if position in new]
    return rows, tuple(new[positions[row]] for row in rows)


def _sanity_positions(entry: BackboneResult, count: int) -> Sequence[int]:
    """The sanity sample's positions: ``images``, or every image when a run of an older version left it empty."""
    return entry.sanity.images or (range(count) if entry.sanity.steps else ())


def _sample_positions(entry: BackboneResult, run: str, count: int) -> Sequence[int]:
    if run == "sanity":
        return _sanity_positions(entry, count)
    return getattr(entry, run).images


def _sample_kept(run, new: dict):
    """A hashed-sample run (corruptions, faithfulness) on the kept images; one whose every sampled image was left out
    is skipped, and says so (else the decision would call it "not measured" for no reason it could name)."""
    _, images = _renumbered(run.images, new)
    if run.status == RunStatus.DONE and run.images and not images:
        return replace(run, status=RunStatus.SKIPPED, images=(),
                       reason=f"none of its {len(run.images)} sampled images is among those left")
    return replace(run, images=images)


def restricted_backbone(entry: BackboneResult, kept: Sequence[int], count: int) -> BackboneResult:
    """``entry`` (of a run of ``count`` images) on the images at ``kept`` (increasing positions)."""
    new = {position: n for n, position in enumerate(kept)}
    sanity_rows, sanity_images = _renumbered(_sanity_positions(entry, count), new)
    steps = tuple(replace(step, cam_status={layer: tuple(statuses[row] for row in sanity_rows)
                                            for layer, statuses in step.cam_status.items()})
                  for step in entry.sanity.steps)
    task = entry.task
    if task is not None:
        task = replace(task, explained_images=tuple(new[p] for p in task.explained_images if p in new))
    return replace(
        entry,
        cam_status={layer: tuple(statuses[p] for p in kept) for layer, statuses in entry.cam_status.items()},
        views=tuple(entry.views[p] for p in kept) if entry.views else entry.views,
        predictions=tuple(entry.predictions[p] for p in kept),
        # an empty sample list means every image (older runs): it still does
        sanity=replace(entry.sanity, steps=steps, images=sanity_images if entry.sanity.images else ()),
        corruption=_sample_kept(entry.corruption, new),
        faithfulness=_sample_kept(entry.faithfulness, new),
        task=task)


def restricted_index(index: RunIndex, kept: Sequence[int]) -> RunIndex:
    """The index on the images at ``kept`` (increasing positions). The image set keeps its name and digest (the
    set the images were drawn from) and counts the kept images."""
    kept = list(kept)
    if kept == list(range(len(index.images))):
        return index
    count = len(index.images)
    files = {index.images[p].file for p in kept}
    return replace(index, images=tuple(index.images[p] for p in kept),
                   image_set=replace(index.image_set, count=len(kept),
                                     from_subfolders=sum(1 for p in kept if index.images[p].in_subfolder)),
                   backbones=tuple(restricted_backbone(entry, kept, count) for entry in index.backbones),
                   train_copies=tuple(f for f in index.train_copies if f in files))


def restricted_metrics(metrics: Metrics, index: RunIndex, kept: Sequence[int]) -> Metrics:
    """metrics.json's per-image rows of the kept images (what the decision reads of it, beside the slimming scores,
    which do not depend on these images). The aggregates and scores over every image are left as they are: they
    describe the set as given."""
    kept = list(kept)
    if kept == list(range(len(index.images))):
        return metrics
    files = {index.images[p].file for p in kept}
    return replace(metrics, per_image=tuple(row for row in metrics.per_image if row.image in files),
                   predictions=tuple(row for row in metrics.predictions if row.image in files),
                   train_copies=tuple(f for f in metrics.train_copies if f in files))


def restricted_arrays(entry: BackboneResult, arrays: dict, kept: Sequence[int], count: int) -> dict:
    """A backbone's saved arrays (``entry`` as saved, of a run of ``count`` images) on the images at ``kept``:
    per-image arrays by row, per-sample arrays (sanity, corruption, faithfulness) by the rows of kept sample
    images; the others (weight statistics, running moments) as they are."""
    kept = list(kept)
    if kept == list(range(count)):
        return arrays
    new = {position: n for n, position in enumerate(kept)}
    rows: dict = {}
    out = {}
    for key, value in arrays.items():
        if keys.is_per_image(key):
            out[key] = np.asarray(value)[kept]
        elif keys.is_per_sample(key):
            run = keys.sample_of(key)
            if run not in rows:
                rows[run] = _renumbered(_sample_positions(entry, run, count), new)[0]
            out[key] = np.asarray(value)[rows[run]]
        else:
            out[key] = value
    return out


def kept_positions(index: RunIndex, left_out: frozenset) -> tuple:
    """Positions of the images not named (by ``ImageEntry.file``) in ``left_out``, in the set's order. A name that
    is not an image of the run is an error of the caller (the flags come from this run's images)."""
    unknown = set(left_out) - {image.file for image in index.images}
    if unknown:
        raise ValueError(f"not images of this run: {sorted(unknown)[:5]}")
    return tuple(p for p, image in enumerate(index.images) if image.file not in left_out)
