"""Section 3.4's numbers, beyond the paper: calibration, corruption robustness and the faithfulness of the
deep-layer CAM, each with intervals from the run's paired bootstrap (the same draws as every other interval)."""
from __future__ import annotations

import numpy as np

from ..inputs.config import AnalysisConfig
from ..results import arrays as keys
from ..results.schema import (BackboneResult, CalibrationScore, CorruptionCell, CorruptionScore, FaithfulnessScore,
                              Interval, ReliabilityBin, RoadScore, RunIndex, RunStatus)
from .bootstrap import PairedDraws, interval, nanmean
from .calibration import calibration_measures, cross_fitted_ece, ece_draws, expected_calibration_error, reliability

MAP_NAMES = ("cam", "random", "gaussian")


def _interval(point, drawn, count: int) -> Interval:
    low, high = interval(drawn)
    return Interval(None if point is None or not np.isfinite(point) else float(point), low, high, int(count))


def _mean_interval(values: np.ndarray, draws: PairedDraws) -> Interval:
    finite = np.isfinite(values)
    return _interval(float(values[finite].mean()) if finite.any() else None, draws.means(values), int(finite.sum()))


def calibration_score(index: RunIndex, entry: BackboneResult, arrays: dict, config: AnalysisConfig,
                      draws: PairedDraws) -> CalibrationScore:
    labels = [image.class_index for image in index.images]
    labelled = sum(label is not None for label in labels)
    if keys.LOGITS not in arrays:
        return CalibrationScore(status=RunStatus.SKIPPED, reason="no logits saved (results of an older reportgen)",
                                labelled=labelled)
    if labelled < 2:
        return CalibrationScore(status=RunStatus.SKIPPED, reason="fewer than two labelled images", labelled=labelled)
    measures = calibration_measures(arrays[keys.LOGITS], labels, [image.sha256 for image in index.images],
                                    config.seed)
    have = np.isfinite(measures.correct)
    ece = expected_calibration_error(measures.confidence[have], measures.correct[have])
    ece_drawn = ece_draws(measures.confidence, np.nan_to_num(measures.correct), have, draws)
    scaled = cross_fitted_ece(measures)  # one ECE over the pooled cross-fitted confidences (temperatures not refitted)
    scaled_drawn = ece_draws(measures.scaled_confidence, np.nan_to_num(measures.correct), have, draws) \
        if scaled is not None else None
    return CalibrationScore(status=RunStatus.DONE, reason="", labelled=labelled,
                            ece=_interval(ece, ece_drawn, labelled), nll=_mean_interval(measures.nll, draws),
                            brier=_mean_interval(measures.brier, draws),
                            ece_scaled=_interval(scaled, scaled_drawn, labelled) if scaled is not None else None,
                            temperatures=tuple(measures.temperatures),
                            reliability=tuple(ReliabilityBin(*found)
                                              for found in reliability(measures.confidence, measures.correct)),
                            brier_top1=_mean_interval(measures.brier_top1, draws))


def corruption_vectors(index: RunIndex, entry: BackboneResult, arrays: dict) -> tuple[str, np.ndarray, np.ndarray]:
    """(measure, clean, corrupted): per image of the set (NaN outside the sample or unlabelled), the clean outcome
    (top-1 correct, or 1 for agreement) and, per corruption and severity, the corrupted one. Both on the common
    crop that was corrupted (the clean prediction is the common crop's, not the analysis's own crop)."""
    run = entry.corruption
    top1, clean_top1 = arrays[keys.CORRUPT_TOP1], arrays[keys.CORRUPT_CLEAN]
    labels = [index.images[i].class_index for i in run.images]
    labelled = any(label is not None for label in labels)
    count = len(index.images)
    clean = np.full(count, np.nan)
    corrupted = np.full((count,) + top1.shape[1:], np.nan)
    for row, position in enumerate(run.images):
        prediction = int(clean_top1[row])
        truth = labels[row] if labelled else prediction
        if truth is None:
            continue
        clean[position] = float(prediction == truth) if labelled else 1.0
        corrupted[position] = np.where(top1[row] < 0, np.nan, (top1[row] == truth).astype(float))
    return ("top-1" if labelled else "agreement"), clean, corrupted


