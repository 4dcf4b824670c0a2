"""Section 4 as sentences: what each backbone measured (4.1) and the paper's claims with their numbers (4.2),
built once from the rules' conclusions; the HTML lays them out with links, the Markdown without."""
from __future__ import annotations

from dataclasses import dataclass

from ..results.schema import measured
from ..scoring.rules import BackboneFinding, ClaimVerdict, Conclusions, Focus, Reason, SlimmingRow
from .formatting import bracket, ci, num, pct, pct_interval, points
from .phrases import Sentence, text

REASONS = {
    Reason.UNTRAINED: "untrained weights",
    Reason.FAMILY_MISSING: "needs deeper, wider and attention backbones in one run",
    Reason.NO_DATA: "no image has a value for this quantity (e.g. no boxes)",
    Reason.SMALL_GROUP: "too few images in a group",
    Reason.OVERLAP: "intervals overlap or difference too small",
    Reason.AS_CLAIMED: "numbers agree with the paper",
    Reason.AGAINST_CLAIM: "numbers disagree with the paper",
    Reason.MIXED: "comparisons disagree with each other",
}


@dataclass(frozen=True)
class FindingRow:
    """One backbone's line of 4.1: its name and family, then sentences."""
    display_name: str
    family: str
    sentences: tuple  # Sentence


@dataclass(frozen=True, kw_only=True)
class ClaimTableRow:
    """One claim of 4.2, each cell as lines (sentences)."""
    number: int
    key: str
    claim: str  # the paper's sentence
    numbers: tuple  # Sentence per family number and per slimming backbone
    comparisons: tuple  # Sentence per comparison
    verdict: object  # Verdict (its css class styles the HTML cell)
    scope: str
    reason: str


@dataclass(frozen=True)
class ConclusionsSection:
    untrained: bool
    findings: tuple  # FindingRow
    method: Sentence  # how a claim is judged (the thresholds of this run)
    families_present: str
    claims: tuple  # ClaimTableRow


def _localisation(f: BackboneFinding) -> Sentence:
    if f.focus == Focus.NO_BOXES:
        return (text("no boxed images: localisation not measured."),)
    if f.focus == Focus.NO_USABLE_CAMS:
        return (text("no usable deep-layer CAM on the boxed images: localisation not measured (see the flagged "
                     "CAMs in the appendix)."),)
    low, high = f.mass_ratio_ci
    parts = [text("deep-layer CAM mass_ratio "),
             text(f"{num(f.mass_ratio)}{bracket(low, high)}", "tab-localisation"),
             text(f" over {f.n} images")]
    threshold = num(f.focus_threshold)
    if f.focus == Focus.ABOVE:
        parts.append(text(f" — it concentrates on the annotated object (interval above the {threshold} threshold"))
        if f.gaussian_baseline is not None:
            parts += [text("; a centred Gaussian scores "), text(num(f.gaussian_baseline), "tab-localisation")]
        parts.append(text(")."))
    elif f.focus == Focus.BELOW:
        parts.append(text(f" — it does not concentrate on the object (interval below the {threshold} threshold)."))
    else:
        parts.append(text(f" — unclear whether it concentrates on the object (interval spans the {threshold} "
                          "threshold)."))
    return tuple(parts)


def _sanity(f: BackboneFinding) -> Sentence:
    if f.sanity != "done":
        return (text(f"Sanity check skipped ({f.sanity_reason})."),)
    parts = [text("Sanity check: with every weight randomised, the deep-layer CAM's Spearman correlation with the "
                  "trained one is "), text(num(f.sanity_deep_spearman), f"sanity-{f.backbone}-deep")]
    if f.sanity_flagged_layers:
        parts += [text("; "), text(f"flagged layers: {', '.join(f.sanity_flagged_layers)}", flag=True)]
    else:
        parts.append(text("; every depth passes"))
    return tuple(parts) + (text("."),)


def _beyond(f: BackboneFinding, untrained: bool) -> Sentence:
    parts = [text("Beyond the paper:")]
    if f.ece:
        parts += [text(" ECE "), text(ci(f.ece), "tab-calibration"), text(";")]
    if f.corruption:
        parts += [text(" keeps "),
                  text(pct_interval(f.corruption.mean, f.corruption.ci_low, f.corruption.ci_high), "tab-corruptions"),
                  text(f" of its {f.corruption_measure} under common corruptions;")]
    if f.faithfulness:
        parts += [text(" deep-layer CAM ROAD gap "), text(ci(f.faithfulness), "tab-faithfulness"),
                  text(f" against the random map's {ci(f.faithfulness_random)}: ")]
        if f.faithful:
            parts.append(text("its heatmaps show what the model uses"))
        elif f.faithful is False:
            parts.append(text("this layer's heatmaps do not show what the model uses", flag=True))
            if untrained:
                parts.append(text(" (expected of untrained weights)"))
        else:
            parts.append(text("no verdict"))
        parts.append(text("."))
    return tuple(parts)


