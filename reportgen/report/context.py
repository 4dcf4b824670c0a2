"""The report context: every table's rows and every figure, built in Python from saved results and the
conclusions. The HTML and Markdown templates only phrase these rows; neither looks anything up."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from ..inputs.config import AnalysisConfig
from ..inputs.manifest import BACKGROUNDS, SIZES
from ..inputs.registry import DEPTHS
from ..results.schema import (Aggregate, AggregateLookup, BackboneResult, CamStatus, Cost, FlagReason, ImageEntry,
                              RunIndex, SanityLayer, SanityStatus, WeightsInfo, WeightStats, FeatureStats)
from ..results.store import SavedResults
from ..scoring.score import baseline_role
from . import figures
from ..scoring.decision import Decision
from ..scoring.rules import CLAIMS, ClaimVerdict, Conclusions, SlimmingRow, Verdict, conclude
from ..scoring.vectors import run_draws
from ..scoring.gate import GateReport, decide_and_gate
from ..scoring.survival import NOTHING_LEFT_OUT, LeftOut, Survival, images_to_leave_out, pick_survival
from ..scoring.differ import Differences, run_differences
from .beyond_section import BeyondSection, build_beyond
from .conclusions_section import ConclusionsSection, build_conclusions
from .decision_page import DecisionPage, decision_page
from .differ_section import DifferSection, build_differ
from .figure_numbers import Figure, FigureNumbers
from .formatting import listing, num, pct
from .sampling import caption_note
from .task_section import TaskSection, build_task
from .data_section import DataSection, build_data
from .scale import (ImageSetSummary, PerImage, accuracy_rows, class_rows, confused_pairs,
                    distribution_values, flagged_groups, grid_sample, image_set_summary, object_groups)

UNTRAINED_BANNER = "UNTRAINED WEIGHTS — not evidence"
WORST_CLASSES_SHOWN = 10
CONFUSED_PAIRS_SHOWN = 10
TABLE_GROUPS = (("all",) + tuple(f"size={s}" for s in SIZES) + tuple(f"background={g}" for g in BACKGROUNDS)
                + tuple(f"size={s},background={g}" for s in SIZES for g in BACKGROUNDS))


@dataclass(frozen=True, kw_only=True)
class NetworkRow:
    backbone: BackboneResult
    family_note: Optional[str]  # how the family was chosen, when not by the registry
    params_m: float
    gmacs: float
    input_size: str
    interpolation: str
    crop_pct: Optional[float]
    mean: tuple
    std: tuple
    weights_hash: str


@dataclass(frozen=True)
class LocalisationRow:
    label: str  # backbone display name or family
    group: str
    anchor: Optional[str]
    mass_ratio: Aggregate
    spread: Optional[Aggregate]
    pointing: Optional[Aggregate]


@dataclass(frozen=True)
class BaselineRow:
    display_name: str
    uniform_mass_ratio: Optional[float]
    gaussian_mass_ratio: Optional[float]
    gaussian_spread: Optional[float]
    gaussian_pointing: Optional[float]


@dataclass(frozen=True)
class LocalisationBlock:
    rows: tuple  # LocalisationRow per group with data
    baseline: BaselineRow


@dataclass(frozen=True)
class PredictionCell:
    name: str  # first name of the top-1 class
    prob: float
    correct_top1: Optional[bool]
    correct_top5: Optional[bool]


@dataclass(frozen=True)
class PredictionLine:
    image: str
    class_name: Optional[str]
    cells: tuple  # PredictionCell per backbone


@dataclass(frozen=True)
class DepthRow:
    display_name: str
    role: str
    layer: str
    mass_ratio: Optional[Aggregate]
    spread: Optional[Aggregate]
    entropy: Optional[Aggregate]


@dataclass(frozen=True)
class SanityRow:
    display_name: str
    anchor: str
    layer: str
    found: Optional[SanityLayer]  # None: skipped
    skipped_reason: str = ""


@dataclass(frozen=True)
class LastThreeLayerRow:
    layer: str
    weights_module: str  # whose weights the statistics describe (the conv behind a normalised tap)
    weights: WeightStats
    features: FeatureStats


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    value: Optional[float]


@dataclass(frozen=True, kw_only=True)
class LastThreeSection:
    backbone: BackboneResult
    anchor: str
    figure: Figure
    rows: tuple  # LastThreeLayerRow
    cka_layers: tuple
    cka: tuple  # rows of CKA values
    w1: tuple  # Transition
    ks: tuple  # Transition
    slimming: SlimmingRow
    cka_passes: bool
    ks_passes: bool


@dataclass(frozen=True)
class FlaggedRow:
    backbone: str
    layer: str
    image: str
    status: CamStatus


@dataclass(frozen=True)
class ProvenanceRow:
    display_name: str
    weights: WeightsInfo


@dataclass(frozen=True)
class CostRow:
    display_name: str
    cost: Optional[Cost]  # None: not measured (results of an older reportgen)

    @property
    def precision(self) -> str:
        """The latency median's interval and how far it reaches, and what stopped the timing ("" before issue 24)."""
        c = self.cost
        if c is None or c.latency_target_precision is None:
            return ""
        if c.latency_precision is None:
            return f"no interval ({c.stopped_because})"
        low, high = c.latency_ms_ci
        return f"[{num(low)}, {num(high)}] ±{pct(c.latency_precision)} ({c.stopped_because})"


