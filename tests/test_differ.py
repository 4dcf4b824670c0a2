"""Issue 33: where two candidates differ, image by image. Counts checked against a hand count on hand-built
predictions (tests/decision_inputs.py), never against the code's own output."""
from __future__ import annotations

import pytest

from decision_inputs import Picture, Spec, build, decide_and_gate
from reportgen.inputs.config import DecisionSettings, GateSettings
from reportgen.scoring.differ import (Basis, DiscordantImage, PairRole, Side, gallery_sample, holm, pair_difference,
                                      run_differences)

pytestmark = pytest.mark.unit

# Ten images: 0-7 labelled (class 1 or 2), 8-9 unlabelled. Sizes and backgrounds on the boxed ones.
PICTURES = (Picture(target=1, size="small", background="clean"),      # 0
            Picture(target=1, size="small", background="cluttered"),  # 1
            Picture(target=2, size="small", background="clean"),      # 2
            Picture(target=2, size="large", background="clean"),      # 3
            Picture(target=1, size="large", background="cluttered"),  # 4
            Picture(target=2, size="large", background="cluttered"),  # 5
            Picture(target=1, size=None, background=None),            # 6
            Picture(target=2, size=None, background=None),            # 7
            Picture(target=None, size=None, background=None),         # 8
            Picture(target=None, size=None, background=None))         # 9
# By hand: A right on 0 1 2 3 4 6, B right on 0 3 5 6 7.
# A only: 1 2 4 (B wrong there with 0.9, 0.6, 0.8); B only: 5 7 (A wrong with 0.7, 0.95); both right 0 3 6.
A_RIGHT = (True, True, True, True, True, False, True, False, None, None)
B_RIGHT = (True, False, False, True, False, True, True, True, None, None)
A_CONF = (0.9, 0.8, 0.7, 0.6, 0.5, 0.7, 0.4, 0.95, 0.5, 0.5)
B_CONF = (0.8, 0.9, 0.6, 0.7, 0.8, 0.5, 0.5, 0.6, 0.5, 0.5)


def _run(decision=DecisionSettings(weights={"accuracy": 1.0})):
    specs = {"a": Spec(params_m=3.0, architecture="x", correct=A_RIGHT, confidence=A_CONF, mass=(0.5,) * 10,
                       latency=(10.0,) * 5),
             "b": Spec(params_m=3.0, architecture="y", correct=B_RIGHT, confidence=B_CONF, mass=(0.5,) * 10,
                       latency=(10.0,) * 5)}
    return build(specs, PICTURES, decision=decision)


def _pair(run, own_task=False):
    a, b = run.index.backbones
    return pair_difference(run.index.images, Side(a.name, a.display_name, a.predictions),
                           Side(b.name, b.display_name, b.predictions), role=PairRole.TOP_TWO, own_task=own_task,
                           level=0.95, errors_shown=2)


def test_discordant_images_match_a_hand_count():
    diff = _pair(_run())
    assert diff.basis == Basis.RIGHT_WRONG
    assert (diff.first_only, diff.second_only, diff.mcnemar.labelled) == (3, 2, 8)
    # exact McNemar by hand: 5 discordant, min 2: 2 * (C(5,0) + C(5,1) + C(5,2)) / 32 = 2 * 16 / 32 = 1
    assert diff.mcnemar.p_value == pytest.approx(1.0)
    # ordered by the loser's confidence: 7 (A wrong, 0.95), 1 (B 0.9), 4 (B 0.8), 5 (A 0.7), 2 (B 0.6)
    assert [i.file for i in diff.images] == ["img7.png", "img1.png", "img4.png", "img5.png", "img2.png"]
    assert [i.wrong for i in diff.images] == ["a", "b", "b", "a", "b"]
    assert [i.file for i in diff.newly_wrong()] == ["img1.png", "img4.png", "img2.png"]
    # top-1 differs wherever exactly one is right (on the unlabelled 8 and 9 both predict 700 + i)
    assert diff.disagreements == 5
    # most confident errors: A wrong on 7 (0.95), 5 (0.7); B on 1 (0.9), 4 (0.8)
    assert [(e.file, e.confidence) for e in diff.first_errors] == [("img7.png", 0.95), ("img5.png", 0.7)]
    assert [e.file for e in diff.second_errors] == ["img1.png", "img4.png"]


