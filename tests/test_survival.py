"""Whether the pick survives the flagged images (issue 34, point 4): the decision and the gate recomputed without
them, on hand-built runs (tests/decision_inputs.py, no model) whose outcomes are counted by hand, and page 1's line
in HTML and Markdown."""
import dataclasses
import json
import re
from html import unescape

import numpy as np
import pytest

from decision_inputs import Picture, Spec, build, decide_and_gate
from reportgen.inputs.config import DecisionSettings, GateSettings
from reportgen.report.decision_page import decision_page, survival_sentence
from reportgen.report.phrases import plain
from reportgen.report.render import markdown_environment, template_environment
from reportgen.results.subset import kept_positions, restricted_arrays, restricted_index
from reportgen.scoring.constraints import Check
from reportgen.scoring.decision import DecisionStatus
from reportgen.scoring.survival import (NOTHING_LEFT_OUT, LeftOut, LeftOutReason, SurvivalStatus, decide_without,
                                        images_to_leave_out, pick_survival)

pytestmark = pytest.mark.unit

N = 80
ACCURACY_ONLY = {key: 0.0 for key in ("localisation", "clutter", "calibration", "corruption", "faithfulness",
                                      "latency", "size")} | {"accuracy": 1.0}
# A right on images 0-59 (60 of 80), B on 0-39 and 60-67 (48 of 80): A wins alone on 40-59 (20 images), B on 60-67
# (8). Without 40-59, A is right on 40 of 60 (66.7 %), B on 48 of 60 (80 %).
A_RIGHT = tuple(i < 60 for i in range(N))
B_RIGHT = tuple(i < 40 or 60 <= i < 68 for i in range(N))
WHERE_A_WINS = tuple(f"img{i}.png" for i in range(40, 60))
GATE = GateSettings(champion="a", min_p_better=0.9, max_accuracy_drop=0.05)


def _spec(correct, params_m, gaps=None, latency=5.0):
    return Spec(params_m=params_m, architecture=f"arch{params_m}", correct=correct, confidence=(0.8,) * len(correct),
                mass=(float("nan"),) * len(correct), latency=(latency,) * 10, gaps=gaps)


def _run(weights=ACCURACY_ONLY, gaps=None, minimum=10, samples=300, **extra):
    pictures = tuple(Picture(target=i % 4, size=None, background=None) for i in range(N))
    specs = {"a": _spec(A_RIGHT, 5.0, gaps and gaps["a"]), "b": _spec(B_RIGHT, 6.0, gaps and gaps["b"]), **extra}
    return build(specs, pictures, DecisionSettings(weights=weights, survival_min_images=minimum), samples=samples)


def _survival(run, left_out, gate=GATE):
    decision, _, report = decide_and_gate(run, gate)
    return decision, report, pick_survival(run.index, run.metrics, run.cost, decision, report, left_out, run.arrays_of)


def _document(record) -> str:
    return json.dumps(dataclasses.asdict(record), sort_keys=True, default=str)


def test_keeping_every_image_reproduces_the_main_decision_and_gate_exactly():
    """Faithfulness read from the saved arrays, latency and size weighed too: every stage runs on the same records."""
    gaps = {"a": tuple(0.1 + 0.01 * (i % 7) for i in range(N)), "b": tuple(0.12 - 0.01 * (i % 5) for i in range(N))}
    run = _run(weights={"accuracy": 1.0, "faithfulness": 1.0, "latency": 0.5, "size": 0.5}, gaps=gaps)
    decision, _, report = decide_and_gate(run, GATE)
    every = kept_positions(run.index, frozenset())
    assert every == tuple(range(N)) and restricted_index(run.index, every) is run.index
    again, gate_again = decide_without(run.index, run.metrics, run.cost, every, run.arrays_of, GATE)
    assert _document(again) == _document(decision) and _document(gate_again) == _document(report)
    survival = pick_survival(run.index, run.metrics, run.cost, decision, report, NOTHING_LEFT_OUT, run.arrays_of)
    assert survival.status == SurvivalStatus.NOTHING_LEFT_OUT and survival.pick_holds is None
    assert survival_sentence(survival) == ()  # no line on page 1


