"""Statistics, plain numpy: running moments of layer units (merged batch by batch and shard by shard, Chan et
al.), linear CKA between layers, and the summary of a layer's weights."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


class RunningMoments:
    """Mean and variance of every unit over all images, merged batch by batch (Chan et al.), so memory
    does not grow with the number of images."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, n: int, mean: np.ndarray, m2: np.ndarray) -> None:
        mean, m2 = mean.astype(np.float64), m2.astype(np.float64)
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.n * n / total)
        self.n = total

    def merge(self, other: "RunningMoments") -> None:
        if other.n:
            self.add(other.n, other.mean, other.m2)

    def state(self, prefix: str) -> dict:
        """Arrays to save so that shards of an image set can be merged exactly."""
        return {f"{prefix}_n": np.asarray(self.n), f"{prefix}_mean": self.mean, f"{prefix}_m2": self.m2}

    @classmethod
    def from_state(cls, arrays: dict, prefix: str) -> "RunningMoments":
        moments = cls()
        moments.n, moments.mean, moments.m2 = int(arrays[f"{prefix}_n"]), arrays[f"{prefix}_mean"], arrays[f"{prefix}_m2"]
        return moments

    def mean_variance(self) -> float:
        """Mean over units of the (population) variance across images."""
        return float((self.m2 / self.n).mean()) if self.n else float("nan")


def linear_cka(features: Sequence[np.ndarray]) -> list[list[Optional[float]]]:
    """Linear CKA (Kornblith et al. 2019) between every pair of representations of the same images, each
    (images x units). Computed in whichever space is smaller: the images' Gram matrices when there are fewer
    images than units, else the units' cross-products, so memory is min(images, units)^2 per pair."""
    centred = [f.astype(np.float64) - f.astype(np.float64).mean(axis=0) for f in features]
    images = centred[0].shape[0] if centred else 0
    if images <= max((c.shape[1] for c in centred), default=0):
        grams = [c @ c.T for c in centred]

        def hsic(a: int, b: int) -> float:
            return float((grams[a] * grams[b]).sum())
    else:
        def hsic(a: int, b: int) -> float:
            cross = centred[a].T @ centred[b]
            return float((cross * cross).sum())
    norms = [hsic(i, i) for i in range(len(centred))]
    matrix = []
    for i in range(len(centred)):
        row = []
        for j in range(len(centred)):
            norm = (norms[i] * norms[j]) ** 0.5
            row.append((1.0 if i == j else hsic(i, j) / norm) if norm > 0 else None)
        matrix.append(row)
    return matrix


def _sorted_quantiles(sorted_values: np.ndarray, probs) -> np.ndarray:
    """np.quantile's default (linear) method on already sorted data."""
    position = np.asarray(probs, dtype=np.float64) * (sorted_values.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, sorted_values.size - 1)
    fraction = position - below
    low, high = sorted_values[below].astype(np.float64), sorted_values[above].astype(np.float64)
    return low + (high - low) * fraction


def _central_moments(values: np.ndarray, mean: float, chunk: int = 1 << 22) -> tuple[float, float]:
    """Second and fourth central moments in float64, a chunk at a time (no float64 copy of it all)."""
    m2 = m4 = 0.0
    for start in range(0, values.size, chunk):
        d = values[start:start + chunk].astype(np.float64) - mean
        d2 = d * d
        m2 += float(d2.sum())
        m4 += float((d2 * d2).sum())
    return m2 / values.size, m4 / values.size


def _float32_bounds(edges, side: str) -> np.ndarray:
    """Float32 edges that ``searchsorted`` on float32 data treats exactly as the float64 ``edges``: the
    smallest float32 >= edge for side "left" (counts values < edge), the largest <= edge for "right". Searching
    float32 data with float64 values would make numpy copy the data to float64 (800 MB for a VGG fc layer)."""
    edges = np.atleast_1d(np.asarray(edges, dtype=np.float64))
    rounded = edges.astype(np.float32)
    if side == "left":
        return np.where(rounded.astype(np.float64) < edges, np.nextafter(rounded, np.float32(np.inf)), rounded)
    return np.where(rounded.astype(np.float64) > edges, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def weight_summary(values: np.ndarray, bins: int, quantiles: int, near_zero_fraction: float,
                   sort_in_place: bool = False) -> dict:
    """Statistics and histogram of a flat weight vector. One float32 sort serves the quantiles, the
    histogram and the near-zero count (a VGG fc layer has 100 M weights). ``sort_in_place``: ``values`` is a
    float32 vector the caller gives up, sorted without a copy."""
    if sort_in_place and isinstance(values, np.ndarray) and values.dtype == np.float32 and values.ndim == 1:
        w = values
        w.sort()
    else:
        w = np.sort(np.asarray(values, dtype=np.float32).ravel())
    n = w.size
    mean = float(w.sum(dtype=np.float64) / n)
    m2, m4 = _central_moments(w, mean)
    std = math.sqrt(m2)
    kurtosis = m4 / m2 ** 2 - 3.0 if m2 > 0 else float("nan")
    largest = float(max(abs(float(w[0])), abs(float(w[-1])))) if n else 0.0
    low, high = _sorted_quantiles(w, [0.005, 0.995])
    if high <= low:
        low, high = low - 1e-6, high + 1e-6
    edges = np.linspace(low, high, bins + 1)
    # Values outside [low, high] are clipped into the end bins, as np.histogram(np.clip(w, low, high)).
    inner = np.searchsorted(w, _float32_bounds(edges[1:-1], "left"), side="left")
    counts = np.diff(np.concatenate([[0], inner, [n]]))
    threshold = near_zero_fraction * largest
    near_zero = (int(np.searchsorted(w, _float32_bounds(threshold, "left"), side="left")[0])
                 - int(np.searchsorted(w, _float32_bounds(-threshold, "right"), side="right")[0])) / n
    return {
        "count": int(n),
        "mean": mean,
        "std": std,
        "variance": m2,
        "excess_kurtosis": kurtosis,
        "near_zero_share": float(near_zero) if largest > 0 else 1.0,
        "hist_counts": counts.astype(np.int64),
        "hist_edges": edges.astype(np.float64),
        "quantiles": _sorted_quantiles(w, np.linspace(0, 1, quantiles)).astype(np.float32),
    }
