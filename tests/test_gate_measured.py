"""Issue 32, the gate (review of 2026-12-06, defects 4, 5 and 6), on hand-made decisions (no model):

- "not measured" is its own outcome and always counts as fail (defect 5: it was uncertain, so on_uncertain = "pass"
  passed a challenger that scored no labelled image);
- max_accuracy_drop reads Tango's score interval for a difference of paired proportions (defect 6: a percentile
  bootstrap of the paired differences, [0, 0] with no discordant image), checked against published and hand-computed
  values; its coverage is simulated in test_coverage_accuracy_drop.py;
- a third candidate never changes a champion/challenger row (defect 4: one lacking faithfulness removed it from the
  pair's comparison too)."""
import math

import numpy as np
import pytest
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import norm

from test_gate import _judged

from reportgen.inputs.config import DecisionSettings, GateSettings
from reportgen.scoring.constraints import Check
from reportgen.scoring.paired import paired_change, tango_interval

N = 24  # test_decision's hand-made run


# --- Tango's interval against the reference ---------------------------------------------------------------------------

def test_tango_interval_matches_the_published_example():
    """Fagerland, Lydersen and Laake, "Statistical Analysis of Contingency Tables" (2017), chapter 8 (the paired 2x2
    table), complete response before and after consolidation therapy (Cavo et al. 2012): n11 = 59, n12 = 6,
    n21 = 16, n22 = 80; Tango's asymptotic score interval for p1+ - p+1 = (6 - 16) / 161 = -0.0621 is
    (-0.1240, -0.0054) at 95 %."""
    low, high = tango_interval(gained=6, lost=16, n=161, level=0.95)
    assert (round(low, 4), round(high, 4)) == (-0.1240, -0.0054)


def _restricted_loglik_max(q, n12, n21, n, delta):
    """Negative multinomial log-likelihood of (n12, n21, rest) at P(21) = q, P(12) = q + delta."""
    p12, p21 = q + delta, q
    rest = 1 - p12 - p21
    if min(p12, p21, rest) < 0:
        return math.inf
    terms = [(n12, p12), (n21, p21), (n - n12 - n21, rest)]
    return -sum(k * math.log(p) for k, p in terms if k > 0)


def _by_hand(n12, n21, n, level):
    """Tango (1998) from its definition, step by step, without the closed-form root: the restricted MLE of P(21)
    under delta by numerical maximisation of the likelihood, the score statistic, and each limit as the root of
    T(delta) = +-z found by a root finder."""
    z = norm.ppf((1 + level) / 2)

    def statistic(delta):
        lowest = max(0.0, -delta)
        highest = (1 - delta) / 2
        found = minimize_scalar(_restricted_loglik_max, bounds=(lowest, highest), method="bounded",
                                args=(n12, n21, n, delta), options={"xatol": 1e-13})
        q = found.x
        return (n12 - n21 - n * delta) / math.sqrt(n * (2 * q + delta * (1 - delta)))

    low = brentq(lambda d: statistic(d) - z, -0.999999, (n12 - n21) / n, xtol=1e-12)
    high = brentq(lambda d: statistic(d) + z, (n12 - n21) / n, 0.999999, xtol=1e-12)
    return low, high


@pytest.mark.parametrize("n12, n21, n", [(1, 7, 21), (6, 16, 161), (3, 0, 50), (2, 5, 100), (12, 4, 300)])
def test_tango_interval_equals_the_definition_solved_numerically(n12, n21, n):
    """Bentur et al. 2009 (Fagerland et al.'s other example, 1 / 7 of 21) and a few gate-sized tables."""
    assert tango_interval(n12, n21, n, 0.95) == pytest.approx(_by_hand(n12, n21, n, 0.95), abs=2e-6)


def test_no_discordant_image_gives_an_interval_of_width_two_z_squared_over_n_plus_z_squared():
    """By hand: with n12 = n21 = 0 the restricted MLE is P(21) = max(0, -delta), so T(delta) = sqrt(n|delta| /
    (1 - |delta|)) and T = z at |delta| = z^2 / (n + z^2): never [0, 0], as the percentile bootstrap gave."""
    z = norm.ppf(0.975)
    for n in (24, 50, 300):
        bound = z * z / (n + z * z)
        assert tango_interval(0, 0, n, 0.95) == pytest.approx((-bound, bound), rel=1e-9)
    change = paired_change([True] * 10 + [False] * 14, [True] * 10 + [False] * 14, 0.95)
    assert change.value == 0.0 and change.ci_low < -0.1 and change.ci_high > 0.1 and change.images == 24


def test_paired_change_counts_only_images_labelled_for_both():
    first = [True, True, False, None, True, False]
    second = [True, False, True, True, None, False]
    change = paired_change(first, second, 0.95)
    assert (change.gained, change.lost, change.images, change.value) == (1, 1, 4, 0.0)
    assert paired_change([None, True], [True, None], 0.95) is None


# --- the gate's rows ----------------------------------------------------------------------------------------------

