"""The decision as a gate for CI: champion against challengers, from the numbers the decision already holds.

Every condition of ``[gate]`` is judged for each challenger on the run's paired draws (the same images, latency
passes and criterion weights the decision resampled), with three outcomes:

- ``min_p_better``: P(challenger's score > champion's) over the draws (a tie is not better). Pass at or above the
  limit, fail at or below 1 − limit (the challenger is then no better, ties included, with that probability),
  uncertain between;
- ``max_accuracy_drop``: the challenger's task accuracy minus the champion's, per draw (paired: the same images).
  Pass when its whole interval lies above −limit, fail when it lies below, uncertain when it touches or straddles;
- ``constraints = "pass"``: the challenger's ``[decision]`` constraint checks (and the degenerate check): fail if one
  fails, uncertain if one is uncertain, else pass. Every constraint must *pass*: an uncertain one counts as not
  passed (a failure of the gate) whatever ``on_uncertain`` says; the row still shows it as uncertain.

A challenger of the champion's timing class (the same architecture, size, input shape and machine:
:func:`~reportgen.scoring.timing.timing_class`, typically a retrained checkpoint) has the champion's latency by
construction, and the decision gives both the same (:func:`~reportgen.scoring.timing.timing_classes`): their
timed difference is the machine's drift between two measurements, which the resampled passes of each do not hold,
so it never decides P(better); the row says so. Otherwise, when the champion's or the challenger's latency was
timed on a busy machine (page 1 flags it; a member of its timing class so timed counts, its timing being in their
shared latency), a ``min_p_better`` pass or fail that the same draws without latency would not give is uncertain:
the load, not the model, may have made the difference. ``on_uncertain`` says how an uncertain ``min_p_better`` or
``max_accuracy_drop`` counts. P(better) compares the two candidates' scores as page 1 computes them: the decision's
criteria and its drawn weights. Pure numpy; reads the decision's inputs, never re-measures.
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
    value: Optional[float]  # P(better), or the accuracy difference (challenger - champion, 0..1)
    ci_low: Optional[float]
    ci_high: Optional[float]
    limit: Optional[float]
    text: str  # one sentence with the numbers (a failure's message)


@dataclass(frozen=True, kw_only=True)
class GateReport:
    champion: str
    champion_display_name: str
    settings: GateSettings
    rows: tuple[GateRow, ...]  # per challenger and condition
    passed: bool
    draws: int
    level: float

    @property
    def verdict(self) -> Check:
        return Check.PASS if self.passed else Check.FAIL

    def failures(self) -> tuple:
        return tuple(row for row in self.rows if row.counts_as == Check.FAIL)


def _counted(outcome: Check, settings: GateSettings, condition: str = "") -> Check:
    if outcome != Check.UNCERTAIN:
        return outcome
    # constraints must pass: uncertain is not
    return Check.FAIL if condition == "constraints" else Check(settings.on_uncertain)


def _judged(share: Optional[float], limit: float) -> Check:
    """A P(better) against ``min_p_better``: pass at or above it, fail at or below 1 - it, uncertain between."""
    if share is None:
        return Check.UNCERTAIN
    return Check.PASS if share >= limit else Check.FAIL if share <= 1 - limit else Check.UNCERTAIN


def _p_better(raw: CriterionValues, weights: dict, k0: int, k1: int, draws: PairedDraws, uncertainty: float,
              leave_out: str = "") -> tuple:
    """(P(challenger's score > champion's), (B,) score differences), the scores as the decision computes them:
    ``weights`` are the decision's (``Decision.weights``: the criteria it scored on, those some compared candidate
    lacks already left out), drawn per draw exactly as it drew them (the draws depend on the whole set of criteria,
    so a subset would give other weights). In a draw, a criterion either of the two has no value for is left out
    for both (:func:`weighted_scores`). ``leave_out``: a criterion whose weight is set to 0 in every draw (the others
    keep the decision's draws)."""
    shared = {c: w for c, w in weights.items()
              if c != leave_out and np.isfinite(raw.point[c][k0]) and np.isfinite(raw.point[c][k1])}
    if not shared:
        return None, None
    utilities = {c: utility(c, raw.draws[c][:, [k0, k1]]) for c in weights}
    drawn = draws.criterion_weights(weights, uncertainty, "decision")
    if leave_out in drawn:
        drawn[leave_out] = np.zeros_like(drawn[leave_out])
    scores = weighted_scores(utilities, drawn)
    difference = scores[:, 1] - scores[:, 0]
    finite = np.isfinite(difference)
    if not finite.any():
        return None, None
    return float(np.mean(difference[finite] > 0)), difference


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
    weights: dict
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
        outcome, text = Check.UNCERTAIN, f"{who}: no criterion with values for both, so P(better) is not measured"
        low = high = None
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
    limit, raw, who = -settings.max_accuracy_drop, pair.values, pair.who
    point = raw.point["accuracy"][pair.k1] - raw.point["accuracy"][pair.k0]
    if not np.isfinite(point):
        outcome, value, low, high = Check.UNCERTAIN, None, None, None
        text = f"{who}: task accuracy not measured for both (no labelled images), so its drop is unknown"
    else:
        low, high = interval(raw.draws["accuracy"][:, pair.k1] - raw.draws["accuracy"][:, pair.k0], pair.level)
        value = float(point)
        outcome = Check.UNCERTAIN if low is None else Check.PASS if low > limit else Check.FAIL if high < limit \
            else Check.UNCERTAIN
        shown = "" if low is None else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
        text = (f"{who}: task accuracy {100 * value:+.1f}{shown} points against {pair.champion} "
                f"(may drop at most {100 * settings.max_accuracy_drop:g} points)")
    return _row(pair, "max_accuracy_drop", outcome=outcome, counts_as=_counted(outcome, settings), value=value, low=low,
                high=high, limit=limit, text=text)


def _constraints_row(pair: _Pair, candidate, settings: GateSettings) -> GateRow:
    bad = [c for c in candidate.checks if c.outcome != Check.PASS]
    outcome = Check.FAIL if any(c.outcome == Check.FAIL for c in bad) else Check.UNCERTAIN if bad else Check.PASS
    text = (f"{pair.who}: " + ("; ".join(f"{c.outcome}: {c.text}" for c in bad) if bad else
                               "every constraint passes" if candidate.checks else "no constraint set"))
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
    classes = inputs.timing_classes
    timed_busy = {c.backbone for c in decision.candidates if c.display_name in
                  {shown for shown, _ in decision.busy_latency}}
    busy = {name for name in names if timed_busy & set(classes.get(name, (name,)))}
    rows = []
    for k1, name in enumerate(names):
        if k1 == k0:
            continue
        candidate = decision.candidate(name)
        pair = _Pair(k0=k0, k1=k1, name=name, who=candidate.display_name, champion=champion.display_name,
                     values=inputs.values, weights=dict(decision.weights), classes=classes, busy=busy, draws=draws,
                     uncertainty=uncertainty, level=level)
        if settings.min_p_better is not None:
            rows.append(_p_better_row(pair, settings))
        if settings.max_accuracy_drop is not None:
            rows.append(_accuracy_row(pair, settings))
        if settings.constraints == "pass":
            rows.append(_constraints_row(pair, candidate, settings))
    return GateReport(champion=settings.champion, champion_display_name=champion.display_name, settings=settings,
                      rows=tuple(rows), passed=all(row.counts_as == Check.PASS for row in rows), draws=draws.samples,
                      level=level)


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
