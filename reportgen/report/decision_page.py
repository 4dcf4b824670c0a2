"""Page 1: the decision in sentences a design review can cite, built once for every format from the scoring's
Decision (which holds the numbers; this only phrases them)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from ..inputs.config import DEVICE_SAMPLE_SIZES
from ..results.schema import PRECISION_REACHED, CostReport, Estimand, FlagReason, RunIndex, TaskReport, Interval
from ..scoring.score import sample_sizes
from ..scoring.constraints import Check, constraint
from ..scoring.criteria import criteria, criterion, utility
from ..scoring.decision import Candidate, Decision, DecisionStatus
from ..inputs.label_space import LabelSpace, LabelSpaceKind, NamesSource, NumberedNames, NumbersReason
from ..scoring.degenerate import Degeneracy, reading_suspected
from ..scoring.survival import LeftOutReason, Survival, SurvivalStatus
from .formatting import MISSING, bracket, listing, num, pct, pct_bracket, whole_pct
from .phrases import Sentence, text


@dataclass(frozen=True, kw_only=True)
class DecisionPage:
    title: str  # "Backbone decision: 3 candidates on 18 images (manifest), 2026-11-29, CPU"
    headline: Sentence  # the pick, or why there is none
    basis: Sentence  # the criteria that decided (weights, where they came from) and those left out
    change: Sentence  # what would change the decision
    paired_test: Sentence  # McNemar of the top two on the labelled images (empty without labels)
    constraints: Sentence  # the limits, and the candidates that fail them or are uncertain
    notes: tuple  # Sentence per further note (missing criteria per candidate, aliases, older cost files)
    method: Sentence  # how the numbers were made (draws, weights, scales, the rule)
    machine: Sentence  # where latency was measured
    rows: tuple = ()  # CandidateCells per candidate, in the decision's order (the page-1 table)
    busy: Sentence = ()  # a warning: latency timed on a busy machine (empty: it was not)
    degenerate: tuple = ()  # a warning Sentence per candidate whose outputs are degenerate
    details: Sentence = (text("How these numbers are made, and what they leave out: "),
                         text("section 2.1", "decision-detail"), text("."))
    task: Sentence = ()  # the user's classes: what each candidate's accuracy measures (empty on ImageNet's)
    task_warnings: tuple = ()  # a warning Sentence per head whose class order looks permuted, and on transfer rankings
    accuracy_header: str = "top-1"
    columns: tuple = ()  # ColumnHeader per criterion column of the table, in the criteria table's order
    gate: Sentence = ()  # [gate]: the verdict for CI (empty without a gate)
    gate_rows: tuple = ()  # GateCells per challenger and condition
    # whether the pick and the gate's verdict hold without the flagged images (empty: none was flagged)
    survival: Sentence = ()
    # How numbered class folders were read (your classes or ImageNet indices) and how to get the other reading; a
    # warning naming the reading as the likeliest cause when every candidate looks broken (empty: no numbered names)
    label_reading: Sentence = ()


@dataclass(frozen=True)
class Cell:
    """A table cell: the value, and its interval ("" when it has none), which HTML may set on a line of its own;
    ``note``: what Markdown adds after it in parentheses (HTML says it elsewhere)."""
    value: str
    interval: str = ""
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class CandidateCells:
    backbone: str
    rank: str
    display_name: str
    leader: bool
    pareto: bool
    failed: bool
    p_best: str
    score: Cell
    cells: dict  # criterion -> Cell, one per column of PAGE1_COLUMNS (or its default), in the criteria's order
    constraints: str
    missing: str  # criteria without a value for it
    estimand: str = ""  # the user's classes: own head | linear probe (empty on ImageNet's)


@dataclass(frozen=True, kw_only=True)
class GateCells:
    challenger: str
    condition: str
    outcome: str
    counts_as: str
    value: str
    limit: str
    text: str


GATE_CONDITIONS = {"min_p_better": "P(better)", "max_accuracy_drop": "task accuracy change, points",
                   "constraints": "constraints"}


def gate_cells(gate) -> tuple:
    rows = []
    for row in gate.rows:
        if row.condition == "min_p_better":
            value = MISSING if row.value is None else f"{row.value:.3f}"
            limit = f"≥ {row.limit:g}"
        elif row.condition == "max_accuracy_drop":
            cell = _change_cell(row.value, row.ci_low, row.ci_high)
            value = f"{cell.value} {cell.interval}".rstrip()
            limit = f"≥ {100 * row.limit:+g}"
        else:
            value, limit = row.text.split(": ", 1)[1], "pass"
        if row.outcome == Check.NOT_MEASURED:  # no number to show: why, and what to measure
            value = row.text.split(": ", 1)[1]
        rows.append(GateCells(challenger=row.display_name, condition=GATE_CONDITIONS[row.condition],
                              outcome=row.outcome, counts_as=row.counts_as, value=value, limit=limit, text=row.text))
    return tuple(rows)


def _gate(gate) -> Sentence:
    if gate is None:
        return ()
    failed = gate.failures()
    verdict = "PASSES" if gate.passed else "FAILS"
    uncertain = sum(1 for row in gate.rows if row.outcome == Check.UNCERTAIN)
    unmeasured = sum(1 for row in gate.rows if row.outcome == Check.NOT_MEASURED)
    why = (f"{len(failed)} of {len(gate.rows)} conditions count as failed ("
           + "; ".join(f"{row.display_name}: {GATE_CONDITIONS[row.condition]} {row.outcome}" for row in failed) + ")"
           if failed else f"every condition of {len(gate.rows)} passes"
           + (f" ({uncertain} uncertain, counted as {gate.settings.on_uncertain})" if uncertain else ""))
    return (text(f"Gate {verdict}", strong=True),
            text(f" (champion {gate.champion_display_name}, challengers "
                 f"{listing(dict.fromkeys(row.display_name for row in gate.rows))}): {why}; judged on the same "
                 f"{gate.draws:,} paired draws, uncertain counts as {gate.settings.on_uncertain}"
                 + (" (an uncertain constraint as fail: constraints must pass)"
                    if gate.settings.constraints == "pass" and gate.settings.on_uncertain != "fail" else "")
                 + (f"; {unmeasured} not measured, which always counts as fail (its row says what to measure; or "
                    "leave that condition out)" if unmeasured else "") + ". "
                 "reportgen gate exits 8 when it fails."),)


# How page 1 counts the images left out for each reason: (one, several).
LEFT_OUT_WORDS = {LeftOutReason.LEAKED: ("leaked", "leaked"),
                  LeftOutReason.LABEL_ERROR: ("likely label error", "likely label errors"),
                  LeftOutReason.DUPLICATE: ("duplicate", "duplicates")}


def _moved(before: Optional[float], after: Optional[float]) -> str:
    """"falls from 82 % to 30 %", "rises from ...", "stays at 82 %" (as shown); "not ranked": it fails a constraint."""
    def shown(value):
        return whole_pct(value) if value is not None else "not ranked"
    if shown(before) == shown(after):
        return f"stays at {shown(before)}"
    if before is None or after is None:
        return f"goes from {shown(before)} to {shown(after)}"
    return f"{'falls' if after < before else 'rises'} from {shown(before)} to {shown(after)}"


def _survival_verdict(survival: Survival) -> Sentence:
    """The pick both ways: whether it holds, and the P(best) of the pick as given and of the new one."""
    given, new = survival.chance(survival.leader_given), survival.chance(survival.leader_without)
    needs = f" (a pick needs {whole_pct(survival.min_win_probability)})"
    picked = (DecisionStatus.RECOMMENDED, DecisionStatus.ONLY_CANDIDATE)
    if survival.pick_holds:
        if survival.verdict_given == DecisionStatus.NONE_PASS:
            return (text("still no candidate meets the constraints", strong=True),)
        if survival.verdict_given == survival.verdict_without == DecisionStatus.ONLY_CANDIDATE:
            # one candidate either way: page 1 made no pick over another backbone, and its P(best) is 100 % by itself
            return (text(f"{given.display_name} is still the only candidate", strong=True),)
        if survival.verdict_given in picked:
            return (text("the pick holds", strong=True),
                    text(f": {given.display_name}'s P(best) {_moved(given.given, given.without)}"),)
        return (text("there is still no clear winner", strong=True),
                text(f": {given.display_name} leads both ways, its P(best) {_moved(given.given, given.without)}"),)
    if survival.verdict_without == DecisionStatus.NONE_PASS or new is None:
        return (text("no candidate meets the constraints any more", flag=True),)
    was_pick = survival.verdict_given in picked
    if given is not None and new.backbone == given.backbone:
        if survival.verdict_without in picked and was_pick:  # e.g. recommended as given, the only candidate without
            return (text("the pick holds", strong=True),
                    text(f": {given.display_name}'s P(best) {_moved(given.given, given.without)}"),)
        if survival.verdict_without in picked:
            return (text(f"{given.display_name} becomes the pick", flag=True),
                    text(f": its P(best) {_moved(given.given, given.without)}{needs}"),)
        return (text("the pick no longer holds", flag=True),
                text(f": {given.display_name} still leads, but its P(best) {_moved(given.given, given.without)}"
                     f"{needs}"),)
    if given is None:  # nothing met the constraints as given
        what = f"{new.display_name} meets the constraints and " + \
            ("is the pick" if survival.verdict_without in picked else "leads, with no clear winner")
    elif survival.verdict_without in picked:
        what = f"the pick changes to {new.display_name}" if was_pick else f"{new.display_name} becomes the pick"
    else:
        what = f"the lead changes to {new.display_name}, with no clear winner"
    before = f"; {given.display_name}'s {_moved(given.given, given.without)}" if given is not None else ""
    return (text(what, flag=True), text(f" (P(best) {whole_pct(new.without)}{before})"),)


SURVIVAL_CONDITIONS = {"min_p_better": "P(better)", "max_accuracy_drop": "the accuracy drop",
                       "constraints": "the constraints"}


def _survival_gate(survival: Survival) -> Sentence:
    if survival.gate_given is None or survival.gate_without is None:
        return ()
    verdict = {Check.PASS: "PASSES", Check.FAIL: "FAILS"}
    turned = [f"{h.display_name} now {'passes' if h.without == Check.PASS else 'fails'}"
              for h in survival.gate if h.holds is False]
    if survival.gate_holds:  # a challenger may turn while another still fails the gate
        return (text(f"; the gate's verdict holds ({verdict[survival.gate_given]})"
                     + (f", though {listing(turned)}" if turned else "")),)
    moved = "; ".join(f"{h.display_name} now {'passes' if h.without == Check.PASS else 'fails'} on "
                      f"{listing(SURVIVAL_CONDITIONS[c] for c in h.changed)}" for h in survival.gate if not h.holds)
    return (text("; ", ), text(f"the gate's verdict changes from {verdict[survival.gate_given]} to "
                               f"{verdict[survival.gate_without]}", flag=True), text(f" ({moved})"),)


def survival_sentence(survival: Optional[Survival], own_task: bool = False) -> Sentence:
    """One line: whether the pick and the gate's verdict hold without the flagged images, with the P(best) both
    ways (empty when none was flagged)."""
    if survival is None or survival.status == SurvivalStatus.NOTHING_LEFT_OUT:
        return ()
    count = len(survival.left_out)
    reasons = ", ".join(f"{c.images:,} {LEFT_OUT_WORDS[c.reason][c.images != 1]}" for c in survival.counts)
    opening = f"Without the {count:,} flagged image{'s' if count != 1 else ''} ({reasons})"
    if survival.status != SurvivalStatus.RECOMPUTED:
        return (text(f"{opening} {survival.reason}: the pick is not recomputed without them (the decision above is "
                     "on the images as given)."),)
    dropped = ()
    if survival.dropped_without:
        named = listing(f"{_named(c, own_task)} ({why})" for c, why in survival.dropped_without)
        dropped = (text(f"; without them the decision leaves out {named}"),)
    return ((text(f"{opening}, on the other {survival.kept:,} images, "),) + _survival_verdict(survival) + dropped
            + _survival_gate(survival) + (text(". The decision above stays on the images as given: the flags are "
                                               "likely, not certain, and the labels are yours to fix."),))


def _interval_cell(value, low, high) -> Cell:
    return Cell(num(value), bracket(low, high).strip())


def _share_cell(value, low, high) -> Cell:
    """A share in percent with its interval in points, as the table's other share columns."""
    return Cell(pct(value), pct_bracket(low, high))


