"""Section 3.4, beyond the paper: calibration, corruptions and faithfulness. Rows and sentences built once for
every format; the numbers come from metrics.json (scoring), this only lays them out and phrases them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..inputs.config import CORRUPTION_CROP, CORRUPTION_RESIZE
from ..results.schema import CalibrationScore, CorruptionScore, FaithfulnessScore, Interval, RunIndex, RunStatus
from ..scoring.criteria import labelled_images
from . import figures
from .figure_numbers import Figure, FigureNumbers
from .formatting import MISSING, bracket, missing, num
from .phrases import Sentence, text


@dataclass(frozen=True)
class CalibrationRow:
    display_name: str
    score: CalibrationScore


@dataclass(frozen=True)
class CorruptionRow:
    display_name: str
    score: CorruptionScore
    by_corruption: tuple  # (corruption, ((severity, Interval), ...)) for the table


@dataclass(frozen=True)
class FaithfulnessRow:
    display_name: str
    score: FaithfulnessScore
    cam: Optional[Interval]
    random: Optional[Interval]
    gaussian: Optional[Interval]


@dataclass(frozen=True, kw_only=True)
class BeyondSection:
    calibration: tuple  # CalibrationRow
    calibration_figure: Optional[Figure]
    calibration_note: Sentence
    corruption: tuple  # CorruptionRow
    corruption_figure: Optional[Figure]
    corruption_note: Sentence
    severities: tuple
    faithfulness: tuple  # FaithfulnessRow
    faithfulness_figure: Optional[Figure]
    faithfulness_note: Sentence
    flags: tuple  # Sentence per backbone whose deep-layer heatmaps do not beat the random map (beside the grids)
    untrained: bool


def _interval_text(found: Optional[Interval], scale: float = 1.0) -> str:
    if found is None or missing(found.mean):
        return MISSING
    return f"{num(found.mean * scale)}{bracket(found.ci_low, found.ci_high, scale)}"


def faithfulness_flag(name: str, score: FaithfulnessScore, untrained: bool) -> Sentence:
    """The sentence beside the grids of a backbone whose deep-layer CAM does not beat the random map."""
    cam = next((m.gap for m in score.maps if m.map == "cam"), None)
    random = next((m.gap for m in score.maps if m.map == "random"), None)
    why = " (expected of untrained weights: their maps follow no learned evidence)" if untrained else ""
    return (text(f"{name}: this layer's heatmaps do not show what the model uses", strong=True),
            text(f" — its deep-layer CAM's ROAD gap {_interval_text(cam)} does not beat a uniform-random map's "
                 f"{_interval_text(random)} (paired difference {_interval_text(score.over_random)}){why}; "),
            text("section 3.4", "beyond-faithfulness"), text("."))


def build_beyond(index: RunIndex, metrics, numbered: FigureNumbers, config) -> BeyondSection:
    calibration = tuple(CalibrationRow(b.display_name, metrics.calibration.get(b.name) or CalibrationScore(
        status=RunStatus.SKIPPED, reason="not measured by this version", labelled=0)) for b in index.backbones)
    measured = [row for row in calibration if row.score.status == RunStatus.DONE]
    calibration_figure = numbered.add(
        "fig-reliability", "Reliability diagrams: accuracy against mean top-1 confidence in 15 equal-width bins "
        "(marker area ~ images); the dotted diagonal is a calibrated model.",
        figures.reliability_plot([r.display_name for r in measured], [r.score for r in measured])) if measured else None
    labelled = labelled_images(index)  # the decision's count (from the images, not the first candidate)
    if not measured:
        calibration_note = (text("Calibration not measured: " + (calibration[0].score.reason if calibration else
                                                                   "no backbone") + "."),)
    elif labelled < config.calibration_min_labelled:
        calibration_note = (text(f"Measured on {labelled} labelled images, fewer than calibration_min_labelled "
                                 f"({config.calibration_min_labelled}): shown, but left out of the decision."),)
    else:
        calibration_note = (text(f"Measured on {labelled} labelled images; the top-1 Brier score is the decision's "
                                 "calibration criterion (lower is better): a mean over images, so its interval is "
                                 "centred on it, where ECE's resampled values sit above ECE, more so with fewer "
                                 "images per bin."),)

    corruption = tuple(CorruptionRow(b.display_name, score, tuple(
        (name, tuple((c.severity, c.value) for c in score.cells if c.corruption == name)) for name in
        dict.fromkeys(c.corruption for c in score.cells))) for b in index.backbones
        for score in [metrics.corruption.get(b.name) or CorruptionScore(status=RunStatus.SKIPPED,
                                                                        reason="not measured")])
    done = [row for row in corruption if row.score.status == RunStatus.DONE]
    severities = tuple(sorted({c.severity for row in done for c in row.score.cells}))
    corruption_figure = None
    if done:
        measure = done[0].score.measure
        corruption_figure = numbered.add(
            "fig-corruptions", f"{'Top-1 accuracy' if measure == 'top-1' else 'Agreement with the clean prediction'}"
            f" under common corruptions of the common {CORRUPTION_CROP} × {CORRUPTION_CROP} crops (ImageNet-C "
            "operations and severities; clean at 0), one panel per corruption, one line per backbone, 95 % intervals.",
            figures.corruption_plot([r.display_name for r in done], [r.score for r in done],
                                    tuple(dict.fromkeys(c.corruption for c in done[0].score.cells)), severities,
                                    "top-1" if measure == "top-1" else "agreement"))
        names = [name.replace("_", " ").replace("jpeg", "JPEG")
                 for name in dict.fromkeys(c.corruption for c in done[0].score.cells)]
        listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        corruption_note = (text(
            f"{listed[0].upper() + listed[1:]} with ImageNet-C's operations and severity parameters (brightness added "
            "to the HSV value, contrast scaled around each channel's mean), applied as ImageNet-C applies them: to one "
            f"common {CORRUPTION_CROP} × {CORRUPTION_CROP} crop per image (the shorter side resized to "
            f"{CORRUPTION_RESIZE} pixels, the centre kept), the same corrupted pixels for every backbone, quantised to "
            "8 bits, then each backbone's own resize to its input size and normalisation. The clean reference is the "
            "same crop uncorrupted, through the same path, so its top-1 can differ from the one on each backbone's "
            f"own crop. On a hashed sample of {done[0].score.images} images (the same for every backbone). Retention: "
            f"corrupted {'top-1' if measure == 'top-1' else 'agreement'} over clean, averaged over corruptions and "
            "severities."),)
    else:
        corruption_note = (text("Corruptions not measured: " + (corruption[0].score.reason if corruption else "") + "."),)

    faithfulness = tuple(FaithfulnessRow(b.display_name, score, *(
        next((m.gap for m in score.maps if m.map == name), None) for name in ("cam", "random", "gaussian")))
        for b in index.backbones
        for score in [metrics.faithfulness.get(b.name) or FaithfulnessScore(status=RunStatus.SKIPPED,
                                                                            reason="not measured")])
    measured_f = [row for row in faithfulness if row.score.status == RunStatus.DONE]
    faithfulness_figure = numbered.add(
        "fig-faithfulness", "Faithfulness (ROAD, remove and debias): the gap between removing the least and the most "
        "relevant pixels, averaged over the percentiles, for the deep-layer CAM and two maps that know nothing of "
        "the model; 95 % intervals.",
        figures.faithfulness_plot([r.display_name for r in measured_f], [r.score for r in measured_f])) \
        if measured_f else None
    if measured_f:
        run = index.backbones[0].faithfulness
        faithfulness_note = (text(f"ROAD at the percentiles {', '.join(str(p) for p in run.percentiles)} (at p, "
                                  "the (100 − p) % most or least relevant pixels are removed, tied pixels in a seeded "
                                  f"random order), on {measured_f[0].score.images} images, imputation solved on a "
                                  f"{run.imputation_side or 'full'}-pixel grid; the random map is drawn on the CAM's "
                                  "own grid and upsampled like the CAM. "),
                             text("Untrained weights: maps that do not beat the random one are what untrained "
                                  "networks give, not evidence about the architectures." if index.untrained else
                                  "A CAM faithful to the model beats the uniform-random map."))
    else:
        faithfulness_note = (text("Faithfulness not measured: " + (faithfulness[0].score.reason if faithfulness else "")
                                  + "."),)
    flags = tuple(faithfulness_flag(row.display_name, row.score, index.untrained)
                  for row in measured_f if row.score.beats_random is False)
    return BeyondSection(calibration=calibration, calibration_figure=calibration_figure,
                         calibration_note=calibration_note, corruption=corruption, corruption_figure=corruption_figure,
                         corruption_note=corruption_note, severities=severities, faithfulness=faithfulness,
                         faithfulness_figure=faithfulness_figure, faithfulness_note=faithfulness_note, flags=flags,
                         untrained=index.untrained)