def test_strata_differences_and_holm_by_hand():
    diff = _pair(_run())
    rows = {s.stratum: s for s in diff.strata}
    # size=small: images 0 1 2 -> A right on all, B on 0: A only 2, B only 0: difference (0 - 2) / 3
    small = rows["size=small"]
    assert (small.images, small.first_only, small.second_only) == (3, 2, 0)
    assert small.difference == pytest.approx(-2 / 3)
    assert small.p_value == pytest.approx(2 * 1 / 4)  # 2 * C(2,0) / 2^2
    # large: 3 4 5 -> A only 4, B only 5; clean: 0 2 3 -> A only 2; cluttered: 1 4 5 -> A only 1 4, B only 5
    assert (rows["size=large"].first_only, rows["size=large"].second_only) == (1, 1)
    assert (rows["background=clean"].first_only, rows["background=clean"].second_only) == (1, 0)
    assert (rows["background=cluttered"].first_only, rows["background=cluttered"].second_only) == (2, 1)
    assert "size=medium" not in rows  # no image of that size
    # Holm over the four p-values (0.5, 1, 1, 1): the smallest times 4, capped at 1
    assert [rows[k].p_holm for k in ("size=small", "size=large")] == pytest.approx([1.0, 1.0])
    assert not any(s.flagged for s in diff.strata)
    assert all(s.ci_low < s.difference < s.ci_high for s in diff.strata)


def test_holm_matches_the_reference_procedure():
    # Holm (1979): sorted p (0.01, 0.02, 0.03, 0.04) x (4, 3, 2, 1) = (0.04, 0.06, 0.06, 0.04) -> monotone
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_own_task_strata_are_classes_and_confusions_differ():
    diff = _pair(_run(), own_task=True)
    assert diff.strata_by == "class"
    rows = {s.stratum: s for s in diff.strata}
    # class1: 0 1 4 6 -> A only 1 4; class2: 2 3 5 7 -> A only 2, B only 5 7
    assert (rows["class=class1"].first_only, rows["class=class1"].second_only) == (2, 0)
    assert (rows["class=class2"].first_only, rows["class=class2"].second_only) == (1, 2)
    # every wrong answer names its own class (500 + i): each confusion is made by one candidate only
    assert {(c.true_class, c.predicted, c.first_count, c.second_count) for c in diff.confusions} == {
        ("class2", "class505", 1, 0), ("class2", "class507", 1, 0), ("class1", "class501", 0, 1),
        ("class2", "class502", 0, 1), ("class1", "class504", 0, 1)}


def test_without_labels_the_images_where_top1_differs_stand_in():
    run = _run()
    a, b = run.index.backbones
    unlabelled = [image.__class__(**{**image.__dict__, "class_index": None, "class_name": None})
                  for image in run.index.images]

    def blind(predictions):
        return [p.__class__(p.target, p.target_name, "prediction", p.top5, None, None) for p in predictions]
    diff = pair_difference(unlabelled, Side("a", "A", blind(a.predictions)), Side("b", "B", blind(b.predictions)),
                           role=PairRole.TOP_TWO, own_task=False, level=0.95, errors_shown=2)
    assert diff.basis == Basis.DISAGREE and diff.mcnemar is None and diff.strata == ()
    assert len(diff.images) == diff.disagreements == 5
    assert all(i.wrong == "" and i.label is None for i in diff.images)
    # ordered by the lower of the two confidences: 1 (0.8), 7 (0.6), 4 (0.5), 5 (0.5), 2 (0.6)... by hand:
    # 1 min(0.8, 0.9)=0.8; 2 min(0.7, 0.6)=0.6; 4 min(0.5, 0.8)=0.5; 5 min(0.7, 0.5)=0.5; 7 min(0.95, 0.6)=0.6
    assert [i.file for i in diff.images] == ["img1.png", "img2.png", "img7.png", "img4.png", "img5.png"]
    assert diff.first_errors == diff.second_errors == ()


