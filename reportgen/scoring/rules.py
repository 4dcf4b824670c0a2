"""Conclusions from measured numbers. Returns data (verdict codes and the numbers behind them); the report phrases
it. Thresholds come from the config saved with the results.

Every family number and every comparison comes from the run's one paired bootstrap: a family's value for an image
is the mean over its backbones, the images are resampled (stratified) once for all families and quantities, and a
difference between two families is taken draw by draw, so the noise they share cancels. A claim about families a
run does not hold is judged on the families it holds and says which were absent ("supported for deeper; wider and
attention not in this run"); only a claim with no comparison or family left is "not tested".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..inputs.config import RuleThresholds
from ..inputs.registry import FAMILIES
from ..results.schema import (AggregateLookup, Interval, LastThreeSummary, Metrics, RunIndex, SlimmingScore,
                              SlimmingStatus, measured)
from ..strenum import StrEnum
from .bootstrap import PairedDraws, interval
from .vectors import Vectors, run_draws


class Verdict(StrEnum):
    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    INCONCLUSIVE = "inconclusive"
    NOT_TESTED = "not tested"

    @property
    def css(self) -> str:
        return "verdict-" + self.value.replace(" ", "-")


class Outcome(StrEnum):
    """How one comparison (or one backbone's slimming evidence) came out."""
    AS_CLAIMED = "as-claimed"
    AGAINST_CLAIM = "against-claim"
    OVERLAP = "overlap"
    BELOW_THRESHOLD = "below-threshold"
    SMALL_GROUP = "small-group"
    FAMILY_MISSING = "family-missing"
    NO_DATA = "no-data"  # a family present, but no image with a value for the quantity (e.g. no boxes)


class Reason(StrEnum):
    """Why a claim got its verdict."""
    UNTRAINED = "untrained"
    FAMILY_MISSING = "family-missing"
    NO_DATA = "no-data"
    SMALL_GROUP = "small-group"
    OVERLAP = "overlap"
    AS_CLAIMED = "as-claimed"
    AGAINST_CLAIM = "against-claim"
    MIXED = "mixed"


class Focus(StrEnum):
    ABOVE = "above"
    BELOW = "below"
    UNCLEAR = "unclear"
    NO_BOXES = "no-boxes"  # no image has an object box: localisation not measured
    NO_USABLE_CAMS = "no-usable-cams"  # boxes, but every deep-layer CAM is flagged (zero or NaN)



@dataclass(frozen=True)
class Quantity:
    """A family-level number: sum of sign * mean(metric over a group) at the deep layer."""
    terms: tuple  # ((sign, group, metric), ...)
    absolute: bool = False

    @property
    def single_group_mean(self) -> bool:
        """A plain group mean, i.e. a row of the family table."""
        return len(self.terms) == 1 and not self.absolute


@dataclass(frozen=True)
class Test:
    family: str  # the family the claim is about
    others: tuple  # compared with each of these
    quantity: Quantity
    higher: bool  # True: the claim expects `family` to be higher than each of `others`
    label: str  # what is measured, e.g. "mass_ratio, small objects"


@dataclass(frozen=True)
class Claim:
    key: str
    sentence: str
    tests: tuple  # of Test; all must hold


def _q(metric, group="all"):
    return Quantity(((1, group, metric),))


CLAIMS = (
    Claim("focus", "Deeper backbones focus on the principal object more than wider ones.", (
        Test("deeper", ("wider",), _q("mass_ratio"), True, "mass_ratio, all images"),
        Test("deeper", ("wider",), _q("spread"), False, "spread, all images"),
    )),
    Claim("wider-spread", "Wider backbones catch more of the image.", (
        Test("wider", ("deeper",), _q("spread"), True, "spread, all images"),
    )),
    Claim("small-deeper", "Deeper backbones suit small objects better.", (
        Test("deeper", ("wider", "attention"), _q("mass_ratio", "size=small"), True, "mass_ratio, small objects"),
    )),
    Claim("large-wider", "Wider backbones suit large objects better.", (
        Test("wider", ("deeper", "attention"), _q("mass_ratio", "size=large"), True, "mass_ratio, large objects"),
    )),
    Claim("clutter-attention", "Attention backbones are robust to cluttered backgrounds.", (
        Test("attention", ("deeper", "wider"),
             Quantity(((1, "background=clean", "mass_ratio"), (-1, "background=cluttered", "mass_ratio"))),
             False, "drop in mass_ratio from clean to cluttered"),
    )),
    Claim("size-attention", "Attention backbones are sensitive to object size.", (
        Test("attention", ("deeper", "wider"),
             Quantity(((1, "size=small", "mass_ratio"), (-1, "size=large", "mass_ratio")), absolute=True),
             True, "|mass_ratio small - large|"),
    )),
)
SLIM_CLAIM = ("slimming", "Deeper and attention backbones can be slimmed by removing a layer, wider ones cannot.")


@dataclass(frozen=True)
class FamilyNumber:
    family: str
    mean: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int


@dataclass(frozen=True, kw_only=True)
class Comparison:
    label: str
    family: str
    other: str
    difference: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    outcome: Outcome


@dataclass(frozen=True)
class SlimmingEvidence:
    """Penultimate layer vs the one before it: similar features (CKA) and similar weight distributions (KS)."""
    cka: Optional[float]
    ks: Optional[float]
    w1: Optional[float]
    removable: bool


def slimming_evidence(summary: LastThreeSummary, thresholds: RuleThresholds) -> SlimmingEvidence:
    cka = summary.cka[0][1]
    ks = summary.weight_ks_consecutive[0]
    w1 = summary.weight_w1_consecutive[0]
    removable = (cka is not None and np.isfinite(cka) and cka >= thresholds.slim_cka
                 and ks is not None and ks <= thresholds.slim_max_ks)
    return SlimmingEvidence(cka, ks, w1, bool(removable))


@dataclass(frozen=True, kw_only=True)
class SlimmingRow:
    backbone: str
    display_name: str
    family: str
    layers: tuple  # (layer before the penultimate, penultimate)
    evidence: SlimmingEvidence  # the proxy: CKA and KS of the penultimate vs the layer before
    expected_removable: bool  # what the paper says for this family
    outcome: Outcome  # as-claimed | against-claim (on the intervention when there is one, else on the proxy)
    intervention: Optional[SlimmingScore]  # the unit actually removed and what changed
    measured_removable: Optional[bool]  # by the intervention (None: no unit could be removed)
    proxy_predicted: Optional[bool]  # did the proxy say the same as the intervention?


def _bounds(found: Optional[Interval]) -> tuple:
    """(low, high) of an interval; its mean twice when it has none (fewer than two images)."""
    if not measured(found):
        return None, None
    return (found.ci_low if found.ci_low is not None else found.mean,
            found.ci_high if found.ci_high is not None else found.mean)


def intervention_removable(score: Optional[SlimmingScore], thresholds: RuleThresholds) -> Optional[bool]:
    """Harmless (True) when top-1 agreement with the full model is at least the threshold and the accuracy drop on
    labelled images at most the threshold over the whole interval; harmful (False) when the interval lies past
    either threshold; None when it straddles one (inside the noise) or nothing was measured. Without retraining:
    a lower bound."""
    if score is None or score.status != SlimmingStatus.DONE or not measured(score.agreement):
        return None
    agree_low, agree_high = _bounds(score.agreement)
    change_low, change_high = _bounds(score.top1_change)
    limit = -thresholds.slim_max_top1_drop
    if agree_high < thresholds.slim_min_agreement or (change_high is not None and change_high < limit):
        return False
    if agree_low >= thresholds.slim_min_agreement and (change_low is None or change_low >= limit):
        return True
    return None


def intervention_uncertain(score: Optional[SlimmingScore]) -> bool:
    """The unit was removed and measured (so a None from intervention_removable means inside the noise)."""
    return score is not None and score.status == SlimmingStatus.DONE and measured(score.agreement)


@dataclass(frozen=True, kw_only=True)
class ClaimVerdict:
    key: str
    sentence: str
    verdict: Verdict  # on the families this run holds (see ``absent``)
    numbers: tuple  # (test label, FamilyNumber) per test and family
    comparisons: tuple  # Comparison (between families both present)
    reason: Reason
    slimming: tuple = ()  # SlimmingRow per backbone, slimming claim only
    by_family: tuple = ()  # FamilyVerdict per family present, slimming claim only
    absent: tuple = ()  # families the claim is about that this run does not hold: the verdict is partial

    @property
    def partial(self) -> bool:
        return bool(self.absent) and self.verdict != Verdict.NOT_TESTED


@dataclass(frozen=True, kw_only=True)
class BackboneFinding:
    backbone: str
    display_name: str
    family: str
    deep_layer: str
    mass_ratio: Optional[float]
    mass_ratio_ci: tuple
    n: int
    focus_threshold: float
    gaussian_baseline: Optional[float]
    focus: Focus
    flagged_cams: int
    total_cams: int
    top1_correct: int
    top5_correct: Optional[int]  # None: five classes or fewer (every top-5 holds the label)
    labelled: int
    slimming: SlimmingEvidence
    sanity: str  # SanityStatus: done | skipped
    sanity_reason: str
    sanity_flagged_layers: tuple  # layers whose CAMs stay similar after full randomisation
    sanity_deep_spearman: Optional[float]  # deep layer, trained vs fully randomised
    ece: Optional[Interval] = None  # calibration of the top-1 confidence (labelled images)
    corruption: Optional[Interval] = None  # share of top-1 (or agreement) kept under common corruptions
    corruption_measure: str = ""
    faithfulness: Optional[Interval] = None  # ROAD gap of the deep-layer CAM
    faithfulness_random: Optional[Interval] = None  # ... of the uniform-random map
    faithful: Optional[bool] = None  # the CAM's gap beats the random map's (paired); None: not measured


@dataclass(frozen=True)
class Conclusions:
    untrained: bool
    claims: tuple
    findings: tuple
    families_present: tuple
    thresholds: RuleThresholds


def _group_mask(index: RunIndex, group: str) -> np.ndarray:
    """Images of a group such as "all" or "size=small,background=clean"."""
    wanted = {} if group == "all" else dict(part.split("=") for part in group.split(","))
    return np.array([all((image.size if key == "size" else image.background) == value for key, value in wanted.items())
                     for image in index.images], dtype=bool)


@dataclass(frozen=True)
class _Estimate:
    point: Optional[float]
    draws: Optional[np.ndarray]
    n: int  # smallest group behind it (images with a value)


def _quantity(index: RunIndex, vectors: Vectors, draws: PairedDraws, family: str, quantity: Quantity) -> _Estimate:
    """A family quantity (sum of signed deep-layer group means) at the point estimate and in every draw."""
    point, drawn, n = 0.0, np.zeros(draws.samples), None
    for sign, group, metric in quantity.terms:
        values = vectors.family(family, "deep", metric)
        members = _group_mask(index, group)
        finite = values[members][np.isfinite(values[members])]
        n = finite.size if n is None else min(n, finite.size)
        if finite.size == 0:
            return _Estimate(None, None, 0)
        point += sign * float(finite.mean())
        drawn = drawn + sign * draws.means(values, members)
    if quantity.absolute:
        point, drawn = abs(point), np.abs(drawn)
    return _Estimate(point, drawn, n)


def _family_number(test: Test, family: str, estimate: _Estimate, lookup: AggregateLookup) -> FamilyNumber:
    if estimate.point is None:
        return FamilyNumber(family, None, None, None, 0)
    if test.quantity.single_group_mean:
        # A plain group mean: quote the family table's row (same paired draws, so the same interval).
        _, group, metric = test.quantity.terms[0]
        row = lookup("family", family, "deep", group, metric)
        if row is not None:
            return FamilyNumber(family, row.mean, row.ci_low, row.ci_high, row.n)
    low, high = interval(estimate.draws)
    return FamilyNumber(family, estimate.point, low, high, estimate.n)


def _compare(test: Test, other: str, estimates: dict, thresholds: RuleThresholds) -> Comparison:
    a, b = estimates[test.family], estimates[other]
    if a.point is None or b.point is None:
        return Comparison(label=test.label, family=test.family, other=other, difference=None, ci_low=None,
                          ci_high=None, outcome=Outcome.NO_DATA)
    diff = a.point - b.point
    low, high = interval(a.draws - b.draws)  # paired: the same images in every draw
    if min(a.n, b.n) < thresholds.min_group_size or low is None:
        outcome = Outcome.SMALL_GROUP
    elif low <= 0 <= high:
        outcome = Outcome.OVERLAP
    elif abs(diff) < thresholds.min_relative_difference * max(abs(a.point), abs(b.point)):
        outcome = Outcome.BELOW_THRESHOLD
    else:
        outcome = Outcome.AS_CLAIMED if (diff > 0) == test.higher else Outcome.AGAINST_CLAIM
    return Comparison(label=test.label, family=test.family, other=other, difference=diff, ci_low=low, ci_high=high,
                      outcome=outcome)


def _judge_test(test: Test, index: RunIndex, vectors: Vectors, draws: PairedDraws, lookup: AggregateLookup,
                thresholds: RuleThresholds, present: tuple):
    """The families' numbers, and the comparisons between families this run holds."""
    families = (test.family,) + test.others
    estimates = {family: _quantity(index, vectors, draws, family, test.quantity) for family in families}
    numbers = [_family_number(test, family, estimates[family], lookup) for family in families]
    comparisons = [_compare(test, other, estimates, thresholds) for other in test.others
                   if test.family in present and other in present]
    return numbers, comparisons


def _verdict(outcomes) -> tuple[Verdict, Reason]:
    if not outcomes or any(o == Outcome.FAMILY_MISSING for o in outcomes):  # nothing compared: never "supported"
        return Verdict.NOT_TESTED, Reason.FAMILY_MISSING
    if any(o == Outcome.NO_DATA for o in outcomes):
        return Verdict.NOT_TESTED, Reason.NO_DATA
    if any(o == Outcome.AGAINST_CLAIM for o in outcomes):
        if all(o == Outcome.AGAINST_CLAIM for o in outcomes):
            return Verdict.CONTRADICTED, Reason.AGAINST_CLAIM
        return Verdict.INCONCLUSIVE, Reason.MIXED
    if all(o == Outcome.AS_CLAIMED for o in outcomes):
        return Verdict.SUPPORTED, Reason.AS_CLAIMED
    if any(o == Outcome.SMALL_GROUP for o in outcomes):
        return Verdict.INCONCLUSIVE, Reason.SMALL_GROUP
    return Verdict.INCONCLUSIVE, Reason.OVERLAP


@dataclass(frozen=True)
class FamilyVerdict:
    family: str
    verdict: Verdict
    reason: Reason


def _slimming(index: RunIndex, metrics: Metrics, thresholds: RuleThresholds, families_present) -> ClaimVerdict:
    rows, by_family = [], {}
    for entry in index.backbones:
        summary = metrics.last_three[entry.name]
        expected_cut = entry.family in ("deeper", "attention")
        evidence = slimming_evidence(summary, thresholds)
        score = metrics.slimming.get(entry.name)
        measured = intervention_removable(score, thresholds)
        if measured is None and intervention_uncertain(score):
            outcome = Outcome.OVERLAP  # the intervention's interval straddles a threshold: no verdict
        else:
            judged = evidence.removable if measured is None else measured
            outcome = Outcome.AS_CLAIMED if judged == expected_cut else Outcome.AGAINST_CLAIM
        by_family.setdefault(entry.family, []).append(outcome)
        rows.append(SlimmingRow(backbone=entry.name, display_name=entry.display_name, family=entry.family,
                                layers=tuple(summary.layers[:2]), evidence=evidence, expected_removable=expected_cut,
                                outcome=outcome, intervention=score, measured_removable=measured,
                                proxy_predicted=None if measured is None else evidence.removable == measured))
    families = tuple(FamilyVerdict(family, *_verdict(by_family[family])) for family in FAMILIES if family in by_family)
    absent = tuple(f for f in FAMILIES if f not in families_present)
    verdict, reason = _claim_verdict(index.untrained, [o for f in families for o in by_family[f.family]])
    return ClaimVerdict(key=SLIM_CLAIM[0], sentence=SLIM_CLAIM[1], verdict=verdict, numbers=(), comparisons=(),
                        reason=reason, slimming=tuple(rows), by_family=families, absent=absent)


def _claim_verdict(untrained: bool, outcomes: list) -> tuple[Verdict, Reason]:
    """A claim's verdict: never tested on untrained weights (the paper's claims are about trained models)."""
    return (Verdict.NOT_TESTED, Reason.UNTRAINED) if untrained else _verdict(outcomes)


def _focus(mean, low, high, threshold, boxed: int) -> Focus:
    if mean is None:
        return Focus.NO_BOXES if boxed == 0 else Focus.NO_USABLE_CAMS
    if low is not None and low > threshold:
        return Focus.ABOVE
    if high is not None and high < threshold:
        return Focus.BELOW
    return Focus.UNCLEAR


def _findings(index: RunIndex, metrics: Metrics, lookup: AggregateLookup) -> tuple[BackboneFinding, ...]:
    config = index.config
    out = []
    for entry in index.backbones:
        row = lookup("backbone", entry.name, "deep", "all", "mass_ratio")
        gauss = lookup("backbone", entry.name, "baseline:gaussian", "all", "mass_ratio")
        mean, low, high, n = (row.mean, row.ci_low, row.ci_high, row.n) if row else (None, None, None, 0)
        threshold = config.rules.focus_mass_ratio
        statuses = entry.spatial_statuses()
        labelled = entry.labelled_predictions
        sanity = metrics.sanity[entry.name]
        deep_sanity = sanity.layers.get(entry.depth_layers["deep"])
        out.append(BackboneFinding(
            backbone=entry.name, display_name=entry.display_name, family=entry.family,
            deep_layer=entry.depth_layers["deep"], mass_ratio=mean, mass_ratio_ci=(low, high), n=n,
            focus_threshold=threshold, gaussian_baseline=gauss.mean if gauss else None,
            focus=_focus(mean, low, high, threshold, sum(1 for view in entry.views if view.box is not None)),
            flagged_cams=sum(s != "ok" for s in statuses), total_cams=len(statuses),
            top1_correct=sum(p.correct_top1 for p in labelled),
            top5_correct=sum(p.correct_top5 for p in labelled) if index.top5_informative else None,
            labelled=len(labelled),
            slimming=slimming_evidence(metrics.last_three[entry.name], config.rules),
            sanity=sanity.status, sanity_reason=sanity.reason,
            sanity_flagged_layers=tuple(layer for layer, found in sanity.layers.items() if found.flagged),
            sanity_deep_spearman=deep_sanity.steps[-1].spearman.mean if deep_sanity and deep_sanity.steps else None,
            **_beyond(metrics, entry.name)))
    return tuple(out)


def _beyond(metrics: Metrics, name: str) -> dict:
    """A finding's fields beyond the paper, by name: ECE, corruption retention and its measure, the CAM's and the
    random map's ROAD gaps, and whether the CAM is faithful."""
    calibration, corruption = metrics.calibration.get(name), metrics.corruption.get(name)
    faithfulness = metrics.faithfulness.get(name)
    maps = {m.map: m.gap for m in faithfulness.maps} if faithfulness else {}
    return dict(ece=calibration.ece if calibration else None,
                corruption=corruption.retention if corruption else None,
                corruption_measure=corruption.measure if corruption else "",
                faithfulness=maps.get("cam"), faithfulness_random=maps.get("random"),
                faithful=faithfulness.beats_random if faithfulness else None)


def families_present(index: RunIndex) -> tuple[str, ...]:
    return tuple(f for f in FAMILIES if any(b.family == f for b in index.backbones))


def conclude(index: RunIndex, metrics: Metrics, draws: Optional[PairedDraws] = None) -> Conclusions:
    config = index.config
    thresholds = config.rules
    present = families_present(index)
    lookup = AggregateLookup(metrics.aggregates)
    draws = draws or run_draws(index)
    vectors = Vectors(index, metrics.per_image)
    claims = []
    for claim in CLAIMS:
        numbers, comparisons = [], []
        involved = tuple(dict.fromkeys(f for test in claim.tests for f in (test.family,) + test.others))
        for test in claim.tests:
            found_numbers, found_comparisons = _judge_test(test, index, vectors, draws, lookup, thresholds, present)
            numbers += [(test.label, n) for n in found_numbers]
            comparisons += found_comparisons
        absent = tuple(f for f in involved if f not in present)
        verdict, reason = _claim_verdict(index.untrained, [c.outcome for c in comparisons])
        claims.append(ClaimVerdict(key=claim.key, sentence=claim.sentence, verdict=verdict, numbers=tuple(numbers),
                                   comparisons=tuple(comparisons), reason=reason, absent=absent))
    claims.append(_slimming(index, metrics, thresholds, present))
    return Conclusions(index.untrained, tuple(claims), _findings(index, metrics, lookup), present, thresholds)
