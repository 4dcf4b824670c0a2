"""Coverage tier (issue 32, defect 6): the gate's paired accuracy change (challenger - champion on the images
labelled for both) and its interval, simulated where the truth is known.

The review's settings (t_drop.py): n images, each right for the champion only with probability p_lost and for the
challenger only with p_gained, so the true change is delta = p_gained - p_lost, and max_accuracy_drop is set exactly
at the true drop (-delta). "pass" (the interval's lower limit above -max_accuracy_drop, i.e. above delta) must then
happen at most (1 - 0.95) / 2 = 2.5 % of the time; the percentile bootstrap it replaced passed 3.1-12.4 %. The
two-sided 95 % interval the gate's row and page 1 show must cover delta 95 % of the time.

Monte-Carlo error: with R = 4000 sets per setting, a rate p has standard error sqrt(p (1 - p) / R): 0.0025 at
p = 0.025 and 0.0034 at p = 0.95. Each check allows three standard errors (a false alarm about once in 700 runs
per check if the interval were exactly nominal; the draws are seeded, so the outcome is fixed). Exact rates, by
summing the multinomial over every table (for the record, not asserted here): pass 0.016, 0.026, 0.000, 0.020 and
coverage 0.952, 0.945, 0.986, 0.948 for the four settings below.
"""
import math

import numpy as np
import pytest

from reportgen.scoring.paired import paired_change

pytestmark = [pytest.mark.unit, pytest.mark.coverage]

LEVEL = 0.95
SETS = 4000
SETTINGS = [  # (n, P(champion only right), P(challenger only right))
    (100, 0.03, 0.01),
    (100, 0.06, 0.04),
    (50, 0.04, 0.0),
    (300, 0.03, 0.01),
]


def _allowance(p: float) -> float:
    return 3 * math.sqrt(p * (1 - p) / SETS)


def _simulated(n: int, p_lost: float, p_gained: float, seed: int) -> tuple:
    """(share of sets the gate passes at max_accuracy_drop = the true drop, share whose interval covers it)."""
    rng = np.random.default_rng(seed)
    delta = p_gained - p_lost
    tables = rng.multinomial(n, [p_lost, p_gained, 1 - p_lost - p_gained], size=SETS)[:, :2]
    limits = {}
    for lost, gained in {tuple(t) for t in tables.tolist()}:
        # per-image outcomes as the gate reads them: lost images right for the champion only, gained for the
        # challenger only, the rest agreeing (half both right, half both wrong)
        agree = n - lost - gained
        champion = [True] * lost + [False] * gained + [True] * (agree // 2) + [False] * (agree - agree // 2)
        challenger = [False] * lost + [True] * gained + [True] * (agree // 2) + [False] * (agree - agree // 2)
        change = paired_change(champion, challenger, LEVEL)
        assert change.value == pytest.approx((gained - lost) / n) and change.images == n
        limits[lost, gained] = (change.ci_low, change.ci_high)
    low, high = np.array([limits[tuple(t)] for t in tables.tolist()]).T
    passed = float(np.mean(low > delta))  # lower limit above -max_accuracy_drop = delta
    covered = float(np.mean((low <= delta) & (delta <= high)))
    return passed, covered


@pytest.mark.parametrize("n, p_lost, p_gained", SETTINGS)
def test_a_regression_at_the_limit_passes_at_most_2_5_percent_and_the_interval_covers(n, p_lost, p_gained):
    passed, covered = _simulated(n, p_lost, p_gained, seed=n * 1000 + round(p_lost * 100) * 10 + round(p_gained * 100))
    one_sided = (1 - LEVEL) / 2
    assert passed <= one_sided + _allowance(one_sided), (n, p_lost, p_gained, passed)
    assert covered >= LEVEL - _allowance(LEVEL), (n, p_lost, p_gained, covered)


def test_no_discordant_image_never_gives_a_zero_width_interval():
    for n in (10, 50, 100, 300):
        agree = [True] * (n // 2) + [False] * (n - n // 2)
        change = paired_change(agree, agree, LEVEL)
        assert change.ci_low < 0 < change.ci_high, (n, change)