def _change_cell(value, low, high) -> Cell:
    """A change of a share in signed percentage points, with its interval."""
    if value is None:
        return Cell(MISSING)
    return Cell(f"{100 * value:+.1f}", f"[{100 * low:+.1f}, {100 * high:+.1f}]" if low is not None else "")


def _measure_cell(measure) -> Cell:
    return _interval_cell(measure.value, measure.ci_low, measure.ci_high)


def _latency_cell(candidate: Candidate) -> Cell:
    """Milliseconds with their interval, then the latency relative to the fastest (its interval: the within-session
    differences, where the drift the sessions share cancels)."""
    cell, ratio = _measure_cell(candidate.latency), candidate.latency_vs_fastest
    if ratio.value is None or candidate.latency.value is None:
        return cell
    relative = "fastest" if ratio.value == 1.0 and ratio.ci_low == ratio.ci_high == 1.0 else \
        f"×{num(ratio.value)} the fastest" + (f" {bracket(ratio.ci_low, ratio.ci_high).strip()}"
                                              if ratio.ci_low is not None else "")
    return Cell(cell.value, f"{cell.interval}; {relative}" if cell.interval else relative, cell.note)


@dataclass(frozen=True, kw_only=True)
class Column:
    """A criterion's column in the page-1 table: its header in each format ("{accuracy}" stands for the accuracy
    header: "top-1", or "task accuracy" on the user's classes) and its cell."""
    html: str
    markdown: str
    cell: Callable[[Candidate], Cell]
    estimand: bool = False  # the cell notes how a candidate's task accuracy was measured


