"""A probe candidate (an ImageNet backbone on the user's classes), before and after its CAM pass. No torch.

Before: the head its heatmaps explain, the linear probe fit on a per-class hashed sample of the labelled images
(:func:`explaining_sample`; or on ``--train-images``), attached to the model. During: the CAM pass keeps every
image's pooled pre-logit features (a hook on that head's input, no pass of its own). After
(:func:`finish_probe`): the cross-validated probe, k-NN and LogME on all of them; the scored outputs become the
probe's out-of-fold probabilities. A sharded run does the "after" once, on the merged features.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from ..inputs.config import AnalysisConfig
from ..inputs.images import ImageSet, sample_key
from ..inputs.label_space import LabelSpace
from ..inputs.labels import IMAGENET_CLASSES
from ..results import arrays as keys
from ..results.schema import BackboneResult, Estimand, Prediction, RankedClass, TaskRun
from ..scoring.calibration import softmax
from .transfer import ExplainingProbe, fit_explaining, transfer_measures


@dataclass(frozen=True)
class ProbeSetup:
    """What a probe candidate's CAM pass needs, fit before it (once per run: a sharded run's driver fits it)."""
    explaining: Optional[ExplainingProbe]  # None: under two usable classes (a head of zeros explains nothing)
    feature_dim: int
    fit_images: int  # images the explaining head was fit on
    train_features: Optional[np.ndarray] = None  # --train-images: the probe is fit on these
    train_labels: Optional[np.ndarray] = None
    fit_positions: tuple[int, ...] = ()  # of the run's images, those it was fit on (none with --train-images)


def labels_of(image_set: ImageSet) -> np.ndarray:
    return np.array([r.class_index if r.class_index is not None else -1 for r in image_set.records], dtype=np.int64)


def usable_classes(labels: np.ndarray, classes: int, config: AnalysisConfig) -> np.ndarray:
    """Classes with at least ``probe_folds`` labelled images: the cross-validated probe's (the others are left out)."""
    counts = np.bincount(labels[labels >= 0], minlength=classes)
    return np.flatnonzero(counts >= config.probe_folds)


