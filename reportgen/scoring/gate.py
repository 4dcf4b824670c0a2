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
:func:`~reportgen.scoring.decision.timing_class`, typically a retrained checkpoint) has the champion's latency by
construction, and the decision gives both the same (:func:`~reportgen.scoring.decision.timing_classes`): their
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
from .decision import Check, Decision, decide, utility, weighted_scores
from .vectors import run_draws

if TYPE_CHECKING:
    from ..results.store import SavedResults

PASS, FAIL, UNCERTAIN = "pass", "fail", "uncertain"


@dataclass(frozen=True, kw_only=True)
class GateRow:
    challenger: str  # the candidate's name
    display_name: str
    condition: str  # min_p_better | max_accuracy_drop | constraints
    outcome: str  # pass | fail | uncertain
    counts_as: str  # pass | fail (on_uncertain applied)
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
    rows: tuple  # GateRow per challenger and condition
    passed: bool
    draws: int
    level: float

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL

    def failures(self) -> tuple:
        return tuple(row for row in self.rows if row.counts_as == FAIL)


def _counted(outcome: str, settings: GateSettings, condition: str = "") -> str:
    if outcome != UNCERTAIN:
        return outcome
    return FAIL if condition == "constraints" else settings.on_uncertain  # constraints must pass: uncertain is not


def _judged(share: Optional[float], limit: float) -> str:
    """A P(better) against ``min_p_better``: pass at or above it, fail at or below 1 - it, uncertain between."""
    if share is None:
        return UNCERTAIN
    return PASS if share >= limit else FAIL if share <= 1 - limit else UNCERTAIN


def _p_better(raw, weights: dict, k0: int, k1: int, draws: PairedDraws, uncertainty: float,
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


def evaluate_gate(decision: Decision, inputs: dict, names: list, settings: GateSettings,
                  draws: PairedDraws, uncertainty: float, level: float) -> Optional[GateReport]:
    """The gate's report (None when ``settings`` names no champion); ``inputs``: what :func:`decide` filled in,
    ``names``: the candidates in the index's order."""
    if not settings.enabled:
        return None
    check_candidates(settings, names, decision.illustrative)
    raw, weights = inputs["raw"], dict(decision.weights)
    k0 = names.index(settings.champion)
    champion = decision.candidate(settings.champion)
    # Latency timed under load: noise its passes do not hold. A timing class's latency pools its members' timings,
    # so one member timed under load is in every member's latency (the champion's, beside a busy retrained copy).
    classes = inputs.get("timing_classes", {})
    timed_busy = {c.backbone for c in decision.candidates if c.display_name in
                  {shown for shown, _ in decision.busy_latency}}
    busy = {name for name in names if timed_busy & set(classes.get(name, (name,)))}
    rows = []
    for k1, name in enumerate(names):
        if k1 == k0:
            continue
        candidate = decision.candidate(name)
        who = candidate.display_name
        if settings.min_p_better is not None:
            limit = settings.min_p_better
            same_timing = "latency" in weights and settings.champion in classes.get(name, ())
            p, difference = _p_better(raw, weights, k0, k1, draws, uncertainty)
            if p is None:
                outcome, text = UNCERTAIN, f"{who}: no criterion with values for both, so P(better) is not measured"
                low = high = None
            else:
                outcome = _judged(p, limit)
                low, high = interval(difference, level)
                shown = "" if low is None else f" [{low:+.2f}, {high:+.2f}]"
                text = (f"{who}: P(score above {champion.display_name}'s) = {p:.3f} over {draws.samples:,} draws "
                        f"(needs ≥ {limit:g}); score difference {np.nanmean(difference):+.2f}{shown} points")
                if same_timing:
                    text += (f"; the champion's architecture, size and input on the same kind of machine: one "
                             f"latency for both ({raw.point['latency'][k0]:.3g} ms, page 1), their timings' "
                             "difference is drift")
                # Latency timed on a busy machine carries noise its resampled passes do not hold (the load differed
                # between the candidates' timings): a verdict that does not stand without latency is not one.
                elif outcome != UNCERTAIN and "latency" in weights and busy & {name, settings.champion}:
                    steady, _ = _p_better(raw, weights, k0, k1, draws, uncertainty, leave_out="latency")
                    if _judged(steady, limit) != outcome:
                        outcome = UNCERTAIN
                        text += ("; uncertain: it rests on latency timed on a busy machine (without latency "
                                 + ("no criterion is left" if steady is None else f"P(better) = {steady:.3f}") + ")")
            rows.append(GateRow(challenger=name, display_name=who, condition="min_p_better", outcome=outcome,
                                counts_as=_counted(outcome, settings), value=p, ci_low=low, ci_high=high,
                                limit=limit, text=text))
        if settings.max_accuracy_drop is not None:
            limit = -settings.max_accuracy_drop
            point = raw.point["accuracy"][k1] - raw.point["accuracy"][k0]
            if not np.isfinite(point):
                outcome, value, low, high = UNCERTAIN, None, None, None
                text = f"{who}: task accuracy not measured for both (no labelled images), so its drop is unknown"
            else:
                low, high = interval(raw.draws["accuracy"][:, k1] - raw.draws["accuracy"][:, k0], level)
                value = float(point)
                outcome = UNCERTAIN if low is None else PASS if low > limit else FAIL if high < limit else UNCERTAIN
                shown = "" if low is None else f" [{100 * low:+.1f}, {100 * high:+.1f}]"
                text = (f"{who}: task accuracy {100 * value:+.1f}{shown} points against {champion.display_name} "
                        f"(may drop at most {100 * settings.max_accuracy_drop:g} points)")
            rows.append(GateRow(challenger=name, display_name=who, condition="max_accuracy_drop", outcome=outcome,
                                counts_as=_counted(outcome, settings), value=value, ci_low=low, ci_high=high,
                                limit=limit, text=text))
        if settings.constraints == "pass":
            bad = [c for c in candidate.checks if c.outcome != Check.PASS]
            outcome = FAIL if any(c.outcome == Check.FAIL for c in bad) else UNCERTAIN if bad else PASS
            text = (f"{who}: " + ("; ".join(f"{c.outcome}: {c.text}" for c in bad) if bad else
                                  "every constraint passes" if candidate.checks else "no constraint set"))
            rows.append(GateRow(challenger=name, display_name=who, condition="constraints", outcome=outcome,
                                counts_as=_counted(outcome, settings, "constraints"), value=None, ci_low=None,
                                ci_high=None, limit=None, text=text))
    return GateReport(champion=settings.champion, champion_display_name=champion.display_name, settings=settings,
                      rows=tuple(rows), passed=all(row.counts_as == PASS for row in rows), draws=draws.samples,
                      level=level)


def decide_and_gate(results: "SavedResults", draws=None, settings=None) -> tuple:
    """The decision and, when ``[gate]`` names a champion (or ``settings`` are given), the gate read from the same
    numbers: (Decision, GateReport or None)."""
    index = results.index
    draws = draws or run_draws(index)
    inputs: dict = {}
    decision = decide(index, results.metrics, results.cost, draws, results.arrays, inputs)
    settings = settings or index.config.gate
    gate = evaluate_gate(decision, inputs, [b.name for b in index.backbones], settings, draws,
                         index.config.decision.weight_uncertainty, index.config.decision.confidence)
    return decision, gate