def test_leaving_out_the_images_where_a_wins_flips_the_pick_to_b_and_the_gate():
    run = _run()
    left_out = images_to_leave_out(label_errors=WHERE_A_WINS)
    decision, report, survival = _survival(run, left_out)
    assert (decision.status, decision.recommended) == (DecisionStatus.RECOMMENDED, "a")
    assert decision.candidate("a").top1 == 60 / 80 and decision.candidate("b").top1 == 48 / 80
    without, gate_without = decide_without(run.index, run.metrics, run.cost, kept_positions(run.index, left_out.files),
                                           run.arrays_of, GATE)
    assert without.candidate("a").top1 == 40 / 60 and without.candidate("b").top1 == 48 / 60  # counted by hand
    assert without.candidate("a").labelled == 60
    assert survival.status == SurvivalStatus.RECOMPUTED and (survival.images, survival.kept) == (80, 60)
    assert survival.left_out == tuple(sorted(WHERE_A_WINS))
    assert [(c.reason, c.images) for c in survival.counts] == [(LeftOutReason.LABEL_ERROR, 20)]
    assert (survival.recommended_given, survival.recommended_without) == ("a", "b")
    assert survival.pick_holds is False
    a, b = survival.chance("a"), survival.chance("b")
    assert a.given > 0.9 and b.without > 0.9 and a.without < 0.1
    # the gate: B against the champion A fails on P(better) and on the accuracy drop (12 points down) as given,
    # and passes both without the flagged images (12 points up)
    assert report.verdict == Check.FAIL and gate_without.verdict == Check.PASS
    assert (survival.gate_given, survival.gate_without, survival.gate_holds) == (Check.FAIL, Check.PASS, False)
    (hold,) = survival.gate
    assert (hold.challenger, hold.given, hold.without, hold.holds) == ("b", Check.FAIL, Check.PASS, False)
    assert hold.changed == ("min_p_better", "max_accuracy_drop")
    drop = next(r for r in gate_without.rows if r.condition == "max_accuracy_drop")
    assert drop.value == pytest.approx(48 / 60 - 40 / 60)


def test_p_best_sums_to_one_over_the_candidates_both_ways():
    run = _run(weights={"accuracy": 1.0, "latency": 1.0, "size": 1.0}, c=_spec(tuple(i % 3 > 0 for i in range(N)), 4.0))
    _, _, survival = _survival(run, images_to_leave_out(leaked=WHERE_A_WINS[:12]), gate=None)
    assert survival.status == SurvivalStatus.RECOMPUTED and len(survival.p_best) == 3
    assert sum(c.given for c in survival.p_best) == pytest.approx(1.0)
    assert sum(c.without for c in survival.p_best) == pytest.approx(1.0)
    assert survival.gate_given is None and survival.gate == ()


def test_a_left_out_image_leaves_the_saved_arrays_and_samples_of_every_candidate():
    """Faithfulness is read from the arrays, its sample renumbered: without images 0-39 the gap is the mean over
    40-79 (a's gaps are 1 there and 0 before: 0.5 as given, 1.0 without)."""
    gaps = {"a": tuple(float(i >= 40) for i in range(N)), "b": (0.5,) * N}
    run = _run(weights={"faithfulness": 1.0}, gaps=gaps)
    left_out = images_to_leave_out(label_errors=[f"img{i}.png" for i in range(40)])
    decision, _, survival = _survival(run, left_out, gate=None)
    kept = kept_positions(run.index, left_out.files)
    without, _ = decide_without(run.index, run.metrics, run.cost, kept, run.arrays_of)
    assert decision.candidate("a").faithfulness.value == pytest.approx(0.5)
    assert without.candidate("a").faithfulness.value == pytest.approx(1.0)
    entry = restricted_index(run.index, kept).backbone("a")
    assert entry.faithfulness.images == tuple(range(40)) and len(entry.predictions) == 40
    assert len(entry.cam_status["x"]) == 40
    road = restricted_arrays(run.index.backbone("a"), run.arrays_of("a"), kept, N)["road"]
    assert road.shape[0] == 40 and np.all(road[:, 0, 1] == 2.0)


