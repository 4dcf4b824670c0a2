"""The change of a share between two candidates scored on the same images (paired binary outcomes): Tango's score
interval for a difference of paired proportions (T. Tango, "Equivalence test and confidence interval for the
difference in proportions for the paired-sample design", Statistics in Medicine 17 (1998) 891-908; the interval
Fagerland, Lydersen and Laake recommend, Statistics in Medicine 33 (2014) 2850-2875).

Of n images labelled for both, ``gained`` are right for the second candidate only and ``lost`` for the first only;
the difference of their accuracies is δ = (gained - lost) / n. The interval is every δ0 that the score test does
not reject, |T(δ0)| <= z, with

    T(δ0) = (gained - lost - n δ0) / sqrt(n (2 q(δ0) + δ0 (1 - δ0)))

and q(δ0) the maximum-likelihood estimate of P(first only) under δ = δ0, the positive root of
2n q² + (-(gained + lost) + (2n - gained + lost) δ0) q - lost δ0 (1 - δ0) = 0. T decreases in δ0, so each limit
is one root. Unlike the percentile bootstrap of the paired differences it replaced for the gate (issue 32: a Wald
interval in effect, [0, 0] when no image is discordant, and a regression at the limit passed 2-5 times too often),
it is never zero-width: with no discordant image it is ±z²/(n + z²). Pure Python and scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from scipy.optimize import brentq
from scipy.special import ndtri  # the normal quantile (scipy.stats, imported with torch blocked, fails)

# the limits are found inside (-1, 1): T is infinite at ±1 unless every image is discordant one way
_EDGE = 1e-13


@dataclass(frozen=True)
class PairedChange:
    """The second candidate's accuracy minus the first's on the images labelled for both, with Tango's interval."""
    value: float
    ci_low: float
    ci_high: float
    gained: int  # images right for the second only
    lost: int  # images right for the first only
    images: int  # images labelled for both


def _score(delta: float, gained: int, lost: int, n: int) -> float:
    """Tango's T(δ0)."""
    a = 2 * n
    b = -gained - lost + (2 * n - gained + lost) * delta
    c = -lost * delta * (1 - delta)
    first_only = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    variance = n * (2 * first_only + delta * (1 - delta))
    difference = gained - lost - n * delta
    if variance <= 0:  # δ0 = 0 with no discordant image: 0/0, whose limit is 0 (nothing against δ0)
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    return difference / math.sqrt(variance)


def tango_interval(gained: int, lost: int, n: int, level: float) -> tuple[float, float]:
    """Two-sided ``level`` interval for (second's accuracy - first's) on ``n`` paired images; each limit is a
    one-sided (1 + level) / 2 bound."""
    if n <= 0 or gained < 0 or lost < 0 or gained + lost > n:
        raise ValueError(f"paired counts gained={gained}, lost={lost} of n={n} are not a paired table")
    z = float(ndtri((1 + level) / 2))
    low = -1.0 if lost == n else brentq(lambda d: _score(d, gained, lost, n) - z, -1 + _EDGE, 1 - _EDGE, xtol=1e-14)
    high = 1.0 if gained == n else brentq(lambda d: _score(d, gained, lost, n) + z, -1 + _EDGE, 1 - _EDGE,
                                          xtol=1e-14)
    return float(low), float(high)


def paired_change(first: Sequence[Optional[bool]], second: Sequence[Optional[bool]],
                  level: float) -> Optional[PairedChange]:
    """Accuracy of ``second`` minus ``first`` over the images both have an outcome for (None: no label, or no
    prediction scored), with Tango's interval; None when no image has both."""
    pairs = [(bool(x), bool(y)) for x, y in zip(first, second) if x is not None and y is not None]
    if not pairs:
        return None
    gained = sum(1 for x, y in pairs if y and not x)
    lost = sum(1 for x, y in pairs if x and not y)
    low, high = tango_interval(gained, lost, len(pairs), level)
    return PairedChange(value=(gained - lost) / len(pairs), ci_low=low, ci_high=high, gained=gained, lost=lost,
                        images=len(pairs))
