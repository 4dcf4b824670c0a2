""""Your task": the report section on the user's own classes, built from hand-made TaskReport objects."""
import io
from types import SimpleNamespace

import pytest
from PIL import Image

from reportgen.report.formatting import MISSING
from reportgen.report.phrases import plain
from reportgen.report.task_figures import axis_names, confusion_plot
from reportgen.report.task_section import build_task, task_rows
from reportgen.inputs.label_space import LabelSpace
from reportgen.results.schema import (Estimand, ExcludedClass, Interval, LabelOrder, TaskClass,
                                      TaskReport, TaskScore, TransferRanking)

pytestmark = pytest.mark.unit

NAMES = ("cats", "coffee", "rockets")
SPACE = LabelSpace(kind="own", source="class folders", source_detail="", names=NAMES,
                   note="class indices follow torchvision's ImageFolder order")


def interval(mean, low=None, high=None, n=10):
    return Interval(mean, low, high, n)


def score(estimand=Estimand.LINEAR_PROBE, accuracy=interval(0.9, 0.8, 0.95, 60), knn=interval(0.85, 0.7, 0.9, 60),
          logme=1.2, label_order=None, excluded=(), recall=None):
    return TaskScore(estimand=estimand, accuracy=accuracy, macro_f1=interval(0.8, 0.7, 0.9, 60),
                     per_class_recall=recall or (interval(1.0, 1.0, 1.0, 28), interval(0.9, 0.8, 1.0, 28),
                                                 interval(0.5, 0.0, 1.0, 4)),
                     confusion=((28, 0, 0), (2, 26, 0), (1, 1, 2)),
                     knn_accuracy=knn if estimand == Estimand.LINEAR_PROBE else None,
                     logme=logme if estimand == Estimand.LINEAR_PROBE else None, label_order=label_order,
                     excluded=excluded, protocol="5-fold stratified cross-validation"
                     if estimand == Estimand.LINEAR_PROBE else "")


def report(scores, classes=(28, 28, 4), rankings=(), agree=None):
    return TaskReport(SPACE, tuple(TaskClass(i, n, c) for i, (n, c) in enumerate(zip(NAMES, classes))),
                      sum(classes), scores, rankings, agree)


def test_a_flagged_label_order_names_the_classes_the_outputs_look_like():
    order = LabelOrder(flagged=True, mapping=((0, 1), (1, 0)), accuracy_as_is=0.1, accuracy_mapped=0.9,
                       gain=interval(0.8, 0.7, 0.9, 60), accuracy_heldout=0.85, heldout_gain=interval(0.75, 0.6, 0.85))
    quiet = LabelOrder(flagged=False, mapping=((1, 2), (2, 1)), accuracy_as_is=0.8, accuracy_mapped=0.82,
                       gain=interval(0.02, -0.05, 0.08, 60))
    section = task_rows(report({"head": score(Estimand.OWN_HEAD, label_order=order),
                                "other": score(Estimand.OWN_HEAD, label_order=quiet)}),
                        {"head": "My Head", "other": "Other Head"})
    assert len(section.label_order) == 1  # only the flagged head
    warning = plain(section.label_order[0])
    assert warning.startswith("My Head's head probably numbers your classes in another order")
    assert "output 0 looks like 'coffee' (it is labelled 'cats')" in warning
    assert "output 1 looks like 'cats' (it is labelled 'coffee')" in warning
    # the held-out numbers the flag rests on, not the in-sample mapping's (issue 32, #12)
    assert "as is 10.0 %, remapped 85.0 % (gain 75 points [60, 85]; each image remapped by the assignment" in warning
    assert "rockets" not in warning
    head, other = section.candidates
    assert head.estimand == "own head" and "probably another order" in head.protocol
    assert other.protocol.endswith("label order: as given")
    assert head.knn_accuracy.value == "—" and head.logme == "—"  # probe measures do not apply to a head


def test_a_class_without_images_is_listed_and_said_so():
    section = task_rows(report({"b": score()}, classes=(30, 12, 0)), {"b": "B"})
    assert [(row.index, row.name, row.images) for row in section.labels] == [(0, "cats", 30), (1, "coffee", 12),
                                                                             (2, "rockets", 0)]
    assert "no labelled images" in section.labels[2].note
    assert "Without labelled images, so not scored: rockets." in plain(section.intro)
    assert "3 classes — cats, coffee and rockets — over 42 labelled images" in plain(section.intro)
    assert "from the class folders" in plain(section.intro)
    assert plain(section.note).startswith("Class order: Class indices follow torchvision")
    assert [row.name for row in section.recall] == list(NAMES)


def test_excluded_classes_are_shown_with_their_reason():
    left = ExcludedClass(2, "rockets", 4, "4 labelled images, fewer than the 5 folds need")
    section = task_rows(report({"b": score(excluded=(left,))}), {"b": "B"})
    row = section.candidates[0]
    assert row.excluded == ("rockets: 4 labelled images, fewer than the 5 folds need",)
    assert row.estimand_note == "a lower bound on what fine-tuning reaches"
    assert section.labels[2].note == "left out of the linear probe"
    assert section.recall[2].cells[0].note == "left out of the probe"


