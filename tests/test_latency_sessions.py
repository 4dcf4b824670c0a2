"""Issue 32, defect 7: latency timed in interleaved sessions, a random-effects interval over them, and each
candidate's latency relative to the fastest. Expected values are computed here from the textbook formulas
(two-way layout class x session, sessions random; Satterthwaite's df; Montgomery, Design and Analysis of
Experiments, 13.3 and 13.6), with numpy and scipy.stats.t, never from the code under test."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from reportgen.inputs.config import AnalysisConfig, DecisionSettings
from reportgen.results.schema import Cost, CostReport
from reportgen.scoring.constraints import Check
from reportgen.scoring.decision import decide

from session_inputs import interleaved, run_inputs, session_cost

# Session medians (ms) of three candidates timed in three sessions: session 2 was slow for everyone.
TABLE = {"a": [10.0, 11.5, 10.2], "b": [20.0, 23.9, 21.0], "c": [5.0, 5.9, 5.3]}
PASSES = 7  # each session's passes all equal its median, so the median is exact


def _timings(table):
    return {name: [[m] * PASSES for m in medians] for name, medians in table.items()}


def _two_way_by_hand(table):
    """Mean squares of the class x session layout, by their definitions."""
    y = np.log(np.array(list(table.values())))
    rows, sessions = y.shape
    row_mean = [sum(y[r]) / sessions for r in range(rows)]
    col_mean = [sum(y[:, s]) / rows for s in range(sessions)]
    grand = sum(sum(y)) / (rows * sessions)
    ms_sessions = rows * sum((c - grand) ** 2 for c in col_mean) / (sessions - 1)
    ms_error = sum((y[r, s] - row_mean[r] - col_mean[s] + grand) ** 2
                   for r in range(rows) for s in range(sessions)) / ((rows - 1) * (sessions - 1))
    return y, row_mean, ms_sessions, ms_error


def test_random_effects_interval_matches_the_textbook_formula():
    y, row_mean, ms_s, ms_e = _two_way_by_hand(TABLE)
    rows, sessions = y.shape
    assert ms_s > ms_e  # the case where the session variance component is positive
    # Var(class mean) = (var_session + var_error) / S: the pooled within-class variance of the session medians / S
    within = sum((y[r, s] - row_mean[r]) ** 2 for r in range(rows) for s in range(sessions)) / (rows * (sessions - 1))
    se = math.sqrt(within / sessions)
    # Satterthwaite: (MS_S + (R-1) MS_E)^2 / (MS_S^2 / (S-1) + ((R-1) MS_E)^2 / ((R-1)(S-1)))
    df = (ms_s + (rows - 1) * ms_e) ** 2 / (ms_s ** 2 / (sessions - 1)
                                           + ((rows - 1) * ms_e) ** 2 / ((rows - 1) * (sessions - 1)))
    t = stats.t.ppf(0.975, df)
    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    for r, name in enumerate(TABLE):
        found = decision.candidate(name).latency
        assert found.value == pytest.approx(math.exp(row_mean[r]), rel=1e-12)
        assert found.ci_low == pytest.approx(math.exp(row_mean[r] - t * se), rel=1e-9)
        assert found.ci_high == pytest.approx(math.exp(row_mean[r] + t * se), rel=1e-9)
    assert f"t with {df:.3g} df" in " ".join(decision.notes)


def test_a_lone_candidate_gets_the_one_way_t_interval_of_its_session_medians():
    medians = [10.0, 12.0, 10.5]
    logs = np.log(medians)
    half = stats.t.ppf(0.975, len(medians) - 1) * np.std(logs, ddof=1) / math.sqrt(len(medians))
    found = decide(*run_inputs(interleaved(_timings({"a": medians})))).candidate("a").latency
    assert (found.ci_low, found.ci_high) == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))


def test_a_timing_class_pools_its_members_sessions():
    # twins (one architecture and size) timed in the same sessions: one row, the members' mean in each session
    table = {"stock": [10.0, 11.5, 10.2], "copy": [10.4, 11.9, 10.0]}
    logs = np.log(np.array(list(table.values()))).mean(axis=0)
    half = stats.t.ppf(0.975, 2) * np.std(logs, ddof=1) / math.sqrt(3)
    decision = decide(*run_inputs(interleaved(_timings(table)), architectures={"stock": "x", "copy": "x"}))
    for name in table:
        found = decision.candidate(name).latency
        assert (found.value, found.ci_low, found.ci_high) == pytest.approx(
            (math.exp(logs.mean()), math.exp(logs.mean() - half), math.exp(logs.mean() + half)))


def test_latency_relative_to_the_fastest_has_the_within_session_interval():
    y, row_mean, _, ms_e = _two_way_by_hand(TABLE)
    rows, sessions = y.shape
    # the shared session effect cancels in a difference of two classes: Var = 2 MS_E / S, (R-1)(S-1) df
    half = stats.t.ppf(0.975, (rows - 1) * (sessions - 1)) * math.sqrt(2 * ms_e / sessions)
    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    fastest = int(np.argmin(row_mean))  # c
    for r, name in enumerate(TABLE):
        ratio = decision.candidate(name).latency_vs_fastest
        d = row_mean[r] - row_mean[fastest]
        expected = (1.0, 1.0, 1.0) if r == fastest else (math.exp(d), math.exp(d - half), math.exp(d + half))
        assert (ratio.value, ratio.ci_low, ratio.ci_high) == pytest.approx(expected, rel=1e-9)
    # far narrower than the ms interval: the drift the sessions share (session 2) is not in it
    a = decision.candidate("a")
    assert a.latency_vs_fastest.ci_high / a.latency_vs_fastest.ci_low < a.latency.ci_high / a.latency.ci_low


def test_page_one_shows_the_ratio_to_the_fastest():
    from reportgen.report.decision_page import _latency_cell

    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    assert "fastest" == _latency_cell(decision.candidate("c")).interval.split("; ")[-1]
    assert "×" in _latency_cell(decision.candidate("b")).interval and "the fastest [" in \
        _latency_cell(decision.candidate("b")).interval


def test_the_draws_carry_the_interval_and_cancel_the_shared_drift():
    decision_settings = DecisionSettings(weights={"accuracy": 1.0, "latency": 1.0})
    index, metrics, cost = run_inputs(interleaved(_timings(TABLE)), decision=decision_settings, samples=4000)
    from reportgen.scoring.decision import decision_inputs
    from reportgen.scoring.vectors import run_draws

    draws = run_draws(index)
    values = decision_inputs(index, metrics, cost, draws).values
    latency = values.draws["latency"]  # (B, K)
    decision = decide(index, metrics, cost, draws)
    y, row_mean, _, ms_e = _two_way_by_hand(TABLE)
    for k, name in enumerate(TABLE):
        found = decision.candidate(name).latency
        # Monte Carlo: the 2.5 % and 97.5 % quantiles of 4000 t draws lie within a few per cent of the exact ones
        low, high = np.percentile(latency[:, k], [2.5, 97.5])
        assert low == pytest.approx(found.ci_low, rel=0.05) and high == pytest.approx(found.ci_high, rel=0.05)
    # a difference of two candidates holds only the within-session noise: log-ratio SD near sqrt(2 MS_E / S) x the
    # t's (df / (df - 2))^0.5, far below each one's own spread
    spread = np.std(np.log(latency[:, 1] / latency[:, 0]))
    assert spread < 0.5 * np.std(np.log(latency[:, 0]))


def test_max_latency_ms_reads_the_random_effects_interval():
    decision = decide(*run_inputs(interleaved(_timings(TABLE)),
                                  decision=DecisionSettings(weights={"latency": 1.0}, max_latency_ms=12.0)))
    a = decision.candidate("a")
    assert a.latency.ci_low < 12.0 < a.latency.ci_high  # the passes alone would put a at most 11.5 ms: a pass
    assert [c.outcome for c in a.checks if c.key == "max_latency_ms"] == [Check.UNCERTAIN]
    assert [c.outcome for c in decision.candidate("b").checks if c.key == "max_latency_ms"] == [Check.FAIL]


def test_an_older_cost_json_says_its_drift_is_not_in_the_interval():
    old = Cost(latency_ms_median=10.0, latency_ms_q1=10.0, latency_ms_q3=10.0, latency_repeats=3, images_per_s=1.0,
               throughput_batch_size=1, memory_mb=1.0, memory_method="x", slim_latency_ms_median=None,
               machine=session_cost([[1.0]], [0]).machine, latency_ms_samples=(10.0, 10.1, 9.9))
    decision = decide(*run_inputs({"a": old}))
    assert any("older cost.json" in note and "not in its interval" in note for note in decision.notes)


def test_cost_json_keeps_every_session_and_reads_back_the_same():
    cost = CostReport(interleaved(_timings(TABLE)))
    back = CostReport.from_json(json.loads(json.dumps(cost.to_json())))
    assert back == cost
    positions = sorted((s.position, name, s.session) for name, c in back.backbones.items() for s in c.latency_sessions)
    assert [name for _, name, _ in positions] == ["a", "b", "c"] * 3  # A B C A B C A B C
    assert back.backbones["a"].session_medians_ms == (10.0, 11.5, 10.2)


def test_latency_sessions_is_a_validated_threshold():
    assert AnalysisConfig().latency_sessions >= 2
    with pytest.raises(Exception, match="latency_sessions"):
        AnalysisConfig(latency_sessions=1)
