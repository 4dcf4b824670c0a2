"""Numbers behind the pictures: localisation and spread of CAMs, weight statistics, linear CKA.

Pure numpy/PIL (no torch), so saved results can be re-scored and re-rendered anywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image


def upsample(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a 2-D map to (height, width)."""
    return np.asarray(Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR))


def normalise01(cam: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as pytorch-grad-cam does for display; a constant map becomes all zeros."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(np.nanmin(cam)), float(np.nanmax(cam))
    if not math.isfinite(low) or not math.isfinite(high) or high - low <= 0:
        return np.zeros_like(cam)
    return (cam - low) / (high - low)


def box_mask(width: int, height: int, box) -> np.ndarray:
    """Pixels whose centres fall inside the box."""
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    inside_x = (xs >= box[0]) & (xs <= box[2])
    inside_y = (ys >= box[1]) & (ys <= box[3])
    return inside_y[:, None] & inside_x[None, :]


@dataclass(frozen=True)
class Localisation:
    mass_in_box: Optional[float]
    box_share: Optional[float]
    mass_ratio: Optional[float]
    pointing_hit: Optional[bool]
    spread: float
    entropy: float


def localisation(cam_full: np.ndarray, box, spread_level: float = 0.5) -> Optional[Localisation]:
    """Metrics of one CAM already at input resolution; None when the CAM is zero or not finite."""
    cam = np.asarray(cam_full, dtype=np.float64)
    if not np.all(np.isfinite(cam)) or cam.max() <= 0:
        return None
    cam = np.maximum(cam, 0)
    total = cam.sum()
    prob = cam / total
    nonzero = prob[prob > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / math.log(prob.size))
    spread = float((cam >= spread_level * cam.max()).mean())
    if box is None:
        return Localisation(None, None, None, None, spread, entropy)
    height, width = cam.shape
    mask = box_mask(width, height, box)
    share = float(mask.mean())
    if share <= 0:
        return Localisation(None, None, None, None, spread, entropy)
    mass = float(prob[mask].sum())
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return Localisation(mass, share, mass / share, bool(mask[peak]), spread, entropy)


def uniform_map(width: int, height: int) -> np.ndarray:
    return np.ones((height, width), dtype=np.float32)


def centred_gaussian(width: int, height: int, sigma_fraction: float = 0.25) -> np.ndarray:
    ys = (np.arange(height) + 0.5 - height / 2) / (sigma_fraction * height)
    xs = (np.arange(width) + 0.5 - width / 2) / (sigma_fraction * width)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


def linear_cka_from_grams(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Linear CKA of two representations given Gram matrices of their column-centred features."""
    hsic_xy = float((gram_x * gram_y).sum())
    norm = math.sqrt(float((gram_x * gram_x).sum()) * float((gram_y * gram_y).sum()))
    return hsic_xy / norm if norm > 0 else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    counts = np.bincount(group)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    average = first + (counts - 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = average[group]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; 0.0 when either is constant (no ranking to agree with)."""
    x, y = _ranks(np.asarray(a, np.float64).ravel()), _ranks(np.asarray(b, np.float64).ravel())
    x -= x.mean()
    y -= y.mean()
    norm = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    return float((x * y).sum() / norm) if norm > 0 else 0.0


def _gaussian_filter_matrix(size: int, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """'valid' Gaussian filtering along one axis as a matrix, so a 2-D filter is K @ X @ K.T."""
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    rows = size - 2 * radius
    matrix = np.zeros((rows, size))
    for r in range(rows):
        matrix[r, r:r + 2 * radius + 1] = taps
    return matrix


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of two
    maps already scaled to [0, 1] and of equal shape (at least 11x11)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    k_rows, k_cols = _gaussian_filter_matrix(x.shape[0]), _gaussian_filter_matrix(x.shape[1])

    def blur(m):
        return k_rows @ m @ k_cols.T

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return float(index.mean())


def cam_similarity(trained: np.ndarray, other: np.ndarray, size: int = 64) -> tuple[float, float]:
    """(Spearman, SSIM) of two CAMs after resizing both to size x size and scaling each to [0, 1]."""
    x = normalise01(upsample(trained, size, size))
    y = normalise01(upsample(other, size, size))
    return spearman(x, y), ssim(x, y)


def ks_from_quantiles(q_a: np.ndarray, q_b: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic between two distributions given by quantiles at equal probabilities."""
    q_a, q_b = np.asarray(q_a, np.float64), np.asarray(q_b, np.float64)
    probs = np.linspace(0.0, 1.0, q_a.size)
    grid = np.union1d(q_a, q_b)
    cdf_a = np.interp(grid, q_a, probs, left=0.0, right=1.0)
    cdf_b = np.interp(grid, q_b, np.linspace(0.0, 1.0, q_b.size), left=0.0, right=1.0)
    return float(np.abs(cdf_a - cdf_b).max())
