"""``metrics.json``'s ``task``: every candidate on the user's classes, from the saved outputs (a head's, or a probe's
out-of-fold ones) with intervals from the run's paired bootstrap. Pure numpy (scipy for the label-order check)."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..inputs.config import AnalysisConfig
from ..results import arrays as keys
from ..results.schema import (BackboneResult, Estimand, Interval, LabelOrder, RunIndex, TaskClass, TaskReport,
                              TaskScore, TransferRanking)
from .bootstrap import DEFAULT_LEVEL, PairedDraws, interval
from .proportion import share_interval
from .vectors import interval_of
from .task import confusion_matrix, label_order_check, macro_f1, macro_f1_draws, per_class_recall_draws

ArraysOf = Callable[[str], dict]
PROBE, KNN, LOGME = "linear probe", "k-NN", "LogME"


def truth_of(index: RunIndex) -> np.ndarray:
    """(N,) each image's class in the run's label space, -1 when unlabelled."""
    return np.array([image.class_index if image.class_index is not None else -1 for image in index.images],
                    dtype=np.int64)


def predicted_of(arrays: dict, images: int) -> np.ndarray:
    """(N,) the scored top-1 class (the logits array holds a probe's out-of-fold log-probabilities)."""
    logits = arrays.get(keys.LOGITS)
    if logits is None or len(logits) != images:
        return np.full(images, -1, dtype=np.int64)
    finite = np.all(np.isfinite(logits), axis=1)
    return np.where(finite, np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=1), -1).astype(np.int64)


