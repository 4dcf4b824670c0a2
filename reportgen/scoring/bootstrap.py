"""The one bootstrap behind every interval, comparison and win probability of a report.

A draw resamples the *images* (the unit the numbers vary over), once, for everything: every backbone, family and
criterion reads the same draw, so differences between them are paired (the noise they share cancels) and a family
is compared with another on the same images. Draws are stratified by the groups the numbers need (object size,
background, labelled or not, boxed or not): each draw keeps every group's image count, so no draw loses a group
(with 1 small image in 24, a third of unstratified draws would have none). A group of n_h images resampled on its
own varies by only (n_h - 1) / n_h of its variance, and one of 1 image not at all, so groups smaller than
``min_stratum`` are resampled together as one pooled group (which joins the largest group if it is still smaller):
with many tiny groups, stratifying on all of them would make every interval too narrow. Timing noise enters the
same draws: each draw also draws every backbone's latency from its timing sessions (scoring/timing.py). The draws
depend only on the run's seed and the images' groups, so adding a backbone changes no other backbone's interval,
and the same inputs give the same numbers.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import numpy as np

DEFAULT_LEVEL = 0.95


def stable_seed(run_seed: int, *key) -> int:
    """A seed from the run's seed and a name (what is resampled), not from a position in a list."""
    text = "\0".join(str(part) for part in (run_seed,) + key)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def image_stratum(size: Optional[str], background: Optional[str], labelled: bool, boxed: bool) -> tuple:
    """The group an image is resampled within."""
    return (size or "", background or "", labelled, boxed)