@dataclass(frozen=True)
class ColumnHeader:
    html: str
    markdown: str


# Page 1's columns, keyed by criterion (scoring's CRITERIA holds what a criterion is; this, how page 1 shows it).
# None: no column (clutter is in section 3). A criterion absent here gets default_column(): its label and points.
PAGE1_COLUMNS: dict = {
    "accuracy": Column(html="{accuracy} [CI]", markdown="{accuracy} [CI]",
                       cell=lambda c: _share_cell(c.top1, *c.top1_ci), estimand=True),
    "localisation": Column(html="localisation: mass_ratio, size mix [CI]", markdown="localisation [CI]",
                           cell=lambda c: _measure_cell(c.localisation_score)),
    "clutter": None,
    "calibration": Column(html="calibration: top-1 Brier [CI]", markdown="calibration: top-1 Brier [CI]",
                          cell=lambda c: _measure_cell(c.calibration)),  # the top-1 Brier score (ECE: section 3.4)
    "corruption": Column(html="corruptions: top-1 change, points [CI]", markdown="corruptions: Δ top-1, points [CI]",
                         cell=lambda c: _change_cell(c.corruption.value, c.corruption.ci_low, c.corruption.ci_high)),
    "faithfulness": Column(html="faithfulness: ROAD gap [CI]", markdown="faithfulness [CI]",
                           cell=lambda c: _measure_cell(c.faithfulness)),
    "latency": Column(html="latency, batch 1 (ms) [CI]; × the fastest [CI]", markdown="latency ms [CI]; × fastest",
                      cell=_latency_cell),
    "size": Column(html="params (M)", markdown="params (M)", cell=lambda c: Cell(num(c.params_m))),
}


def default_column(key: str, own_task: bool = False) -> Column:
    """A criterion without a PAGE1_COLUMNS entry: its label, and each candidate's points on it."""
    header = f"{criterion(key).label_for(own_task)}, points"
    return Column(html=header, markdown=header, cell=lambda c: Cell(num(c.utilities.get(key))))


def page_columns(own_task: bool = False) -> dict:
    """criterion -> Column, for every criterion of the table that has one, in the table's order."""
    found = {c.key: PAGE1_COLUMNS[c.key] if c.key in PAGE1_COLUMNS else default_column(c.key, own_task)
             for c in criteria()}
    return {key: column for key, column in found.items() if column is not None}


def column_headers(accuracy_header: str, own_task: bool) -> tuple:
    return tuple(ColumnHeader(column.html.format(accuracy=accuracy_header),
                              column.markdown.format(accuracy=accuracy_header))
                 for column in page_columns(own_task).values())


