"""The classifier of a timm model: where it sits, how many outputs its pretrained tag gives it, and the surgery on it
(a sigmoid head as two logits, a linear probe installed in its place, the pooled features it reads) (imports torch
and timm).

Planning a head (:mod:`reportgen.analysis.heads`) and loading the weights (:mod:`reportgen.analysis.models`) both
read it; it imports neither, so ``heads -> models`` stays one-way.
"""
from __future__ import annotations

import numpy as np
import timm
import timm.models
import torch

from ..errors import InputDataError
from ..inputs.labels import IMAGENET_CLASSES


def classifier_name(timm_id: str) -> str:
    cfg = timm.models.get_pretrained_cfg(timm_id)
    name = getattr(cfg, "classifier", None) if cfg is not None else None
    if isinstance(name, (tuple, list)):
        name = name[0]
    return name or "classifier"


def default_outputs(timm_id: str) -> int:
    cfg = timm.models.get_pretrained_cfg(timm_id)
    return int(getattr(cfg, "num_classes", None) or IMAGENET_CLASSES) if cfg is not None else IMAGENET_CLASSES


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
