"""Analysis and rule settings. Every threshold the rules use lives here, and the whole config is saved
with the results so a report states what it was judged by.

Every value is checked when a config is built (battery file, flags or saved results), so a bad value stops
the run with one line naming the key, the value and what is allowed, before any model loads.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Iterable, Optional

from ..errors import UsageError

# Gradient-based methods of pytorch-grad-cam the engine can use (the engine maps them to classes).
CAM_METHOD_NAMES = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam")
# SSIM uses an 11x11 window, so the maps compared in the sanity check must be at least that large.
MIN_SANITY_RESOLUTION = 11
# The common corruptions (ImageNet-C names) the battery can apply (analysis.corruptions has their operations).
CORRUPTION_NAMES = ("gaussian_noise", "defocus_blur", "motion_blur", "jpeg_compression", "pixelate", "brightness",
                    "contrast")
# ImageNet-C's protocol: every image is corrupted on one common crop, the shorter side resized to CORRUPTION_RESIZE
# pixels and the centre CORRUPTION_CROP x CORRUPTION_CROP kept (its blur radii and noise are tuned for that size),
# the same pixels for every backbone; each backbone then resizes the corrupted crop to its own input size.
CORRUPTION_RESIZE = 256
CORRUPTION_CROP = 224
DESIGNS = ("balanced", "full")
# Config fields held as tuples (lists in TOML and JSON).
TUPLE_FIELDS = ("depth_figure_images", "corruptions", "corruption_severities", "faithfulness_percentiles")
# The sample sizes of the corruption and faithfulness checks when the battery file gives none, by the run's device:
# on two CPU cores 16 images each add about 1.75x to a lite run with section 3.4; a GPU does that work in a fraction
# of the time, so it takes more images for narrower intervals. A set with fewer images uses every image; a battery
# file's values always win.
SAMPLE_SIZE_FIELDS = ("corruption_max_images", "faithfulness_max_images")
DEVICE_SAMPLE_SIZES = {"cpu": {"corruption_max_images": 16, "faithfulness_max_images": 16},
                       "cuda": {"corruption_max_images": 64, "faithfulness_max_images": 32}}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad(key: str, value, allowed: str) -> UsageError:
    return UsageError(f"{key} = {value!r} is not allowed: {allowed}.")


def _check_range(owner, key: str, low=None, high=None, *, integer=False, low_open=False, high_open=False):
    value = getattr(owner, key)
    kind = "an integer" if integer else "a number"
    if not (_integer(value) if integer else _number(value)):
        raise _bad(key, value, f"give {kind}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise _bad(key, value, f"give {kind} {bound}" + (f" and {'<' if high_open else '<='} {high}" if high is not None else ""))
    if high is not None and (value >= high if high_open else value > high):
        raise _bad(key, value, f"give {kind} {'<' if high_open else '<='} {high}"
                   + (f" and {'>' if low_open else '>='} {low}" if low is not None else ""))


@dataclass(frozen=True, kw_only=True)
class RuleThresholds:
    # A family difference counts only when the bootstrap 95 % intervals do not overlap
    # and the means differ by at least this fraction of the larger one.
    min_relative_difference: float = 0.05
    # Fewer images than this behind a group mean: the group is "small" and verdicts are inconclusive.
    min_group_size: int = 2
    # A deep-layer CAM "focuses on the object" when its mean mass_ratio exceeds this.
    focus_mass_ratio: float = 1.2
    # Slimming: the penultimate layer is redundant when its features are this similar (linear CKA)
    # to the layer before it.
    slim_cka: float = 0.8
    # ... and the Kolmogorov-Smirnov distance between their standardised weight distributions is at most this.
    slim_max_ks: float = 0.1
    # Sanity check: a layer is flagged when, after randomising every weight, its CAMs still correlate
    # with the trained model's at least this much (mean Spearman rank correlation over the images).
    sanity_max_spearman: float = 0.5
    # ... or when their mean SSIM is at least this.
    sanity_max_ssim: float = 0.5
    # Slimming verified by intervention (the unit removed, no retraining): the cut is harmless when the slimmed
    # model's top-1 agrees with the full model's on at least this share of the images ...
    slim_min_agreement: float = 0.9
    # ... and its top-1 accuracy on labelled images drops by at most this (fraction: 0.02 = 2 points).
    slim_max_top1_drop: float = 0.02

    def __post_init__(self):
        _check_range(self, "min_relative_difference", 0)
        _check_range(self, "min_group_size", 1, integer=True)
        _check_range(self, "focus_mass_ratio", 0, low_open=True)
        _check_range(self, "slim_cka", 0, 1)
        _check_range(self, "slim_max_ks", 0, 1)
        _check_range(self, "sanity_max_spearman", -1, 1)
        _check_range(self, "sanity_max_ssim", -1, 1)
        _check_range(self, "slim_min_agreement", 0, 1)
        _check_range(self, "slim_max_top1_drop", 0, 1)


DECISION_CRITERIA = ("accuracy", "localisation", "clutter", "calibration", "corruption", "faithfulness", "latency",
                     "size")
# How much each criterion counts when no battery file says otherwise: accuracy on labelled images first,
# then localisation (weighted by the image set's size mix), then keeping localisation on cluttered backgrounds,
# calibration (ECE), robustness to common corruptions of the user's own images, faithfulness of the deep-layer
# CAM, latency and size. A [decision] weights table names only what it changes; the other criteria keep these.
DEFAULT_DECISION_WEIGHTS = {"accuracy": 3.0, "localisation": 2.0, "clutter": 1.0, "calibration": 1.0, "corruption": 1.0,
                            "faithfulness": 1.0, "latency": 1.0, "size": 1.0}
# Earlier names still accepted in a weights table (the report notes the new name).
CRITERION_ALIASES = {"robustness": "clutter"}
MAX_WEIGHT = 10.0  # the sensitivity analysis searches each weight within 0..MAX_WEIGHT


@dataclass(frozen=True, kw_only=True)
class DecisionSettings:
    """The user's budget (hard constraints; None = no limit) and what matters (weights of the criteria)."""
    max_params_m: Optional[float] = None  # millions of parameters
    max_gmacs: Optional[float] = None  # GMACs per image at the model's input size
    max_latency_ms: Optional[float] = None  # median latency at batch 1 on the run's device
    min_top1: Optional[float] = None  # top-1 accuracy on the labelled images, 0..1
    # The weights the user gave (a partial table keeps the defaults for the criteria it leaves out).
    weights: dict = field(default_factory=dict)
    # Level of the decision's intervals (scores, margins, constraint checks).
    confidence: float = 0.95
    # SMAA: in each bootstrap draw every weight is drawn around the user's (log-normal with this spread; 0 = fixed),
    # so P(best) also says how much the pick depends on the exact weights.
    weight_uncertainty: float = 0.2
    # A candidate is recommended only when it ranks first in at least this share of the draws.
    min_win_probability: float = 0.9
    # Retired (issue 24): wins within tie_points of a draw's best used to be shared, which let a candidate worse in
    # every draw take the leader's wins. A win is now shared only on an exact tie; the key is still accepted (older
    # battery files load) and has no effect.
    tie_points: Optional[float] = None
    # Latency measured while the machine's 1-minute load average per core was above this is flagged on page 1:
    # other processes competing for the cores inflate every session alike, which the interval over the sessions
    # cannot show. (Measured on 2 cores: 0.5-0.65 during a run alone; 1.5 beside a test suite, with latency
    # inflated 3-fold.)
    busy_load_per_core: float = 1.0
    # A candidate is degenerate (named on page 1, never recommended) when, on at least degenerate_min_images images,
    # it predicts one class for at least degenerate_class_share of them (unless the labels are that uniform), or its
    # top-1 interval lies within degenerate_chance_margin of chance (as a share of the way from chance to 100 %:
    # 0.05 is at most 5.1 % top-1 on ImageNet, 52.5 % on two classes), or its deep-layer CAM is all-zero or NaN on at
    # least degenerate_cam_share of them. Measured (docs/decision.md): Lite0 with ImageNet's mean/std instead of its
    # own keeps its top-1 (not degenerate); fed 0-255 pixels it falls to 0 % (degenerate); one stage zeroed, it
    # predicts one class for every image (degenerate).
    degenerate_class_share: float = 0.8
    degenerate_chance_margin: float = 0.05
    degenerate_cam_share: float = 0.5
    degenerate_min_images: int = 10
    # Page 1 says whether the pick survives the images the data check flags (duplicates, leakage, likely label
    # errors): the decision recomputed without them, unless fewer than this many images would remain (a decision on
    # a handful of images says more about those images than about the pick).
    survival_min_images: int = 10

    def __post_init__(self):
        for key in ("degenerate_class_share", "degenerate_chance_margin", "degenerate_cam_share"):
            _check_range(self, key, 0, 1)
        _check_range(self, "degenerate_min_images", 1, integer=True)
        _check_range(self, "survival_min_images", 2, integer=True)
        for key in ("max_params_m", "max_gmacs", "max_latency_ms"):
            if getattr(self, key) is not None:
                _check_range(self, key, 0, low_open=True)
        if self.min_top1 is not None:
            _check_range(self, "min_top1", 0, 1)
        if not isinstance(self.weights, dict):
            raise _bad("weights", self.weights, f"give a table of weights for {', '.join(DECISION_CRITERIA)}")
        known = DECISION_CRITERIA + tuple(CRITERION_ALIASES)
        for criterion, weight in self.weights.items():
            if criterion not in known:
                raise _bad("weights", criterion, f"criteria are {', '.join(DECISION_CRITERIA)}")
            if not _number(weight) or weight < 0 or weight > MAX_WEIGHT:
                raise _bad(f"weights.{criterion}", weight, f"give a number from 0 to {MAX_WEIGHT:g}")
        for alias, name in CRITERION_ALIASES.items():
            if alias in self.weights and name in self.weights:
                raise _bad("weights", self.weights, f"give {name} or its old name {alias}, not both")
        if not any(self.effective_weights().values()):
            raise _bad("weights", self.weights, "at least one weight must be above 0")
        _check_range(self, "confidence", 0.5, 1, high_open=True)
        _check_range(self, "weight_uncertainty", 0, 2)
        _check_range(self, "min_win_probability", 0.5, 1)
        if self.tie_points is not None:
            _check_range(self, "tie_points", 0, 100)
        _check_range(self, "busy_load_per_core", 0, low_open=True)

    def effective_weights(self) -> dict:
        """Every criterion's weight: the user's where given (old names mapped), else the default."""
        given = {CRITERION_ALIASES.get(k, k): float(v) for k, v in self.weights.items()}
        return {criterion: given.get(criterion, DEFAULT_DECISION_WEIGHTS[criterion]) for criterion in DECISION_CRITERIA}

    def weight_source(self, criterion: str) -> str:
        """"yours" when the weights table gave it (under any name), else "default"."""
        names = {criterion} | {alias for alias, name in CRITERION_ALIASES.items() if name == criterion}
        return "yours" if names & set(self.weights) else "default"

    def aliases_used(self) -> tuple:
        return tuple((alias, CRITERION_ALIASES[alias]) for alias in self.weights if alias in CRITERION_ALIASES)

    def weight(self, criterion: str) -> float:
        return self.effective_weights().get(criterion, 0.0)


