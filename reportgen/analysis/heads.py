"""The head each candidate is scored through, in the run's label space (imports torch).

- ImageNet label space: the stock 1000-way head, as before.
- The user's classes: a checkpoint whose classifier has one output per class is scored through its own head (built
  with ``num_classes`` read from the head's shape, loaded strictly); a single-logit (sigmoid) head of a two-class task
  is scored as the two logits (-z/2, z/2), whose softmax is (1 - sigmoid(z), sigmoid(z)); a stock ImageNet head is
  replaced by a linear probe on the pooled pre-logit features (fit in :mod:`reportgen.analysis.transfer`).

The surgery these plans call for (the sigmoid wrap, the probe's linear head) is in :mod:`reportgen.analysis.classifier`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import InputDataError
from ..inputs.labels import IMAGENET_CLASSES, LabelSpace, safetensors_header
from ..results.schema import Estimand, WeightsSource
from .classifier import classifier_name, default_outputs
from .models import unwrapped_state
from .weights import WeightsPlan


@dataclass(frozen=True)
class HeadPlan:
    estimand: Estimand
    outputs: int  # outputs of the head stored with the weights (1000 for a stock ImageNet head)
    classes: int  # classes of the run's label space

    @property
    def builds_with(self) -> Optional[int]:
        """``num_classes`` to build the model with (None: the architecture's default head)."""
        return self.outputs if self.estimand == Estimand.OWN_HEAD else None


def head_outputs(plan: WeightsPlan) -> int:
    """Outputs of the classifier the weights carry: read from a checkpoint's classifier weight (its header only,
    for .safetensors), else the architecture's pretrained head."""
    if plan.source != WeightsSource.CHECKPOINT:
        return default_outputs(plan.backbone.timm_id)
    key = classifier_name(plan.backbone.timm_id) + ".weight"
    path = Path(plan.location)
    if path.suffix == ".safetensors":
        entry = safetensors_header(path).get(key)
        shape = entry.get("shape") if isinstance(entry, dict) else None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # refused or damaged: loading the weights says so, with the reason
            return default_outputs(plan.backbone.timm_id)
        state = unwrapped_state(state)
        tensor = state.get(key, state.get("module." + key)) if isinstance(state, dict) else None
        shape = list(tensor.shape) if torch.is_tensor(tensor) else None
    if not shape:
        return default_outputs(plan.backbone.timm_id)  # the load reports what does not fit
    return int(shape[0])


def plan_head(plan: WeightsPlan, space: LabelSpace, outputs: Optional[int] = None) -> HeadPlan:
    """How a candidate is scored in the label space; one message (exit 3) when its head fits neither."""
    outputs = head_outputs(plan) if outputs is None else outputs
    name = plan.backbone.name
    key = f"{classifier_name(plan.backbone.timm_id)}.weight"
    if space.is_imagenet:
        if outputs != IMAGENET_CLASSES:
            raise InputDataError(f"{name}: its head ({key!r}) has {outputs} outputs but the run's classes are "
                                 "ImageNet-1k's "
                                 "(the image folder names ImageNet classes); pass --labels FILE naming the head's "
                                 f"{outputs} classes in output order.")
        return HeadPlan(Estimand.IMAGENET_HEAD, outputs, IMAGENET_CLASSES)
    classes = space.size
    if outputs == classes or (outputs == 1 and classes == 2):
        return HeadPlan(Estimand.OWN_HEAD, outputs, classes)
    stock = outputs == default_outputs(plan.backbone.timm_id) and plan.source != WeightsSource.CHECKPOINT
    if stock or outputs == IMAGENET_CLASSES:
        return HeadPlan(Estimand.LINEAR_PROBE, outputs, classes)
    raise InputDataError(f"{name}: its head ({key!r}) has {outputs} outputs but {space.describe_source()} names "
                         f"{classes} classes; pass the label list the head was trained with (--labels FILE), or its "
                         "checkpoint.")