def explaining_sample(image_set: ImageSet, classes: int, config: AnalysisConfig) -> tuple[int, ...]:
    """Positions of the images the explaining head is fit on: of each usable class, the first half (at most
    ``probe_explain_per_class``) of its labelled images by a hash of their content and the seed (the same whatever
    the file order or the shard). Never more than half: the other half is left for the corruption and faithfulness
    samples, which score through this head and must be images it did not see (:func:`evaluation_set`)."""
    labels = labels_of(image_set)
    chosen = []
    for c in usable_classes(labels, classes, config):
        members = [i for i in np.flatnonzero(labels == c)]
        members.sort(key=lambda i: (sample_key(config.seed, image_set.records[i].sha256), i))
        chosen += members[:min(config.probe_explain_per_class, len(members) // 2)]
    return tuple(sorted(chosen))


def evaluation_set(image_set: ImageSet, space: LabelSpace, config: AnalysisConfig,
                   train_set: Optional[ImageSet] = None) -> ImageSet:
    """The whole image set with the images a probe's explaining head is fit on left out of its hashed samples (the
    sanity, corruption and faithfulness samples), so that those checks score every candidate through heads that
    did not see the image: on the user's classes, the :func:`explaining_sample`, or with ``--train-images`` the
    evaluation images byte-identical to a training image. The same for every candidate (paired comparisons, and a
    candidate added to the run changes no other's sample); ImageNet's classes fit no head: unchanged."""
    if space.is_imagenet:
        return replace(image_set, unsampled=frozenset())
    if train_set is not None:
        seen = {r.sha256 for r in train_set.records}
    else:
        seen = {image_set.records[i].sha256 for i in explaining_sample(image_set, space.size, config)}
    return replace(image_set, unsampled=frozenset(r.sha256 for r in image_set.records if r.sha256 in seen))


def explaining_head(features: np.ndarray, labels: np.ndarray, classes: int,
                    config: AnalysisConfig) -> Optional[ExplainingProbe]:
    """The probe pipeline fit on these images, folded into one linear head."""
    return fit_explaining(features, labels, classes, c=config.probe_c)


def ranked(predictions: Sequence[Prediction], probs: np.ndarray, labels: np.ndarray, name_of) -> tuple:
    """The predictions with their top-k (k = min(5, classes)) from ``probs``; the CAM targets unchanged."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    out = []
    for p, row, indices, label in zip(predictions, probs, top, labels):
        top5 = tuple(RankedClass(int(i), name_of(int(i)), float(row[i])) for i in indices)
        labelled = label >= 0
        out.append(replace(p, top5=top5,
                           correct_top1=bool(Prediction.top1_of(top5).index == label) if labelled else None,
                           correct_top5=any(t.index == label for t in top5) if labelled else None))
    return tuple(out)


def finish_probe(entry: BackboneResult, arrays: dict, labels: np.ndarray, name_of, config: AnalysisConfig,
                 setup: Optional[ProbeSetup] = None, keep_features: bool = True,
                 groups: Optional[Sequence[str]] = None) -> tuple[BackboneResult, dict]:
    """The cross-validated probe, k-NN and LogME on the pooled features the CAM pass kept (``prelogits``): the
    scored outputs (``logits``: log-probabilities) become the out-of-fold probabilities where the probe scores an
    image, the explaining head's elsewhere (unlabelled images, classes left out of the probe). ``groups``: the
    images' content hashes (copies of one image share a fold; None: all distinct)."""
    arrays = dict(arrays)
    features = arrays[keys.PRELOGITS] if keep_features else arrays.pop(keys.PRELOGITS)
    classes = int(arrays[keys.LOGITS].shape[1])
    train = setup is not None and setup.train_features is not None
    measures = transfer_measures(features, labels, classes, folds=config.probe_folds, c=config.probe_c,
                                 knn_k=config.knn_k, knn_temperature=config.knn_temperature, seed=config.seed,
                                 train_features=setup.train_features if train else None,
                                 train_labels=setup.train_labels if train else None,
                                 explain=False,  # the heatmaps explain the head fit before the CAM pass
                                 repeats=config.probe_repeats, refits=config.probe_refits, groups=groups)
    head = softmax(arrays[keys.LOGITS].astype(np.float64))
    oof = np.asarray(measures.probe_probs, dtype=np.float64)
    scored = np.where(np.all(np.isfinite(oof), axis=1)[:, None], oof, head)
    arrays[keys.HEAD_TOP1] = np.argmax(head, axis=1).astype(np.int64)
    arrays[keys.LOGITS] = np.log(np.maximum(scored, 1e-30)).astype(np.float32)
    arrays[keys.KNN_PRED] = np.asarray(measures.knn_pred, dtype=np.int64)
    excluded = tuple(replace(e, name=name_of(e.index)) for e in measures.excluded)
    task = TaskRun(estimand=Estimand.LINEAR_PROBE,
                   head_outputs=entry.task.head_outputs if entry.task else IMAGENET_CLASSES,
                   protocol=measures.protocol, folds=measures.folds,
                   classes_used=tuple(int(c) for c in measures.classes_used), excluded=excluded,
                   feature_dim=int(features.shape[1]), knn_k=config.knn_k, logme=measures.logme, note=measures.note,
                   logme_note=measures.logme_note,
                   explained_by=(setup.fit_images if setup is not None
                                 else (entry.task.explained_by if entry.task else 0)),
                   explained_images=(setup.fit_positions if setup is not None
                                     else (entry.task.explained_images if entry.task else ())),
                   repeats=measures.repeats, refit_ratio=measures.refit_ratio,
                   knn_refit_ratio=measures.knn_refit_ratio)
    # No probe (under two usable classes: the note says why): nothing is scored, rather than the placeholder head's
    # constant answer.
    scored_labels = labels if not measures.note or train else np.full_like(labels, -1)
    return replace(entry, predictions=ranked(entry.predictions, scored, scored_labels, name_of), task=task), arrays