def _image(n, wrong, confidence):
    from reportgen.scoring.differ import WrongSide

    return DiscordantImage(file=f"f{n}", position=n, label="x", size=None, background=None, wrong=wrong,
                           wrong_side={"a": WrongSide.FIRST, "b": WrongSide.SECOND}[wrong],
                           first_prediction="", first_confidence=0.5, first_correct=None, second_prediction="",
                           second_confidence=0.5, second_correct=None, loser_confidence=confidence)


def test_gallery_sample_is_deterministic_shares_directions_and_keeps_the_most_confident():
    images = [_image(n, "b" if n % 4 else "a", 1 - n / 1000) for n in range(1000)]  # 750 b, 250 a
    chosen = gallery_sample(images, 12)
    assert len(chosen) == 12 and chosen == gallery_sample(images, 12)
    assert sum(1 for n in chosen if images[n].wrong == "b") == 9  # 12 x 3/4
    assert {0, 1, 2, 3, 4, 5} <= {n for n in chosen}  # the most confident of each direction lead
    assert max(chosen) > 900  # and the rest spread over the order down to the least confident
    assert gallery_sample(images[:5], 12) == (0, 1, 2, 3, 4)
    lone = [_image(0, "a", 0.9)] + [_image(n, "b", 0.5) for n in range(1, 200)]
    assert any(images_n == 0 for images_n in gallery_sample(lone, 4))  # a direction with images keeps one place


def test_top_two_counts_are_page_ones_mcnemar():
    run = _run()
    decision, _, _ = decide_and_gate(run)
    diffs = run_differences(run.index, (decision.leader, decision.runner_up))
    top = diffs.pairs[0]
    assert top.role == PairRole.TOP_TWO and (top.first, top.second) == (decision.leader, decision.runner_up)
    assert top.mcnemar == decision.mcnemar


def test_the_gate_names_the_images_the_challenger_newly_gets_wrong():
    run = _run()
    _, _, gate = decide_and_gate(run, GateSettings(champion="a", max_accuracy_drop=0.0))
    regression = gate.regression("b")
    assert (regression.newly_wrong, regression.newly_right, regression.labelled) == (3, 2, 8)
    assert regression.files == ("img1.png", "img4.png", "img2.png")  # B's most confident first


def test_a_failed_gate_names_the_newly_wrong_images_in_junit_and_the_summary_csv_rows(tmp_path):
    import xml.etree.ElementTree as ElementTree

    from reportgen.report.ci import junit_xml, newly_wrong_file, regression_text

    run = _run()
    _, _, gate = decide_and_gate(run, GateSettings(champion="a", min_p_better=0.99))
    assert not gate.passed
    failure = ElementTree.fromstring(junit_xml(gate, "gate.newly_wrong.csv")).find(".//failure")
    message = failure.get("message")
    assert "B newly gets 3 of the 8 images labelled for both wrong that A gets right (2 the other way)" in message
    assert "img1.png, img4.png, img2.png" in message and "gate.newly_wrong.csv" in message
    assert newly_wrong_file(tmp_path / "gate.xml") == tmp_path / "gate.newly_wrong.csv"
    many = gate.regression("b").__class__(challenger="b", display_name="B", newly_wrong=9, newly_right=0,
                                          labelled=20, files=tuple(f"f{n}" for n in range(9)))
    assert regression_text(many, "A").endswith("f0, f1, f2, f3, f4 and 4 more")