def candidate_cells(decision: Decision, estimands: Optional[dict] = None) -> tuple:
    estimands = estimands or {}
    columns = page_columns()
    rows = []
    for c in decision.candidates:
        score = _interval_cell(c.score.mean, c.score.ci_low, c.score.ci_high) if c.score else Cell("—")
        estimand = ESTIMAND_SHORT.get(estimands.get(c.backbone), "")
        cells = {key: column.cell(c) for key, column in columns.items()}
        cells = {key: replace(cell, note=estimand) if columns[key].estimand else cell for key, cell in cells.items()}
        rows.append(CandidateCells(
            backbone=c.backbone, rank=str(c.rank or "—"), display_name=c.display_name,
            leader=c.backbone == decision.leader, pareto=c.pareto, failed=bool(c.failed),
            p_best=whole_pct(c.p_best) if c.p_best is not None else "—", score=score, cells=cells,
            constraints=check_mark(c), missing=", ".join(c.missing), estimand=estimand))
    return tuple(rows)


# How the page-1 table says which estimand a candidate's task accuracy is.
ESTIMAND_SHORT = {Estimand.OWN_HEAD: "own head", Estimand.LINEAR_PROBE: "linear probe"}
ESTIMAND_SENTENCE = {Estimand.OWN_HEAD: "its own head",
                     Estimand.LINEAR_PROBE: "a linear probe on frozen features (out of fold: a lower bound on "
                                            "fine-tuning)"}


def task_name(index: RunIndex, labelled: int) -> str:
    """'your 2 classes (ants, bees), 153 labelled images'."""
    return f"{index.label_space.described()}, {labelled:,} labelled images"


def _task_sentence(decision: Decision, index: RunIndex, task: Optional[TaskReport]) -> Sentence:
    if task is None:
        return ()
    by_estimand: dict = {}
    for c in decision.candidates:
        by_estimand.setdefault(index.backbone(c.backbone).estimand, []).append(c.display_name)
    parts = [f"{ESTIMAND_SENTENCE.get(estimand, str(estimand))} for {listing(names)}"
             for estimand, names in by_estimand.items()]
    mixed = (" The candidates' accuracies measure different things, so compare a probe with a fine-tuned head "
             "knowing the probe is the lower bound." if len(by_estimand) > 1 else "")
    return (text(f"For {task_name(index, task.labelled_images)} (names from {index.label_space.source}): task "
                 f"accuracy through {'; '.join(parts)}.{mixed}"),)


def _task_warnings(decision: Decision, index: RunIndex, task: Optional[TaskReport]) -> tuple:
    if task is None:
        return ()
    names = index.label_space.names
    out = []
    for c in decision.candidates:
        score = task.scores.get(c.backbone)
        order = score.label_order if score is not None else None
        if order is None or not order.flagged:
            continue
        mapping = ", ".join(f"output {head} ({names[head]!r}) looks like {names[label]!r}"
                            for head, label in order.mapping)
        # The held-out numbers the flag rests on, never the selection-biased in-sample ones (issue 32, #12).
        heldout_accuracy = order.accuracy_heldout
        gain = order.heldout_gain or Interval(None, None, None, 0)
        out.append((text(f"{c.display_name}'s head probably numbers the classes in another order than the labels: ",
                         strong=True),
                    text(f"{mapping}; accuracy {pct(order.accuracy_as_is)} as given, {pct(heldout_accuracy)} "
                         f"remapped (gain {pct(gain.mean)}{pct_bracket(gain.ci_low, gain.ci_high)}; each image "
                         "remapped by the assignment chosen on the other half of the images). "
                         "Pass --labels FILE in the order the head was trained with (timm's folder reader sorts "
                         "case-insensitively in natural order, torchvision's ImageFolder by sorted()).")))
    if task.rankings_agree is False:
        firsts = "; ".join(f"{r.measure}: {_who(decision, r.first)}" for r in task.rankings)
        over = ""
        if len(task.compared) < sum(s.estimand == Estimand.LINEAR_PROBE for s in task.scores.values()):
            over = f" among {listing(_who(decision, n) for n in task.compared)}, the candidates every measure ranked"
        out.append((text("The transfer measures disagree on the first place ", strong=True),
                    text(f"({firsts}{over}): the difference between these backbones on your classes is not settled by "
                         "frozen features; fine-tune the leading ones before deciding."),))
    return tuple(out)


def _train_copies_warning(index: RunIndex, shown: int = 3, data=None) -> tuple:
    """Evaluation images that are also training images (--train-images): byte-identical, or (``data``: metrics.json's
    data check) near-copies by their pooled features. A probe fit on an image scores it from memory, so the probe's
    accuracy is inflated by them (the run goes on; the user decides)."""
    copies = index.train_copies
    near = tuple(f.image for f in data.flagged(FlagReason.TRAIN_EVAL_NEAR_COPY)) if data is not None else ()
    if not copies and not near:
        return ()

    def named(files) -> str:
        return (f"{', '.join(files[:shown])} and {len(files) - shown:,} more" if len(files) > shown
                else listing(files))
    kinds = ([f"byte-identical: {named(copies)}"] if copies else []) + \
        ([f"{len(near):,} near-cop{'y' if len(near) == 1 else 'ies'}, pooled features at least {num(data.near_threshold)} similar: "
          f"{named(near)}"] if near else [])
    return ((text(f"{len(copies) + len(near):,} of the {len(index.images):,} images are also in the training images ",
                  strong=True),
             text(f"({'; '.join(kinds)}): the probes were fit on them, so their "
                  "accuracy on these images is inflated. Remove them from --images or from --train-images and run "
                  "again."),
             *((text(" Your data", link="data"), text(" lists them.")) if near else ())),)