def retention_of(clean: np.ndarray, corrupted: np.ndarray, draws: PairedDraws) -> tuple:
    """(point, draws) of the share of the clean outcome kept: corrupted outcomes pooled over every corruption and
    severity the design measured, over the clean ones of the same images."""
    per_image = nanmean(corrupted.reshape(len(clean), -1), axis=1)
    have = np.isfinite(clean) & np.isfinite(per_image)
    if not have.any() or nanmean(clean[have]) == 0:
        return None, np.full(draws.samples, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawn = draws.means(np.where(have, per_image, np.nan)) / draws.means(np.where(have, clean, np.nan))
    return float(nanmean(per_image[have]) / nanmean(clean[have])), drawn


def top1_change_of(clean: np.ndarray, corrupted: np.ndarray, draws: PairedDraws) -> tuple:
    """(point, draws) of the change in the outcome under corruption: the corrupted outcomes pooled over every
    corruption and severity the design measured, minus the clean ones, on the same images (a difference of paired
    means). Unlike the share kept (corrupted / clean), it has no pole where a draw's clean top-1 is 0, so every draw
    has a value; (None, NaN draws) only when no image has both outcomes."""
    per_image = nanmean(corrupted.reshape(len(clean), -1), axis=1)
    have = np.isfinite(clean) & np.isfinite(per_image)
    if not have.any():
        return None, np.full(draws.samples, np.nan)
    change = np.where(have, per_image - clean, np.nan)
    return float(change[have].mean()), draws.means(change)


def corruption_score(index: RunIndex, entry: BackboneResult, arrays: dict, draws: PairedDraws) -> CorruptionScore:
    run = entry.corruption
    if run.status != RunStatus.DONE:
        return CorruptionScore(status=run.status, reason=run.reason)
    measure, clean, corrupted = corruption_vectors(index, entry, arrays)
    have = np.isfinite(clean)
    clean_drawn = draws.means(clean)
    cells = []
    for c, name in enumerate(run.corruptions):
        for v, severity in enumerate(run.severities):
            values = corrupted[:, c, v]
            measured = np.isfinite(values)
            cells.append(CorruptionCell(name, severity, _interval(
                float(values[measured].mean()) if measured.any() else None, draws.means(values), int(measured.sum()))))
    retention, retention_drawn = retention_of(clean, corrupted, draws)
    return CorruptionScore(status=RunStatus.DONE, reason="", measure=measure, images=int(have.sum()),
                           clean=_interval(nanmean(clean[have]) if have.any() else None, clean_drawn, int(have.sum())),
                           retention=_interval(retention, retention_drawn, int(have.sum())), cells=tuple(cells))


def road_vectors(index: RunIndex, entry: BackboneResult, arrays: dict) -> np.ndarray:
    """(images of the set, maps, orders) ROAD changes, NaN outside the sample."""
    values = arrays[keys.ROAD]
    out = np.full((len(index.images),) + values.shape[1:], np.nan)
    for row, position in enumerate(entry.faithfulness.images):
        out[position] = values[row]
    return out


def faithfulness_score(index: RunIndex, entry: BackboneResult, arrays: dict, draws: PairedDraws) -> FaithfulnessScore:
    run = entry.faithfulness
    if run.status != RunStatus.DONE:
        return FaithfulnessScore(status=run.status, reason=run.reason, layer=run.layer)
    values = road_vectors(index, entry, arrays)
    gaps = (values[:, :, 1] - values[:, :, 0]) / 2  # (LeRF - MoRF) / 2, per image and map
    maps = tuple(RoadScore(name, _mean_interval(values[:, m, 0], draws), _mean_interval(values[:, m, 1], draws),
                           _mean_interval(gaps[:, m], draws)) for m, name in enumerate(MAP_NAMES))
    over = _mean_interval(gaps[:, 0] - gaps[:, 1], draws)  # CAM minus random, paired per image
    beats = None if over.mean is None else bool(over.ci_low is not None and over.ci_low > 0)
    return FaithfulnessScore(status=RunStatus.DONE, reason="", layer=run.layer,
                             images=int(np.isfinite(gaps[:, 0]).sum()), maps=maps, over_random=over,
                             beats_random=beats)