def test_compare_lines_up_two_runs_picks_by_image_content():
    """`reportgen compare`: run A's pick against run B's on the images both hold, matched by content even when B
    lists them in another order and holds one A lacks."""
    from dataclasses import replace

    from reportgen.scoring.differ import aligned_runs

    a = _run().index
    b = _run().index
    order = [9, 3, 0, 7, 1, 8, 2, 5, 4, 6]  # B's images shuffled ...
    images = tuple(b.images[n] for n in order)
    extra = replace(images[0], file="only_in_b.png", sha256="f" * 64)
    backbones = tuple(replace(entry, predictions=tuple(entry.predictions[n] for n in order)
                              + (entry.predictions[0],)) for entry in b.backbones)
    b = replace(b, images=images + (extra,), backbones=backbones)  # ... and one image A lacks
    diff = aligned_runs(a, b, "a", "b", errors_shown=0)
    assert diff.role == PairRole.RUNS and diff.compared == 10
    assert (diff.first_only, diff.second_only) == (3, 2)  # the hand count of the run against itself
    assert [i.file for i in diff.newly_wrong()] == ["img1.png", "img4.png", "img2.png"]


def test_compare_of_two_runs_picking_the_same_backbone_keeps_the_directions_apart():
    """Review finding 1: `reportgen compare` of two runs that pick the same backbone (same battery, two data
    versions) names the same candidate both ways, so which one is wrong is told by side, not by name."""
    from dataclasses import replace

    from reportgen.scoring.differ import WrongSide, aligned_runs
    from reportgen.scoring.gate import _regression

    a = _run().index
    b = _run().index
    a_entry, b_entry = b.backbones
    # run B's backbone is also called "a" and predicts what "b" predicts (the hand count above)
    b = replace(b, backbones=(replace(b_entry, name="a", display_name="A"),))
    diff = aligned_runs(a, b, "a", "a", errors_shown=0)
    assert (diff.first, diff.second) == ("a", "a") and (diff.first_only, diff.second_only) == (3, 2)
    # by hand: 7 (run A wrong, 0.95), 1 (run B wrong, 0.9), 4 (B, 0.8), 5 (A, 0.7), 2 (B, 0.6)
    assert [i.file for i in diff.images] == ["img7.png", "img1.png", "img4.png", "img5.png", "img2.png"]
    assert [i.loser_confidence for i in diff.images] == pytest.approx([0.95, 0.9, 0.8, 0.7, 0.6])
    assert [i.wrong_side for i in diff.images] == [WrongSide.FIRST, WrongSide.SECOND, WrongSide.SECOND,
                                                   WrongSide.FIRST, WrongSide.SECOND]
    assert [i.file for i in diff.newly_wrong()] == ["img1.png", "img4.png", "img2.png"]  # right in A, wrong in B
    assert [i.file for i in diff.newly_right()] == ["img7.png", "img5.png"]
    # the gallery sample shares its places between the two directions: 2 places, one each, the most confident
    assert gallery_sample(diff.images, 2) == (0, 1)
    # the gate's regressions take the same side: a challenger under the champion's name names B's wrong images
    regression = _regression(a, a_entry, replace(b_entry, name="a"))
    assert (regression.newly_wrong, regression.files) == (3, ("img1.png", "img4.png", "img2.png"))


def test_the_section_s_counts_are_page_one_s():
    """The section's sentence states page 1's McNemar counts and p-value for the top two."""
    from reportgen.report.decision_page import _paired_test
    from reportgen.report.differ_section import summary
    from reportgen.report.phrases import plain

    run = _run()
    decision, _, _ = decide_and_gate(run)
    top = run_differences(run.index, (decision.leader, decision.runner_up)).pairs[0]
    page_one, ours = plain(_paired_test(decision)), plain(summary(top))
    test = decision.mcnemar
    assert f"{test.first_only} right only for {test.first}" in page_one
    assert f"{test.first_only} are right for {test.first} and wrong for {test.second}" in ours  # 3: plural
    assert f"{test.second_only} right for {test.second} and wrong for {test.first}" in ours
    assert "exact McNemar p = 1:" in page_one and "exact McNemar p = 1:" in ours


