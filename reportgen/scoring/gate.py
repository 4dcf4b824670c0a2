"""The decision as a gate for CI: champion against challengers, from the numbers the decision already holds.

Every condition of ``[gate]`` is judged for each challenger, with four outcomes (:class:`Check`): pass, fail,
uncertain, and *not measured* (nothing to judge), which always counts as fail:

- ``min_p_better``: P(challenger's score > champion's) over the run's paired draws (a tie is not better). Pass at or
  above the limit, fail at or below 1 − limit (the challenger is then no better, ties included, with that
  probability), uncertain between; not measured when the two share no criterion;
- ``max_accuracy_drop``: the challenger's task accuracy minus the champion's on the images labelled for both, with
  Tango's score interval for a difference of paired proportions (:mod:`~reportgen.scoring.paired`). Pass when its
  lower limit (a one-sided (1 + confidence) / 2 bound) lies above −limit, fail when its upper limit lies below,
  uncertain when it touches or straddles; not measured when no image is labelled for both;
- ``constraints = "pass"``: the challenger's ``[decision]`` constraint checks (and the degenerate check): fail if one
  fails, not measured if one cannot be measured, uncertain if one is uncertain, else pass. Every constraint must
  *pass*: an uncertain one counts as not passed (a failure of the gate) whatever ``on_uncertain`` says; the row still
  shows it as uncertain.

``on_uncertain`` says how an uncertain ``min_p_better`` or ``max_accuracy_drop`` counts; "not measured" is never a
pass (issue 32: it was labelled uncertain, so ``on_uncertain = "pass"`` passed a challenger on no evidence).

P(better) compares the two candidates as page 1 would compare them alone: on the criteria this run can weigh that
both have a value for (:attr:`DecisionInputs.weighable`), with the weights drawn for that set as the decision draws
them, on the same draws. A third candidate therefore never changes a pair's row (issue 32: one lacking
faithfulness removed it from the decision's criteria and turned b's P(better) against a from 1.000 into 0.829),
with two exceptions that come from the run, not from the pair: a timing class's shared latency, and latency timed
on different machines (unusable for all).

A challenger of the champion's timing class (the same architecture, size, input shape and machine:
:func:`~reportgen.scoring.timing.timing_class`, typically a retrained checkpoint) has the champion's latency by
construction, and the decision gives both the same (:func:`~reportgen.scoring.timing.timing_classes`): their
timed difference is the machine's drift between two measurements, which the resampled passes of each do not hold,
so it never decides P(better); the row says so. Otherwise, when the champion's or the challenger's latency was
timed on a busy machine (page 1 flags it; a member of its timing class so timed counts, its timing being in their
shared latency), a ``min_p_better`` pass or fail that the same draws without latency would not give is uncertain:
the load, not the model, may have made the difference. Reads the decision's inputs, never re-measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UsageError
from ..inputs.config import GateSettings
from .bootstrap import PairedDraws, interval
from .constraints import Check
from .criteria import CriterionValues, utility
from .decision import Decision, DecisionInputs, decide, decision_inputs
from .differ import PairRole, Side, pair_difference
from .paired import paired_change
from .ranking import weighted_scores
from .vectors import run_draws

if TYPE_CHECKING:
    from ..results.store import SavedResults

@dataclass(frozen=True, kw_only=True)
class GateRow:
    challenger: str  # the candidate's name
    display_name: str
    condition: str  # min_p_better | max_accuracy_drop | constraints
    outcome: Check
    counts_as: Check  # pass | fail (on_uncertain applied)
    value: Optional[float]  # P(better), or the accuracy difference (challenger - champion on the images labelled
    # for both, 0..1; its interval Tango's)
    ci_low: Optional[float]
    ci_high: Optional[float]
    limit: Optional[float]
    text: str  # one sentence with the numbers (a failure's message)


@dataclass(frozen=True, kw_only=True)
class Regression:
    """The images a challenger newly gets wrong: labelled for both, right for the champion, wrong for it (issue 33:
    a failed gate names them; :mod:`~reportgen.scoring.differ`)."""
    challenger: str
    display_name: str
    newly_wrong: int  # right for the champion, wrong for the challenger
    newly_right: int  # the other way
    labelled: int  # images labelled for both (0: no right or wrong to count)
    files: tuple[str, ...]  # the newly wrong ones, the challenger's most confident first


@dataclass(frozen=True, kw_only=True)
class GateReport:
    champion: str
    champion_display_name: str
    settings: GateSettings
    rows: tuple[GateRow, ...]  # per challenger and condition
    passed: bool
    draws: int
    level: float
    regressions: tuple[Regression, ...] = ()  # per challenger, in the index's order

    def regression(self, challenger: str):
        return next((r for r in self.regressions if r.challenger == challenger), None)

    @property
    def verdict(self) -> Check:
        return Check.PASS if self.passed else Check.FAIL

    def failures(self) -> tuple:
        return tuple(row for row in self.rows if row.counts_as == Check.FAIL)


# How an outcome counts; uncertain: by ``on_uncertain``, except for constraints, which must pass.
_COUNTED = {Check.PASS: Check.PASS, Check.FAIL: Check.FAIL, Check.NOT_MEASURED: Check.FAIL}


def _counted(outcome: Check, settings: GateSettings, condition: str = "") -> Check:
    if outcome in _COUNTED:
        return _COUNTED[outcome]
    return Check.FAIL if condition == "constraints" else Check(settings.on_uncertain)


def _judged(share: Optional[float], limit: float) -> Check:
    """A P(better) against ``min_p_better``: pass at or above it, fail at or below 1 - it, uncertain between (and
    uncertain without a share: used to ask whether a verdict stands without latency)."""
    if share is None:
        return Check.UNCERTAIN
    return Check.PASS if share >= limit else Check.FAIL if share <= 1 - limit else Check.UNCERTAIN


def pair_criteria(raw: CriterionValues, weighable: dict, k0: int, k1: int) -> dict:
    """criterion -> weight of the criteria both candidates have a value for, of those the run can weigh (in the
    table's order): what page 1 would score the two on if they were the only candidates."""
    return {c: w for c, w in weighable.items() if np.isfinite(raw.point[c][k0]) and np.isfinite(raw.point[c][k1])}


def _p_better(raw: CriterionValues, weights: dict, k0: int, k1: int, draws: PairedDraws, uncertainty: float,
              leave_out: str = "") -> tuple:
    """(P(challenger's score > champion's), (B,) score differences) over the draws in which either has a score (one
    without a score in a draw loses it, as on page 1);
    ``weights``: :func:`pair_criteria`, drawn per draw as the decision draws them for that set (so in a run of the
    two alone, both meeting the constraints and never tied, P(better) is the challenger's P(best) on page 1). ``leave_out``: a criterion taken out after the
    weights are drawn (the others keep their draws). (None, None) when nothing is left to compare."""
    if not weights:
        return None, None
    drawn = draws.criterion_weights(weights, uncertainty, "decision")
    kept = [c for c in weights if c != leave_out]
    if not kept:
        return None, None
    utilities = {c: utility(c, raw.draws[c][:, [k0, k1]]) for c in kept}
    scores = weighted_scores(utilities, {c: drawn[c] for c in kept})
    difference = scores[:, 1] - scores[:, 0]
    champion, challenger = np.isfinite(scores[:, 0]), np.isfinite(scores[:, 1])
    decided = champion | challenger
    if not decided.any():
        return None, None
    # As page 1's P(best) reads a draw: a candidate lacking a value there has no score and cannot win it, so the
    # challenger is better where it has a score and the champion has none, and not better where it has none.
    better = challenger & (~champion | (difference > 0))
    return float(np.mean(better[decided])), difference


def check_candidates(settings: GateSettings, names: list, untrained: bool = False) -> None:
    """One line (exit 2) when ``[gate]`` names a champion that is not among ``names``, leaves no challenger, or the
    run's weights are untrained (its decision is illustrative: nothing for CI to act on); called before a run
    measures anything, and again when the gate is judged."""
    if not settings.enabled:
        return
    if untrained:
        raise UsageError("[gate] judges trained candidates, but this run uses --weights random (its decision is "
                         "illustrative); run with pretrained weights or checkpoints, or leave out the [gate] table.")
    if settings.champion not in names:
        raise UsageError(f"[gate] champion = {settings.champion!r} is not a candidate of this run "
                         f"({', '.join(names)}); name one of them.")
    if len(names) < 2:
        raise UsageError(f"[gate] needs a challenger beside the champion {settings.champion!r}; add a candidate.")


@dataclass(frozen=True, kw_only=True)
class _Pair:
    """One challenger against the champion, and what every condition reads."""
    k0: int  # the champion's position in the index
    k1: int  # the challenger's
    name: str
    who: str  # the challenger's display name
    champion: str  # the champion's display name
    values: CriterionValues
    weights: dict  # :func:`pair_criteria`
    champion_correct: tuple  # per image: top-1 right (None: no label, or not scored)
    challenger_correct: tuple
    classes: dict  # timing classes
    busy: set  # candidates whose latency was timed (in their timing class) on a busy machine
    draws: PairedDraws
    uncertainty: float
    level: float


def _row(pair: _Pair, condition: str, *, outcome: Check, counts_as: Check, value, low, high, limit, text) -> GateRow:
    return GateRow(challenger=pair.name, display_name=pair.who, condition=condition, outcome=outcome,
                   counts_as=counts_as, value=value, ci_low=low, ci_high=high, limit=limit, text=text)


def _p_better_row(pair: _Pair, settings: GateSettings) -> GateRow:
    limit, raw, weights, who = settings.min_p_better, pair.values, pair.weights, pair.who
    same_timing = "latency" in weights and settings.champion in pair.classes.get(pair.name, ())
    p, difference = _p_better(raw, weights, pair.k0, pair.k1, pair.draws, pair.uncertainty)
    if p is None:
        outcome, low, high = Check.NOT_MEASURED, None, None
        text = (f"{who}: no criterion with values for both it and {pair.champion}, so P(better) is not measured, "
                "which counts as failed: measure a criterion for both (page 1 says why one is missing) or leave "
                "min_p_better out")
    else:
        outcome = _judged(p, limit)
        low, high = interval(difference, pair.level)
        shown = "" if low is None else f" [{low:+.2f}, {high:+.2f}]"
        text = (f"{who}: P(score above {pair.champion}'s) = {p:.3f} over {pair.draws.samples:,} draws "
                f"(needs ≥ {limit:g}); score difference {np.nanmean(difference):+.2f}{shown} points")
        if same_timing:
            text += (f"; the champion's architecture, size and input on the same kind of machine: one "
                     f"latency for both ({raw.point['latency'][pair.k0]:.3g} ms, page 1), their timings' "
                     "difference is drift")
        # Latency timed on a busy machine carries noise its resampled passes do not hold (the load differed
        # between the candidates' timings): a verdict that does not stand without latency is not one.
        elif outcome != Check.UNCERTAIN and "latency" in weights and pair.busy & {pair.name, settings.champion}:
            steady, _ = _p_better(raw, weights, pair.k0, pair.k1, pair.draws, pair.uncertainty, leave_out="latency")
            if _judged(steady, limit) != outcome:
                outcome = Check.UNCERTAIN
                text += ("; uncertain: it rests on latency timed on a busy machine (without latency "
                         + ("no criterion is left" if steady is None else f"P(better) = {steady:.3f}") + ")")
    return _row(pair, "min_p_better", outcome=outcome, counts_as=_counted(outcome, settings), value=p, low=low, high=high,
                limit=limit, text=text)


def _accuracy_row(pair: _Pair, settings: GateSettings) -> GateRow:
    limit, who = -settings.max_accuracy_drop, pair.who
    change = paired_change(pair.champion_correct, pair.challenger_correct, pair.level)
    if change is None:
        outcome, value, low, high = Check.NOT_MEASURED, None, None, None
        text = (f"{who}: task accuracy not measured for both it and {pair.champion} (no image labelled for both), "
                "so its drop is not measured, which counts as failed: give labelled images that both are scored on "
                "(class folders or a labels file), or leave max_accuracy_drop out")
    else:
        value, low, high = change.value, change.ci_low, change.ci_high
        # the lower limit is a one-sided (1 + level) / 2 bound: at the limit, a pass at most that often
        outcome = Check.PASS if low > limit else Check.FAIL if high < limit else Check.UNCERTAIN
        text = (f"{who}: task accuracy {100 * value:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] points against "
                f"{pair.champion} on {change.images} images labelled for both ({change.gained} right for {who} only, "
                f"{change.lost} for {pair.champion} only; Tango's score interval) "
                f"(may drop at most {100 * settings.max_accuracy_drop:g} points)")
    return _row(pair, "max_accuracy_drop", outcome=outcome, counts_as=_counted(outcome, settings), value=value, low=low,
                high=high, limit=limit, text=text)


# the constraints row's outcome: the first of these that one of the challenger's checks has, else pass
_CONSTRAINT_PRECEDENCE = (Check.FAIL, Check.NOT_MEASURED, Check.UNCERTAIN)


def _constraints_row(pair: _Pair, candidate, settings: GateSettings) -> GateRow:
    bad = [c for c in candidate.checks if c.outcome != Check.PASS]
    outcome = next((o for o in _CONSTRAINT_PRECEDENCE if any(c.outcome == o for c in bad)), Check.PASS)
    text = (f"{pair.who}: " + ("; ".join(f"{c.outcome}: {c.text}" for c in bad) if bad else
                               "every constraint passes" if candidate.checks else "no constraint set"))
    if outcome == Check.NOT_MEASURED:
        text += " (a limit that cannot be checked is not met: measure it, or remove the limit)"
    return _row(pair, "constraints", outcome=outcome, counts_as=_counted(outcome, settings, "constraints"), value=None,
                low=None, high=None, limit=None, text=text)


def evaluate_gate(decision: Decision, inputs: DecisionInputs, names: list, settings: GateSettings,
                  draws: PairedDraws, uncertainty: float, level: float) -> Optional[GateReport]:
    """The gate's report (None when ``settings`` names no champion); ``inputs``: what the decision was computed
    from (:func:`~reportgen.scoring.decision.decision_inputs`), ``names``: the candidates in the index's order."""
    if not settings.enabled:
        return None
    check_candidates(settings, names, decision.illustrative)
    k0 = names.index(settings.champion)
    champion = decision.candidate(settings.champion)
    # Latency timed under load: noise its passes do not hold. A timing class's latency pools its members' timings,
    # so one member timed under load is in every member's latency (the champion's, beside a busy retrained copy).
    # (The run's busy timings, not the decision's: a third candidate without latency leaves latency out of page 1,
    # not out of a pair that both have it.)
    classes = inputs.timing_classes
    timed_busy = set(inputs.timed_busy)
    busy = {name for name in names if timed_busy & set(classes.get(name, (name,)))}
    outcomes = [tuple(p.correct_top1 for p in entry.predictions) for entry in inputs.vectors.index.backbones]
    rows, regressions = [], []
    index = inputs.vectors.index
    for k1, name in enumerate(names):
        if k1 == k0:
            continue
        candidate = decision.candidate(name)
        regressions.append(_regression(index, index.backbones[k0], index.backbones[k1]))
        pair = _Pair(k0=k0, k1=k1, name=name, who=candidate.display_name, champion=champion.display_name,
                     values=inputs.values, weights=pair_criteria(inputs.values, inputs.weighable, k0, k1),
                     champion_correct=outcomes[k0], challenger_correct=outcomes[k1], classes=classes, busy=busy,
                     draws=draws, uncertainty=uncertainty, level=level)
        if settings.min_p_better is not None:
            rows.append(_p_better_row(pair, settings))
        if settings.max_accuracy_drop is not None:
            rows.append(_accuracy_row(pair, settings))
        if settings.constraints == "pass":
            rows.append(_constraints_row(pair, candidate, settings))
    return GateReport(champion=settings.champion, champion_display_name=champion.display_name, settings=settings,
                      rows=tuple(rows), passed=all(row.counts_as == Check.PASS for row in rows), draws=draws.samples,
                      level=level, regressions=tuple(regressions))


def _regression(index, champion, challenger) -> Regression:
    diff = pair_difference(index.images, Side(champion.name, champion.display_name, champion.predictions),
                           Side(challenger.name, challenger.display_name, challenger.predictions),
                           role=PairRole.GATE, own_task=index.own_task, level=index.config.decision.confidence,
                           errors_shown=0)
    return Regression(challenger=challenger.name, display_name=challenger.display_name, newly_wrong=diff.first_only,
                      newly_right=diff.second_only, labelled=diff.mcnemar.labelled if diff.mcnemar else 0,
                      files=tuple(image.file for image in diff.newly_wrong()))


def decide_and_gate(results: "SavedResults", draws=None, settings=None) -> tuple:
    """The decision and, when ``[gate]`` names a champion (or ``settings`` are given), the gate read from the same
    numbers: (Decision, GateReport or None)."""
    index = results.index
    draws = draws or run_draws(index)
    inputs = decision_inputs(index, results.metrics, results.cost, draws, results.arrays)
    decision = decide(index, results.metrics, results.cost, draws, results.arrays, inputs)
    settings = settings or index.config.gate
    gate = evaluate_gate(decision, inputs, [b.name for b in index.backbones], settings, draws,
                         index.config.decision.weight_uncertainty, index.config.decision.confidence)
    return decision, gate
