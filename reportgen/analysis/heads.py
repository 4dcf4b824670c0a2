"""The head each candidate is scored through, in the run's label space (imports torch and timm).

- ImageNet label space: the stock 1000-way head, as before.
- The user's classes: a checkpoint whose classifier has one output per class is scored through its own head (built
  with ``num_classes`` read from the head's shape, loaded strictly); a single-logit (sigmoid) head of a two-class task
  is scored as the two logits (-z/2, z/2), whose softmax is (1 - sigmoid(z), sigmoid(z)); a stock ImageNet head is
  replaced by a linear probe on the pooled pre-logit features (fit in :mod:`reportgen.analysis.transfer`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import timm
import timm.models
import torch

from ..errors import InputDataError
from ..inputs.labels import IMAGENET_CLASSES, LabelSpace, safetensors_header
from ..results.schema import Estimand, WeightsSource
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


def classifier_name(timm_id: str) -> str:
    cfg = timm.models.get_pretrained_cfg(timm_id)
    name = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(name, (tuple, list)):
        name = name[0]
    return name or "classifier"


def default_outputs(timm_id: str) -> int:
    cfg = timm.models.get_pretrained_cfg(timm_id)
    return int(getattr(cfg, "num_classes", None) or IMAGENET_CLASSES) if cfg is not None else IMAGENET_CLASSES


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


class SigmoidAsTwoLogits(torch.nn.Module):
    """A one-output (sigmoid) head as two logits (-z/2, z/2): softmax gives (1 - sigmoid(z), sigmoid(z)), so class 1
    is the positive class, and Grad-CAM of either class is the gradient of +-z/2."""

    def __init__(self, linear: torch.nn.Module):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        z = self.linear(x)
        return torch.cat([-z / 2, z / 2], dim=-1)


def _set_module(model: torch.nn.Module, path: str, module: torch.nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def wrap_sigmoid_head(model: torch.nn.Module, timm_id: str) -> None:
    path = classifier_name(timm_id)
    _set_module(model, path, SigmoidAsTwoLogits(model.get_submodule(path)))


def install_linear_head(model: torch.nn.Module, weight, bias) -> None:
    """Replace the classifier by a C-way linear head with these weights (timm's ``reset_classifier``)."""
    weight = torch.as_tensor(weight, dtype=torch.float32)
    bias = torch.as_tensor(bias, dtype=torch.float32)
    model.reset_classifier(int(weight.shape[0]))
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear) or tuple(head.weight.shape) != tuple(weight.shape):
        raise InputDataError(f"{type(model).__name__}: its classifier is {type(head).__name__} "
                             f"{tuple(getattr(head, 'weight', torch.empty(0)).shape)}, not a linear layer over the "
                             f"{weight.shape[1]} pooled features; a probe cannot be attached to it.")
    device = next(model.parameters()).device
    with torch.no_grad():
        head.weight.copy_(weight.to(device))
        head.bias.copy_(bias.to(device))
    head.requires_grad_(False)


def pooled_features(model: torch.nn.Module, batches, device: str, on_batch=lambda n: None):
    """Pooled pre-logit features of every image (timm's ``forward_head(..., pre_logits=True)``), forward only."""
    import numpy as np

    out = []
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            for batch in batches:
                features = model.forward_head(model.forward_features(batch.to(device)), pre_logits=True)
                out.append(features.float().reshape(features.shape[0], -1).cpu().numpy())
                on_batch(batch.shape[0])
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), dtype=np.float32)
