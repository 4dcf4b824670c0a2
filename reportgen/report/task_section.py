""""Your task": the candidates on the user's own classes (a run on class folders, a labels file, a checkpoint's
classes), right after the decision page. Rows and sentences built once for every format from metrics.json's ``task``
(scoring made the numbers; this only lays them out and phrases them). Absent on ImageNet runs."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

from ..results.schema import Estimand, Interval, TaskReport, TaskRun, TaskScore
from . import task_figures
from .figure_numbers import Figure, FigureNumbers
from .formatting import MISSING, bracket, listing, missing, num, pct, pct_bracket
from .phrases import Sentence, text

CLASSES_NAMED = 12  # the intro sentence names this many classes, then says how many more (the table lists all)
NOT_APPLICABLE = "—"  # a probe's measure in an own head's row

ESTIMAND_NOTE = {Estimand.OWN_HEAD: "the head stored with the weights, scored as it is",
                 Estimand.LINEAR_PROBE: "a lower bound on what fine-tuning reaches",
                 Estimand.IMAGENET_HEAD: "ImageNet-1k's classes, not yours"}
MEASURE_HEADER = {"linear probe": "linear probe accuracy", "k-NN": "k-NN accuracy", "LogME": "LogME"}


@dataclass(frozen=True)
class Cell:
    """A table cell: the value, its interval ("" when it has none) and how many images it counts (0: not shown)."""
    value: str
    interval: str = ""
    n: int = 0
    note: str = ""  # e.g. "left out of the probe"


@dataclass(frozen=True)
class LabelRow:
    index: int
    name: str
    images: int
    note: str  # "no labelled images: not scored", "left out of the linear probe", ""


@dataclass(frozen=True, kw_only=True)
class CandidateRow:
    backbone: str
    display_name: str
    estimand: str  # own head | linear probe
    estimand_note: str
    probe: bool
    accuracy: Cell
    macro_f1: Cell
    knn_accuracy: Cell
    logme: str
    protocol: str
    excluded: tuple  # str per class left out of the probe: "rockets: 4 labelled images, fewer than the 5 folds need"
    note: str = ""  # why there is no probe, when there is none


@dataclass(frozen=True)
class RecallRow:
    index: int
    name: str
    images: int
    cells: tuple  # Cell per candidate, in the candidates' order


@dataclass(frozen=True)
class RankingColumn:
    measure: str
    header: str
    places: tuple  # str per place: "EfficientNet-Lite0 (93.3 %)"


@dataclass(frozen=True, kw_only=True)
class TaskSection:
    intro: Sentence  # the classes, the labelled images, where the names came from
    note: Sentence  # the label space's note (folder order), empty without one
    method: Sentence  # what each estimand and transfer measure is
    labels: tuple  # LabelRow per class, in index order
    candidates: tuple  # CandidateRow per candidate
    headers: tuple  # candidate display names (the recall table's columns)
    recall: tuple  # RecallRow per class
    label_order: tuple  # a warning Sentence per head whose outputs look like another class order
    rankings: tuple  # RankingColumn per transfer measure, side by side
    places: tuple  # place numbers of the ranking table: (1, 2, ...)
    agreement: Sentence  # whether the measures agree on first place, or why there is nothing to rank
    figure: Optional[Figure] = None  # the confusion matrices
    logme_note: Sentence = ()  # why LogME is not measured, once for the candidates it is not measured for


def _share_cell(found: Optional[Interval]) -> Cell:
    """A share in percent with its interval in points; "not measured" without a value."""
    if found is None or missing(found.mean):
        return Cell(MISSING)
    return Cell(pct(found.mean), pct_bracket(found.ci_low, found.ci_high), found.n)


def _number_cell(found: Optional[Interval]) -> Cell:
    if found is None or missing(found.mean):
        return Cell(MISSING)
    return Cell(num(found.mean), bracket(found.ci_low, found.ci_high).strip(), found.n)


def _quoted(name: str) -> str:
    return f"'{name}'"


def _class_name(report: TaskReport, index: int) -> str:
    for cls in report.classes:
        if cls.index == index:
            return cls.name
    names = report.label_space.names
    return names[index] if 0 <= index < len(names) else f"class {index}"


def _excluded_text(report: TaskReport, score: TaskScore) -> tuple:
    return tuple(f"{e.name or _class_name(report, e.index)}: {e.reason}" for e in score.excluded)


def _protocol(score: TaskScore, run: Optional[TaskRun]) -> str:
    if score.estimand == Estimand.LINEAR_PROBE:
        parts = [score.protocol or (run.protocol if run is not None else "") or "protocol not recorded"]
        if run is not None and run.feature_dim:
            parts.append(f"{run.feature_dim:,} frozen features")
        if run is not None and run.knn_k:
            parts.append(f"k-NN with k = {run.knn_k}")
        return "; ".join(parts)
    order = score.label_order
    if order is None:
        check = "label order not checked"
    elif order.flagged:
        check = "label order: probably another order (see the warning above)"
    else:
        check = "label order: as given"
    return f"the head's outputs on every labelled image; {check}"


def _intro(report: TaskReport) -> Sentence:
    space = report.label_space
    names = [c.name for c in report.classes] or list(space.names)
    shown = names[:CLASSES_NAMED]
    named = listing(shown) + (f" and {len(names) - len(shown)} more" if len(names) > len(shown) else "")
    where = f"the {space.source}" if space.source else "an unrecorded source"
    if space.source_detail:
        where += f" ({space.source_detail})"
    empty = [c.name for c in report.classes if c.images == 0]
    without = f" Without labelled images, so not scored: {listing(empty)}." if empty else ""
    count = len(names)
    return (text(f"The candidates on your {count} class{'es' if count != 1 else ''} — {named} — over "
                 f"{report.labelled_images:,} labelled image{'s' if report.labelled_images != 1 else ''}; the class "
                 f"names and their order come from {where}.{without}"),)


def _note(report: TaskReport) -> Sentence:
    note = report.label_space.note.strip()
    if not note:
        return ()
    note = note[0].upper() + note[1:]
    return (text("Class order:", strong=True), text(" " + (note if note.endswith(".") else note + ".")))


def _method(scores: Mapping[str, TaskScore]) -> Sentence:
    kinds = {s.estimand for s in scores.values()}
    parts = []
    if Estimand.OWN_HEAD in kinds:
        parts.append(text("A candidate with its own head (one output per class of yours) is scored as it is. "))
    if Estimand.LINEAR_PROBE in kinds:
        parts.append(text("A candidate without a head for your classes is scored by a linear probe: a logistic "
                          "regression on its frozen pooled features, each image predicted by a probe that did not "
                          "see it — "))
        parts.append(text("a lower bound on what fine-tuning reaches", strong=True))
        parts.append(text(". Beside it, a k-NN classifier scored the same way (cosine similarity) and LogME (You "
                          "et al. 2021: the evidence of a linear model of the labels on the features, per image; "
                          "higher is better, comparable only between backbones on these images) rank how well the "
                          "frozen features transfer. "))
    parts.append(text("Intervals are 95 % from the run's paired bootstrap; n counts the images scored."))
    return tuple(parts)


def _gain(gain: Interval) -> str:
    """"86 points [78, 93]": the remapped accuracy's gain, in percentage points."""
    if missing(gain.mean):
        return MISSING
    return f"{num(gain.mean * 100)} points{bracket(gain.ci_low, gain.ci_high, 100)}"


