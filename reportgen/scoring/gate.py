"""The decision as a gate for CI: champion against challengers, from the numbers the decision already holds.

Every condition of ``[gate]`` is judged for each challenger on the run's paired draws (the same images, latency
passes and criterion weights the decision resampled), with three outcomes:

- ``min_p_better``: P(challenger's score > champion's) over the draws (a tie is not better). Pass at or above the
  limit, fail at or below 1 − limit (the champion is then better with that probability), uncertain between;
- ``max_accuracy_drop``: the challenger's task accuracy minus the champion's, per draw (paired: the same images).
  Pass when its whole interval lies above −limit, fail when it lies below, uncertain when it touches or straddles;
- ``constraints = "pass"``: the challenger's ``[decision]`` constraint checks (and the degenerate check): fail if one
  fails, uncertain if one is uncertain, else pass.

``on_uncertain`` says how an uncertain outcome counts. Pure numpy; reads the decision's inputs, never re-measures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import UsageError
from ..inputs.config import GateSettings
from .bootstrap import PairedDraws, interval
from .decision import Check, Decision, utility, weighted_scores

PASS, FAIL, UNCERTAIN = "pass", "fail", "uncertain"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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

    @property
    def challengers(self) -> tuple:
        return tuple(dict.fromkeys(row.challenger for row in self.rows))

    def failures(self) -> tuple:
        return tuple(row for row in self.rows if row.counts_as == FAIL)


def _counted(outcome: str, settings: GateSettings) -> str:
    return outcome if outcome != UNCERTAIN else settings.on_uncertain


def _p_better(raw, weights: dict, k0: int, k1: int, draws: PairedDraws, uncertainty: float) -> tuple:
    """(P(challenger's score > champion's), (B,) score differences) on the criteria the two share, with the
    decision's drawn weights."""
    shared = {c: w for c, w in weights.items()
              if np.isfinite(raw.point[c][k0]) and np.isfinite(raw.point[c][k1])}
    if not shared:
        return None, None
    utilities = {c: utility(c, raw.draws[c][:, [k0, k1]]) for c in shared}
    drawn = draws.criterion_weights(shared, uncertainty, "decision")
    scores = weighted_scores(utilities, drawn)
    difference = scores[:, 1] - scores[:, 0]
    finite = np.isfinite(difference)
    if not finite.any():
        return None, None
    return float(np.mean(difference[finite] > 0)), difference


def evaluate_gate(decision: Decision, inputs: dict, names: list, settings: GateSettings,
                  draws: PairedDraws, uncertainty: float, level: float) -> Optional[GateReport]:
    """The gate's report (None when ``settings`` names no champion); ``inputs``: what :func:`decide` filled in,
    ``names``: the candidates in the index's order."""
    if not settings.enabled:
        return None
    if settings.champion not in names:
        raise UsageError(f"[gate] champion = {settings.champion!r} is not a candidate of this run "
                         f"({', '.join(names)}); name one of them.")
    if len(names) < 2:
        raise UsageError(f"[gate] needs a challenger beside the champion {settings.champion!r}; add a candidate.")
    raw, weights = inputs["raw"], inputs["weights"]
    k0 = names.index(settings.champion)
    champion = decision.candidate(settings.champion)
    rows = []
    for k1, name in enumerate(names):
        if k1 == k0:
            continue
        candidate = decision.candidate(name)
        who = candidate.display_name
        if settings.min_p_better is not None:
            limit = settings.min_p_better
            p, difference = _p_better(raw, weights, k0, k1, draws, uncertainty)
            if p is None:
                outcome, text = UNCERTAIN, f"{who}: no criterion with values for both, so P(better) is not measured"
                low = high = None
            else:
                outcome = PASS if p >= limit else (FAIL if p <= 1 - limit else UNCERTAIN)
                low, high = interval(difference, level)
                text = (f"{who}: P(score above {champion.display_name}'s) = {p:.3f} over {draws.samples:,} draws "
                        f"(needs ≥ {limit:g}); score difference {np.nanmean(difference):+.2f} "
                        f"[{low:+.2f}, {high:+.2f}] points")
            rows.append(GateRow(name, who, "min_p_better", outcome, _counted(outcome, settings), p, low, high,
                                limit, text))
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
            rows.append(GateRow(name, who, "max_accuracy_drop", outcome, _counted(outcome, settings), value, low,
                                high, limit, text))
        if settings.constraints == "pass":
            bad = [c for c in candidate.checks if c.outcome != Check.PASS]
            outcome = FAIL if any(c.outcome == Check.FAIL for c in bad) else UNCERTAIN if bad else PASS
            text = (f"{who}: " + ("; ".join(f"{c.outcome}: {c.text}" for c in bad) if bad else
                                  "every constraint passes" if candidate.checks else "no constraint set"))
            rows.append(GateRow(name, who, "constraints", outcome, _counted(outcome, settings), None, None, None,
                                None, text))
    return GateReport(settings.champion, champion.display_name, settings, tuple(rows),
                      all(row.counts_as == PASS for row in rows), draws.samples, level)