@dataclass(frozen=True)
class SlimmingTableRow:
    display_name: str
    row: SlimmingRow  # the rule's view: proxy, intervention, outcome
    latency_saved_ms: Optional[float]


@dataclass(frozen=True, kw_only=True)
class ReportContext:
    index: RunIndex
    decision: Decision
    decision_page: DecisionPage
    decision_figure: Optional[Figure]
    costs: tuple  # CostRow
    slimming_rows: tuple  # SlimmingTableRow
    config: AnalysisConfig
    untrained: bool
    banner: str
    conclusions: Conclusions
    networks: tuple  # NetworkRow
    object_figures: tuple
    localisation_figures: tuple
    distribution_figure: Optional[Figure]
    long_tables: bool  # more images than config.table_max_rows: per-image tables are summarised
    accuracy: tuple  # AccuracyRow per backbone
    classes: tuple  # ClassRow, worst first
    confused: tuple  # ConfusedPair, most frequent first
    classes_shown: int  # worst classes listed in the PDF
    flagged_groups: tuple  # FlaggedGroup per backbone and layer with flagged CAMs
    image_summary: ImageSetSummary
    localisation: tuple  # LocalisationBlock per backbone
    families: tuple  # LocalisationRow per family and group
    prediction_headers: tuple
    top5_informative: bool  # more than five classes (else every top-5 holds the label)
    predictions: tuple  # PredictionLine
    depth_figures: tuple
    depths: tuple  # DepthRow
    sanity_figure: Optional[Figure]
    sanity_steps: tuple  # step labels
    sanity: tuple  # SanityRow
    last_three: tuple  # LastThreeSection
    beyond: BeyondSection  # section 3.4: calibration, corruptions, faithfulness
    section4: ConclusionsSection  # findings and the claims table, as sentences
    flagged: tuple  # FlaggedRow
    skipped: tuple  # SkippedImage
    images: tuple  # ImageEntry
    provenance: tuple  # ProvenanceRow
    timings: dict
    figures: tuple  # every Figure, in order
    task: Optional[TaskSection] = None  # "Your task": the user's own classes (None on ImageNet's)
    gate: Optional[GateReport] = None  # [gate]: champion against challengers (None without one)
    survival: Optional[Survival] = None  # the pick without the flagged images (page 1's line; metrics.json)
    differ: Optional[DifferSection] = None  # "Where they differ" (None with fewer than two candidates)
    differences: Optional[Differences] = None  # its numbers (metrics.json's ``differences``, differences.csv)
    data: Optional[DataSection] = None  # "Your data": duplicates, leakage, label errors, balance (None: older results)

    def template_variables(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _depth_images(index: RunIndex, config: AnalysisConfig) -> list[int]:
    """Images for the depth figure: the config's choice, else the first real photo (the manifest's ``source``
    does not mark it as controlled) with a box of each size class, else the first image."""
    files = [img.file for img in index.images]
    if config.depth_figure_images:
        return [files.index(f) for f in config.depth_figure_images if f in files]
    chosen = []
    for size in SIZES:
        for position, image in enumerate(index.images):
            if image.size == size and image.box is not None and not _controlled(image):
                chosen.append(position)
                break
    return chosen or [0]


def _controlled(image: ImageEntry) -> bool:
    """A composite made for the experiment (manifest ``source`` "controlled: ...", as tools/build_images.py
    writes): the depth figure shows real photos when the set has them."""
    return image.source.lower().startswith("controlled")


def _network_row(b: BackboneResult) -> NetworkRow:
    size = b.data_config["input_size"]
    return NetworkRow(backbone=b, family_note=None if b.family_source == "registry" else b.family_source,
                      params_m=b.params / 1e6, gmacs=b.macs / 1e9, input_size=f"{size[1]}×{size[2]}",
                      interpolation=b.data_config.get("interpolation", ""), crop_pct=b.data_config.get("crop_pct"),
                      mean=tuple(round(v, 3) for v in b.data_config["mean"]),
                      std=tuple(round(v, 3) for v in b.data_config["std"]),
                      weights_hash=(b.weights.file_sha256 or b.weights.state_sha256)[:16])


def _localisation_rows(lookup: AggregateLookup, scope: str, name: str, label: str) -> tuple:
    rows = []
    for group in TABLE_GROUPS:
        mass = lookup(scope, name, "deep", group, "mass_ratio")
        if mass and mass.n:
            anchor = f"fam-{name}-{group.replace('=', '-').replace(',', '-')}" if scope == "family" else None
            rows.append(LocalisationRow(label, group, anchor, mass, lookup(scope, name, "deep", group, "spread"),
                                        lookup(scope, name, "deep", group, "pointing_hit")))
    return tuple(rows)


def _mean(row: Optional[Aggregate]) -> Optional[float]:
    return row.mean if row else None


def _baseline_row(lookup: AggregateLookup, b: BackboneResult) -> BaselineRow:
    uniform, gaussian = baseline_role("uniform"), baseline_role("gaussian")
    return BaselineRow(b.display_name, _mean(lookup("backbone", b.name, uniform, "all", "mass_ratio")),
                       _mean(lookup("backbone", b.name, gaussian, "all", "mass_ratio")),
                       _mean(lookup("backbone", b.name, gaussian, "all", "spread")),
                       _mean(lookup("backbone", b.name, gaussian, "all", "pointing_hit")))


def _prediction_lines(index: RunIndex) -> tuple:
    return tuple(PredictionLine(image.file, image.class_name, tuple(
        PredictionCell(b.predictions[i].top1.name.split(",")[0], b.predictions[i].top1.prob,
                       b.predictions[i].correct_top1, b.predictions[i].correct_top5) for b in index.backbones))
        for i, image in enumerate(index.images))


def _sanity_rows(index: RunIndex, metrics) -> tuple:
    rows = []
    for b in index.backbones:
        summary = metrics.sanity[b.name]
        if summary.status != SanityStatus.DONE:
            rows.append(SanityRow(b.display_name, f"sanity-{b.name}", "", None, summary.reason))
            continue
        rows += [SanityRow(b.display_name, f"sanity-{b.name}-{found.role}", layer, found)
                 for layer, found in summary.layers.items()]
    return tuple(rows)


def _sanity_steps(metrics) -> tuple:
    for summary in metrics.sanity.values():
        for found in summary.layers.values():
            return tuple(step.step for step in found.steps)
    return ()


def _last_three_section(b: BackboneResult, summary, figure: Figure, slimming: SlimmingRow, thresholds) -> LastThreeSection:
    layers = summary.layers
    pairs = list(zip(layers[:-1], layers[1:]))
    evidence = slimming.evidence
    return LastThreeSection(
        backbone=b, anchor=f"tab-last3-{b.name}", figure=figure,
        rows=tuple(LastThreeLayerRow(layer, b.weights_module(layer), b.weight_stats[layer], b.feature_stats[layer])
                   for layer in b.last_three),
        cka_layers=tuple(layers), cka=summary.cka,
        w1=tuple(Transition(a, c, v) for (a, c), v in zip(pairs, summary.weight_w1_consecutive)),
        ks=tuple(Transition(a, c, v) for (a, c), v in zip(pairs, summary.weight_ks_consecutive)),
        slimming=slimming, cka_passes=evidence.cka is not None and evidence.cka >= thresholds.slim_cka,
        ks_passes=evidence.ks is not None and evidence.ks <= thresholds.slim_max_ks)


def _flagged(index: RunIndex) -> tuple:
    return tuple(FlaggedRow(b.display_name, layer, index.images[position].file, status)
                 for b in index.backbones for layer, statuses in b.cam_status.items()
                 for position, status in enumerate(statuses)
                 if status not in (CamStatus.OK, CamStatus.NOT_SPATIAL))


def top_two(decision: Decision) -> tuple:
    """The decision's leader and runner-up; when nothing passes, its first two candidates (least violating)."""
    if decision.leader and decision.runner_up:
        return decision.leader, decision.runner_up
    names = [c.backbone for c in decision.candidates]
    return (names[0], names[1]) if len(names) > 1 else (None, None)


def _make_figures(results: SavedResults, lookup: AggregateLookup, decision: Decision,
                  differences: Optional[Differences] = None):
    index, metrics, config = results.index, results.metrics, results.index.config
    cache = figures.ViewCache(results)
    numbered = FigureNumbers()
    decision_figure = None
    if decision.chartable:  # without labels or boxes there is nothing to plot against latency
        decision_figure = numbered.add("fig-decision", f"{decision.quality_axis.capitalize()} against latency on this "
                                       "machine; marker area ~ parameters; hollow: fails a constraint; dashed: "
                                       "Pareto front of the candidates that meet the constraints.",
                                       figures.decision_plot(decision))
    task = build_task(results, numbered)  # its section follows the decision page: so do its figures' numbers
    differ = build_differ(index, differences, cache, numbered) if differences is not None else None  # after task
    data = build_data(results, numbered)  # "Your data" follows the task section
    per_image = PerImage(index, metrics)
    objects = []
    for n, group in enumerate(object_groups(index)):
        sample = grid_sample(group, per_image, config)
        note = caption_note(sample, config.grid_sample_each)
        objects += numbered.add_pages(
            f"fig-objects-{n}", f"Deep-layer Grad-CAM, {group.label}. Dashed box: annotated object."
            + (f" {note}" if note else ""),
            figures.object_grid(cache, [s.position for s in sample.shown], notes=[s.reason for s in sample.shown]
                                if sample.sampled else None))
    objects = tuple(objects)
    localisation = tuple(numbered.add(f"fig-loc-{metric}", f"Deep-layer {metric} by object size and background "
                                      "(95 % bootstrap intervals), with uniform and centred-Gaussian baselines.",
                                      figures.localisation_plot(index, lookup, metric))
                         for metric in ("mass_ratio", "spread") if any(img.size and img.box for img in index.images))
    depth_positions = _depth_images(index, config)
    groups = object_groups(index)
    present, values = distribution_values(index, per_image, groups)
    distributions = numbered.add(
        "fig-distributions", "Per-image distributions of the deep-layer metrics and the top-1 confidence, per "
        "image group (x) and backbone (colour); line: median; dots: groups of fewer than 3 images. mass_ratio needs "
        "a box.", figures.distribution_plot(present, [g.short for g in groups],
                                            [b.display_name for b in index.backbones], values)) if present else None
    depths = tuple(page for p in depth_positions for page in numbered.add_pages(
        f"fig-depth-{p}", f"Grad-CAM at shallow, middle and deep layers: {index.images[p].file}.",
        figures.depth_grid(cache, p)))

    sanity = None
    if any(entry.status == SanityStatus.DONE for entry in metrics.sanity.values()):
        sanity = numbered.add("fig-sanity", "Sanity check (model-parameter randomisation): similarity of each depth's "
                              "Grad-CAM to the trained model's after randomising the weights from the head downwards "
                              "(solid: Spearman rank correlation, dashed: SSIM; 95 % bootstrap intervals).",
                              figures.sanity_plot(index, metrics.sanity, config.rules.sanity_max_spearman))
    example = depth_positions[0]
    last_three = {b.name: numbered.add(f"fig-last3-{b.name}", f"{b.display_name}: weight histograms, feature "
                                       f"visualisation and Grad-CAM ({index.images[example].file}) of the last three "
                                       "layers.", figures.last_three_figure(cache, b, example))
                  for b in index.backbones}
    beyond = build_beyond(index, metrics, numbered, config)
    return (decision_figure, objects, localisation, distributions, depths, sanity, last_three, beyond, task,
            tuple(numbered.made), differ, data)


def _latency_saved(cost: Optional[Cost]) -> Optional[float]:
    if cost is None or cost.slim_latency_ms_median is None:
        return None
    return cost.latency_ms_median - cost.slim_latency_ms_median


def claim_scope(claim: ClaimVerdict) -> str:
    """Which families a verdict covers, when not all three: per family for the slimming claim, else the absent ones."""
    if len(claim.by_family) > 1 and claim.absent:
        parts = [f"{found.verdict} for {found.family}" for found in claim.by_family]
    elif claim.by_family and claim.absent:
        parts = [f"for {claim.by_family[0].family}"]
    else:
        parts = []
    if claim.absent and claim.verdict != Verdict.NOT_TESTED:
        parts.append(f"{listing(claim.absent)} not in this run")
    return "; ".join(parts)


def single_term_claims() -> frozenset:
    """Claims whose family numbers are plain group means (rows of the family table)."""
    return frozenset(c.key for c in CLAIMS if all(t.quantity.single_group_mean for t in c.tests))


def images_left_out(results: SavedResults) -> LeftOut:
    """The flagged images page 1's survival line recomputes the decision without: the data check's duplicates (the
    copies it flagged: it keeps the first of each group by position), leaked images (copies and near-copies of
    training images) and likely label errors, through :func:`~reportgen.scoring.survival.images_to_leave_out`.
    Nothing (so no line) when no check ran or none flagged."""
    data = results.metrics.data
    if data is None:
        return NOTHING_LEFT_OUT
    return images_to_leave_out(
        duplicates=[flag.image for reason in (FlagReason.EXACT_DUPLICATE, FlagReason.NEAR_DUPLICATE)
                    for flag in data.flagged(reason)],
        leaked=[flag.image for reason in (FlagReason.TRAIN_EVAL_COPY, FlagReason.TRAIN_EVAL_NEAR_COPY)
                for flag in data.flagged(reason)],
        label_errors=[flag.image for flag in data.flagged(FlagReason.LABEL_ISSUE)])


def build_context(results: SavedResults) -> ReportContext:
    index, metrics = results.index, results.metrics
    config = index.config
    lookup = AggregateLookup(metrics.aggregates)
    draws = run_draws(index)  # the one paired bootstrap of the report: the decision and the claims read it
    decision, gate = decide_and_gate(results, draws)
    survival = pick_survival(index, metrics, results.cost, decision, gate, images_left_out(results), results.arrays)
    differences = run_differences(index, top_two(decision), gate.champion if gate is not None else None)
    (decision_figure, objects, localisation_figures, distribution_figure, depth_figures, sanity_figure,
     last_three_figures, beyond, task, made, differ, data) = _make_figures(results, lookup, decision, differences)
    conclusions = conclude(index, metrics, draws)
    slimming = {row.backbone: row for row in next(c for c in conclusions.claims if c.key == "slimming").slimming}
    single = single_term_claims()
    costs = results.cost.backbones
    return ReportContext(
        index=index, decision=decision,
        decision_page=decision_page(decision, index, str(results.timings.get("started", "")), results.cost,
                                    metrics.task, gate, survival, data=metrics.data),
        gate=gate, survival=survival,
        decision_figure=decision_figure,
        costs=tuple(CostRow(b.display_name, costs.get(b.name)) for b in index.backbones),
        slimming_rows=tuple(SlimmingTableRow(b.display_name, slimming[b.name], _latency_saved(costs.get(b.name)))
                            for b in index.backbones),
        config=config, untrained=index.untrained, banner=UNTRAINED_BANNER, conclusions=conclusions,
        networks=tuple(_network_row(b) for b in index.backbones),
        object_figures=objects, localisation_figures=localisation_figures, distribution_figure=distribution_figure,
        long_tables=len(index.images) > config.table_max_rows, accuracy=accuracy_rows(index),
        classes=class_rows(index), confused=confused_pairs(index, CONFUSED_PAIRS_SHOWN),
        classes_shown=WORST_CLASSES_SHOWN, flagged_groups=flagged_groups(index),
        image_summary=image_set_summary(index),
        localisation=tuple(LocalisationBlock(_localisation_rows(lookup, "backbone", b.name, b.display_name),
                                             _baseline_row(lookup, b)) for b in index.backbones),
        families=tuple(row for family in conclusions.families_present
                       for row in _localisation_rows(lookup, "family", family, family)),
        prediction_headers=tuple(b.display_name for b in index.backbones),
        top5_informative=index.top5_informative,
        predictions=_prediction_lines(index),
        depth_figures=depth_figures,
        depths=tuple(DepthRow(b.display_name, role, b.depth_layers[role],
                              lookup("backbone", b.name, role, "all", "mass_ratio"),
                              lookup("backbone", b.name, role, "all", "spread"),
                              lookup("backbone", b.name, role, "all", "entropy"))
                     for b in index.backbones for role in DEPTHS),
        sanity_figure=sanity_figure, sanity_steps=_sanity_steps(metrics), sanity=_sanity_rows(index, metrics),
        last_three=tuple(_last_three_section(b, metrics.last_three[b.name], last_three_figures[b.name],
                                             slimming[b.name], config.rules) for b in index.backbones),
        beyond=beyond,
        section4=build_conclusions(conclusions, tuple(
            (number, claim, "tab-families" if claim.key in single else f"claim-{claim.key}", claim_scope(claim))
            for number, claim in enumerate(conclusions.claims, start=1))),
        flagged=_flagged(index), skipped=tuple(index.skipped_images), images=tuple(index.images),
        provenance=tuple(ProvenanceRow(b.display_name, b.weights) for b in index.backbones),
        timings=results.timings, figures=made, task=task, differ=differ, differences=differences, data=data)

