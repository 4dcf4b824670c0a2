"""Issue 32, the "Your task" points: transfer-measure agreement over the candidates every measure ranked (#8),
macro-F1 draws that keep every class (#9), the label-order warning's held-out numbers (#12). Hand-made inputs, no
model."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from reportgen.results.schema import Estimand, Interval, TaskScore
from reportgen.scoring.task_report import _rankings

pytestmark = pytest.mark.unit


def _probe(accuracy, knn, logme):
    return TaskScore(estimand=Estimand.LINEAR_PROBE, accuracy=Interval(accuracy, None, None, 240),
                     macro_f1=Interval(None, None, None, 0), per_class_recall=(), confusion=(),
                     knn_accuracy=Interval(knn, None, None, 240), logme=logme)


# --- 8: "transfer measures disagree" ----------------------------------------------------------------------------------

def test_a_measure_that_did_not_measure_the_leader_is_no_disagreement():
    """The review's t_rank.py case: A (D = 1280) leads on probe and k-NN, LogME is None for A (its features fit a
    class exactly); LogME ranked B alone. Over the candidates every measure ranked (B only) there is nothing to
    compare: no claim, where the old code said "disagree … LogME: B"."""
    rankings, agree, compared = _rankings({"A": _probe(0.892, 0.792, None), "B": _probe(0.775, 0.713, -0.506)})
    assert agree is None
    assert compared == ("B",)
    assert [r.order for r in rankings] == [("A", "B"), ("A", "B"), ("B",)]  # the table still shows every order


def test_agreement_is_judged_over_the_candidates_every_measure_ranked():
    """Three probes; LogME has no value for A. Among B and C every measure puts B first: they agree, although
    LogME's first (B) is not the probe's overall first (A). Swap LogME's values and they disagree over B and C."""
    scores = {"A": _probe(0.95, 0.90, None), "B": _probe(0.85, 0.80, 2.0), "C": _probe(0.80, 0.70, 1.0)}
    rankings, agree, compared = _rankings(scores)
    assert compared == ("B", "C") and agree is True
    assert [r.first for r in rankings] == ["B", "B", "B"]
    assert rankings[0].order == ("A", "B", "C")
    scores["C"] = _probe(0.80, 0.70, 3.0)
    rankings, agree, compared = _rankings(scores)
    assert agree is False and [r.first for r in rankings] == ["B", "B", "C"]


def test_a_tie_among_the_compared_candidates_is_no_claim():
    scores = {"A": _probe(0.95, 0.90, None), "B": _probe(0.85, 0.80, 2.0), "C": _probe(0.85, 0.70, 1.0)}
    rankings, agree, _ = _rankings(scores)
    assert agree is None and rankings[0].tied == ("B", "C")


def test_the_pages_name_the_compared_candidates():
    from reportgen.inputs.label_space import LabelSpace
    from reportgen.report.phrases import plain
    from reportgen.report.task_section import _agreement
    from reportgen.results.schema import TaskReport

    space = LabelSpace("own", "class folders", "", ("x", "y"), "")
    scores = {"A": _probe(0.95, 0.90, None), "B": _probe(0.85, 0.80, 2.0), "C": _probe(0.80, 0.70, 3.0)}
    rankings, agree, compared = _rankings(scores)
    report = TaskReport(space, (), 240, scores, rankings, agree, compared)
    sentence = plain(_agreement(report, {"A": "Net A", "B": "Net B", "C": "Net C"}))
    assert "disagree on first place" in sentence
    assert "among Net B and Net C, the candidates every measure ranked" in sentence
    two = {"A": _probe(0.892, 0.792, None), "B": _probe(0.775, 0.713, -0.506)}
    report = TaskReport(space, (), 240, two, *_rankings(two))
    sentence = plain(_agreement(report, {"A": "Net A", "B": "Net B"}))
    assert sentence.startswith("Fewer than two candidates were ranked by every measure (only Net B)")