def _who(decision: Decision, name: Optional[str]) -> str:
    candidate = decision.candidate(name)
    return candidate.display_name if candidate else str(name)


def title(decision: Decision, index: RunIndex, started: str, task: Optional[TaskReport] = None) -> str:
    count = len(decision.candidates)
    labels = index.image_set.labels if index.image_set.labels != "none" else "unlabelled"
    device = {"cpu": "CPU", "cuda": "GPU"}.get(index.device, index.device)
    if decision.machine is not None and index.device == "cuda":
        device = f"GPU ({decision.machine.device_name})"
    when = f", {started[:10]}" if started else ""
    if task is not None:
        return (f"Backbone decision for {task_name(index, task.labelled_images)}: {count} "
                f"candidate{'s' if count != 1 else ''}{when}, {device}")
    return (f"Backbone decision: {count} candidate{'s' if count != 1 else ''} on {len(index.images):,} images "
            f"({labels}){when}, {device}")


def _score(candidate: Candidate) -> str:
    if candidate.score is None:
        return MISSING
    return f"{num(candidate.score.mean)}{bracket(candidate.score.ci_low, candidate.score.ci_high)}"


def _headline(decision: Decision) -> Sentence:
    leader, second = decision.candidate(decision.leader), decision.candidate(decision.runner_up)
    draws = f"{decision.draws:,} bootstrap draws"
    on_cost = " on cost alone (latency and size: nothing else could be measured on these images)" \
        if decision.cost_alone else ""
    prefix = [text("ILLUSTRATIVE, untrained weights: ", strong=True)] if decision.illustrative else []
    if decision.status == DecisionStatus.NONE_PASS:
        least = decision.candidate(decision.least_violating)
        return tuple(prefix + [text("No candidate meets the constraints. ", strong=True),
                               text(f"The least violating is {least.display_name} (fails: "
                                    f"{'; '.join(t for _, t in least.failed)}); relax a constraint or add candidates.")])
    if decision.status == DecisionStatus.ONLY_CANDIDATE:
        others = len(decision.candidates) - 1
        why = (f"the only candidate that meets the constraints ({others} fail{'s' if others == 1 else ''} them)"
               if others else "the only candidate")
        return tuple(prefix + [text(f"{leader.display_name}", strong=True), text(f" is {why}{on_cost}: score "),
                               text(_score(leader), "tab-decision"),
                               text("; there is nothing to rank it against, so this is no recommendation over "
                                    "another backbone.")])
    if decision.status == DecisionStatus.NO_CLEAR_WINNER and not decision.weights:
        return tuple(prefix + [text("No clear winner", strong=True),
                               text(": the candidates that meet the constraints share no weighted criterion (what "
                                    "was left out follows), so nothing ranks them.")])
    if decision.status == DecisionStatus.NO_CLEAR_WINNER:
        compared = [c for c in decision.candidates if c.p_best is not None]
        shares = [f"{c.display_name} {whole_pct(c.p_best)}" for c in compared]
        most = max(compared, key=lambda c: c.p_best, default=leader)
        though = (f", though {most.display_name} ranks first in more draws" if leader.p_best is not None
                  and most.p_best > leader.p_best else "")
        standing = (f"{leader.display_name} and {second.display_name} tie in every draw (score {_score(leader)}): "
                    f"the same number on every criterion{though}" if decision.tied else
                    f"{leader.display_name} leads with score {_score(leader)} against {second.display_name}'s "
                    f"{_score(second)}{though}")
        return tuple(prefix + [text("No clear winner", strong=True), text(f"{on_cost}: P(best), the share of {draws} "
                               "(images, timing and weights resampled together) in which each ranks first, is "),
                               text(listing(shares), "tab-decision"),
                               text(f"; a pick needs {whole_pct(decision.min_win_probability)}. {standing}. Choose "
                                    "on what the criteria leave out, or add images.")])
    verb = "would be picked" if decision.illustrative else ""
    return tuple(prefix + [text(f"Pick {leader.display_name}" if not verb else leader.display_name, strong=True),
                           text(f"{' ' + verb if verb else ''}{on_cost}: it ranks first in "),
                           text(f"{whole_pct(leader.p_best)} of {draws}", "tab-decision"),
                           text(f" (images, timing and weights resampled together; a pick needs "
                                f"{whole_pct(decision.min_win_probability)}), with score {_score(leader)} against "
                                f"{second.display_name}'s {_score(second)}")]
                  + ([text(f", a difference of {num(decision.margin.mean)}"
                           f"{bracket(decision.margin.ci_low, decision.margin.ci_high)}")] if decision.margin else [])
                  + [text(".")])


def _named(key: str, own_task: bool) -> str:
    """A criterion's words on page 1: the accuracy criterion is task accuracy on the user's classes."""
    return criterion(key).label_for(own_task)


def _basis(decision: Decision, own_task: bool) -> Sentence:
    used = [f"{_named(c, own_task)} {num(w)}{'' if decision.weight_sources[c] == 'yours' else ' (default)'}"
            for c, w in decision.weights.items()]
    parts = [text("Criteria and their weights: "), text(", ".join(used) or "none", "tab-decision")]
    if decision.dropped:
        parts.append(text("; left out: " + "; ".join(f"{_named(c, own_task)} ({why})" for c, why in decision.dropped)))
    if decision.unshared:
        whom = "; ".join(f"{_named(c, own_task)} (no value for {listing(f'{name}: {why}' for name, why in lacking)})"
                         for c, lacking in decision.unshared)
        parts.append(text(f"; left out for every candidate, so that all are compared on the criteria they share: "
                          f"{whom}"))
    return tuple(parts + [text(".")])