def test_ten_thousand_images_give_sampled_galleries_and_a_complete_csv(monkeypatch):
    """At 10,000 images the PDF's gallery holds differ_pdf_images, the HTML differ_html_images more, and
    differences.csv every discordant image (the figures are stubbed: this checks what is asked of them)."""
    import numpy as np

    from reportgen.report import differ_section, figures
    from reportgen.report.differ_section import build_differ, differences_table
    from reportgen.report.figure_numbers import FigureNumbers

    count = 10_000
    rng = np.random.default_rng(5)
    a_right, b_right = rng.random(count) < 0.8, rng.random(count) < 0.75
    pictures = tuple(Picture(target=1 + n % 3, size=("small", "medium", "large")[n % 3],
                             background=("clean", "cluttered")[n % 2]) for n in range(count))
    confidence = tuple(float(c) for c in rng.uniform(0.2, 0.99, count))
    specs = {name: Spec(params_m=3.0, architecture=name, correct=tuple(bool(v) for v in right), confidence=confidence,
                        mass=(0.5,) * count, latency=(10.0,) * 5) for name, right in (("a", a_right), ("b", b_right))}
    run = build(specs, pictures)
    diffs = run_differences(run.index, ("a", "b"))
    discordant = int(np.sum(a_right != b_right))  # by hand
    asked = []
    monkeypatch.setattr(figures, "pair_grid", lambda cache, positions, *_: asked.append(len(positions)) or [b"p"])
    monkeypatch.setattr(figures, "error_grid", lambda cache, rows: asked.append(len(rows)) or [b"p"])
    block = build_differ(run.index, diffs, None, FigureNumbers()).pairs[0]
    config = run.index.config
    # the HTML shows differ_html_images in all: the PDF's sample and the others after it
    assert asked == [config.differ_pdf_images, config.differ_html_images - config.differ_pdf_images,
                     config.differ_errors_shown,
                     config.differ_errors_shown]
    assert f"{config.differ_pdf_images} of {discordant} shown" in block.gallery[0].caption
    assert f"lists all {discordant:,}" in block.gallery[0].caption
    assert f"{discordant - config.differ_html_images:,} more listed below" in block.rest_note
    # every discordant image is in the HTML: the thumbnails, then a table of the rest
    assert len(block.listed) == discordant - config.differ_html_images
    assert {r.file for r in block.listed} | {r.file for r in block.sample_rows} <= {i.file for i in run.index.images}
    assert len({r.file for r in block.listed}) == len(block.listed)
    assert f"{discordant - config.differ_html_images:,} images" in block.listed_note
    assert len(differences_table(diffs)) == discordant
    assert differ_section.DIFFERENCES_CSV in block.rest_note
    assert (diffs.pairs[0].first_only, diffs.pairs[0].second_only) == (int(np.sum(a_right & ~b_right)),
                                                                       int(np.sum(~a_right & b_right)))


def test_metrics_json_holds_the_counts_strata_and_file_names():
    """metrics.json's ``differences`` and the gate's ``regressions`` (written as asdict, through store.plain)."""
    import json
    from dataclasses import asdict

    from reportgen.report.render import gate_document
    from reportgen.results.store import plain

    run = _run()
    decision, _, gate = decide_and_gate(run, GateSettings(champion="b", max_accuracy_drop=0.0))
    document = json.loads(json.dumps(plain({
        "differences": asdict(run_differences(run.index, (decision.leader, decision.runner_up), "b")),
        "gate": gate_document(gate)})))
    top = document["differences"]["pairs"][0]
    assert (top["first_only"], top["second_only"]) in ((3, 2), (2, 3))
    assert sorted(image["file"] for image in top["images"]) == ["img1.png", "img2.png", "img4.png", "img5.png",
                                                                  "img7.png"]
    assert {s["stratum"] for s in top["strata"]} == {"size=small", "size=large", "background=clean",
                                                       "background=cluttered"}
    regression = document["gate"]["regressions"][0]
    # champion b: a newly gets 5 and 7 wrong (A wrong with 0.7 and 0.95: the more confident first)
    assert (regression["challenger"], regression["newly_wrong"], regression["files"]) == ("a", 2,
                                                                                         ["img7.png", "img5.png"])
