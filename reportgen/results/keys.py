"""Cache keys: a per-backbone result is reused only when everything that determines it is unchanged."""
from __future__ import annotations

import hashlib
import json

from ..inputs.config import MODEL_SIDE_FIELDS, AnalysisConfig
from ..inputs.registry import Backbone
from .schema import SCHEMA_VERSION

KEYED_VERSIONS = ("reportgen", "torch", "timm", "grad-cam")


def analysis_key(backbone: Backbone, weights_identity: str, model_inputs_sha256: str, config: AnalysisConfig,
                 versions: dict, task: str = "") -> str:
    """SHA-256 over the backbone and its layers, the weights (file content hash or seed), what the models
    see of the images (pixels and target classes, not size or background annotations), the model-side
    config, the library versions and, on the user's classes, ``task`` (classes, head, training set)."""
    spec = {
        "backbone": [backbone.timm_id, list(backbone.cam_layers), list(backbone.last_three),
                     [list(step) for step in backbone.randomisation], list(backbone.layouts), backbone.family,
                     list(backbone.weight_modules)],
        "weights": weights_identity,
        "images": model_inputs_sha256,
        "config": {k: getattr(config, k) for k in MODEL_SIDE_FIELDS},
        "versions": {k: versions[k] for k in KEYED_VERSIONS},
        "schema": SCHEMA_VERSION,
    }
    if task:  # the user's classes, the candidate's head and the probe's training set (ImageNet runs: nothing)
        spec["task"] = task
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