GATE_OUTCOMES_ON_UNCERTAIN = ("fail", "pass")
GATE_CONSTRAINTS = ("pass", "ignore")


@dataclass(frozen=True)
class GateSettings:
    """``[gate]``: the decision as a pass/fail for CI. Every challenger (each candidate but the champion) must meet
    every condition given; each condition is judged on the run's paired draws as pass, fail or uncertain."""
    champion: str = ""  # the candidate in production ("" = no gate)
    min_p_better: Optional[float] = None  # P(challenger's score > champion's) over the draws must reach this
    max_accuracy_drop: Optional[float] = None  # task accuracy may drop by at most this (0..1), judged on the interval
    constraints: str = "ignore"  # "pass": every [decision] constraint must pass (uncertain counts as not passed)
    on_uncertain: str = "fail"  # how an uncertain condition counts

    def __post_init__(self):
        if not isinstance(self.champion, str):
            raise _bad("gate.champion", self.champion, "give the name of a candidate of the run")
        if self.min_p_better is not None:
            _check_range(self, "min_p_better", 0.5, 1, high_open=True)
        if self.max_accuracy_drop is not None:
            _check_range(self, "max_accuracy_drop", 0, 1)
        if self.constraints not in GATE_CONSTRAINTS:
            raise _bad("gate.constraints", self.constraints, "choose pass or ignore")
        if self.on_uncertain not in GATE_OUTCOMES_ON_UNCERTAIN:
            raise _bad("gate.on_uncertain", self.on_uncertain, "choose fail or pass")
        if not self.champion and (self.min_p_better is not None or self.max_accuracy_drop is not None
                                  or self.constraints != "ignore" or self.on_uncertain != "fail"):
            raise _bad("gate.champion", self.champion, "name the candidate in production: without a champion the "
                                                       "gate's conditions would be ignored")
        if self.champion and self.min_p_better is None and self.max_accuracy_drop is None and \
                self.constraints != "pass":
            raise _bad("gate", self.champion, "give at least one condition: min_p_better, max_accuracy_drop or "
                                              "constraints = \"pass\"")

    @property
    def enabled(self) -> bool:
        return bool(self.champion)


