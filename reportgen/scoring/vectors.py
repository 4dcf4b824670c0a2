"""Per-image values as vectors over the image set (NaN where an image has none), the form the paired bootstrap
resamples: per backbone, role and metric, and per family (the mean over the family's backbones of each image, so
the image stays the unit and the family's backbones are not counted as independent observations)."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Optional

import numpy as np

from ..results.schema import Interval, PerImageRow, RunIndex
from .bootstrap import PairedDraws, image_stratum, interval, nanmean, paired_draws


def run_draws(index: RunIndex) -> PairedDraws:
    """The run's paired bootstrap: ``bootstrap_samples`` draws of its images, stratified by size, background,
    labelled and boxed (groups under ``bootstrap_min_stratum`` images pooled), seeded by the run's seed. The
    groups come from the whole run's index, so shards merged into one index get the draws of one run."""
    strata = [image_stratum(image.size, image.background, image.class_index is not None, image.box is not None)
              for image in index.images]
    return paired_draws(strata, index.config.bootstrap_samples, index.config.seed,
                        index.config.bootstrap_min_stratum)


class Vectors:
    """``backbone(name, role, metric)`` and ``family(family, role, metric)``: (N,) float arrays in image order.
    A role held by several layers (the last three) is the mean of its layers per image."""

    def __init__(self, index: RunIndex, rows: Iterable[PerImageRow]):
        self.index = index
        position = {image.file: n for n, image in enumerate(index.images)}
        self.count = len(index.images)
        collected: dict = defaultdict(lambda: defaultdict(list))  # (backbone, role) -> metric -> [(pos, value)]
        self.roles: dict = defaultdict(set)  # backbone -> roles with rows
        for row in rows:
            if row.image not in position:
                continue
            self.roles[row.backbone].add(row.role)
            for metric in ("mass_in_box", "mass_ratio", "pointing_hit", "spread", "entropy"):
                value = row.value(metric)
                collected[(row.backbone, row.role)][metric].append(
                    (position[row.image], float(value) if value is not None else np.nan))
        self._values: dict = {}
        for (backbone, role), metrics in collected.items():
            for metric, pairs in metrics.items():
                sums, counts = np.zeros(self.count), np.zeros(self.count)
                for at, value in pairs:
                    if np.isfinite(value):
                        sums[at] += value
                        counts[at] += 1
                with np.errstate(invalid="ignore", divide="ignore"):
                    self._values[(backbone, role, metric)] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        self.families = {b.name: b.family for b in index.backbones}

    def backbone(self, name: str, role: str, metric: str) -> np.ndarray:
        return self._values.get((name, role, metric), np.full(self.count, np.nan))

    def family(self, family: str, role: str, metric: str) -> np.ndarray:
        members = [self.backbone(name, role, metric) for name, f in self.families.items() if f == family]
        return nanmean(np.vstack(members), axis=0) if members else np.full(self.count, np.nan)

    def has(self, name: str, role: str) -> bool:
        return role in self.roles.get(name, ())


def widened(point: float, drawn: np.ndarray, ratio: Optional[float]) -> np.ndarray:
    """An accuracy's draws, their spread around ``point`` scaled by sqrt(``ratio``) (a variance ratio >= 1; None:
    unchanged) and kept within [0, 1]: a
    cross-validated probe's accuracy varies with refitting by that much more than its fixed outcomes' mean does
    (analysis/transfer.py measures the ratio). The draws stay paired with the other candidates'."""
    if ratio is None or not np.isfinite(point):
        return drawn
    spread = math.sqrt(max(float(ratio), 1.0)) * (np.asarray(drawn, dtype=np.float64) - point)
    return np.clip(point + spread, 0.0, 1.0)  # an accuracy


def interval_of(values: np.ndarray, draws: PairedDraws, ratio: Optional[float] = None) -> Optional[Interval]:
    """Mean and paired-bootstrap interval of a per-image vector (NaN: no value for that image); ``ratio``: the
    variance ratio that widens it (see :func:`widened`)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    point = float(finite.mean())
    low, high = interval(widened(point, draws.means(values), ratio)) if finite.size >= 2 else (None, None)
    return Interval(point, low, high, int(finite.size))