def test_disagreeing_rankings_give_the_disagreement_sentence():
    scores = {"a": score(accuracy=interval(0.9, 0.8, 0.95, 60), knn=interval(0.7, 0.6, 0.8, 60), logme=0.5),
              "b": score(accuracy=interval(0.8, 0.7, 0.9, 60), knn=interval(0.75, 0.6, 0.8, 60), logme=0.9)}
    rankings = (TransferRanking("linear probe", "a", ("a", "b")), TransferRanking("k-NN", "b", ("b", "a")),
                TransferRanking("LogME", "b", ("b", "a")))
    section = task_rows(report(scores, rankings=rankings, agree=False), {"a": "Net A", "b": "Net B"})
    sentence = plain(section.agreement)
    assert "disagree on first place" in sentence
    assert "linear probe: Net A; k-NN: Net B; LogME: Net B" in sentence
    assert any(part.flag for part in section.agreement)
    assert [c.measure for c in section.rankings] == ["linear probe", "k-NN", "LogME"]
    assert section.rankings[0].places == ("Net A (90.0 %)", "Net B (80.0 %)")
    assert section.rankings[2].places == ("Net B (0.9)", "Net A (0.5)")
    assert section.places == (1, 2)

    agreeing = task_rows(report(scores, rankings=rankings[:1] + (TransferRanking("k-NN", "a", ("a", "b")),),
                                agree=True), {"a": "Net A", "b": "Net B"})
    assert plain(agreeing.agreement) == "The 2 measures agree on first place: Net A."
    single = task_rows(report({"a": scores["a"]}, rankings=(TransferRanking("linear probe", "a", ("a",)),)),
                       {"a": "Net A"})
    assert "Only one candidate was probed (Net A)" in plain(single.agreement)


def test_missing_intervals_read_not_measured():
    empty = Interval(None, None, None, 0)
    section = task_rows(report({"b": score(accuracy=empty, knn=None, logme=None,
                                           recall=(empty, interval(0.5, None, None, 1), None))}), {"b": "B"})
    row = section.candidates[0]
    assert (row.accuracy.value, row.accuracy.interval, row.accuracy.n) == (MISSING, "", 0)
    assert row.knn_accuracy.value == MISSING and row.logme == MISSING
    assert row.macro_f1.value == "0.8" and row.macro_f1.interval == "[0.7, 0.9]"
    cells = [row.cells[0] for row in section.recall]
    assert cells[0].value == MISSING
    assert (cells[1].value, cells[1].interval, cells[1].n) == ("50.0 %", "", 1)  # a value without bounds
    assert cells[2].value == MISSING


def test_candidates_follow_the_reports_order_and_imagenet_runs_have_no_section():
    section = task_rows(report({"z": score(), "a": score()}), {"a": "A", "z": "Z"})
    assert section.headers == ("A", "Z")
    assert build_task(SimpleNamespace(metrics=SimpleNamespace(task=None))) is None


def test_the_html_section_escapes_class_names_and_has_its_anchor():
    from reportgen.report.render import template_environment

    names = ("<b>cats</b>", "coffee", "rockets")
    task = TaskReport(LabelSpace(kind="own", source="labels file", source_detail="labels.txt", names=names),
                      tuple(TaskClass(i, n, 5) for i, n in enumerate(names)), 15, {"b": score()})
    html = template_environment().get_template("_report_task.html.j2").render(task=task_rows(task, {"b": "B"}))
    assert '<h1 id="task">Your task</h1>' in html
    assert "<b>cats</b>" not in html and "&lt;b&gt;cats&lt;/b&gt;" in html
    assert "labels file (labels.txt)" in html


def test_the_class_table_has_a_note_column_only_when_a_class_has_a_note():
    """A user run on four folders of 75 images showed an empty, unheaded fourth column in the class table."""
    from reportgen.report.render import template_environment

    def label_table(section):
        html = template_environment().get_template("_report_task.html.j2").render(task=section)
        return html.split('<table id="tab-task-labels">')[1].split("</table>")[0]

    every_class = task_rows(report({"b": score()}, classes=(30, 12, 8)), {"b": "B"})
    assert all(row.note == "" for row in every_class.labels)
    table = label_table(every_class)
    assert table.count("<th>") == 3 and table.count("<td") == 3 * 3, table
    one_empty = task_rows(report({"b": score()}, classes=(30, 12, 0)), {"b": "B"})
    table = label_table(one_empty)
    assert "<th>note</th>" in table and table.count("<td") == 3 * 4 and "no labelled images" in table, table


def test_confusion_figure_for_many_classes_and_long_names():
    names = [f"a rather long class name {i}" for i in range(25)]
    labels = axis_names(names)
    assert len(set(labels)) == 25 and all(len(label) <= 14 for label in labels)
    assert axis_names(["cats", "coffee"]) == ["cats", "coffee"]
    matrix = [[3 if r == c else 0 for c in range(25)] for r in range(25)]
    png = confusion_plot(["A (linear probe)", "B (own head)", "C (own head)"], names, [matrix] * 3)
    assert Image.open(io.BytesIO(png)).format == "PNG"
