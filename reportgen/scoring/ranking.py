"""Ranking the candidates that meet the constraints: weighted scores over the criteria they share, P(best) from
the paired draws (weights drawn around the user's, as in SMAA), the leader, the margin over the runner-up, ties,
the Pareto front, what single weight change would change the pick, and McNemar's test of the top two."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..inputs.config import MAX_WEIGHT, DecisionSettings
from ..results.schema import RunIndex
from .bootstrap import PairedDraws, interval
from .criteria import CriterionValues, utility

SENSITIVITY_STEP = 0.01


@dataclass(frozen=True)
class Score:
    mean: float
    ci_low: Optional[float]
    ci_high: Optional[float]


@dataclass(frozen=True)
class WeightChange:
    """The smallest change of one weight that puts another candidate first."""
    criterion: str
    weight: float  # the weight used
    to: float  # the weight at which the pick changes
    new_first: str  # display name of the candidate first then


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two candidates' top-1 on the same labelled images."""
    first: str
    second: str
    first_only: int  # images the first gets right and the second wrong
    second_only: int
    p_value: float
    labelled: int


@dataclass(frozen=True, kw_only=True)
class Ranking:
    """The passing candidates (indices into the index) scored and ranked."""
    passing: list
    point_utilities: dict  # criterion -> (K,) points at the point estimates
    point_scores: Optional[np.ndarray]  # (P,) over the passing candidates; None: nothing scored
    draw_scores: Optional[np.ndarray]  # (B, P)
    p_best: np.ndarray  # (K,)
    ranked: list  # the passing candidates, best first
    leader: Optional[int]
    runner_up: Optional[int]
    margin: Optional[Score]
    tied: bool


def weighted_scores(utilities: dict, weights: dict) -> np.ndarray:
    """Weighted mean of the criteria. ``utilities[c]``: (..., K) points, NaN = missing; ``weights[c]``: scalar or
    (...,) per draw. Every candidate is scored on the same criteria: those of ``weights`` (the decision leaves out,
    for every candidate, a criterion some compared candidate has no point value for), each counting wherever its
    weight is positive. A candidate that lacks one of them in a row (a draw, or the point estimates) has no score
    there (NaN: it cannot win that draw); the others keep theirs. Until issue 32 (defect 4) such a criterion was left
    out of that row for every candidate, so a dominated candidate whose value is missing in some draws changed the
    others' scores in them and moved their P(best) (0.495/0.505 to 0.344/0.656). Each candidate's score now reads
    its own values and the weights only. Returns (..., K); NaN where no criterion has a positive weight."""
    total = weighted = lacking = None
    for criterion, points in utilities.items():
        points = np.asarray(points, dtype=np.float64)
        weight = np.asarray(weights[criterion], dtype=np.float64)
        if weight.ndim:
            weight = weight[..., None]
        shape = np.broadcast_shapes(weight.shape, points.shape)
        counts = np.broadcast_to(weight > 0, shape)  # a weight of 0 (the gate's leave_out) reads nothing
        term = np.where(counts, np.where(np.isfinite(points), points, 0.0) * weight, 0.0)
        missing = counts & ~np.isfinite(points)
        term_w = np.broadcast_to(np.where(weight > 0, weight, 0.0), shape)
        total = term_w if total is None else total + term_w
        weighted = term if weighted is None else weighted + term
        lacking = missing if lacking is None else lacking | missing
    if total is None:
        raise ValueError("weighted_scores needs at least one criterion")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lacking | (total <= 0), np.nan, weighted / np.where(total > 0, total, 1.0))


def win_shares(scores: np.ndarray) -> np.ndarray:
    """(B, K) scores -> (K,) share of rows in which each column is first; a win is shared only on an exact tie (so a
    column below the best in every row never changes another's share); NaN (a candidate without a value in that
    draw) never first. A row in which no column has a score decides nothing and is left out, so the shares sum to 1."""
    filled = np.where(np.isfinite(scores), scores, -np.inf)
    best = filled.max(axis=1, keepdims=True)
    first = (filled == best) & np.isfinite(best)
    counts = first.sum(axis=1, keepdims=True)
    decided = counts[:, 0] > 0
    if not decided.any():
        return np.zeros(scores.shape[1])
    return (first[decided] / counts[decided]).mean(axis=0)