def test_the_same_flags_in_any_order_give_the_same_images_and_an_image_counts_once():
    left_out = images_to_leave_out(duplicates=["c.png", "b/x.png", "f.png", "e.png"])
    assert left_out.images == (("b/x.png", LeftOutReason.DUPLICATE), ("c.png", LeftOutReason.DUPLICATE),
                               ("e.png", LeftOutReason.DUPLICATE), ("f.png", LeftOutReason.DUPLICATE))
    # another order gives the same images; an image flagged twice counts once, as leaked before mislabelled
    again = images_to_leave_out(duplicates=["f.png", "e.png", "b/x.png", "c.png"], leaked=["c.png"],
                                label_errors=["c.png", "g.png"])
    assert dict(again.images) == {"b/x.png": LeftOutReason.DUPLICATE, "c.png": LeftOutReason.LEAKED,
                                  "e.png": LeftOutReason.DUPLICATE, "f.png": LeftOutReason.DUPLICATE,
                                  "g.png": LeftOutReason.LABEL_ERROR}
    assert again.counts() == ((LeftOutReason.LEAKED, 1), (LeftOutReason.LABEL_ERROR, 1), (LeftOutReason.DUPLICATE, 3))


def test_collapsed_duplicates_in_a_run_leave_the_others_out():
    run = _run()
    copies = ["img43.png", "img42.png", "img70.png"]  # the data check kept img41 and img7
    _, _, survival = _survival(run, images_to_leave_out(duplicates=copies), gate=None)
    assert survival.left_out == ("img42.png", "img43.png", "img70.png") and survival.kept == N - 3
    assert [(c.reason, c.images) for c in survival.counts] == [(LeftOutReason.DUPLICATE, 3)]


def test_too_few_images_left_is_recorded_as_not_recomputed_with_the_reason():
    run = _run(minimum=10)
    left_out = images_to_leave_out(label_errors=[f"img{i}.png" for i in range(N - 9)])
    decision, _, survival = _survival(run, left_out)
    assert survival.status == SurvivalStatus.TOO_FEW_IMAGES and survival.kept == 9
    assert survival.reason == "9 of the 80 images would remain, fewer than survival_min_images (10)"
    assert survival.verdict_without is None and survival.pick_holds is None and survival.gate_without is None
    assert all(c.without is None for c in survival.p_best)
    line = plain(survival_sentence(survival))
    assert line.startswith("Without the 71 flagged images (71 likely label errors) 9 of the 80 images would remain")
    assert "not recomputed" in line
    ten = pick_survival(run.index, run.metrics, run.cost, decision, None,
                        images_to_leave_out(label_errors=[f"img{i}.png" for i in range(N - 10)]), run.arrays_of)
    assert ten.status == SurvivalStatus.RECOMPUTED and ten.kept == 10


def test_an_unknown_image_is_the_caller_s_error():
    run = _run()
    with pytest.raises(ValueError, match="not images of this run"):
        _survival(run, images_to_leave_out(leaked=["elsewhere.png"]))


def _rendered(page) -> tuple:
    html = template_environment().get_template("_survival.html.j2").render(page=page)
    md = markdown_environment().get_template("_survival.md.j2").render(page=page)
    return unescape(re.sub(r"<[^>]+>", "", html)).strip(), unescape(md.replace("\\", "").replace("*", "")).strip()