def _change(decision: Decision, own_task: bool) -> Sentence:
    if decision.status not in (DecisionStatus.RECOMMENDED, DecisionStatus.NO_CLEAR_WINNER) or decision.leader is None \
            or not decision.weights:
        return ()
    leader = _who(decision, decision.leader)
    change = decision.sensitivity
    if change is None:
        return (text(f"What would change it: no single weight change within 0–{num(decision.sensitivity_range)} "
                     f"puts another candidate ahead of {leader} at the point estimates."),)
    direction = "raising" if change.to > change.weight else "lowering"
    digits = 3
    while num(change.weight, digits) == num(change.to, digits) and digits < 8:  # never "from 3 to 3"
        digits += 1
    return (text(f"What would change it: {direction} the {_named(change.criterion, own_task)} weight from "
                 f"{num(change.weight, digits)} to {num(change.to, digits)} puts {change.new_first} ahead of {leader} "
                 "at the point estimates."),)


def _paired_test(decision: Decision) -> Sentence:
    test = decision.mcnemar
    if test is None:
        return ()
    verdict = "a difference this large is unlikely by chance" if test.p_value < 1 - decision.confidence else \
        "the difference is within chance"
    return (text(f"Top-1 of {test.first} and {test.second} on the same {test.labelled:,} labelled images: "
                 f"{test.first_only} right only for {test.first}, {test.second_only} only for {test.second} "
                 f"(exact McNemar p = {num(test.p_value, 2)}: {verdict})."),)


def _constraints(decision: Decision) -> Sentence:
    if not decision.constraints:
        return (text("Constraints: none set (a [decision] table in a battery file sets them)."),)
    limits = ", ".join(f"{constraint(k).label} {pct(v) if constraint(k).share else num(v)}"
                       for k, v in decision.constraints.items())
    parts = [text(f"Constraints: {limits}.")]
    for c in decision.candidates:
        if c.failed:
            parts.append(text(f" {c.display_name} fails them ({'; '.join(t for _, t in c.failed)})."))
        if c.uncertain:
            parts.append(text(f" {c.display_name} is uncertain ({'; '.join(t for _, t in c.uncertain)}): kept in, "
                              "marked."))
    return tuple(parts)


def _notes(decision: Decision) -> tuple:
    notes = []
    for alias, name in decision.aliases:
        notes.append((text(f"The weights table names {alias!r}, the old name of {name!r}; it is read as {name}."),))
    if any(source == "default" for c, source in decision.weight_sources.items() if c in decision.weights) and \
            any(source == "yours" for source in decision.weight_sources.values()):
        notes.append((text("Your weights table leaves some criteria out: they keep their default weights (marked "
                           "\"default\")."),))
    notes += [(text(note[0].upper() + note[1:] + "."),) for note in decision.notes]
    return tuple(notes)


def _busy(decision: Decision) -> Sentence:
    if not decision.busy_latency:
        return ()
    loads = ", ".join(f"{name} {load:.1f}" for name, load in decision.busy_latency)
    return (text(f"Latency was timed on a busy machine (load average per core: {loads}; above busy_load_per_core = "
                 f"{num(decision.busy_load_per_core)}): other processes inflate it, and a load that lasts through "
                 "every timing session inflates each session alike, which the interval over the sessions cannot "
                 "show. Run again with --fresh on an idle machine before deciding on latency.", flag=True),)


def degenerate_warning(found: Degeneracy) -> Sentence:
    """One sentence with the numbers: what is degenerate, what to check, and that it is left out of the pick."""
    facts = [f"predicts class '{found.top_class}' for {whole_pct(found.top_class_share)} of {found.images:,} images"]
    if found.top1 is not None:
        facts.append(f"its top-1 is {pct(found.top1)}" + (f" (chance {pct(found.chance)})" if found.at_chance else ""))
    if found.cams_broken:
        facts.append(f"its deep-layer heatmaps are all-zero, constant or NaN on {found.broken_cams:,} images")
    return (text(f"{found.display_name} looks broken: " + "; ".join(facts) + ". Check the checkpoint, its "
                 "normalisation (mean/std) and its class order. It is never recommended and is ranked last; its "
                 "heatmaps and scores describe the damage, not the architecture.", flag=True),)


# Why numbered names were read as they were, one phrase per case of the rule (inputs.labels.read_numbers) or choice.
NUMBERS_WHY = {
    NumbersReason.COUNT: "since they count from {start}",
    NumbersReason.ABOVE_IMAGENET: "since {top} is above 999, ImageNet's last index",
    NumbersReason.NOT_A_COUNT: "since they do not count from 0 or 1 as a numbering of your own would",
    NumbersReason.WHOLE_IMAGENET: "since they count up to 999, ImageNet-1k's last index",
    NumbersReason.ASKED: "as you asked",
    NumbersReason.OTHER_NAMES: "like the other names",
}
NUMBERS_WHERE = {NamesSource.FOLDERS: "Folders", NamesSource.ANNOTATIONS: "The classes of annotations.csv"}


def number_runs(numbers, limit: int = 8) -> str:
    """'0–9', '1, 151, 207, 281, 949', '0–7, 9': runs of three or more consecutive numbers as ranges."""
    runs: list = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    parts = []
    for first, last in runs:
        if last - first >= 2:
            parts.append(f"{first}–{last}")
        else:
            parts.extend(str(n) for n in range(first, last + 1))
    shown = ", ".join(parts[:limit])
    return shown + (f", … ({len(parts) - limit} more)" if len(parts) > limit else "")