@dataclass(frozen=True, kw_only=True)
class AnalysisConfig:
    cam_method: str = "gradcam"
    batch_size: int = 8
    seed: int = 0
    bootstrap_samples: int = 1000
    # The bootstrap resamples each group of images (size x background x labelled x boxed) on its own; groups with
    # fewer images than this are resampled together as one pooled group (a group of n images alone keeps only
    # (n - 1) / n of its variance, one of 1 image none: tiny groups make every interval too narrow). 1: every
    # group alone.
    bootstrap_min_stratum: int = 10
    histogram_bins: int = 60
    weight_quantiles: int = 1001
    # |w| below this fraction of the layer's largest |w| counts as "near zero".
    near_zero_fraction: float = 0.01
    # CAM >= this fraction of its maximum counts towards "spread".
    spread_level: float = 0.5
    # Images shown in the depth figure (section 3.2), by file name; empty = first of each size class.
    depth_figure_images: tuple = ()
    # Size class from the box's share of the image, when the manifest gives none: below -> small,
    # from -> large, between -> medium (the curated set's objects fill ~5 %, ~20 % and ~60 %).
    size_small_below: float = 0.10
    size_large_from: float = 0.35
    # Background class, when not given: "cluttered" when the share of edge pixels outside the box is at
    # least this (see inputs.clutter.edge_density).
    clutter_edge_density: float = 0.04
    # Model-parameter randomisation test (trained weights only).
    sanity_check: bool = True
    # Both CAMs are resized to this square size before Spearman / SSIM are computed.
    sanity_resolution: int = 64
    # The randomisation test runs on at most this many images (a fixed sample chosen by a hash of each image's
    # content and the seed, so it does not depend on file order): it repeats the CAM pass once per step, and
    # its verdict needs a few dozen images, not the whole validation folder. A sharded run samples per shard.
    sanity_max_images: int = 32
    # Slimming by intervention: also measure the slimmed model's deep-layer CAMs (one more CAM pass).
    slimming_cams: bool = True
    # Report layout for large image sets (re-rendering only; no model runs again). A heatmap grid whose group
    # holds more images shows a sample: the grid_sample_each best, median and worst images by the deep-layer
    # metric (mass_ratio with a box, else top-1 confidence; mean over backbones) plus as many misclassified
    # ones. Per-image tables longer than table_max_rows are summarised, the full table kept in per_image.csv
    # (and collapsed in the HTML).
    grid_max_images: int = 24
    grid_sample_each: int = 3
    table_max_rows: int = 40
    # "Where they differ" (issue 33): the PDF's gallery of the images two candidates disagree on shows at most
    # differ_pdf_images of them (a deterministic sample; the caption says how many of how many), the HTML at most
    # differ_html_images (every one on an ordinary set; a 10,000-image set keeps the page loadable), differences.csv
    # every one; differ_errors_shown: each candidate's most confident errors shown with their heatmaps.
    differ_pdf_images: int = 12
    differ_html_images: int = 400
    differ_errors_shown: int = 4
    # Beyond the paper (section 3.4). Calibration is measured on every labelled image; with fewer than this many
    # it is shown but left out of the decision, with the reason.
    calibration_min_labelled: int = 50
    # Common corruptions (ImageNet-C) of one common 224 x 224 crop per image (the same pixels for every backbone,
    # then each backbone's own resize and normalisation), at these ImageNet-C severities (1-5),
    # on a fixed hashed sample of at most corruption_max_images images (the sanity check's sampling rule). Each
    # (image, corruption, severity) is one forward pass per backbone: 16 images x 7 corruptions x 3 severities
    # add about a CAM pass's worth of time per backbone on two CPU cores; raise them on a GPU or for a final pick.
    corruptions: tuple = CORRUPTION_NAMES
    corruption_severities: tuple = (1, 3, 5)
    corruption_max_images: int = 16
    # balanced: each image gets every corruption once, at a severity that rotates from corruption to corruption
    # (a Latin square: a third of the passes at three severities); full: every severity of every corruption.
    corruption_design: str = "balanced"
    # Faithfulness of the deep-layer CAM: ROAD (remove and debias) in both orders, averaged over these
    # percentiles, on at most faithfulness_max_images images; every (image, percentile, order, map) is one
    # noisy linear imputation (a sparse solve on the CPU) and one forward pass.
    faithfulness_max_images: int = 16
    faithfulness_percentiles: tuple = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    # balanced: each image at one of the percentiles (drawn from its content hash), so the mean over images is the
    # mean over the percentiles for a ninth of the work; full: every image at every percentile.
    faithfulness_design: str = "balanced"
    # The imputation's sparse solve runs on a grid of this side (0: the model's input size): 64 is about thirty
    # times faster than 224 and changes the filled pixels by about 1 % of their range.
    faithfulness_imputation_side: int = 64
    # Corruptions and faithfulness are skipped on untrained weights (like the sanity check): true runs them.
    beyond_paper_on_untrained: bool = False
    # The user's own classes: an ImageNet backbone is scored through a linear probe (standardised pooled features,
    # logistic regression with inverse regularisation probe_c) cross-validated in probe_folds stratified folds
    # (classes with fewer labelled images are left out of it), and by a cosine k-NN (knn_k neighbours, DINO's
    # weighted vote at knn_temperature) on the same folds.
    probe_folds: int = 5
    # The folds are drawn probe_repeats times (images with the same content hash always in one fold) and each image's
    # out-of-fold probabilities and k-NN votes averaged: one split moved a set's accuracy by up to 0.18 (review of
    # 2026-12-06); the spread over seeds shrinks as 1/sqrt(repeats), and the probe's cost grows with it.
    probe_repeats: int = 5
    # The accuracy interval includes refitting: one cross-validation is refit on probe_refits bootstrap resamples of
    # the images, and the paired bootstrap's spread is scaled by the variance ratio they measure (0: not measured,
    # the interval is then conditional on the fitted folds, and the task section's protocol says so).
    probe_refits: int = 10
    probe_c: float = 1.0
    # The heatmaps of a probe candidate explain the probe fit on at most this many labelled images of each class,
    # and never more than half of it (chosen by content hash and seed: the other half is where the corruption and
    # faithfulness checks, which score through this head, draw their images): one forward pass over them before the
    # CAM pass, which itself keeps every image's features for the cross-validated probe.
    probe_explain_per_class: int = 32
    knn_k: int = 20
    knn_temperature: float = 0.07
    # The label-order check flags a head when the best assignment of its outputs to the labels gains at least
    # this much accuracy (lower end of the gain's 95 % paired-bootstrap interval).
    label_order_min_gain: float = 0.10
    # Latency is timed in this many sessions per candidate, interleaved across the candidates (A B C, B C A, C A B ...)
    # after the analyses, the per-model timing budget split over them: the decision's latency interval is a
    # random-effects interval over the sessions (t with their degrees of freedom), since sessions on a shared
    # machine drift by tens of per cent. At least 2 (one session has no drift to measure); 3 gives a lone
    # candidate's interval t with 2 degrees of freedom (4.3 standard errors) instead of 1 (12.7).
    latency_sessions: int = 3
    # Each candidate's timed passes stop once the median's interval lies within ±2 % of it or after this many seconds
    # of passes, split over the sessions (and never below 2 passes a session). Longer narrows the latency interval on
    # a noisy machine; shorter suits a quick draft or many large candidates.
    latency_budget_s: float = 1.0
    # "Your data" (scoring/datacheck.py): two images are near-duplicates when the cosine similarity of their pooled
    # pre-logit features (the ones each run already keeps), averaged over the candidates, is at least this. Measured
    # on Lite0 against a 64-bit difference hash (docs/analyses.md, "Your data"): copies re-saved as JPEG at 95 %
    # and 85 % of the size lie at 0.905-0.99 (median 0.988), at quality 70 median 0.948, 90 % centre crops median
    # 0.964; the curated photos' distinct pairs at most 0.939 (a photo and a composite cut from it), 99 % below 0.891.
    near_duplicate_cosine: float = 0.90
    # Each image's this many most similar images are examined (the search is a blocked matrix product, never a loop
    # over pairs); a group of more near-copies is still joined through its members' neighbours.
    near_duplicate_neighbours: int = 10
    rules: RuleThresholds = field(default_factory=RuleThresholds)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    gate: GateSettings = field(default_factory=GateSettings)

    def __post_init__(self):
        if self.cam_method not in CAM_METHOD_NAMES:
            raise _bad("cam_method", self.cam_method, f"choose one of {', '.join(CAM_METHOD_NAMES)}")
        _check_range(self, "batch_size", 1, 1024, integer=True)
        _check_range(self, "seed", 0, 2 ** 32 - 1, integer=True)
        _check_range(self, "bootstrap_samples", 10, integer=True)
        _check_range(self, "bootstrap_min_stratum", 1, integer=True)
        _check_range(self, "latency_sessions", 2, 20, integer=True)
        _check_range(self, "latency_budget_s", 0, 600, low_open=True)
        _check_range(self, "histogram_bins", 2, integer=True)
        _check_range(self, "weight_quantiles", 2, integer=True)
        _check_range(self, "near_zero_fraction", 0, 1, high_open=True)
        _check_range(self, "spread_level", 0, 1, low_open=True)
        if not all(isinstance(name, str) for name in self.depth_figure_images):
            raise _bad("depth_figure_images", list(self.depth_figure_images), "give a list of image file names")
        _check_range(self, "size_small_below", 0, 1, low_open=True, high_open=True)
        _check_range(self, "size_large_from", 0, 1, low_open=True)
        if self.size_small_below >= self.size_large_from:
            raise _bad("size_small_below", self.size_small_below,
                       f"it must be below size_large_from ({self.size_large_from})")
        _check_range(self, "clutter_edge_density", 0, 1)
        if not isinstance(self.sanity_check, bool):
            raise _bad("sanity_check", self.sanity_check, "give true or false")
        _check_range(self, "sanity_resolution", MIN_SANITY_RESOLUTION, 1024, integer=True)
        _check_range(self, "sanity_max_images", 2, integer=True)
        _check_range(self, "grid_max_images", 1, integer=True)
        _check_range(self, "calibration_min_labelled", 2, integer=True)
        unknown = [c for c in self.corruptions if c not in CORRUPTION_NAMES]
        if not isinstance(self.corruptions, tuple) or unknown or len(set(self.corruptions)) != len(self.corruptions):
            raise _bad("corruptions", list(self.corruptions) if isinstance(self.corruptions, tuple) else self.corruptions,
                       f"give distinct names from {', '.join(CORRUPTION_NAMES)} (an empty list skips them)")
        if not isinstance(self.corruption_severities, tuple) or not self.corruption_severities or any(
                not _integer(v) or not 1 <= v <= 5 for v in self.corruption_severities) or \
                list(self.corruption_severities) != sorted(set(self.corruption_severities)):
            raise _bad("corruption_severities", self.corruption_severities, "give increasing severities from 1 to 5")
        _check_range(self, "corruption_max_images", 0, integer=True)
        _check_range(self, "faithfulness_max_images", 0, integer=True)
        if not (_integer(self.faithfulness_imputation_side) and (self.faithfulness_imputation_side == 0
                                                                 or 16 <= self.faithfulness_imputation_side <= 1024)):
            raise _bad("faithfulness_imputation_side", self.faithfulness_imputation_side,
                       "give 0 (the input size) or a side from 16 to 1024")
        if not isinstance(self.faithfulness_percentiles, tuple) or not self.faithfulness_percentiles or any(
                not _integer(v) or not 1 <= v <= 99 for v in self.faithfulness_percentiles):
            raise _bad("faithfulness_percentiles", self.faithfulness_percentiles, "give percentiles from 1 to 99")
        for key in ("corruption_design", "faithfulness_design"):
            if getattr(self, key) not in DESIGNS:
                raise _bad(key, getattr(self, key), f"choose {' or '.join(DESIGNS)}")
        if not isinstance(self.beyond_paper_on_untrained, bool):
            raise _bad("beyond_paper_on_untrained", self.beyond_paper_on_untrained, "give true or false")
        _check_range(self, "grid_sample_each", 1, integer=True)
        _check_range(self, "table_max_rows", 1, integer=True)
        for key in ("differ_pdf_images", "differ_html_images", "differ_errors_shown"):
            _check_range(self, key, 0, integer=True)
        if not isinstance(self.slimming_cams, bool):
            raise _bad("slimming_cams", self.slimming_cams, "give true or false")
        _check_range(self, "probe_folds", 2, 20, integer=True)
        _check_range(self, "probe_repeats", 1, 50, integer=True)
        _check_range(self, "probe_refits", 0, 200, integer=True)
        if self.probe_refits == 1:
            raise _bad("probe_refits", self.probe_refits, "give 0 (not measured) or at least 2: a variance needs two")
        _check_range(self, "probe_c", 0, low_open=True)
        _check_range(self, "probe_explain_per_class", 2, integer=True)
        _check_range(self, "knn_k", 1, integer=True)
        _check_range(self, "knn_temperature", 0, low_open=True)
        _check_range(self, "label_order_min_gain", 0, 1, low_open=True)
        _check_range(self, "near_duplicate_cosine", 0, 1, low_open=True)
        _check_range(self, "near_duplicate_neighbours", 1, 1000, integer=True)
        if not isinstance(self.rules, RuleThresholds):
            raise _bad("rules", self.rules, "give a [rules] table")
        if not isinstance(self.decision, DecisionSettings):
            raise _bad("decision", self.decision, "give a [decision] table")

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in TUPLE_FIELDS:
            data[key] = list(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisConfig":
        data = dict(data)
        rules = RuleThresholds(**data.pop("rules", {}))
        decision = DecisionSettings(**data.pop("decision", {}))
        gate = GateSettings(**data.pop("gate", {}))
        for key in TUPLE_FIELDS:
            if key in data:
                data[key] = tuple(data[key])
        return cls(rules=rules, decision=decision, gate=gate, **data)


# Every AnalysisConfig field is classified, so a new field cannot silently miss the cache key:
# model side: changes what the models compute (part of each backbone's cache key: changing it recomputes);
# scoring side: read only when saved results are scored and rendered (changing it re-scores, no model runs);
# execution: how the work is done, not what it computes.
MODEL_SIDE_FIELDS = ("cam_method", "seed", "histogram_bins", "weight_quantiles", "near_zero_fraction", "sanity_check",
                     "slimming_cams", "sanity_max_images", "sanity_resolution", "corruptions", "corruption_severities",
                     "corruption_max_images", "corruption_design", "faithfulness_max_images",
                     "faithfulness_percentiles", "faithfulness_imputation_side", "faithfulness_design",
                     "beyond_paper_on_untrained", "probe_folds", "probe_repeats", "probe_refits", "probe_c", "probe_explain_per_class", "knn_k",
                     "knn_temperature")
SCORING_SIDE_FIELDS = ("bootstrap_samples", "bootstrap_min_stratum", "spread_level", "depth_figure_images",
                       "size_small_below", "size_large_from", "clutter_edge_density", "grid_max_images",
                       "grid_sample_each", "table_max_rows", "differ_pdf_images", "differ_html_images",
                       "differ_errors_shown", "calibration_min_labelled", "label_order_min_gain",
                       "rules", "decision", "gate", "near_duplicate_cosine",
                       "near_duplicate_neighbours")
EXECUTION_FIELDS = ("batch_size", "latency_sessions", "latency_budget_s")


def _check_classified() -> None:
    names = [f.name for f in fields(AnalysisConfig)]
    sides = MODEL_SIDE_FIELDS + SCORING_SIDE_FIELDS + EXECUTION_FIELDS
    if sorted(names) != sorted(sides):
        raise RuntimeError(f"AnalysisConfig fields not classified as model side, scoring side or execution: "
                           f"{sorted(set(names) ^ set(sides))}")


_check_classified()


def device_kind(device: str) -> str:
    """cpu | cuda: the key of DEVICE_SAMPLE_SIZES for a device string ("cuda:1" is cuda)."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def with_device_sample_sizes(config: AnalysisConfig, device: str, given: Iterable[str] = ()) -> AnalysisConfig:
    """``config`` with the corruption and faithfulness sample sizes of the run's ``device``, except the keys in
    ``given`` (those the battery file's [analysis] table sets), which always win."""
    given = set(given)
    return replace(config, **{key: value for key, value in DEVICE_SAMPLE_SIZES[device_kind(device)].items()
                              if key not in given})


def sample_size_source(key: str, value: int, device: str, given: Iterable[str] = ()) -> str:
    """Where a sample size came from: "battery file" (``given`` names it), "<device> default", or "config" (a
    library caller's AnalysisConfig)."""
    if key in set(given):
        return "battery file"
    kind = device_kind(device)
    return f"{kind} default" if value == DEVICE_SAMPLE_SIZES[kind][key] else "config"
