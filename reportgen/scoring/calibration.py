"""Can a backbone's confidence be trusted? Calibration on the labelled images, from the logits the battery saved:
expected calibration error (top-1 confidence, equal-width bins; Guo et al. 2017), negative log-likelihood, Brier
score and the top-1 Brier score, each with its interval from the run's paired bootstrap, and the ECE left after
temperature scaling: each image's confidence from the temperature fitted on the other half of the labelled images
(cross-fitted, so the fit never grades itself), one ECE over all of them. Pure numpy.

The decision's calibration criterion is the top-1 Brier score, the mean over images of (top-1 confidence - top-1
correct)^2: a proper scoring rule of the confidence as a forecast of being right, and a mean over images, so the
bootstrap of it is centred on it. ECE is not: binning a resample's confidences adds noise that |accuracy -
confidence| turns into an upward bias, larger for fewer images per bin, so its draws sit above it by an amount that
differs from model to model."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .bootstrap import PairedDraws

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # searched on a log scale


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    return scaled - top - np.log(np.exp(scaled - top).sum(axis=1, keepdims=True))


def bin_of(confidence: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width bins over [0, 1]; a confidence of exactly 1 falls in the last bin."""
    return np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum over bins of (images in the bin / images) x |accuracy in the bin - mean confidence in the bin|."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        return float("nan")
    which = bin_of(confidence, bins)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def top1_brier(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per image, (top-1 confidence - top-1 correct)^2 (NaN where ``correct`` is NaN: no label). Its mean is the
    top-1 Brier score: 0 for a confidence of 1 on every right answer and 0 on every wrong one, 1 for the reverse."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    return (confidence - correct) ** 2


def ece_draws(confidence: np.ndarray, correct: np.ndarray, labelled: np.ndarray, draws: PairedDraws,
              bins: int = ECE_BINS) -> np.ndarray:
    """(B,) ECE over each draw's labelled images (confidence, correct: per image of the set)."""
    which = np.where(labelled, bin_of(np.nan_to_num(confidence), bins), bins)  # unlabelled: an extra bin, dropped
    out = np.full(draws.samples, np.nan)
    for b, row in enumerate(draws.indices):
        chosen = which[row]
        keep = chosen < bins
        if not keep.any():
            continue
        confidence_sum = np.bincount(chosen[keep], weights=confidence[row][keep], minlength=bins)
        correct_sum = np.bincount(chosen[keep], weights=correct[row][keep], minlength=bins)
        out[b] = np.abs(correct_sum - confidence_sum).sum() / keep.sum()
    return out


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``labels`` (golden-section search over log T)."""
    def nll(log_t: float) -> float:
        return float(-log_softmax(logits, np.exp(log_t))[np.arange(len(labels)), labels].mean())

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(np.exp((low + high) / 2))


def halves(content_hashes, seed: int) -> np.ndarray:
    """A fixed split of images into two halves (True: first), by a hash of content and seed: the same images
    whatever the file order."""
    keys = [hashlib.sha256(f"{seed}:halves:{h}".encode()).hexdigest() for h in content_hashes]
    order = np.argsort(keys, kind="stable")
    first = np.zeros(len(keys), dtype=bool)
    first[order[: (len(keys) + 1) // 2]] = True
    return first


@dataclass(frozen=True, kw_only=True)
class CalibrationMeasures:
    """Per-image values (NaN where unlabelled) and the cross-fitted temperatures."""
    confidence: np.ndarray  # top-1 probability, every image
    correct: np.ndarray  # top-1 correct, NaN unlabelled
    nll: np.ndarray  # -log p(label), NaN unlabelled
    brier: np.ndarray  # sum over classes of (p - one-hot)^2, NaN unlabelled
    brier_top1: np.ndarray  # (top-1 confidence - top-1 correct)^2, NaN unlabelled
    scaled_confidence: np.ndarray  # top-1 probability after the temperature fitted on the other half
    temperatures: tuple  # (fitted on the first half, fitted on the second half); () when too few images
    first_half: np.ndarray  # the split, among all images


def calibration_measures(logits: np.ndarray, labels: list, content_hashes: list, seed: int) -> CalibrationMeasures:
    labelled = np.array([label is not None for label in labels])
    truth = np.array([label if label is not None else 0 for label in labels])
    probs = softmax(logits)
    top1 = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    rows = np.arange(len(labels))
    correct = np.where(labelled, (top1 == truth).astype(float), np.nan)
    nll = np.where(labelled, -log_softmax(logits)[rows, truth], np.nan)
    onehot = np.zeros_like(probs)
    onehot[rows, truth] = 1.0
    brier = np.where(labelled, ((probs - onehot) ** 2).sum(axis=1), np.nan)
    first = halves(content_hashes, seed)
    scaled = np.full(len(labels), np.nan)
    temperatures: tuple = ()
    a, b = labelled & first, labelled & ~first
    if a.sum() >= 2 and b.sum() >= 2:
        t_a, t_b = fit_temperature(logits[a], truth[a]), fit_temperature(logits[b], truth[b])
        temperatures = (t_a, t_b)
        scaled[b] = softmax(logits[b], t_a).max(axis=1)  # each half measured with the other half's temperature
        scaled[a] = softmax(logits[a], t_b).max(axis=1)
    return CalibrationMeasures(confidence=confidence, correct=correct, nll=nll, brier=brier,
                               brier_top1=top1_brier(confidence, correct), scaled_confidence=scaled,
                               temperatures=temperatures, first_half=first)


def cross_fitted_ece(measures: CalibrationMeasures) -> Optional[float]:
    """ECE after temperature scaling: one ECE over every labelled image, each image's confidence scaled by the
    temperature fitted on the other half. (The mean of the two half-sample ECEs would carry the larger upward bias
    of ECE on half the images, and read as worse calibration than the full-sample ECE before scaling.)"""
    if not measures.temperatures:
        return None
    labelled = np.isfinite(measures.correct)
    return expected_calibration_error(measures.scaled_confidence[labelled], measures.correct[labelled])


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> tuple:
    """(mean confidence, accuracy, images) per non-empty bin, for the reliability diagram."""
    chosen = np.isfinite(correct)
    confidence, correct = confidence[chosen], correct[chosen]
    which = bin_of(confidence, bins)
    return tuple((float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
                 for b in range(bins) if (which == b).any())

