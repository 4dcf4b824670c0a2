"""Where two candidates differ, image by image (issue 33): the images one gets right and the other wrong, where
those images concentrate, and each candidate's most confident errors. Data only, from the predictions the run
saved (no forward pass); the report phrases it (``report/differ_section.py``), ``reportgen gate`` names the
images a challenger newly gets wrong, ``reportgen compare`` diffs two runs' picks with the same function.

- **Discordant images**: labelled for both candidates, right for exactly one. Their counts both ways are the exact
  McNemar test of page 1 (:func:`~reportgen.scoring.ranking.mcnemar`, the same function, so the numbers match).
  Without an image labelled for both there is no right or wrong: the images where the two top-1 predictions differ
  stand in for them (:attr:`Basis.DISAGREE`).
- **Order**: by how confidently the candidate that is wrong was wrong (its top-1 probability), most confident
  first; without labels, by the lower of the two top-1 probabilities (both sure, yet different).
- **Strata**: per true class (the user's own classes) or per object size and background (ImageNet runs): the
  paired difference of accuracy (second minus first) with Tango's score interval
  (:mod:`~reportgen.scoring.paired`) and the exact McNemar p-value of the stratum, Holm-adjusted over every stratum
  of the pair (S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6 (1979)
  65-70; valid under any dependence, so a size and a background stratum may share images). A stratum is flagged
  only when its adjusted p-value is below 1 - confidence; its interval is per stratum, not adjusted.
- **Gallery sample** (:func:`gallery_sample`): at most ``limit`` images, shared between the two directions in
  proportion to their counts (each direction with images keeps at least one), the first half of each share the
  most confident, the rest spread evenly over the remaining order: deterministic, no random draw.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..inputs.manifest import BACKGROUNDS, SIZES
from ..results.schema import ImageEntry, Prediction, RunIndex
from ..strenum import StrEnum
from .paired import tango_interval
from .ranking import McNemar, mcnemar


class Basis(StrEnum):
    RIGHT_WRONG = "right for one, wrong for the other"  # images labelled for both
    DISAGREE = "top-1 predictions differ"  # no image labelled for both: no right or wrong


class WrongSide(StrEnum):
    """Which candidate of a pair is wrong on a discordant image. By side, not by name: `reportgen compare` of two
    runs that pick the same backbone names one candidate both ways (review finding 1)."""
    FIRST = "first"
    SECOND = "second"


class PairRole(StrEnum):
    TOP_TWO = "top two"  # the decision's leader (first) and runner-up
    GATE = "gate"  # the champion (first) and one challenger
    RUNS = "runs"  # compare: run A's pick (first) and run B's


@dataclass(frozen=True, kw_only=True)
class DiscordantImage:
    file: str
    position: int  # in the first run's images
    label: Optional[str]  # the true class (None: not labelled for both)
    size: Optional[str]
    background: Optional[str]
    wrong: str  # backbone name of the candidate that is wrong ("" when there is no label), for the reader
    wrong_side: Optional[WrongSide]  # which side is wrong (None when there is no label): what code goes by
    first_prediction: str
    first_confidence: float  # its top-1 probability
    first_correct: Optional[bool]
    second_prediction: str
    second_confidence: float
    second_correct: Optional[bool]
    loser_confidence: float  # the order's key: the wrong one's top-1 probability (no label: the lower of the two)


@dataclass(frozen=True, kw_only=True)
class StratumDifference:
    stratum: str  # "class=cat", "size=small", "background=clean"
    images: int  # labelled for both in the stratum
    first_only: int  # right for the first candidate only
    second_only: int
    difference: float  # accuracy of the second minus the first's (0..1)
    ci_low: float  # Tango's score interval, per stratum
    ci_high: float
    p_value: float  # exact McNemar, two-sided
    p_holm: float  # Holm-adjusted over every stratum of the pair
    flagged: bool  # p_holm < 1 - confidence


@dataclass(frozen=True, kw_only=True)
class ConfidentError:
    file: str
    position: int
    backbone: str
    label: str
    prediction: str
    confidence: float


@dataclass(frozen=True)
class ConfusionChange:
    """A (true, predicted) confusion that the two candidates make a different number of times."""
    true_class: str
    predicted: str
    first_count: int
    second_count: int


@dataclass(frozen=True, kw_only=True)
class PairDifference:
    role: PairRole
    first: str  # backbone names
    first_display: str
    second: str
    second_display: str
    basis: Basis
    mcnemar: Optional[McNemar]  # None without an image labelled for both
    first_only: int  # right for the first only (McNemar's first_only; 0 without labels)
    second_only: int
    compared: int  # images both were scored on (a run's images; compare: those both runs hold)
    disagreements: int  # images (labelled or not) where the two top-1 predictions differ
    images: tuple[DiscordantImage, ...]  # every discordant image (basis), most confidently wrong first
    strata_by: str  # "class" | "size and background" | "" (no strata)
    strata: tuple[StratumDifference, ...]
    first_errors: tuple[ConfidentError, ...]  # the first's most confident errors
    second_errors: tuple[ConfidentError, ...]
    confusions: tuple[ConfusionChange, ...]  # own task only; largest change first
    confidence: float

    def newly_wrong(self) -> tuple:
        """Right for the first, wrong for the second (a challenger's regressions against the champion)."""
        return tuple(image for image in self.images if image.wrong_side == WrongSide.SECOND)

    def newly_right(self) -> tuple:
        return tuple(image for image in self.images if image.wrong_side == WrongSide.FIRST)


@dataclass(frozen=True)
class Differences:
    """metrics.json's ``differences``: the pairs the report lines up image by image."""
    pairs: tuple[PairDifference, ...]


@dataclass(frozen=True)
class Side:
    """One candidate of a pair: its name, its display name and its predictions in the images' order."""
    name: str
    display_name: str
    predictions: Sequence[Prediction]


def holm(p_values: Sequence[float]) -> list:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest is multiplied by (m - i + 1),
    made monotone, capped at 1."""
    order = sorted(range(len(p_values)), key=lambda i: (p_values[i], i))
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _stratum(name: str, outcomes: list, level: float) -> Optional[tuple]:
    """(name, n, first_only, second_only, difference, low, high, p) of paired outcomes; None without any."""
    if not outcomes:
        return None
    first, second = (np.array(v, dtype=bool) for v in zip(*outcomes))
    only_first, only_second, p = mcnemar(first, second)
    low, high = tango_interval(only_second, only_first, len(outcomes), level)
    return name, len(outcomes), only_first, only_second, (only_second - only_first) / len(outcomes), low, high, p


def _strata_keys(images: Sequence[ImageEntry], own_task: bool) -> tuple:
    """(what the strata are, per image the strata it belongs to)."""
    if own_task:
        return "class", [((f"class={i.class_name or i.class_index}",) if i.class_index is not None else ())
                         for i in images]
    keys = [((f"size={i.size}",) if i.size in SIZES else ())
            + ((f"background={i.background}",) if i.background in BACKGROUNDS else ()) for i in images]
    return ("size and background" if any(keys) else ""), keys


def _strata(images, first, second, own_task: bool, level: float) -> tuple:
    by, keys = _strata_keys(images, own_task)
    order = ([f"size={s}" for s in SIZES] + [f"background={b}" for b in BACKGROUNDS]) if not own_task else \
        sorted({k for ks in keys for k in ks})
    outcomes: dict = {name: [] for name in order}
    for ks, p, q in zip(keys, first, second):
        if p.correct_top1 is None or q.correct_top1 is None:
            continue
        for k in ks:
            outcomes[k].append((p.correct_top1, q.correct_top1))
    found = [s for s in (_stratum(name, outcomes[name], level) for name in order) if s is not None]
    adjusted = holm([s[-1] for s in found])
    return by, tuple(StratumDifference(stratum=name, images=n, first_only=a, second_only=b, difference=d, ci_low=low,
                                       ci_high=high, p_value=p, p_holm=h, flagged=h < 1 - level)
                     for (name, n, a, b, d, low, high, p), h in zip(found, adjusted))


def _errors(images, side: Side, limit: int) -> tuple:
    wrong = [(p.top1.prob, n) for n, p in enumerate(side.predictions) if p.correct_top1 is False]
    wrong.sort(key=lambda pair: (-pair[0], images[pair[1]].file))
    return tuple(ConfidentError(file=images[n].file, position=n, backbone=side.name,
                                label=side.predictions[n].target_name, prediction=side.predictions[n].top1.name,
                                confidence=float(prob)) for prob, n in wrong[:limit])


def _confusions(images, first: Side, second: Side) -> tuple:
    counts = [Counter(), Counter()]
    for n, image in enumerate(images):
        for k, side in enumerate((first, second)):
            p = side.predictions[n]
            if p.correct_top1 is False:
                counts[k][(p.target_name, p.top1.name)] += 1
    pairs = set(counts[0]) | set(counts[1])
    changes = [ConfusionChange(t, q, counts[0][(t, q)], counts[1][(t, q)]) for t, q in pairs
               if counts[0][(t, q)] != counts[1][(t, q)]]
    return tuple(sorted(changes, key=lambda c: (-abs(c.second_count - c.first_count), c.true_class, c.predicted)))


def _image(n: int, image: ImageEntry, p: Prediction, q: Prediction, first: Side, second: Side) -> DiscordantImage:
    labelled = p.correct_top1 is not None and q.correct_top1 is not None
    side = (WrongSide.SECOND if p.correct_top1 else WrongSide.FIRST) if labelled else None
    wrong = {WrongSide.FIRST: first.name, WrongSide.SECOND: second.name, None: ""}[side]
    loser = (q if side == WrongSide.SECOND else p).top1.prob if labelled else min(p.top1.prob, q.top1.prob)
    return DiscordantImage(file=image.file, position=n, label=p.target_name if labelled else None, size=image.size,
                           background=image.background, wrong=wrong, wrong_side=side, first_prediction=p.top1.name,
                           first_confidence=float(p.top1.prob), first_correct=p.correct_top1,
                           second_prediction=q.top1.name, second_confidence=float(q.top1.prob),
                           second_correct=q.correct_top1, loser_confidence=float(loser))


def pair_difference(images: Sequence[ImageEntry], first: Side, second: Side, *, role: PairRole, own_task: bool,
                    level: float, errors_shown: int) -> PairDifference:
    """The two candidates on the same ``images`` (each side's predictions in their order)."""
    pairs = list(zip(first.predictions, second.predictions))
    both = [(p.correct_top1, q.correct_top1) for p, q in pairs if p.correct_top1 is not None
            and q.correct_top1 is not None]
    test = None
    if both:
        x, y = (np.array(v, dtype=bool) for v in zip(*both))
        only_first, only_second, p_value = mcnemar(x, y)
        test = McNemar(first.display_name, second.display_name, only_first, only_second, p_value, len(both))
    basis = Basis.RIGHT_WRONG if test is not None else Basis.DISAGREE
    if basis == Basis.RIGHT_WRONG:
        chosen = [n for n, (p, q) in enumerate(pairs) if p.correct_top1 is not None and q.correct_top1 is not None
                  and p.correct_top1 != q.correct_top1]
    else:
        chosen = [n for n, (p, q) in enumerate(pairs) if p.top1.index != q.top1.index]
    found = [_image(n, images[n], *pairs[n], first, second) for n in chosen]
    found.sort(key=lambda i: (-i.loser_confidence, i.file))
    by, strata = _strata(images, first.predictions, second.predictions, own_task, level)
    return PairDifference(
        role=role, first=first.name, first_display=first.display_name, second=second.name,
        second_display=second.display_name, basis=basis, mcnemar=test,
        first_only=test.first_only if test else 0, second_only=test.second_only if test else 0, compared=len(pairs),
        disagreements=sum(1 for p, q in pairs if p.top1.index != q.top1.index), images=tuple(found),
        strata_by=by if test else "", strata=strata if test else (),
        first_errors=_errors(images, first, errors_shown), second_errors=_errors(images, second, errors_shown),
        confusions=_confusions(images, first, second) if own_task else (), confidence=level)


def _side(index: RunIndex, name: str) -> Side:
    entry = next(b for b in index.backbones if b.name == name)
    return Side(entry.name, entry.display_name, entry.predictions)


def run_pairs(index: RunIndex, top_two: tuple, champion: Optional[str] = None) -> tuple:
    """((role, first, second) ...): the decision's top two (``top_two``: leader, runner-up; either None: none),
    then, with a gate, the champion against each challenger not already that pair."""
    pairs = []
    if all(top_two):
        pairs.append((PairRole.TOP_TWO, *top_two))
    if champion:
        for entry in index.backbones:
            if entry.name != champion and {champion, entry.name} != set(top_two):
                pairs.append((PairRole.GATE, champion, entry.name))
    return tuple(pairs)


def run_differences(index: RunIndex, top_two: tuple, champion: Optional[str] = None) -> Differences:
    """Every pair of :func:`run_pairs` of a run."""
    config = index.config
    return Differences(tuple(pair_difference(index.images, _side(index, a), _side(index, b), role=role,
                                             own_task=index.own_task, level=config.decision.confidence,
                                             errors_shown=config.differ_errors_shown)
                             for role, a, b in run_pairs(index, top_two, champion)))


def aligned_runs(a: RunIndex, b: RunIndex, pick_a: str, pick_b: str, errors_shown: int) -> Optional[PairDifference]:
    """Run A's pick against run B's on the images both runs scored (matched by content, sha256), in A's order;
    None when they share no image."""
    at_b = {image.sha256: n for n, image in enumerate(b.images)}
    shared = [(n, at_b[image.sha256]) for n, image in enumerate(a.images) if image.sha256 in at_b]
    if not shared:
        return None
    first, second = _side(a, pick_a), _side(b, pick_b)
    images = [a.images[n] for n, _ in shared]
    return pair_difference(images, Side(first.name, first.display_name, [first.predictions[n] for n, _ in shared]),
                           Side(second.name, second.display_name, [second.predictions[m] for _, m in shared]),
                           role=PairRole.RUNS, own_task=a.own_task, level=a.config.decision.confidence,
                           errors_shown=errors_shown)


def gallery_sample(images: Sequence[DiscordantImage], limit: int) -> tuple:
    """Indices into ``images`` (in their order) of at most ``limit`` of them: see the module's docstring."""
    if len(images) <= limit:
        return tuple(range(len(images)))
    groups: dict = {}
    for n, image in enumerate(images):
        groups.setdefault(image.wrong_side, []).append(n)  # by side: both sides may bear one name (compare)
    share = {key: max(1, math.floor(limit * len(members) / len(images))) for key, members in groups.items()}
    while sum(share.values()) > limit:  # more directions than places: the largest share gives way first, so a
        # direction keeps its one place as long as any other holds more (ties: the later side)
        share[max(share, key=lambda k: (share[k], k))] -= 1
    spare = limit - sum(share.values())
    for key in sorted(groups, key=lambda k: (-(limit * len(groups[k]) / len(images) - share[k]), k or "")):
        if spare and share[key] < len(groups[key]):
            share[key], spare = share[key] + 1, spare - 1
    chosen = []
    for key, members in groups.items():
        take = share[key]
        top = (take + 1) // 2
        rest, wanted = members[top:], take - top
        spread = [rest[round(i * (len(rest) - 1) / max(wanted - 1, 1))] for i in range(wanted)] if wanted else []
        chosen += members[:top] + spread
    return tuple(sorted(set(chosen)))