@dataclass(frozen=True)
class PairedDraws:
    """``indices[b]`` is draw b: image positions, columns grouped by resampling pool (pool p fills the columns
    ``starts[p]:starts[p + 1]`` and always holds that pool's images, drawn with replacement). A pool is one stratum
    (group of images), or the strata smaller than the minimum size pooled together; per-stratum sums are kept
    either way, so a group's mean is exact whichever pool its images are drawn in."""
    indices: np.ndarray  # (B, N) int32
    strata: tuple  # stratum key per stratum (sorted)
    starts: np.ndarray  # (P + 1,) column offsets of the pools
    image_strata: np.ndarray  # (N,) stratum number of each image
    seed: int
    pools: tuple = ()  # per pool, in column order, the stratum numbers it holds (empty: one pool per stratum)

    @property
    def samples(self) -> int:
        return self.indices.shape[0]

    @property
    def images(self) -> int:
        return self.image_strata.shape[0]

    def stratum_sums(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per draw and stratum: the sum of the finite values drawn and how many there were, (B, S) each. Values
        are per image; NaN marks an image without a value (no box, a flagged CAM, no label)."""
        values = np.asarray(values, dtype=np.float64)
        drawn = values[self.indices]
        finite = np.isfinite(drawn)
        filled = np.where(finite, drawn, 0.0)
        if self.images == 0:
            return np.zeros((self.samples, 0)), np.zeros((self.samples, 0))
        starts = self.starts[:-1]
        pool_sums = np.add.reduceat(filled, starts, axis=1)
        pool_counts = np.add.reduceat(finite, starts, axis=1).astype(np.float64)
        pools = self.pools or tuple((s,) for s in range(len(self.strata)))
        if len(pools) == len(self.strata):  # every pool one stratum, in stratum order
            return pool_sums, pool_counts
        strata = len(self.strata)
        sums, counts = np.zeros((self.samples, strata)), np.zeros((self.samples, strata))
        for p, pool in enumerate(pools):
            if len(pool) == 1:
                sums[:, pool[0]], counts[:, pool[0]] = pool_sums[:, p], pool_counts[:, p]
                continue
            columns = slice(self.starts[p], self.starts[p + 1])  # a pooled group: sum by each drawn image's stratum
            cell = (self.image_strata[self.indices[:, columns]]
                    + strata * np.arange(self.samples)[:, None]).ravel()
            sums += np.bincount(cell, weights=filled[:, columns].ravel(),
                                minlength=self.samples * strata).reshape(self.samples, strata)
            counts += np.bincount(cell, weights=finite[:, columns].ravel(),
                                  minlength=self.samples * strata).reshape(self.samples, strata)
        return sums, counts

    def means(self, values: np.ndarray, members: Optional[np.ndarray] = None) -> np.ndarray:
        """(B,) mean of ``values`` over each draw's images (NaN: the draw holds none with a value). ``members``: a
        boolean mask of the images that belong to the group (default: all)."""
        values = np.asarray(values, dtype=np.float64)
        if members is not None:
            values = np.where(members, values, np.nan)
        drawn = values[self.indices]
        finite = np.isfinite(drawn)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(finite, drawn, 0.0).sum(axis=1) / finite.sum(axis=1)

    def resampled_medians(self, samples: Sequence[float], *key) -> np.ndarray:
        """(B,) medians of timing samples resampled with replacement, one resample per draw (seeded by ``key``:
        the same samples give the same medians whatever else the run holds)."""
        samples = np.asarray(samples, dtype=np.float64)
        if samples.size == 0:
            return np.full(self.samples, np.nan)
        rng = np.random.default_rng(stable_seed(self.seed, "timing", *key))
        return np.median(samples[rng.integers(0, samples.size, size=(self.samples, samples.size))], axis=1)

    def criterion_weights(self, base: dict, uncertainty: float, *key) -> dict:
        """Per draw, each criterion weight drawn around the user's (log-normal, spread ``uncertainty``; 0 = fixed),
        as SMAA does: (B,) arrays."""
        rng = np.random.default_rng(stable_seed(self.seed, "weights", *key))
        out = {}
        for name in sorted(base):
            noise = rng.standard_normal(self.samples)
            out[name] = base[name] * np.exp(uncertainty * noise - uncertainty ** 2 / 2) if uncertainty else \
                np.full(self.samples, float(base[name]))
        return out


def resampling_pools(sizes: Sequence[int], min_stratum: int = 1) -> tuple:
    """Which strata are resampled together: each stratum of at least ``min_stratum`` images on its own; the smaller
    ones pooled into one group, which joins the largest stratum when it is itself still smaller than
    ``min_stratum`` (and stands alone when there is none). Returns, per pool, its stratum numbers (increasing),
    pools ordered by their first stratum."""
    small = [s for s, n in enumerate(sizes) if n < min_stratum]
    big = [s for s, n in enumerate(sizes) if n >= min_stratum]
    pools = [[s] for s in big]
    if small:
        if sum(sizes[s] for s in small) < min_stratum and big:
            largest = max(range(len(big)), key=lambda p: (sizes[big[p]], -big[p]))
            pools[largest] += small
        else:
            pools.append(small)
    return tuple(sorted(tuple(sorted(pool)) for pool in pools))


def paired_draws(strata: Sequence[Hashable], samples: int, seed: int, min_stratum: int = 1) -> PairedDraws:
    """``samples`` stratified draws over images whose groups are ``strata`` (one key per image); groups smaller
    than ``min_stratum`` are resampled together (:func:`resampling_pools`)."""
    keys = list(strata)
    groups = sorted(set(keys), key=repr)
    number = {group: n for n, group in enumerate(groups)}
    image_strata = np.array([number[k] for k in keys], dtype=np.int32)
    pools = resampling_pools(np.bincount(image_strata, minlength=len(groups)).tolist(), min_stratum)
    rng = np.random.default_rng(stable_seed(seed, "paired-bootstrap"))
    columns, starts = [], [0]
    for pool in pools:
        members = np.flatnonzero(np.isin(image_strata, pool)).astype(np.int32)
        columns.append(members[rng.integers(0, members.size, size=(samples, members.size))])
        starts.append(starts[-1] + members.size)
    indices = np.concatenate(columns, axis=1) if columns else np.zeros((samples, 0), dtype=np.int32)
    return PairedDraws(indices, tuple(groups), np.asarray(starts), image_strata, seed, pools)


def interval(draws: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[Optional[float], Optional[float]]:
    """Percentile interval of a (B,) array of draws, NaN draws left out; (None, None) when fewer than two remain. (A
    quantity resting only on groups of one image varies in no draw: its interval is a point, and its n says why.)"""
    draws = np.asarray(draws, dtype=np.float64)
    finite = draws[np.isfinite(draws)]
    if finite.size < 2:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def nanmean(values, axis=None):
    """Mean ignoring NaN, NaN (without a warning) where nothing is finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)
