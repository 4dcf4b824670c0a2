"""The intervals page 1 shows for a share of images (an accuracy) and for the top-1 Brier score, which hinges on
the share of wrong answers. The run's paired bootstrap draws stay what P(best) and the gate compare; only the
interval shown (and checked against a constraint) is widened here where the draws' percentile interval claims more
precision than it has (issue 32, review of 2026-12-06).

Accuracy. The percentile interval of a proportion's bootstrap covers 0.948-0.960 for n >= 100, but only 0.873 at
n = 40, p = 0.95, and 40 of 40 right gives [1, 1]: a resample can never hold a wrong answer the sample lacks. The
shown interval is the exact binomial (Clopper & Pearson 1934) interval, whose coverage is at least the nominal
level at every n and p, widened to the draws' interval where that is wider (a cross-validated probe's draws carry
its refitting noise). Wilson's score interval, the usual recommendation for its average coverage (Brown, Cai &
DasGupta 2001), falls to 0.930 at n = 30, p = 0.7 and 0.936 at n = 100, p = 0.9 (exact binomial sums): below the
level page 1 states, so not used.

Top-1 Brier score. Per image (c - y)^2 with c the top-1 confidence, y = 1 when right: the mean is
(1 - e) R + e W, with e the share of wrong answers, R the right answers' mean (1 - c)^2 and W the wrong ones' mean
c^2. For a good, confident model the wrong answers are rare and costly (W near 1, R near 0), so the score rests on
a rare count, and its bootstrap fails the same way as accuracy's: coverage 0.68 at n = 50 and 97.7 % right, 0.39 at
99 % (tests/test_coverage_task.py). The shown interval also spans the score over e's exact interval, R and W held
at the sample's values (with no wrong answer, W is every image's mean c^2: what a wrong answer at the model's usual
confidence costs; wrong answers are on average less confident, so this errs wide).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

Bounds = tuple[Optional[float], Optional[float]]


def exact_interval(successes: int, n: int, level: float) -> Bounds:
    """Clopper-Pearson interval of a binomial proportion: the beta quantiles (alpha/2 of Beta(k, n - k + 1), 1 -
    alpha/2 of Beta(k + 1, n - k)), 0 and 1 at the ends; (None, None) without trials."""
    if n <= 0:
        return None, None
    from scipy.special import betaincinv  # only when a share is shown

    tail = (1.0 - level) / 2.0
    low = float(betaincinv(successes, n - successes + 1, tail)) if successes > 0 else 0.0
    high = float(betaincinv(successes + 1, n - successes, 1.0 - tail)) if successes < n else 1.0
    return low, high


def _hull(low: Optional[float], high: Optional[float], *bounds: float) -> Bounds:
    """The smallest interval holding the draws' (low, high; None: none) and every one of ``bounds``."""
    ends = [b for b in bounds if b is not None] + [b for b in (low, high) if b is not None]
    return (min(ends), max(ends)) if ends else (None, None)


def share_interval(share: Optional[float], n: int, low: Optional[float], high: Optional[float],
                   level: float) -> Bounds:
    """The interval shown for a share of ``n`` images (``share`` = successes / n) whose draws' percentile interval
    is (``low``, ``high``): the exact binomial interval, widened to the draws' where they are wider."""
    if share is None or not np.isfinite(share) or n <= 0:
        return low, high
    return _hull(low, high, *exact_interval(int(round(share * n)), n, level))


def brier_interval(confidence: np.ndarray, correct: np.ndarray, low: Optional[float], high: Optional[float],
                   level: float) -> Bounds:
    """The interval shown for the top-1 Brier score of the images with a label (``correct`` 1/0, NaN: none),
    whose draws' percentile interval is (``low``, ``high``): widened to hold (1 - e) R + e W at both ends of the
    share of wrong answers e's exact interval (module docstring)."""
    have = np.isfinite(correct)
    n = int(have.sum())
    if n == 0:
        return low, high
    c, right = np.asarray(confidence, dtype=np.float64)[have], np.asarray(correct)[have] == 1
    wrong = int(n - right.sum())
    r = float(np.mean((1.0 - c[right]) ** 2)) if right.any() else 0.0
    w = float(np.mean(c[~right] ** 2)) if wrong else float(np.mean(c ** 2))
    e_low, e_high = exact_interval(wrong, n, level)
    return _hull(low, high, (1.0 - e_low) * r + e_low * w, (1.0 - e_high) * r + e_high * w)
