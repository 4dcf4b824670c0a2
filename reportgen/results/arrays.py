"""Names of the arrays in a backbone's ``.npz``: the one place that spells them.

Per-image arrays (first axis = image) are concatenated image-wise when shards merge; merge-state arrays hold
running moments; the rest (weight statistics) are the same in every shard.
"""
from __future__ import annotations

SEP = "__"
CAM = "cam"  # (N, h, w) raw Grad-CAM of a layer
FEATURE_MAP = "featmap"  # (N, h, w) mean |activation| over channels, spatial layers
FEATURE_VECTOR = "featvec"  # (N, k) first units, vector layers
SANITY_CAM = "sanitycam"  # (S, h, w) CAM after a randomisation step, S = the sanity sample (SanityRun.images)
HIST_COUNTS = "histcounts"
HIST_EDGES = "histedges"
QUANTILES = "quantiles"
SLIM_TOP1 = "slimtop1"  # (N,) top-1 class of the slimmed model
SLIM_KL = "slimkl"  # (N,) KL(full || slim) of the softmax outputs
SLIM_SPEARMAN = "slimspearman"  # (N,) Spearman of slimmed vs full deep-layer CAM (NaN: not comparable)
LOGITS = "logits"  # (N, classes) float32: calibration, temperature scaling (a probe's: out-of-fold log-probabilities)
KNN_PRED = "knnpred"  # (N,) a probe candidate's out-of-fold k-NN class (-1: not scored)
# (N, D) every candidate's pooled pre-logit features (a probe's input; the data check's near-duplicates)
PRELOGITS = "prelogits"
# (T, D) the --train-images' pooled pre-logit features (a probe candidate's, computed to fit it): the same in every
# shard, read by the data check for near-copies between training and evaluation images
TRAIN_PRELOGITS = "trainprelogits"
HEAD_TOP1 = "headtop1"  # (N,) top-1 of the head the CAMs explain (a probe's fit on every labelled image)
CORRUPT_TOP1 = "corrupttop1"  # (C, corruptions, severities) top-1 on corrupted crops, C = CorruptionRun.images
CORRUPT_CLEAN = "corruptclean"  # (C,) top-1 on the clean common crops: the corrupted ones' reference
ROAD = "road"  # (F, maps, orders) ROAD probability changes, F = FaithfulnessRun.images
MOMENTS = "mstate"  # running moments of a layer's units (shards only)
POOLED = "pooled"  # (N, units) pooled features of a last-three layer: the CKA's input (shards only)

PER_IMAGE_KINDS = (CAM, FEATURE_MAP, FEATURE_VECTOR, SLIM_TOP1, SLIM_KL, SLIM_SPEARMAN, POOLED, LOGITS, KNN_PRED,
                   HEAD_TOP1, PRELOGITS)
# One row per image of a hashed sample, and which run's ``images`` gives the sample's positions.
PER_SAMPLE_KINDS = (SANITY_CAM, CORRUPT_TOP1, CORRUPT_CLEAN, ROAD)
SAMPLE_OF = {SANITY_CAM: "sanity", CORRUPT_TOP1: "corruption", CORRUPT_CLEAN: "corruption", ROAD: "faithfulness"}
MERGE_STATE_KINDS = (MOMENTS,)


def cam(layer: str) -> str:
    return f"{CAM}{SEP}{layer}"


def feature_map(layer: str) -> str:
    return f"{FEATURE_MAP}{SEP}{layer}"


def feature_vector(layer: str) -> str:
    return f"{FEATURE_VECTOR}{SEP}{layer}"


def sanity_cam(step: int, layer: str) -> str:
    return f"{SANITY_CAM}{SEP}{step}{SEP}{layer}"


def hist_counts(layer: str) -> str:
    return f"{HIST_COUNTS}{SEP}{layer}"


def hist_edges(layer: str) -> str:
    return f"{HIST_EDGES}{SEP}{layer}"


def quantiles(layer: str) -> str:
    return f"{QUANTILES}{SEP}{layer}"


def moments_prefix(layer: str) -> str:
    return f"{MOMENTS}{SEP}{layer}"


def pooled(layer: str) -> str:
    return f"{POOLED}{SEP}{layer}"


def kind_of(key: str) -> str:
    """The kind of an array name: ``cam__x`` -> ``cam``; ``mstate__x_n`` -> ``mstate``."""
    return key.split(SEP, 1)[0].split("_", 1)[0]


def is_per_image(key: str) -> bool:
    return kind_of(key) in PER_IMAGE_KINDS


def is_per_sample(key: str) -> bool:
    return kind_of(key) in PER_SAMPLE_KINDS


def sample_of(key: str) -> str:
    """Which run's sample a per-sample array follows (sanity, corruption or faithfulness)."""
    return SAMPLE_OF[kind_of(key)]


def is_merge_state(key: str) -> bool:
    return kind_of(key) in MERGE_STATE_KINDS