def test_a_copy_of_the_champion_is_not_shown_to_lose_at_most_one_point_on_24_images(monkeypatch):
    """Both right on the same 14 of 24 images: the percentile bootstrap gave [0, 0] and passed max_accuracy_drop =
    0.01. 24 agreeing images do not show that: Tango's interval is ±0.138 (z² / (24 + z²)), uncertain."""
    specs = {"a": (5.0, 0.6, 2.0, 20.0), "b": (5.0, 0.6, 2.0, 20.0)}
    _, gate, _ = _judged(monkeypatch, specs, GateSettings(champion="a", max_accuracy_drop=0.01))
    (row,) = gate.rows
    z = norm.ppf(0.975)
    assert row.value == 0.0 and row.ci_low == pytest.approx(-z * z / (N + z * z)) and row.outcome == "uncertain"
    assert "Tango" in row.text and "on 24 images labelled for both" in row.text


def test_the_accuracy_row_passes_and_fails_on_tango_s_limits(monkeypatch):
    """24 images, by hand: b loses 0 and gains 6 (+25 points), Tango's lower limit well above -0.05: pass; b loses 8
    and gains 0 (-33 points), the upper limit below -0.05: fail."""
    champion = [i < 12 for i in range(N)]
    better = [i < 18 for i in range(N)]
    worse = [i < 4 for i in range(N)]
    settings = GateSettings(champion="a", max_accuracy_drop=0.05)
    specs = {"a": (5.0, 0.5, 2.0, 20.0), "b": (5.0, 0.5, 2.0, 20.0)}
    for challenger, outcome, gained, lost in ((better, "pass", 6, 0), (worse, "fail", 0, 8)):
        _, gate, _ = _judged(monkeypatch, specs, settings, correct={"a": champion, "b": challenger})
        (row,) = gate.rows
        low, high = tango_interval(gained, lost, N, 0.95)
        assert (row.ci_low, row.ci_high, row.value) == (low, high, (gained - lost) / N)
        assert row.outcome == outcome and row.counts_as == outcome, row


def test_not_measured_is_its_own_outcome_and_always_fails(monkeypatch):
    """The review's t_gate_nm.py: the challenger scores no labelled image and max_accuracy_drop = 0.02 with
    on_uncertain = "pass". The row said "uncertain counts as pass" and the gate passed on nothing measured."""
    specs = {"prod": (5.0, 0.8, 2.0, 10.0), "new": (5.0, 0.8, 2.0, 10.0)}
    unscored = {"new": [None] * N}
    settings = GateSettings(champion="prod", max_accuracy_drop=0.02, on_uncertain="pass")
    _, gate, _ = _judged(monkeypatch, specs, settings, correct=unscored)
    (row,) = gate.rows
    assert row.outcome == Check.NOT_MEASURED == "not measured" and row.counts_as == "fail" and not gate.passed
    assert "not measured" in row.text and "labelled images" in row.text and row.value is None
    # a constraint that cannot be measured: not met, shown as not measured (the degenerate check, which would fail
    # predictions all of one class, needs more images than 24 here)
    _, gate, _ = _judged(monkeypatch, specs, GateSettings(champion="prod", constraints="pass", on_uncertain="pass"),
                         DecisionSettings(min_top1=0.5, degenerate_min_images=1000), correct=unscored)
    (row,) = gate.rows
    assert row.outcome == "not measured" and row.counts_as == "fail" and not gate.passed
    assert "no labelled images to measure top-1" in row.text and "remove the limit" in row.text
    # no criterion for both: P(better) is not measured
    only_accuracy = DecisionSettings(weights={"accuracy": 1.0, "localisation": 0.0, "clutter": 0.0,
                                              "calibration": 0.0, "corruption": 0.0, "faithfulness": 0.0,
                                              "latency": 0.0, "size": 0.0})
    _, gate, _ = _judged(monkeypatch, specs, GateSettings(champion="prod", min_p_better=0.9, on_uncertain="pass"),
                         only_accuracy, correct=unscored)
    (row,) = gate.rows
    assert row.outcome == "not measured" and row.counts_as == "fail" and row.value is None and not gate.passed
    assert "P(better) is not measured" in row.text


def test_junit_and_page_one_say_not_measured_and_what_to_do(monkeypatch, tmp_path):
    from junitparser import Failure, JUnitXml

    from reportgen.report.ci import junit_xml
    from reportgen.report.decision_page import _gate, gate_cells

    specs = {"prod": (5.0, 0.8, 2.0, 10.0), "new": (5.0, 0.8, 2.0, 10.0)}
    _, gate, _ = _judged(monkeypatch, specs, GateSettings(champion="prod", max_accuracy_drop=0.02,
                                                           on_uncertain="pass"), correct={"new": [None] * N})
    path = tmp_path / "gate.xml"
    path.write_bytes(junit_xml(gate))
    (case,) = list(next(iter(JUnitXml.fromfile(str(path)))))
    (failure,) = [r for r in case.result if isinstance(r, Failure)]
    assert failure.type == "not measured" and "give labelled images" in failure.message
    assert "not measured counts as failed whatever on_uncertain says" in failure.text
    sentence = "".join(part.text for part in _gate(gate))
    assert "Gate FAILS" in sentence and "1 not measured, which always counts as fail" in sentence
    (cells,) = gate_cells(gate)  # the table of page 1 and of the job summary: why, in place of a number
    assert cells.outcome == "not measured" and cells.counts_as == "fail" and "give labelled images" in cells.value