# The warning shows the numbers the flag rests on: the in-sample remapped accuracy favours some mapping even for a
# head that guesses (issue 32, #12).
HELDOUT = "each image remapped by the assignment chosen on the other half of the images"


def _heldout(order) -> Optional[float]:
    """The held-out remapped accuracy, never the in-sample one (missing: "not measured")."""
    return order.accuracy_heldout


def _label_order_warning(report: TaskReport, display_name: str, score: TaskScore) -> Sentence:
    order = score.label_order
    mapping = ", ".join(f"output {head} looks like {_quoted(_class_name(report, label))} (it is labelled "
                        f"{_quoted(_class_name(report, head))})" for head, label in order.mapping)
    return (text(f"{display_name}'s head probably numbers your classes in another order:", flag=True),
            text(f" {mapping}. Accuracy as is {pct(order.accuracy_as_is)}, remapped {pct(_heldout(order))} "
                 f"(gain {_gain(order.heldout_gain or Interval(None, None, None, 0))}; {HELDOUT}; "
                 f"graded on the images it was chosen on, the assignment gains {_gain(order.gain)}, which flatters "
                 "any head, a guessing one too). If the head was trained with another class order, pass --labels FILE "
                 "with the names in that order (timm's folder reader sorts case-insensitively in natural order, "
                 "torchvision's ImageFolder by sorted())."))