def _imagenet_examples(numbers, index: RunIndex, shown: int = 3) -> str:
    """'0 tench, 1 goldfish, …': what the first numbers mean as ImageNet classes (the results name every class)."""
    names = {image.class_index: image.class_name for image in index.images
             if image.class_index is not None and image.class_name}
    said = [f"{n} {names[n].split(',')[0]}" for n in numbers[:shown] if n in names]
    return ", ".join(said) + (", …" if said and len(numbers) > shown else "")


def _numbers_read(numbered: NumberedNames, space: LabelSpace, examples: str) -> tuple[str, str, str]:
    """(what was read: 'Folders 0–9', how: 'read as your 10 classes, since they count from 0', the other reading:
    'not ImageNet indices 0–9: pass --label-reading imagenet for that')."""
    runs = number_runs(numbered.numbers)
    count = len(numbered.numbers)
    own = numbered.read_as == LabelSpaceKind.OWN
    why = NUMBERS_WHY[numbered.reason].format(start=min(numbered.numbers[0], 1), top=numbered.numbers[-1])
    if numbered.reason == NumbersReason.COUNT:  # a count may miss a few numbers (the rule allows one in ten)
        present = set(numbered.numbers)
        missing = [n for n in range(min(numbered.numbers[0], 1), numbered.numbers[-1] + 1) if n not in present]
        if missing:
            why += f", with {number_runs(missing, 3)} missing"
    what = f"{NUMBERS_WHERE.get(numbered.source, 'Class names')} {runs}"
    if own:
        classes = (f"your {count:,} classes" if count == len(space.names) else
                   f"{count:,} of your {len(space.names):,} classes")
        other = ("they cannot be ImageNet indices" if numbered.reason == NumbersReason.ABOVE_IMAGENET else
                 f"not ImageNet indices {runs}: pass --label-reading imagenet for that")
        return what, f"read as {classes}, {why}", other
    meaning = f" ({examples})" if examples else ""
    return (what, f"read as ImageNet-1k indices{meaning}, {why}",
            f"not your own {count:,} class{'es' if count != 1 else ''}: pass --label-reading own for that")


def label_reading_sentence(space: LabelSpace, examples: str = "") -> str:
    """Which reading numbered class names were given and how to get the other, in one sentence ("" without
    numbered names). ``examples``: what the first numbers mean as ImageNet classes."""
    if space.numbered is None:
        return ""
    what, how, other = _numbers_read(space.numbered, space, examples)
    return f"{what} {how} ({other})."


def _label_reading(decision: Decision, index: RunIndex) -> Sentence:
    """Page 1's sentence on the reading of numbered names; when every candidate looks broken on an ImageNet reading
    of them, a warning that names the reading as the likeliest cause, before the candidates' own warnings."""
    space = index.label_space
    numbered = space.numbered
    if numbered is None:
        return ()
    examples = (_imagenet_examples(numbered.numbers, index) if numbered.read_as == LabelSpaceKind.IMAGENET else "")
    if not reading_suspected(decision.degenerate, len(decision.candidates), space):
        return (text(label_reading_sentence(space, examples)),)
    what, how, _ = _numbers_read(numbered, space, examples)
    count = len(numbered.numbers)
    return (text("Every candidate looks broken, and the likeliest cause is how the labels were read, not the "
                 f"checkpoints: {what[0].lower()}{what[1:]} were {how}, so every candidate is scored on ImageNet "
                 f"classes the images may not show. If the {count:,} numbers are your own classes, run again with "
                 "--label-reading own (or [images] label_reading = 'own'): each candidate is then scored on your "
                 "classes.", flag=True),)


def _method(decision: Decision) -> Sentence:
    weights = "fixed at these values" if not decision.weight_uncertainty else \
        f"drawn around these values in each draw (log-normal, spread {num(decision.weight_uncertainty)}, as in SMAA)"
    per_halving = num(float(utility("latency", 1.0) - utility("latency", 2.0)))
    return (text(f"Method: {decision.draws:,} paired bootstrap draws resample the images (stratified by size, "
                 "background, labelled and boxed, groups too small to vary on their own resampled together) for "
                 "every candidate at once, and in the "
                 f"same draws each candidate's latency from its timing sessions (a t draw over their spread; an "
                 f"older cost.json: its timed passes resampled); weights are {weights}. P(best) is the share of "
                 "draws in which a candidate scores highest (a win is shared only on an exact tie, and a candidate "
                 "without a value in a draw cannot win it, so a candidate worse in every draw changes no other's "
                 "P(best)). The leader is the candidate with the highest score "
                 "at the point estimates (the margin and what would change the pick are about it); it is picked when "
                 f"its P(best) reaches {whole_pct(decision.min_win_probability)}. Scores are weighted means, over the "
                 "criteria every compared candidate has (one that some lack is left out for all), of fixed scales in "
                 "points (top-1: 100 × accuracy; localisation: 100 × (1 − 1/mass_ratio) of the deep-layer CAM over "
                 "the set's mix of object sizes, 0 for a uniform map; clutter: 100 × cluttered/clean mass_ratio; "
                 "calibration: 100 × (1 − top-1 Brier score); "
                 "corruptions: 100 + the change in top-1 under corruption in points, "
                 "a difference with no pole where a draw's clean top-1 is 0; faithfulness: 100 × the ROAD gap; "
                 f"latency and size: {per_halving} points per halving, 100 at 1 ms and at 0.1 M parameters, 0 at 1 s "
                 "and at 100 M), so adding or removing a candidate that has every criterion never reorders the "
                 "others, unless it joins or leaves another's timing class (one architecture, size and input on one "
                 "kind of machine: its timing then moves their shared latency). A constraint on top-1 or latency "
                 f"is uncertain when its {whole_pct(decision.confidence)} "
                 "interval straddles the limit. Without retraining, slimming is a lower bound on what a fine-tuned "
                 "slim model would reach. What this does not cover: images unlike these, other machines' latency, "
                 "drift between timing sessions (the resampled passes are those of one session; only a timing "
                 "class's several timings show some of it), and the criteria "
                 f"the weights leave out. Intervals: {whole_pct(decision.confidence)}."),)