def test_page_one_says_the_pick_changes_with_p_best_both_ways_in_html_and_markdown():
    run = _run()
    left_out = LeftOut(tuple((f, LeftOutReason.LABEL_ERROR) for f in WHERE_A_WINS[:18])
                       + tuple((f, LeftOutReason.DUPLICATE) for f in WHERE_A_WINS[18:]))
    decision, report, survival = _survival(run, left_out)
    page = decision_page(decision, run.index, "", run.cost, None, report, survival)
    a, b = survival.chance("a"), survival.chance("b")
    shown = lambda p: f"{100 * p:.0f} %" if 0.005 <= p < 0.995 else (">99 %" if p < 1 else "100 %") if p >= 0.995 \
        else ("<1 %" if p > 0 else "0 %")
    expected = (f"Without the 20 flagged images (18 likely label errors, 2 duplicates), on the other 60 images, the pick "
                f"changes to B (P(best) {shown(b.without)}; A's falls from {shown(a.given)} to {shown(a.without)}); "
                "the gate's verdict changes from FAILS to PASSES (B now passes on P(better) and the accuracy drop). "
                "The decision above stays on the images as given")
    assert plain(page.survival).startswith(expected)
    for text in _rendered(page):
        assert text.startswith(expected), text


def test_page_one_says_the_pick_holds():
    run = _run()
    left_out = images_to_leave_out(leaked=[f"img{i}.png" for i in range(60, 68)])  # where B wins: A's lead grows
    decision, report, survival = _survival(run, left_out)
    assert survival.pick_holds is True and survival.gate_holds is True
    a = survival.chance("a")
    line = plain(survival_sentence(survival))
    assert line.startswith(f"Without the 8 flagged images (8 leaked), on the other 72 images, the pick holds: A's "
                           f"P(best) ") and "the gate's verdict holds (FAILS)" in line
    assert a.given <= a.without
    page = decision_page(decision, run.index, "", run.cost, None, report, survival)
    for text in _rendered(page):
        assert text.startswith(line[:60])


def test_survival_min_images_is_read_from_the_battery_file_and_checked(tmp_path):
    from reportgen.errors import UsageError
    from reportgen.inputs.battery import load_battery

    battery = tmp_path / "battery.toml"
    battery.write_text("[decision]\nsurvival_min_images = 25\n")
    assert load_battery(battery).analysis_config().decision.survival_min_images == 25
    with pytest.raises(UsageError, match="survival_min_images"):
        DecisionSettings(survival_min_images=1)  # a decision needs at least two images to resample


def test_the_sampled_checks_and_their_arrays_follow_the_kept_images():
    """A candidate with a sanity sample at positions (1, 3, 4), a corruption sample at (4, 0) and per-image arrays,
    on 5 images of which 0 and 3 are left out: every sample keeps its kept rows, renumbered (4 -> 2, 1 -> 0)."""
    from dataclasses import replace

    from reportgen.results import arrays as keys
    from reportgen.results.schema import CorruptionRun, RunStatus, SanityRun, SanityStep
    from reportgen.results.subset import restricted_backbone

    run = build({"a": _spec((True,) * 5, 5.0)}, tuple(Picture(target=1, size=None, background=None) for _ in range(5)))
    entry = replace(run.index.backbones[0],
                    sanity=SanityRun("done", "", (SanityStep("s", (), 0, {"x": ("ok", "flat", "ok")}),), (1, 3, 4)),
                    corruption=CorruptionRun(RunStatus.DONE, "", ("blur",), (1,), (4, 0), "balanced"))
    arrays = {keys.LOGITS: np.arange(5.0)[:, None], keys.sanity_cam(0, "x"): np.array([10.0, 30.0, 40.0]),
              keys.CORRUPT_TOP1: np.array([[[4]], [[0]]]), keys.CORRUPT_CLEAN: np.array([4, 0]),
              keys.hist_counts("x"): np.array([7, 7])}
    kept = (1, 2, 4)
    restricted = restricted_backbone(entry, kept, 5)
    assert restricted.sanity.images == (0, 2) and restricted.sanity.steps[0].cam_status == {"x": ("ok", "ok")}
    assert restricted.corruption.images == (2,)
    assert [p.correct_top1 for p in restricted.predictions] == [True] * 3
    out = restricted_arrays(entry, arrays, kept, 5)
    assert out[keys.LOGITS][:, 0].tolist() == [1.0, 2.0, 4.0]
    assert out[keys.sanity_cam(0, "x")].tolist() == [10.0, 40.0]
    assert out[keys.CORRUPT_TOP1].tolist() == [[[4]]] and out[keys.CORRUPT_CLEAN].tolist() == [4]
    assert out[keys.hist_counts("x")] is arrays[keys.hist_counts("x")]  # not per image: as saved
    # every sampled image left out: the check is skipped with that reason, not "not measured" with none
    emptied = restricted_backbone(entry, (1, 2, 3), 5)
    assert emptied.corruption.status == RunStatus.SKIPPED and emptied.corruption.images == ()
    assert emptied.corruption.reason == "none of its 2 sampled images is among those left"