def rank(values: CriterionValues, weights: dict, passing: list, count: int, draws: PairedDraws,
         settings: DecisionSettings) -> Ranking:
    """``count`` candidates, of which ``passing`` meet the constraints. Scores at the point estimates and in every
    draw, P(best), and one leader for the verdict, the margin and what
    would change it: the highest score at the point estimates (ties: the higher P(best)); it is recommended only if
    it also ranks first in enough draws."""
    point_utilities = {c: utility(c, values.point[c]) for c in weights}
    draw_utilities = {c: utility(c, values.draws[c]) for c in weights}
    cols = np.array(passing, dtype=int)
    p_best = np.zeros(count)
    margin = runner_up = leader = None
    tied = False
    point_scores = draw_scores = None
    if passing and weights:
        point_scores = weighted_scores({c: u[cols] for c, u in point_utilities.items()}, weights)
        drawn_weights = draws.criterion_weights(weights, settings.weight_uncertainty, "decision")
        draw_scores = weighted_scores({c: u[:, cols] for c, u in draw_utilities.items()}, drawn_weights)
        p_best[cols] = win_shares(draw_scores)
        order = sorted(range(len(passing)), key=lambda j: (-np.nan_to_num(point_scores[j], nan=-np.inf),
                                                           -p_best[passing[j]], j))
        leader = passing[order[0]]
        if len(passing) > 1:
            runner_up = passing[order[1]]
            difference = draw_scores[:, order[0]] - draw_scores[:, order[1]]
            low, high = interval(difference, settings.confidence)
            margin = Score(float(point_scores[order[0]] - point_scores[order[1]]), low, high)
            # Checked on every draw, not on the margin's interval (its percentiles are 0 with up to 2.5 % of the
            # draws on either side apart), so that page 1 can say "tie in every draw" and mean it.
            tied = all(values.point[c][leader] == values.point[c][runner_up]
                       and np.array_equal(values.draws[c][:, leader], values.draws[c][:, runner_up], equal_nan=True)
                       for c in weights)
        ranked = [passing[j] for j in order]
    else:
        ranked = list(passing)
        leader = passing[0] if passing else None
    return Ranking(passing=passing, point_utilities=point_utilities, point_scores=point_scores,
                   draw_scores=draw_scores, p_best=p_best, ranked=ranked, leader=leader, runner_up=runner_up,
                   margin=margin, tied=tied)


def candidate_score(ranking: Ranking, k: int, level: float) -> Optional[Score]:
    """A passing candidate's score with its interval from the draws (None: not scored)."""
    if k not in ranking.passing or ranking.point_scores is None:
        return None
    j = ranking.passing.index(k)
    low, high = interval(ranking.draw_scores[:, j], level)
    return Score(float(ranking.point_scores[j]), low, high) if np.isfinite(ranking.point_scores[j]) else None


def pareto(points: dict) -> set:
    """Names not dominated in (quality higher, latency lower)."""
    front = set()
    for name, (quality, latency) in points.items():
        dominated = any(q >= quality and lat <= latency and (q > quality or lat < latency)
                        for other, (q, lat) in points.items() if other != name)
        if not dominated:
            front.add(name)
    return front


def sensitivity(points: dict, weights: dict, leader: int, names: list) -> Optional[WeightChange]:
    """The smallest single-weight change (within 0..MAX_WEIGHT) after which another candidate scores highest."""
    grid = np.round(np.arange(0.0, MAX_WEIGHT + SENSITIVITY_STEP / 2, SENSITIVITY_STEP), 10)
    best = None
    for criterion, weight in weights.items():
        trial = {c: (grid if c == criterion else np.full(grid.shape, w)) for c, w in weights.items()}
        scores = weighted_scores(points, trial)  # (G, K)
        filled = np.where(np.isfinite(scores), scores, -np.inf)
        others = np.delete(filled, leader, axis=1)
        overtaken = others.max(axis=1) > filled[:, leader]
        if not overtaken.any():
            continue
        at = int(np.argmin(np.where(overtaken, np.abs(grid - weight), np.inf)))
        change = abs(grid[at] - weight)
        if best is None or change < best[0]:
            first = int(np.argmax(filled[at]))
            best = (change, WeightChange(criterion, float(weight), float(grid[at]), names[first]))
    return best[1] if best else None


def weight_sensitivity(index: RunIndex, ranking: Ranking, weights: dict) -> Optional[WeightChange]:
    if ranking.leader is None or len(ranking.passing) < 2 or not weights:
        return None
    cols = np.array(ranking.passing, dtype=int)
    names = [index.backbones[k].display_name for k in ranking.passing]
    return sensitivity({c: u[cols] for c, u in ranking.point_utilities.items()}, weights,
                       ranking.passing.index(ranking.leader), names)


def mcnemar(first: np.ndarray, second: np.ndarray) -> tuple[int, int, float]:
    """(first right & second wrong, first wrong & second right, exact two-sided p) over paired outcomes."""
    b = int(np.sum(first & ~second))
    c = int(np.sum(~first & second))
    n = b + c
    if n == 0:
        return b, c, 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return b, c, min(1.0, 2.0 * tail)


def paired_test(index: RunIndex, first: Optional[int], second: Optional[int]) -> Optional[McNemar]:
    """McNemar's test of two candidates' top-1 on the images labelled for both (None: no such image, or no pair)."""
    if first is None or second is None:
        return None
    a, b = index.backbones[first], index.backbones[second]
    pairs = [(p.correct_top1, q.correct_top1) for p, q in zip(a.predictions, b.predictions)
             if p.correct_top1 is not None and q.correct_top1 is not None]
    if not pairs:
        return None
    x, y = (np.array(v, dtype=bool) for v in zip(*pairs))
    only_first, only_second, p = mcnemar(x, y)
    return McNemar(a.display_name, b.display_name, only_first, only_second, p, len(pairs))
