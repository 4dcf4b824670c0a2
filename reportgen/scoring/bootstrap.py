"""The one bootstrap behind every interval, comparison and win probability of a report.

A draw resamples the *images* (the unit the numbers vary over), once, for everything: every backbone, family and
criterion reads the same draw, so differences between them are paired (the noise they share cancels) and a family
is compared with another on the same images. Draws are stratified by the groups the numbers need (object size,
background, labelled or not, boxed or not): each draw keeps every group's image count, so no draw loses a group
(with 1 small image in 24, a third of unstratified draws would have none). Timing noise enters the same draws: each
draw also resamples every backbone's timed latency passes. The draws depend only on the run's seed and the images'
groups, so adding a backbone changes no other backbone's interval, and the same inputs give the same numbers.
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
    """``indices[b]`` is draw b: image positions, columns grouped by stratum (stratum s fills the columns
    ``starts[s]:starts[s + 1]`` and always holds that stratum's images, drawn with replacement)."""
    indices: np.ndarray  # (B, N) int32
    strata: tuple  # stratum key per stratum, in column order
    starts: np.ndarray  # (S + 1,) column offsets
    image_strata: np.ndarray  # (N,) stratum number of each image
    seed: int

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
        starts = self.starts[:-1]
        return (np.add.reduceat(np.where(finite, drawn, 0.0), starts, axis=1),
                np.add.reduceat(finite, starts, axis=1).astype(np.float64))

    def means(self, values: np.ndarray, members: Optional[np.ndarray] = None) -> np.ndarray:
        """(B,) mean of ``values`` over each draw's images (NaN: the draw holds none with a value). ``members``: a
        boolean mask of the images that belong to the group (default: all)."""
        values = np.asarray(values, dtype=np.float64)
        if members is not None:
            values = np.where(members, values, np.nan)
        sums, counts = self.stratum_sums(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums.sum(axis=1) / counts.sum(axis=1)

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


def paired_draws(strata: Sequence[Hashable], samples: int, seed: int) -> PairedDraws:
    """``samples`` stratified draws over images whose groups are ``strata`` (one key per image)."""
    keys = list(strata)
    groups = sorted(set(keys), key=repr)
    number = {group: n for n, group in enumerate(groups)}
    image_strata = np.array([number[k] for k in keys], dtype=np.int32)
    rng = np.random.default_rng(stable_seed(seed, "paired-bootstrap"))
    columns, starts = [], [0]
    for n in range(len(groups)):
        members = np.flatnonzero(image_strata == n).astype(np.int32)
        columns.append(members[rng.integers(0, members.size, size=(samples, members.size))])
        starts.append(starts[-1] + members.size)
    indices = np.concatenate(columns, axis=1) if columns else np.zeros((samples, 0), dtype=np.int32)
    return PairedDraws(indices, tuple(groups), np.asarray(starts), image_strata, seed)


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
