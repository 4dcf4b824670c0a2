"""Coverage of page 1's probe-accuracy interval (issue 32, review 2026-12-06 defect 2).

The estimand (docs/analyses.md): the expected accuracy, on new images of the same population, of the probe fit on
(k-1)/k of this many images (what k-fold cross-validation estimates: Bates, Hastie & Tibshirani 2023). The interval
is the paired bootstrap's (images resampled, fold models fixed) widened by the variance ratio that refitting the
cross-validation on bootstrap resamples measures (analysis/transfer.py). The review measured 0.86-0.87 for the
bootstrap alone in sim_probe_cov.py's setting (60 images, 3 classes, D = 32, accuracy about 0.58).

The full simulation (that setting, 200 sets: Monte-Carlo SE 0.015 at 0.95) takes minutes on two cores: it is marked
slow and runs with REPORTGEN_SLOW=1. The coverage tier runs a reduced one (45 images, D = 8, 20 sets) within 10 s:
its MC SE at 0.95 is 0.049, so it only catches a gross failure (the tolerance, three SEs, admits the bootstrap
alone's 0.87); the full one separates 0.95 from 0.87.
"""
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from reportgen.analysis.transfer import _pipeline, transfer_measures
from reportgen.scoring.bootstrap import paired_draws
from reportgen.scoring.vectors import interval_of

pytestmark = [pytest.mark.unit, pytest.mark.coverage]

CLASSES, FOLDS = 3, 5


def _coverage(sets: int, per_class: int, d: int, separation: float, refits: int, seed: int) -> tuple:
    """(coverage of the widened interval, coverage of the bootstrap alone, mean ratio) over ``sets`` simulated
    sets; each set's probe is the project's (transfer_measures with its defaults but ``refits``)."""
    rng0 = np.random.default_rng(seed)
    means = rng0.normal(0, separation, size=(CLASSES, d))

    def sample(rng, m):
        y = np.repeat(np.arange(CLASSES), m // CLASSES)
        return means[y] + rng.normal(size=(y.size, d)), y

    n = CLASSES * per_class
    rng = np.random.default_rng(seed + 1)
    x_test, y_test = sample(rng, 3000)
    # The estimand: the probe algorithm fit on 4n/5 images, averaged over 100 training sets (MC SE about 0.007).
    expected = np.mean([np.mean(_pipeline(1.0, 1000).fit(*sample(rng, n * (FOLDS - 1) // FOLDS)).predict(x_test)
                                == y_test) for _ in range(100)])
    draws = paired_draws([0] * n, 1000, seed)
    widened = fixed = 0
    ratios = []
    for r in range(sets):
        x, y = sample(rng, n)
        m = transfer_measures(x, y, CLASSES, seed=r, explain=False, refits=refits)
        correct = (np.argmax(m.probe_probs, axis=1) == y).astype(float)
        wide, plain = interval_of(correct, draws, m.refit_ratio), interval_of(correct, draws)
        widened += wide.ci_low <= expected <= wide.ci_high
        fixed += plain.ci_low <= expected <= plain.ci_high
        ratios.append(m.refit_ratio or 1.0)
    return widened / sets, fixed / sets, float(np.mean(ratios))


def test_probe_interval_covers_the_expected_accuracy_reduced():
    with threadpool_limits(1):  # tiny fits: BLAS threads only contend
        covered, _, ratio = _coverage(sets=20, per_class=15, d=8, separation=0.45, refits=10, seed=5)
    se = np.sqrt(0.95 * 0.05 / 20)
    assert covered >= 0.95 - 3 * se, (covered, ratio)
    assert ratio > 1.0  # refitting widens the interval here


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("REPORTGEN_SLOW"), reason="minutes: set REPORTGEN_SLOW=1")
def test_probe_interval_covers_the_expected_accuracy_full():
    """sim_probe_cov.py's setting, 200 sets. MC SE at 0.95: 0.0154; the band is 2.58 SEs either side (a false alarm
    rate of 1 %). The bootstrap alone covers about 0.87 there (the review: 0.86): under the band."""
    with threadpool_limits(1):
        covered, fixed, ratio = _coverage(sets=200, per_class=20, d=32, separation=0.28, refits=10, seed=123)
    se = np.sqrt(0.95 * 0.05 / 200)
    assert abs(covered - 0.95) <= 2.58 * se, (covered, fixed, ratio)
    assert fixed < 0.95 - 2.58 * se, fixed