def test_the_gate_line_names_a_challenger_that_turns_while_the_verdict_holds():
    """Against A (right on 0-59): C, right on all but 40-59, ties A as given (60 of 80 each: P(better) about 0.5,
    uncertain, counted as fail) and is right on all 60 kept images without them (A: 40); D, right on 0-29 only, fails
    both ways (30 of 80, then 30 of 60 against A's 40). The gate fails both ways; C turns."""
    pictures = tuple(Picture(target=i % 4, size=None, background=None) for i in range(N))
    specs = {"a": _spec(A_RIGHT, 5.0), "d": _spec(tuple(i < 30 for i in range(N)), 6.0),
             "c": _spec(tuple(not 40 <= i < 60 for i in range(N)), 4.0)}
    run = build(specs, pictures, DecisionSettings(weights=ACCURACY_ONLY), samples=300)
    gate = GateSettings(champion="a", min_p_better=0.9)
    _, _, survival = _survival(run, images_to_leave_out(label_errors=WHERE_A_WINS), gate=gate)
    holds = {h.challenger: (h.given, h.without, h.holds) for h in survival.gate}
    assert holds == {"d": (Check.FAIL, Check.FAIL, True), "c": (Check.FAIL, Check.PASS, False)}
    assert survival.gate_given == survival.gate_without == Check.FAIL and survival.gate_holds
    assert "the gate's verdict holds (FAILS), though C now passes." in plain(survival_sentence(survival))


def _record(given, without, leaders, p_a, p_b):
    from reportgen.scoring.survival import PickChance, ReasonCount, Survival

    return Survival(status=SurvivalStatus.RECOMPUTED, reason="", images=30, kept=27, min_images=10,
                    left_out=("x1.png", "x2.png", "x3.png"), counts=(ReasonCount(LeftOutReason.DUPLICATE, 3),),
                    verdict_given=given, verdict_without=without, leader_given=leaders[0], leader_without=leaders[1],
                    recommended_given=None, recommended_without=None,
                    pick_holds=given == without and leaders[0] == leaders[1],
                    p_best=(PickChance(backbone="a", display_name="A", given=p_a[0], without=p_a[1]),
                            PickChance(backbone="b", display_name="B", given=p_b[0], without=p_b[1])),
                    min_win_probability=0.9)


R, U, NONE = DecisionStatus.RECOMMENDED, DecisionStatus.NO_CLEAR_WINNER, DecisionStatus.NONE_PASS