def _machine(decision: Decision) -> Sentence:
    machine = decision.machine
    if machine is None:
        return (text("Latency was not measured."),)
    return (text(f"Latency measured on {machine.host or 'this machine'}: {machine.device_name} ({machine.device}, "
                 f"{machine.threads} threads, torch {machine.torch}); it depends on the machine ("),
            text("cost table", "tab-cost"), text(")."))


def _samples(index: RunIndex) -> Sentence:
    """The sample sizes of the corruption and faithfulness checks that ran, and where their limits came from."""
    rows = [row for row in sample_sizes(index) if row.ran]
    if not rows:
        return ()
    source = {"battery file": "set in the battery file", "config": "set in the config"}
    said = [f"{row.check} on {row.images:,} of {len(index.images):,} images (at most {row.limit:,}, "
            f"{source.get(row.source, 'the ' + row.source)})" for row in rows]
    defaults = ", ".join(f"{listing(str(sizes[row.key]) for row in rows)} on {'CUDA' if kind == 'cuda' else 'a CPU'}"
                         for kind, sizes in DEVICE_SAMPLE_SIZES.items())
    return (text(f" Sampled checks on this run's device ({index.device}): {listing(said)}; the defaults are "
                 f"{defaults}; a battery file's {listing(row.key for row in rows)} override them."),)


def _timing(decision: Decision, cost: Optional[CostReport]) -> Sentence:
    """How precisely each candidate's latency median is known, and what stopped its timing."""
    if cost is None or decision.machine is None:
        return ()
    timed = [(c.display_name, cost.backbones[c.backbone]) for c in decision.candidates
             if c.backbone in cost.backbones and cost.backbones[c.backbone].latency_target_precision is not None]
    if not timed:
        return ()
    rule = timed[0][1]

    def reached(record) -> str:
        return f"±{pct(record.latency_precision)}" if record.latency_precision is not None else "no interval"
    precise = [f"{name} ({reached(record)}, {record.latency_repeats:,} passes)" for name, record in timed
               if record.stopped_because == PRECISION_REACHED]
    stopped = [f"{name} ({reached(record)} after {record.latency_repeats:,} passes: {record.stopped_because})"
               for name, record in timed if record.stopped_because != PRECISION_REACHED]
    parts = ([f"reached for {listing(precise)}"] if precise else []) + \
        ([f"not for {listing(stopped)}"] if stopped else [])
    target = num(100 * rule.latency_target_precision)
    sessions = len(rule.latency_sessions)
    if sessions:
        return (text(f" In each of {sessions} interleaved sessions, each latency was timed until its median's "
                     f"{whole_pct(rule.latency_confidence)} interval (order statistics, no distribution assumed) lay "
                     f"within ±{target} % of it, or for {num(rule.latency_budget_s / sessions)} s of passes: "
                     f"{'; '.join(parts)}."),)
    return (text(f" Each latency was timed until its median's {whole_pct(rule.latency_confidence)} interval "
                 f"(order statistics, no distribution assumed) lay within ±{target} % of it, "
                 f"or for {num(rule.latency_budget_s)} s of passes: {'; '.join(parts)}."),)


def decision_page(decision: Decision, index: RunIndex, started: str, cost: Optional[CostReport] = None,
                  task: Optional[TaskReport] = None, gate=None, survival: Optional[Survival] = None,
                  data=None) -> DecisionPage:
    """Page 1. ``task``: metrics.json's task (the user's classes), which names the task in the title and first
    sentence and says what each candidate's accuracy measures. ``survival``: the pick recomputed without the
    flagged images (:func:`~reportgen.scoring.survival.pick_survival`; None or nothing left out: no line)."""
    estimands = {b.name: b.estimand for b in index.backbones} if task is not None else {}
    accuracy_header = _named("accuracy", True) if task is not None else "top-1"
    return DecisionPage(title=title(decision, index, started, task), headline=_headline(decision),
                        basis=_basis(decision, index.own_task), change=_change(decision, index.own_task), paired_test=_paired_test(decision),
                        constraints=_constraints(decision), notes=_notes(decision), method=_method(decision),
                        machine=_machine(decision) + _timing(decision, cost) + _samples(index),
                        rows=candidate_cells(decision, estimands), busy=_busy(decision),
                        degenerate=tuple(degenerate_warning(found) for found in decision.degenerate),
                        task=_task_sentence(decision, index, task),
                        task_warnings=_train_copies_warning(index, data=data) + _task_warnings(decision, index, task),
                        accuracy_header=accuracy_header, columns=column_headers(accuracy_header, index.own_task),
                        gate=_gate(gate), gate_rows=gate_cells(gate) if gate is not None else (),
                        survival=survival_sentence(survival, index.own_task),
                        label_reading=_label_reading(decision, index))


def check_mark(candidate: Candidate) -> str:
    """The constraints column: "none set", "pass", or what fails / is uncertain."""
    if not candidate.checks:
        return "none set"
    bad = [c for c in candidate.checks if c.outcome != Check.PASS]
    return "; ".join(f"{c.outcome}: {c.text}" for c in bad) if bad else "pass"