def _measure_value(measure: str, score: TaskScore) -> str:
    if measure == "linear probe":
        return pct(score.accuracy.mean)
    if measure == "k-NN":
        return pct(score.knn_accuracy.mean if score.knn_accuracy is not None else None)
    if measure == "LogME":
        return num(score.logme)
    return ""


def _agreement(report: TaskReport, display: Mapping[str, str]) -> Sentence:
    probed = [name for name, s in report.scores.items() if s.estimand == Estimand.LINEAR_PROBE]
    who = lambda name: display.get(name, name)  # noqa: E731
    if not probed:
        return (text("No candidate was scored by a linear probe (each has its own head): there are no transfer "
                     "rankings."),)
    if len(probed) == 1:
        return (text(f"Only one candidate was probed ({who(probed[0])}): there is nothing to rank, so no agreement "
                     "between the measures to check."),)
    # A measure that did not measure a candidate cannot rank another above it: first places are compared among the
    # candidates every measure ranked (task_report._rankings), and the sentence says so when that is not all.
    over = (f" among {listing(who(n) for n in report.compared)}, the candidates every measure ranked"
            if 2 <= len(report.compared) < len(probed) else "")
    if report.rankings_agree is True:
        first = who(report.rankings[0].first)
        return (text(f"The {len(report.rankings)} measures agree on first place{over}: {first}."),)
    if report.rankings_agree is False:
        firsts = "; ".join(f"{r.measure}: {who(r.first)}" for r in report.rankings)
        return (text("The transfer measures disagree on first place", flag=True),
                text(f" ({firsts}{over}): frozen features do not settle which of these backbones suits your classes; "
                     "fine-tune the leading ones before deciding."))
    tied = [r for r in report.rankings if r.tied]
    if tied:
        return (text("No first place to agree on: " + "; ".join(
            f"{r.measure} ties {listing(who(n) for n in r.tied)}" for r in tied)
            + " (equal values, e.g. every image right)."),)
    if len(report.rankings) >= 2 and len(report.compared) < 2:
        only = f" (only {listing(who(n) for n in report.compared)})" if report.compared else ""
        return (text(f"Fewer than two candidates were ranked by every measure{only}: the measures' first places "
                     "are over different candidates, so there is no agreement to check."),)
    measured = listing(r.measure for r in report.rankings) or "no measure"
    return (text(f"Only {measured} ranked the {len(probed)} probed candidates (the other measures were not measured): "
                 "no agreement to check."),)


