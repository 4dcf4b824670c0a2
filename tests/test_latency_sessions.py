"""Issue 32, defect 7: latency timed in interleaved sessions, a random-effects interval over them, and each
candidate's latency relative to the fastest. Expected values are computed here from the textbook one-way
random-effects (ANOVA) interval of a mean of S session values, mean +- t(S - 1) s / sqrt(S) on the log scale
(e.g. Montgomery, Design and Analysis of Experiments, 3.9), with numpy and scipy.stats.t, never from the code under
test."""
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


def _by_hand(medians, level=0.95):
    """exp(mean +- t(S-1) s / sqrt(S)) of the log session medians."""
    logs = [math.log(m) for m in medians]
    n = len(logs)
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    half = stats.t.ppf((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def test_random_effects_interval_matches_the_textbook_formula():
    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    for name, medians in TABLE.items():
        found = decision.candidate(name).latency
        assert (found.value, found.ci_low, found.ci_high) == pytest.approx(_by_hand(medians), rel=1e-9)
    # at 90 % as well (the decision's confidence)
    at_90 = decide(*run_inputs(interleaved(_timings(TABLE)),
                               decision=DecisionSettings(weights={"latency": 1.0}, confidence=0.90)))
    found = at_90.candidate("a").latency
    assert (found.value, found.ci_low, found.ci_high) == pytest.approx(_by_hand(TABLE["a"], 0.90), rel=1e-9)
    assert "t with 2 df" in " ".join(decision.notes)


def test_a_timing_class_pools_its_members_sessions():
    # twins (one architecture and size) timed in the same sessions: one latency, the members' mean in each session
    table = {"stock": [10.0, 11.5, 10.2], "copy": [10.4, 11.9, 10.0]}
    cells = [math.exp((math.log(a) + math.log(b)) / 2) for a, b in zip(*table.values())]
    decision = decide(*run_inputs(interleaved(_timings(table)), architectures={"stock": "x", "copy": "x"}))
    for name in table:
        found = decision.candidate(name).latency
        assert (found.value, found.ci_low, found.ci_high) == pytest.approx(_by_hand(cells), rel=1e-9)


def test_latency_relative_to_the_fastest_has_the_within_session_interval():
    # the session effect cancels in a ratio of two candidates timed in the same sessions: the one-way interval of
    # the S within-session ratios
    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    for name in TABLE:
        ratio = decision.candidate(name).latency_vs_fastest
        expected = (1.0, 1.0, 1.0) if name == "c" else _by_hand([x / y for x, y in zip(TABLE[name], TABLE["c"])])
        assert (ratio.value, ratio.ci_low, ratio.ci_high) == pytest.approx(expected, rel=1e-9)
    # far narrower than the ms interval: the drift the sessions share (session 2) is not in it
    a = decision.candidate("a")
    assert math.log(a.latency_vs_fastest.ci_high / a.latency_vs_fastest.ci_low) < \
        0.5 * math.log(a.latency.ci_high / a.latency.ci_low)


def test_another_candidate_changes_no_latency_interval_or_draw():
    """Each class is estimated from its own sessions: adding a candidate (or reordering the battery) leaves every
    other candidate's latency, interval and draws as they were."""
    from reportgen.scoring.decision import decision_inputs
    from reportgen.scoring.vectors import run_draws

    def latency_of(table):
        index, metrics, cost = run_inputs(interleaved(_timings(table)))
        values = decision_inputs(index, metrics, cost, run_draws(index)).values
        names = [b.name for b in index.backbones]
        return {n: (values.draws["latency"][:, k].tolist(), values.exact("latency", k)) for k, n in enumerate(names)}

    pair = latency_of({"a": TABLE["a"], "b": TABLE["b"]})
    three = latency_of({"c": TABLE["c"], "b": TABLE["b"], "a": TABLE["a"]})
    assert pair["a"] == three["a"] and pair["b"] == three["b"]


def test_page_one_shows_the_ratio_to_the_fastest():
    from reportgen.report.decision_page import _latency_cell

    decision = decide(*run_inputs(interleaved(_timings(TABLE))))
    assert "fastest" == _latency_cell(decision.candidate("c")).interval.split("; ")[-1]
    assert "×" in _latency_cell(decision.candidate("b")).interval and "the fastest [" in \
        _latency_cell(decision.candidate("b")).interval


def test_the_draws_carry_the_interval_and_cancel_the_shared_drift():
    index, metrics, cost = run_inputs(interleaved(_timings(TABLE)), samples=4000)
    from reportgen.scoring.decision import decision_inputs
    from reportgen.scoring.vectors import run_draws

    draws = run_draws(index)
    values = decision_inputs(index, metrics, cost, draws).values
    latency = values.draws["latency"]  # (B, K)
    decision = decide(index, metrics, cost, draws)
    # Monte Carlo: the 2.5 % and 97.5 % quantiles of 4000 t(2) draws; their SE is about 3 % of the half-width here
    for k, name in enumerate(TABLE):
        found = decision.candidate(name).latency
        low, high = np.percentile(latency[:, k], [2.5, 97.5])
        assert low == pytest.approx(found.ci_low, rel=0.05) and high == pytest.approx(found.ci_high, rel=0.05)
    # a ratio of two candidates' draws is the ratio interval's t draw: the shared drift cancels
    ratio = decision.candidate("a").latency_vs_fastest
    low, high = np.percentile(latency[:, 0] / latency[:, 2], [2.5, 97.5])
    assert low == pytest.approx(ratio.ci_low, rel=0.02) and high == pytest.approx(ratio.ci_high, rel=0.02)


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