def _scored(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(N,) bool: the images the scores are over. Every labelled image, as in task.py: one without a prediction
    (non-finite outputs, a k-NN class left out) is a miss, in accuracy and recall as in macro-F1; none when the
    candidate predicts no labelled image at all (no outputs, no probe): then nothing is measured."""
    labelled = truth >= 0
    return labelled if (labelled & (pred >= 0)).any() else np.zeros_like(labelled)


def _accuracy(truth: np.ndarray, pred: np.ndarray, draws: PairedDraws, ratio: Optional[float] = None) -> Interval:
    """``ratio``: a cross-validated probe's (or k-NN's) refit variance ratio, which widens the interval."""
    correct = np.where(_scored(truth, pred), (truth == pred).astype(float), np.nan)
    found = interval_of(correct, draws, ratio)
    if found is None:
        return Interval(None, None, None, 0)
    # As page 1 shows it: the exact binomial interval, or the draws' where wider (scoring/proportion.py).
    return Interval(found.mean, *share_interval(found.mean, found.n, found.ci_low, found.ci_high, DEFAULT_LEVEL),
                    found.n)


def _macro_f1(truth, pred, classes: int, draws: PairedDraws) -> Interval:
    n = int(_scored(truth, pred).sum())
    point = macro_f1(truth, pred, classes) if n else None
    if point is None:
        return Interval(None, None, None, 0)
    low, high = interval(macro_f1_draws(truth, pred, classes, draws)) if n >= 2 else (None, None)
    return Interval(point, low, high, n)


def _recalls(truth, pred, classes: int, draws: PairedDraws) -> tuple[Interval, ...]:
    per_draw = per_class_recall_draws(truth, pred, classes, draws)
    scored = _scored(truth, pred)
    out = []
    for c in range(classes):
        members = scored & (truth == c)
        n = int(members.sum())
        if n == 0:
            out.append(Interval(None, None, None, 0))
            continue
        low, high = interval(per_draw[:, c]) if n >= 2 else (None, None)
        out.append(Interval(float(np.mean(pred[members] == c)), low, high, n))
    return tuple(out)


def _label_order(truth, pred, classes: int, draws: PairedDraws, config: AnalysisConfig) -> Optional[LabelOrder]:
    check = label_order_check(truth, pred, classes, draws, config.label_order_min_gain)
    if check is None:
        return None
    gain, n = check.accuracy_mapped - check.accuracy_as_is, int((truth >= 0).sum())
    return LabelOrder(flagged=bool(check.flagged), mapping=tuple(tuple(pair) for pair in check.mapping),
                      accuracy_as_is=float(check.accuracy_as_is), accuracy_mapped=float(check.accuracy_mapped),
                      gain=Interval(float(gain), check.gain_low, check.gain_high, n),
                      accuracy_heldout=check.accuracy_heldout,
                      heldout_gain=Interval(check.accuracy_heldout - check.accuracy_as_is, check.heldout_gain_low,
                                            check.heldout_gain_high, n))


def task_score(entry: BackboneResult, arrays: dict, truth: np.ndarray, classes: int, draws: PairedDraws,
               config: AnalysisConfig) -> TaskScore:
    run = entry.task
    pred = predicted_of(arrays, len(truth))
    if entry.estimand == Estimand.LINEAR_PROBE and run is not None and run.note:
        # No probe was fit (run.note says why): the saved outputs are a placeholder head's, nothing to score.
        pred = np.full(len(truth), -1, dtype=np.int64)
    knn = None
    if keys.KNN_PRED in arrays:
        # Over the same images as the probe: an image of a class left out (-1, no neighbours of its class) is an
        # error; no k-NN at all (every image -1) measures nothing.
        knn_pred = np.asarray(arrays[keys.KNN_PRED], dtype=np.int64)
        knn = _accuracy(truth, knn_pred, draws, run.knn_refit_ratio if run is not None else None)
    own_head = entry.estimand == Estimand.OWN_HEAD
    return TaskScore(
        estimand=entry.estimand,
        accuracy=_accuracy(truth, pred, draws, run.refit_ratio if run is not None else None),
        macro_f1=_macro_f1(truth, pred, classes, draws),
        per_class_recall=_recalls(truth, pred, classes, draws),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion_matrix(truth, pred, classes)),
        knn_accuracy=knn,
        logme=run.logme if run is not None else None,
        # A probe is fit to the labels' order; only a trained head can carry another order.
        label_order=_label_order(truth, pred, classes, draws, config) if own_head else None,
        excluded=run.excluded if run is not None else (),
        protocol=run.protocol if run is not None else "",
        logme_note=run.logme_note if run is not None else "")


def _rankings(scores: dict) -> tuple[tuple[TransferRanking, ...], Optional[bool], tuple[str, ...]]:
    """Each measure's order of the probed candidates, whether their first places agree, and the candidates that
    agreement is judged over: those every measure ranked. A measure that did not measure a candidate (LogME is
    None when the features fit a class exactly, more often for large D) cannot put another first over it, so a
    first place over a different set is no disagreement. First and tied are over those common candidates; with
    fewer than two of them (or fewer than two measures, or a tie for first) there is no claim either way (None)."""
    probed = {name: s for name, s in scores.items() if s.estimand == Estimand.LINEAR_PROBE}
    measures = {PROBE: {n: s.accuracy.mean for n, s in probed.items()},
                KNN: {n: s.knn_accuracy.mean if s.knn_accuracy is not None else None for n, s in probed.items()},
                LOGME: {n: s.logme for n, s in probed.items()}}
    ranked = {measure: sorted((n for n, v in values.items() if v is not None), key=lambda n: (-values[n], n))
              for measure, values in measures.items()}
    ranked = {measure: order for measure, order in ranked.items() if order}
    common = set.intersection(*(set(order) for order in ranked.values())) if ranked else set()
    compared = tuple(n for n in probed if n in common)
    rankings = []
    for measure, order in ranked.items():
        among = [n for n in order if n in common] if len(compared) >= 2 else order
        values = measures[measure]
        tied = tuple(n for n in among if values[n] == values[among[0]])
        rankings.append(TransferRanking(measure, among[0], tuple(order), tied if len(tied) > 1 else ()))
    if len(probed) < 2 or len(rankings) < 2 or len(compared) < 2 or any(r.tied for r in rankings):
        return tuple(rankings), None, compared
    return tuple(rankings), len({r.first for r in rankings}) == 1, compared


def task_report(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig,
                draws: PairedDraws) -> Optional[TaskReport]:
    """None on ImageNet's classes."""
    if not index.own_task:
        return None
    truth = truth_of(index)
    names = index.label_space.names
    classes = len(names)
    counts = np.bincount(truth[truth >= 0], minlength=classes)
    scores = {entry.name: task_score(entry, arrays_of(entry.name), truth, classes, draws, config)
              for entry in index.backbones}
    rankings, agree, _ = _rankings(scores)
    return TaskReport(index.label_space, tuple(TaskClass(i, name, int(counts[i])) for i, name in enumerate(names)),
                      int((truth >= 0).sum()), scores, rankings, agree)
