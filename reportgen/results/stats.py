"""Streaming statistics, plain numpy: running moments of layer units and co-moments between layers, merged
batch by batch and shard by shard (Chan et al.), and the summary of a layer's weights."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from . import arrays as keys


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


class RunningCoMoments:
    """Centred cross-products between layers' pooled features, merged batch by batch: linear CKA over all
    images without keeping their features (Kornblith et al. 2019, feature-space form)."""

    def __init__(self, layers: Sequence[str]):
        self.layers = tuple(layers)
        self.n = 0
        self.mean: dict = {}
        self.co: dict = {}

    def add(self, pooled: dict) -> None:
        """One batch of pooled features (layer -> (B, C)): its own co-moments, merged in."""
        batch = RunningCoMoments(self.layers)
        values = {k: pooled[k].astype(np.float64) for k in self.layers}
        batch.n = next(iter(values.values())).shape[0]
        batch.mean = {k: v.mean(axis=0) for k, v in values.items()}
        centred = {k: v - batch.mean[k] for k, v in values.items()}
        batch.co = {(a, b): centred[a].T @ centred[b] for i, a in enumerate(self.layers) for b in self.layers[i:]}
        self.merge(batch)

    def merge(self, other: "RunningCoMoments") -> None:
        """Combine with the co-moments of a disjoint set of images (Chan et al. pairwise update)."""
        if not other.n:
            return
        if not self.n:
            self.n, self.mean, self.co = other.n, dict(other.mean), dict(other.co)
            return
        total = self.n + other.n
        factor = self.n * other.n / total
        for (a, b), co in other.co.items():
            # (new + correction) + old: the summation order the batch-by-batch results were first written with.
            self.co[(a, b)] = (co + np.outer(other.mean[a] - self.mean[a], other.mean[b] - self.mean[b]) * factor
                               + self.co[(a, b)])
        for k in self.layers:
            self.mean[k] = self.mean[k] + (other.mean[k] - self.mean[k]) * (other.n / total)
        self.n = total

    def state(self) -> dict:
        arrays = {keys.co_moments_count(): np.asarray(self.n)}
        arrays.update({keys.co_moments_mean(k): v for k, v in self.mean.items()})
        arrays.update({keys.co_moments_cross(a, b): v for (a, b), v in self.co.items()})
        return arrays

    @classmethod
    def from_state(cls, arrays: dict, layers: Sequence[str]) -> "RunningCoMoments":
        co = cls(layers)
        co.n = int(arrays[keys.co_moments_count()])
        co.mean = {k: arrays[keys.co_moments_mean(k)] for k in co.layers}
        co.co = {(a, b): arrays[keys.co_moments_cross(a, b)] for i, a in enumerate(co.layers) for b in co.layers[i:]}
        return co

    def cka(self) -> list[list[Optional[float]]]:
        def frob2(a, b):
            co = self.co[(a, b)] if (a, b) in self.co else self.co[(b, a)]
            return float((co * co).sum())

        out = []
        for a in self.layers:
            row = []
            for b in self.layers:
                norm = (frob2(a, a) * frob2(b, b)) ** 0.5
                row.append(frob2(a, b) / norm if norm > 0 else None)
            out.append(row)
        return out


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


def weight_summary(values: np.ndarray, bins: int, quantiles: int, near_zero_fraction: float) -> dict:
    """Statistics and histogram of a flat weight vector. One float32 sort serves the quantiles, the
    histogram and the near-zero count (a VGG fc layer has 100 M weights)."""
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
    inner = np.searchsorted(w, edges[1:-1], side="left")
    counts = np.diff(np.concatenate([[0], inner, [n]]))
    threshold = near_zero_fraction * largest
    near_zero = (np.searchsorted(w, threshold, side="left") - np.searchsorted(w, -threshold, side="right")) / n
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