def task_rows(report: TaskReport, display_names: Mapping[str, str],
              runs: Optional[Mapping[str, Optional[TaskRun]]] = None) -> TaskSection:
    """The section from metrics.json's ``task``: ``display_names`` maps a backbone's name to its display name, in
    the report's order of candidates (candidates scored but not named follow, by name); ``runs`` (optional) the
    backbones' ``task`` records (protocol details, why there is no probe). No figure: :func:`build_task` adds it."""
    runs = runs or {}
    order = [name for name in display_names if name in report.scores] + \
            [name for name in report.scores if name not in display_names]
    display = {name: display_names.get(name, name) for name in order}
    scores = {name: report.scores[name] for name in order}

    candidates = []
    for name, score in scores.items():
        probe = score.estimand == Estimand.LINEAR_PROBE
        run = runs.get(name)
        candidates.append(CandidateRow(
            backbone=name, display_name=display[name], estimand=str(score.estimand),
            estimand_note=ESTIMAND_NOTE.get(score.estimand, ""), probe=probe, accuracy=_share_cell(score.accuracy),
            macro_f1=_number_cell(score.macro_f1),
            knn_accuracy=_share_cell(score.knn_accuracy) if probe else Cell(NOT_APPLICABLE),
            logme=num(score.logme) if probe else NOT_APPLICABLE, protocol=_protocol(score, run),
            excluded=_excluded_text(report, score), note=run.note if run is not None else ""))

    left_out = {}  # class index -> display names of the probes that left it out
    for name, score in scores.items():
        for e in score.excluded:
            left_out.setdefault(e.index, []).append(display[name])
    probes = [name for name, s in scores.items() if s.estimand == Estimand.LINEAR_PROBE]
    labels = []
    for cls in report.classes:
        if cls.images == 0:
            note = "no labelled images: not scored"
        elif cls.index in left_out:
            whose = left_out[cls.index]
            note = ("left out of the linear probe" if len(whose) == len(probes) else
                    f"left out of the linear probe of {listing(whose)}")
        else:
            note = ""
        labels.append(LabelRow(cls.index, cls.name, cls.images, note))

    recall = []
    for cls in report.classes:
        cells = []
        for name, score in scores.items():
            found = score.per_class_recall[cls.index] if 0 <= cls.index < len(score.per_class_recall) else None
            cell = _share_cell(found)
            if any(e.index == cls.index for e in score.excluded):
                cell = Cell(cell.value, cell.interval, cell.n, "left out of the probe")
            cells.append(cell)
        recall.append(RecallRow(cls.index, cls.name, cls.images, tuple(cells)))

    warnings = tuple(_label_order_warning(report, display[name], score) for name, score in scores.items()
                     if score.label_order is not None and score.label_order.flagged)

    columns = tuple(RankingColumn(r.measure, MEASURE_HEADER.get(r.measure, r.measure), tuple(
        f"{display.get(n, n)} ({_measure_value(r.measure, scores[n])})" if n in scores else display.get(n, n)
        for n in r.order)) for r in report.rankings)
    places = tuple(range(1, max((len(c.places) for c in columns), default=0) + 1))
    return TaskSection(intro=_intro(report), note=_note(report), method=_method(scores), labels=tuple(labels),
                       candidates=tuple(candidates), headers=tuple(display[name] for name in scores),
                       recall=tuple(recall), label_order=warnings, rankings=columns, places=places,
                       agreement=_agreement(report, display), logme_note=_logme_note(scores, display))


def _logme_note(scores: Mapping, display: Mapping[str, str]) -> Sentence:
    """One sentence per distinct reason LogME is not measured, naming the candidates it holds for."""
    reasons: dict = {}
    for name, score in scores.items():
        if score.logme_note:
            reasons.setdefault(score.logme_note, []).append(display[name])
    return tuple(text(f"LogME not measured for {listing(names)}: {reason}. ") for reason, names in reasons.items())


def build_task(results, numbered: Optional[FigureNumbers] = None) -> Optional[TaskSection]:
    """The section of a run on the user's classes (None on ImageNet's), with its figure: the confusion matrices,
    numbered by ``numbered`` (the context's figure numbers; a fresh count when None)."""
    task = results.metrics.task
    if task is None:
        return None
    index = results.index
    section = task_rows(task, {b.name: b.display_name for b in index.backbones},
                        {b.name: b.task for b in index.backbones})
    if not section.candidates or not task.classes:
        return section
    if numbered is None:
        numbered = FigureNumbers()
    names = [c.name for c in task.classes]
    shown = [row.backbone for row in section.candidates]
    titles = [f"{row.display_name} ({row.estimand})" for row in section.candidates]
    cells = (f"cells without numbers (more than {task_figures.CELL_NUMBERS_MAX_CLASSES} classes)"
             if len(names) > task_figures.CELL_NUMBERS_MAX_CLASSES else "counts in the cells")
    probes = any(row.probe for row in section.candidates)
    caption = ("Confusion matrices on your classes, one panel per candidate: rows the true class, columns the "
               "predicted one" + (" (a probe's out-of-fold prediction)" if probes else "")
               + f"; labelled images with a prediction, {cells}; one colour scale for every panel.")
    if any(len(n) > task_figures.NAME_CHARACTERS for n in names):
        indexed = task_figures.axis_names(names) != [task_figures.short_name(n) for n in names]
        caption += (f" Class names longer than {task_figures.NAME_CHARACTERS} characters are shortened"
                    + (", each led by its index" if indexed else "") + ".")
    figure = numbered.add("fig-task-confusion", caption, task_figures.confusion_plot(
        titles, names, [task.scores[name].confusion for name in shown]))
    return replace(section, figure=figure)
