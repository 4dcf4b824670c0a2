"""Rows for reports on large image sets: per-image values by image, heatmap-grid samples, distributions,
per-class accuracy and confusions, prediction summaries, flagged-CAM groups. Data only; templates phrase it."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..inputs.manifest import BACKGROUNDS, SIZES
from ..results.schema import CamStatus, Metrics, RunIndex
from .sampling import GridSample, choose

NO_ANNOTATION = "no box"


@dataclass(frozen=True)
class ObjectGroup:
    label: str  # "small objects, clean background"
    short: str  # "small / clean" (axis labels)
    positions: tuple


def object_groups(index: RunIndex) -> list[ObjectGroup]:
    """Image positions per (size, background) cell, then images without a box."""
    groups = []
    for size in SIZES:
        for background in BACKGROUNDS:
            members = tuple(i for i, img in enumerate(index.images) if img.size == size and img.background == background)
            if members:
                groups.append(ObjectGroup(f"{size} objects, {background} background", f"{size} / {background}", members))
    rest = tuple(i for i, img in enumerate(index.images) if img.size not in SIZES or img.background not in BACKGROUNDS)
    if rest:
        groups.append(ObjectGroup("images without size/background annotation", NO_ANNOTATION, rest))
    return groups


class PerImage:
    """Per (backbone, image position): the deep-layer metrics and the top-1 confidence, looked up by position."""

    def __init__(self, index: RunIndex, metrics: Metrics):
        self.index = index
        position = {img.file: i for i, img in enumerate(index.images)}
        self.deep: dict = {}  # (backbone, position) -> PerImageRow of the deep layer
        for row in metrics.per_image:
            if row.role == "deep" and row.image in position:  # metrics.json of a hand-edited results folder may disagree
                self.deep[(row.backbone, position[row.image])] = row

    def metric(self, backbone: str, position: int, name: str) -> Optional[float]:
        if name == "confidence":
            return self.index.backbone(backbone).predictions[position].top1.prob
        row = self.deep.get((backbone, position))
        value = row.value(name) if row is not None else None
        return float(value) if value is not None and np.isfinite(value) else None

    def mean_over_backbones(self, position: int, name: str) -> Optional[float]:
        values = [v for v in (self.metric(b.name, position, name) for b in self.index.backbones) if v is not None]
        return float(np.mean(values)) if values else None

    def wrong(self, position: int) -> int:
        return sum(1 for b in self.index.backbones if b.predictions[position].correct_top1 is False)


def grid_sample(group: ObjectGroup, per_image: PerImage, config) -> GridSample:
    has_box = any(per_image.index.images[p].box is not None for p in group.positions)
    metric = "mass_ratio" if has_box else "confidence"
    ranked_by = ("mean deep-layer mass_ratio over backbones" if has_box
                 else "mean top-1 confidence over backbones (no boxes)")
    return choose(group.positions, lambda p: per_image.mean_over_backbones(p, metric), per_image.wrong,
                  config.grid_max_images, config.grid_sample_each, ranked_by)


DISTRIBUTION_METRICS = (("mass_ratio", "mass_ratio"), ("spread", "spread"), ("entropy", "entropy"),
                        ("confidence", "top-1 confidence"))


def distribution_values(index: RunIndex, per_image: PerImage, groups: list[ObjectGroup]) -> tuple[list, dict]:
    """(metrics with data, values[(metric, group short label, backbone display name)])."""
    values: dict = defaultdict(list)
    for group in groups:
        for b in index.backbones:
            for metric, _ in DISTRIBUTION_METRICS:
                for p in group.positions:
                    v = per_image.metric(b.name, p, metric)
                    if v is not None:
                        values[(metric, group.short, b.display_name)].append(v)
    present = [m for m in DISTRIBUTION_METRICS if any(k[0] == m[0] and v for k, v in values.items())]
    return present, dict(values)


@dataclass(frozen=True, kw_only=True)
class AccuracyRow:
    display_name: str
    images: int
    labelled: int
    top1: Optional[float]
    top5: Optional[float]
    mean_confidence: float
    misclassified: int


def accuracy_rows(index: RunIndex) -> tuple:
    rows = []
    for b in index.backbones:
        labelled = [p for p in b.predictions if p.correct_top1 is not None]
        rows.append(AccuracyRow(
            display_name=b.display_name, images=len(b.predictions), labelled=len(labelled),
            top1=float(np.mean([p.correct_top1 for p in labelled])) if labelled else None,
            top5=float(np.mean([p.correct_top5 for p in labelled])) if labelled and index.top5_informative else None,
            mean_confidence=float(np.mean([p.top1.prob for p in b.predictions])) if b.predictions else 0.0,
            misclassified=sum(1 for p in labelled if not p.correct_top1)))
    return tuple(rows)


@dataclass(frozen=True)
class ClassRow:
    class_name: str
    images: int
    top1: tuple  # per backbone: share correct
    mean_top1: float
    most_confused: str  # the class most often predicted instead ("" when never wrong)
    most_confused_count: int


@dataclass(frozen=True)
class ConfusedPair:
    true_class: str
    predicted: str
    count: int  # (image, backbone) predictions, all backbones together
    backbones: tuple  # display names that made this mistake


def class_rows(index: RunIndex) -> tuple:
    """Per labelled class, worst first (mean top-1 over backbones)."""
    by_class: dict = defaultdict(list)
    for position, image in enumerate(index.images):
        if image.class_index is not None:
            by_class[image.class_name or str(image.class_index)].append(position)
    rows = []
    for name, positions in by_class.items():
        shares, mistakes = [], Counter()
        for b in index.backbones:
            preds = [b.predictions[p] for p in positions]
            shares.append(float(np.mean([bool(p.correct_top1) for p in preds])))
            mistakes.update(p.top1.name for p in preds if not p.correct_top1)
        confused, count = mistakes.most_common(1)[0] if mistakes else ("", 0)
        rows.append(ClassRow(name, len(positions), tuple(shares), float(np.mean(shares)), confused, count))
    return tuple(sorted(rows, key=lambda r: (r.mean_top1, r.class_name)))


def confused_pairs(index: RunIndex, limit: int) -> tuple:
    counts: Counter = Counter()
    who: dict = defaultdict(set)
    for position, image in enumerate(index.images):
        if image.class_index is None:
            continue
        for b in index.backbones:
            p = b.predictions[position]
            if p.correct_top1 is False:
                pair = (image.class_name or str(image.class_index), p.top1.name)
                counts[pair] += 1
                who[pair].add(b.display_name)
    return tuple(ConfusedPair(t, pred, n, tuple(sorted(who[(t, pred)])))
                 for (t, pred), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


@dataclass(frozen=True)
class FlaggedGroup:
    backbone: str
    layer: str
    counts: tuple  # (status, count)
    total: int  # images
    examples: tuple  # file names (a few)


def flagged_groups(index: RunIndex, examples: int = 3) -> tuple:
    out = []
    for b in index.backbones:
        for layer, statuses in b.cam_status.items():
            bad = [(p, s) for p, s in enumerate(statuses) if s not in (CamStatus.OK, CamStatus.NOT_SPATIAL)]
            if bad:
                counts = Counter(s for _, s in bad)
                out.append(FlaggedGroup(b.display_name, layer, tuple(sorted((str(k), v) for k, v in counts.items())),
                                        len(statuses), tuple(index.images[p].file for p, _ in bad[:examples])))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class ImageSetSummary:
    images: int
    labelled: int
    classes: int
    boxed: int
    by_size: tuple  # (size, count)
    by_background: tuple  # (background, count)
    decoding_notes: int  # images whose pixels needed care (alpha, 16-bit, EXIF, ...)
    labels: str
    labels_note: str
    from_subfolders: int  # images below their class folder, labelled with its class


def image_set_summary(index: RunIndex) -> ImageSetSummary:
    images = index.images
    return ImageSetSummary(images=len(images), labelled=sum(1 for i in images if i.class_index is not None),
                           classes=len({i.class_index for i in images if i.class_index is not None}),
                           boxed=sum(1 for i in images if i.box),
                           by_size=tuple(sorted(Counter(i.size or "no box" for i in images).items())),
                           by_background=tuple(sorted(Counter(i.background or "—" for i in images).items())),
                           decoding_notes=sum(1 for i in images if i.decoding), labels=index.image_set.labels,
                           labels_note=index.image_set.labels_note, from_subfolders=index.image_set.from_subfolders)


PER_IMAGE_COLUMNS = ("image", "class_index", "class_name", "size", "background", "backbone", "family", "layer", "role",
                     "cam_status", "mass_in_box", "mass_ratio", "pointing_hit", "spread", "entropy", "target",
                     "target_name", "target_source", "top1_index", "top1_name", "top1_prob", "correct_top1",
                     "correct_top5")


def beyond_columns(index: RunIndex) -> tuple:
    """per_image.csv's columns beyond the paper: the ROAD gap of the deep-layer CAM, and agreement of the
    corrupted with the clean prediction (both on the common crop) per corruption at severity 3 (or the middle
    severity run), where measured."""
    run = next((b.corruption for b in index.backbones if b.corruption.status == "done"), None)
    severity = (3 if 3 in run.severities else run.severities[len(run.severities) // 2]) if run else None
    corruptions = tuple(f"agree_{name}_s{severity}" for name in run.corruptions) if run else ()
    return ("road_gap",) + corruptions


def beyond_values(index: RunIndex, arrays_of) -> dict:
    """(backbone, image position) -> the values of :func:`beyond_columns` (None where not measured)."""
    from ..results import arrays as keys

    columns = beyond_columns(index)
    out: dict = {}
    for b in index.backbones:
        arrays = arrays_of(b.name) if (b.corruption.status == "done" or b.faithfulness.status == "done") else {}
        if keys.ROAD in arrays:
            for row, position in enumerate(b.faithfulness.images):
                morf, lerf = arrays[keys.ROAD][row, 0]
                out.setdefault((b.name, position), [None] * len(columns))[0] = \
                    float((lerf - morf) / 2) if np.isfinite(lerf - morf) else None
        if keys.CORRUPT_TOP1 in arrays and len(columns) > 1:
            severity = int(columns[1].rsplit("_s", 1)[1])
            if severity in b.corruption.severities:
                v = b.corruption.severities.index(severity)
                for row, position in enumerate(b.corruption.images):
                    clean = int(arrays[keys.CORRUPT_CLEAN][row])  # the clean common crop's prediction
                    for c in range(len(b.corruption.corruptions)):
                        found = int(arrays[keys.CORRUPT_TOP1][row, c, v])
                        if found >= 0:
                            out.setdefault((b.name, position), [None] * len(columns))[1 + c] = found == clean
    return out


def per_image_table(index: RunIndex, metrics: Metrics, extra: dict | None = None):
    """Rows of per_image.csv: one per image x backbone x layer (and per baseline map), each with the image's
    label, that backbone's prediction for it and ``extra`` (beyond_values) for its image and backbone."""
    position = {img.file: i for i, img in enumerate(index.images)}
    backbones = {b.name: b for b in index.backbones}
    blank = [None] * len(beyond_columns(index))
    for row in metrics.per_image:
        p = position.get(row.image)
        if p is None or row.backbone not in backbones:  # a hand-edited results.json: only rows it names
            continue
        image, prediction = index.images[p], backbones[row.backbone].predictions[p]
        top1 = prediction.top1
        yield (row.image, image.class_index, image.class_name, row.size, row.background, row.backbone, row.family,
               row.layer, row.role, str(row.cam_status), row.mass_in_box, row.mass_ratio, row.pointing_hit,
               row.spread, row.entropy, prediction.target, prediction.target_name, prediction.target_source,
               top1.index, top1.name, top1.prob, prediction.correct_top1, prediction.correct_top5,
               *(extra or {}).get((row.backbone, p), blank))