def finding_row(f: BackboneFinding, untrained: bool) -> FindingRow:
    last3 = f"tab-last3-{f.backbone}"
    sentences = [
        _localisation(f),
        (text("Top-1 correct on "), text(f"{f.top1_correct} of {f.labelled}", "tab-predictions"),
         text(f" labelled images (top-5: {f.top5_correct})." if f.top5_correct is not None else " labelled images.")),
        (text("Penultimate vs preceding layer: CKA "), text(num(f.slimming.cka), last3), text(", weight KS "),
         text(num(f.slimming.ks), last3), text(", W1 "), text(num(f.slimming.w1), last3),
         text(f" ({'removable' if f.slimming.removable else 'keep it'}).")),
        _sanity(f),
    ]
    if f.ece or f.corruption or f.faithfulness:
        sentences.append(_beyond(f, untrained))
    if f.flagged_cams:
        sentences.append((text(f"{f.flagged_cams} of {f.total_cams}", "tab-flagged", flag=True),
                          text(" CAMs flagged (all-zero, constant or NaN), see the appendix.", flag=True)))
    return FindingRow(f.display_name, f.family, tuple(sentences))


def _slimming_line(s: SlimmingRow) -> Sentence:
    parts = [text(f"{s.display_name} ({s.family}): ")]
    if s.measured_removable is not None:
        parts += [text(f"removing {s.intervention.unit}: top-1 agrees on "),
                  text(pct(s.intervention.agreement.mean), "tab-slimming")]
        if measured(s.intervention.top1_change):
            parts += [text(", Δ top-1 "), text(points(s.intervention.top1_change), "tab-slimming")]
        parts.append(text(f" → {'harmless' if s.measured_removable else 'harmful'}; "))
    last3 = f"tab-last3-{s.backbone}"
    parts += [text("proxy CKA "), text(num(s.evidence.cka), last3), text(", KS "), text(num(s.evidence.ks), last3),
              text(f" → {'removable' if s.evidence.removable else 'keep'}")]
    if s.proxy_predicted is not None:
        parts.append(text(f" ({'predicted it' if s.proxy_predicted else 'did not predict it'})"))
    return tuple(parts)


def claim_row(number: int, claim: ClaimVerdict, numbers_anchor: str, scope: str) -> ClaimTableRow:
    numbers = []
    for label, found in claim.numbers:
        if found.mean is None:
            numbers.append((text(f"{label} — {found.family}: absent"),))
        else:
            numbers.append((text(f"{label} — {found.family}: "),
                            text(f"{num(found.mean)}{bracket(found.ci_low, found.ci_high)}", numbers_anchor),
                            text(f" (n={found.n})")))
    numbers += [_slimming_line(s) for s in claim.slimming]
    comparisons = []
    for c in claim.comparisons:
        difference = f"Δ {num(c.difference)}{bracket(c.ci_low, c.ci_high)} " if c.difference is not None else ""
        comparisons.append((text(f"{c.label}: {c.family} vs {c.other} {difference}→ {c.outcome}"),))
    comparisons += [(text(f"{s.display_name}: paper says {'removable' if s.expected_removable else 'keep'} → "
                          f"{s.outcome}"),) for s in claim.slimming]
    return ClaimTableRow(number=number, key=claim.key, claim=claim.sentence, numbers=tuple(numbers),
                         comparisons=tuple(comparisons), verdict=claim.verdict, scope=scope,
                         reason=REASONS[claim.reason])


def method_sentence(conclusions: Conclusions) -> Sentence:
    t = conclusions.thresholds
    return (text(f"A claim is supported only when every comparison's 95 % bootstrap interval of the difference "
                 f"excludes zero in the claimed direction and the difference is at least "
                 f"{round(t.min_relative_difference * 100)} % of the larger value; groups with fewer than "
                 f"{t.min_group_size} observations make it inconclusive. Family numbers link to "),
            text("Table 2", "tab-families"),
            text("; the drop and gap quantities of claims 5 and 6, the differences Δ and their intervals are "
                 "bootstrapped here. Claim 7 is judged by removing the unit ("),
            text("section 3.3", "tab-slimming"),
            text(f"): harmless when top-1 agrees on ≥ {round(t.slim_min_agreement * 100)} % of the images and drops "
                 f"by ≤ {num(t.slim_max_top1_drop * 100)} points; the proxy beside it calls the penultimate layer "
                 f"removable when CKA ≥ {num(t.slim_cka)} and the KS distance of the standardised weights ≤ "
                 f"{num(t.slim_max_ks)}."))


def build_conclusions(conclusions: Conclusions, claim_rows: tuple) -> ConclusionsSection:
    """``claim_rows``: (number, claim, numbers anchor, scope) per claim, as the report context numbers them."""
    return ConclusionsSection(
        conclusions.untrained,
        tuple(finding_row(f, conclusions.untrained) for f in conclusions.findings),
        method_sentence(conclusions),
        ", ".join(conclusions.families_present),
        tuple(claim_row(*row) for row in claim_rows))