@pytest.mark.parametrize("given, without, leaders, p_a, p_b, said", [
    (R, R, ("a", "a"), (0.93, 0.95), (0.07, 0.05), "the pick holds: A's P(best) rises from 93 % to 95 %."),
    (U, U, ("a", "a"), (0.6, 0.6), (0.4, 0.4), "there is still no clear winner: A leads both ways, its P(best) "
                                               "stays at 60 %."),
    (R, U, ("a", "a"), (0.93, 0.71), (0.07, 0.29), "the pick no longer holds: A still leads, but its P(best) falls "
                                                   "from 93 % to 71 % (a pick needs 90 %)."),
    (U, R, ("a", "a"), (0.6, 0.92), (0.4, 0.08), "A becomes the pick: its P(best) rises from 60 % to 92 % (a pick "
                                                 "needs 90 %)."),
    (R, U, ("a", "b"), (0.93, 0.3), (0.07, 0.7), "the lead changes to B, with no clear winner (P(best) 70 %; A's "
                                                 "falls from 93 % to 30 %)."),
    (R, NONE, ("a", None), (0.93, None), (0.07, None), "no candidate meets the constraints any more."),
    (NONE, NONE, (None, None), (None, None), (None, None), "still no candidate meets the constraints."),
    (NONE, R, (None, "b"), (None, None), (None, 1.0), "B meets the constraints and is the pick (P(best) 100 %)."),
    # the review's two cases: the pick stays A, recommended as given and the only candidate without (B fails a
    # constraint there); a pick where there was none is not a change of pick
    (R, DecisionStatus.ONLY_CANDIDATE, ("a", "a"), (0.93, 1.0), (0.07, None),
     "the pick holds: A's P(best) rises from 93 % to 100 %."),
    (U, R, ("a", "b"), (0.6, 0.05), (0.4, 0.95), "B becomes the pick (P(best) 95 %; A's falls from 60 % to 5 %)."),
    (R, R, ("a", "b"), (0.93, 0.05), (0.07, 0.95), "the pick changes to B (P(best) 95 %; A's falls from 93 % to 5 %)."),
    # one candidate both ways: page 1 made no pick over another backbone (its P(best) is 100 % by itself)
    (DecisionStatus.ONLY_CANDIDATE, DecisionStatus.ONLY_CANDIDATE, ("a", "a"), (1.0, 1.0), (None, None),
     "A is still the only candidate."),
], ids=["holds", "still-no-winner", "no-longer", "becomes", "lead-changes", "none-pass", "still-none", "now-meets",
        "holds-as-only-candidate", "pick-where-none-was", "pick-changes", "only-candidate-both-ways"])
def test_every_way_the_pick_can_go_reads_as_one_line(given, without, leaders, p_a, p_b, said):
    line = plain(survival_sentence(_record(given, without, leaders, p_a, p_b)))
    assert line.startswith(f"Without the 3 flagged images (3 duplicates), on the other 27 images, {said}"), line


def test_the_page_leaves_out_exactly_the_copies_the_data_check_flagged():
    """The data check keeps the first of a duplicate group by position (``z/keep.jpg`` can come before ``a/copy.jpg``:
    paths sort otherwise than strings); the survival line leaves out the image it flagged, never the one it kept."""
    from types import SimpleNamespace

    from reportgen.report.context import images_left_out
    from reportgen.results.schema import DataCheck, Flag, FlagReason
    from reportgen.scoring.survival import LeftOutReason

    flags = (Flag(image="a/copy.jpg", position=1, reason=FlagReason.NEAR_DUPLICATE, other="z/keep.jpg",
                  other_position=0, similarity=0.95),
             Flag(image="b/leak.jpg", position=2, reason=FlagReason.TRAIN_EVAL_NEAR_COPY, other="train/x.jpg",
                  similarity=0.97),
             Flag(image="c/wrong.jpg", position=3, reason=FlagReason.LABEL_ISSUE, given="cat", suggested="dog",
                  score=0.02, rank=1))
    data = DataCheck(images=4, labelled=4, checks=(), flags=flags)
    left = images_left_out(SimpleNamespace(metrics=SimpleNamespace(data=data)))
    assert left.images == (("a/copy.jpg", LeftOutReason.DUPLICATE), ("b/leak.jpg", LeftOutReason.LEAKED),
                           ("c/wrong.jpg", LeftOutReason.LABEL_ERROR))
    assert images_left_out(SimpleNamespace(metrics=SimpleNamespace(data=None))).images == ()