def test_a_third_candidate_without_faithfulness_leaves_the_pair_s_row(monkeypatch):
    """The review's t_gate3.py: a and b share accuracy, size and localisation, b is more faithful (ROAD gap 0.15
    against 0.02), latency about equal. b against a: pass. A dominated c (80 M parameters, 300 ms, less accurate)
    without faithfulness joined: the decision left faithfulness out for everyone, and with it the gate, whose
    P(better) fell to a coin toss on latency. The pair is compared on what both have: the row stays, to the byte."""
    gaps = {"a": list(0.02 + 0.02 * np.sin(np.arange(N))), "b": list(0.15 + 0.02 * np.cos(np.arange(N)))}
    pair = {"a": (5.0, 0.66, 2.0, 10.0), "b": (5.0, 0.66, 2.0, 10.0)}
    settings = GateSettings(champion="a", min_p_better=0.9, max_accuracy_drop=0.05)
    _, alone, _ = _judged(monkeypatch, pair, settings, gaps=gaps)
    decision, joined, _ = _judged(monkeypatch, {**pair, "c": (80.0, 0.4, 1.1, 300.0)}, settings, gaps=gaps)
    assert "faithfulness" not in decision.weights and decision.candidate("c").p_best == 0
    rows = {r.condition: r for r in alone.rows}
    assert rows["min_p_better"].value == 1.0 and rows["min_p_better"].outcome == "pass"
    assert [r for r in joined.rows if r.challenger == "b"] == list(alone.rows)


# the untimed candidate's median of no pass (the test's cost record; a run's has latency_ms_median None)
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide:RuntimeWarning")
def test_a_third_candidate_without_latency_leaves_the_busy_rule_of_a_pair(monkeypatch):
    """test_gate's copy timed faster on a busy machine: P(better) 1.0 on latency alone, uncertain. A third
    candidate without a timing (worse on everything else) made the decision leave latency out, which turned the
    busy rule off for the pair while its row still weighed latency: a pass. The busy timings are the run's, not the
    decision's."""
    rng = np.random.default_rng(3)
    specs = {"stock": (5.0, 0.6, 2.0, 19.0), "twin": (5.0, 0.6, 2.0, 13.0)}
    samples = {"stock": 19.0 + 0.3 * rng.standard_normal(30), "twin": 13.0 + 0.3 * rng.standard_normal(30)}
    settings = GateSettings(champion="stock", min_p_better=0.9)
    loads = {"stock": 1.5, "twin": 1.5}
    _, alone, _ = _judged(monkeypatch, specs, settings, latency_samples=samples, loads=loads)
    (row,) = alone.rows
    assert row.value == 1.0 and row.outcome == "uncertain" and "busy machine" in row.text, row
    decision, joined, _ = _judged(monkeypatch, {**specs, "untimed": (50.0, 0.2, 1.1, 90.0)}, settings,
                                  latency_samples={**samples, "untimed": ()}, loads=loads)
    assert "latency" not in decision.weights
    assert [r for r in joined.rows if r.challenger == "twin"] == [row]


def test_p_better_reads_a_draw_as_page_1_does_a_candidate_without_a_score_there_loses_it():
    """A draw where the champion lacks a value (its score NaN, as for page 1's P(best)) is a draw the challenger
    wins; one where the challenger lacks it, a draw it does not; draws where neither has a score decide nothing.
    Counted by hand over 10 draws."""
    from reportgen.scoring.bootstrap import paired_draws
    from reportgen.scoring.criteria import CriterionValues
    from reportgen.scoring.gate import _p_better

    draws = paired_draws([0] * 4, 10, 0)
    champion = np.array([0.5, 0.5, 0.5, np.nan, np.nan, 0.5, 0.5, 0.5, np.nan, 0.5])
    challenger = np.array([0.6, 0.4, np.nan, 0.6, np.nan, 0.6, 0.4, 0.6, 0.4, 0.6])
    raw = CriterionValues(point={"accuracy": np.array([0.5, 0.6])},
                          draws={"accuracy": np.stack([champion, challenger], axis=1)})
    p, _ = _p_better(raw, {"accuracy": 1.0}, 0, 1, draws, 0.0)
    # decided: every draw but the 5th (9); better: draws 1, 4 (champion NaN), 6, 8, 9 (champion NaN), 10 -> 6 of 9
    assert p == pytest.approx(6 / 9)
