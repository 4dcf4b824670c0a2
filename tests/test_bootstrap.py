"""The one paired, stratified bootstrap behind every interval: one set of image indices per draw for every
backbone, family and criterion; every group resampled alone kept in every draw (groups under the minimum size are
pooled: tests/test_calibration_stats.py); timing and weights resampled in the same draws."""
import numpy as np
import pytest

from reportgen.scoring.bootstrap import interval, paired_draws, stable_seed


@pytest.mark.parametrize("seed", range(5))
def test_one_index_set_per_draw_serves_every_vector(seed):
    """Property: two backbones' means in a draw come from the very same images, so a constant offset between their
    per-image values reappears exactly in every draw, and a value that differs only on images a draw did not pick
    cannot move that draw."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    strata = [tuple(rng.choice(["small", "medium", "large"], 1)) for _ in range(n)]
    draws = paired_draws(strata, 200, seed)
    first = rng.normal(size=n)
    second = first + 0.75
    assert np.allclose(draws.means(second) - draws.means(first), 0.75)
    for b in range(0, 200, 37):
        untouched = np.setdiff1d(np.arange(n), draws.indices[b])
        if untouched.size:
            changed = first.copy()
            changed[untouched] += 100.0
            assert draws.means(changed)[b] == pytest.approx(draws.means(first)[b])
    paired = draws.means(np.where(np.arange(n) % 2 == 0, first, np.nan))
    by_hand = [np.nanmean(np.where(np.arange(n) % 2 == 0, first, np.nan)[row]) for row in draws.indices]
    assert np.allclose(paired, by_hand, equal_nan=True)


def test_every_draw_keeps_every_group_at_its_size():
    """1 small image in 24, every group alone (min_stratum 1): unstratified, a third of the draws would have none;
    here every draw has exactly one."""
    strata = ["small"] + ["large"] * 23
    draws = paired_draws(strata, 500, 0)
    small = np.array(strata) == "small"
    assert all(small[row].sum() == 1 for row in draws.indices)
    values = np.where(small, 3.0, 1.0)
    assert np.all(draws.means(values, small) == 3.0)


def test_draws_are_seeded_by_the_run_seed_and_the_groups_only():
    strata = ["a", "b", "a", "c", "b"] * 4
    one, again, other = paired_draws(strata, 50, 3), paired_draws(strata, 50, 3), paired_draws(strata, 50, 4)
    assert np.array_equal(one.indices, again.indices) and not np.array_equal(one.indices, other.indices)
    samples = [10.0, 11.0, 9.5, 10.2, 12.0]
    assert np.array_equal(one.resampled_medians(samples, "x"), again.resampled_medians(samples, "x"))
    assert not np.array_equal(one.resampled_medians(samples, "x"), one.resampled_medians(samples, "y"))
    assert set(np.unique(one.resampled_medians(samples, "x"))) <= set(samples)
    weights = one.criterion_weights({"a": 2.0, "b": 1.0}, 0.0, "k")
    assert np.all(weights["a"] == 2.0)
    drawn = one.criterion_weights({"a": 2.0}, 0.3, "k")["a"]
    assert drawn.std() > 0 and 1.5 < drawn.mean() < 2.5 and stable_seed(3, "k") == stable_seed(3, "k")


def test_interval_leaves_out_draws_without_a_value():
    assert interval(np.array([np.nan, 1.0])) == (None, None)
    low, high = interval(np.concatenate([np.linspace(0, 1, 101), [np.nan] * 10]))
    assert low == pytest.approx(0.025) and high == pytest.approx(0.975)
