"""Slimming verified by intervention: remove the unit the paper would cut (replace it by identity), run the
same images through the slimmed model without retraining, and measure what changed.

The unit: the penultimate of the last three layers when it keeps its input's shape (so identity can stand in for
it); otherwise the last block before the head that keeps its shape (a residual or transformer block). The
registry names the unit for its backbones (with the reason); any other timm id gets it from the same rule, by a
dry forward. Without retraining the numbers are a lower bound on what a fine-tuned slim model would reach.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..inputs.registry import Backbone
from .autolayers import dry_forward


@dataclass(frozen=True)
class SlimUnit:
    module: Optional[str]  # None: nothing can be removed
    reason: str


def choose_unit(model: torch.nn.Module, backbone: Backbone, input_size) -> SlimUnit:
    """The unit to remove by the rule in the module docstring, with the reason, from a dry forward."""
    dry = dry_forward(model, input_size)
    modules = dict(model.named_modules())
    penultimate = backbone.weights_module(backbone.last_three[1])
    if dry.keeps_shape(penultimate):
        return SlimUnit(penultimate, f"the penultimate layer {dry.shapes(penultimate)} keeps its shape")
    head = backbone.last_three[-1]
    before_head = dry.order[:dry.order.index(head)] if head in dry.order else dry.order
    blocks = [name for name in before_head if _is_block(modules, name) and dry.keeps_shape(name)]
    if not blocks:
        return SlimUnit(None, f"the penultimate layer {dry.shapes(penultimate)} changes its shape and no block "
                              "before the head keeps its shape, so nothing can be replaced by identity")
    return SlimUnit(blocks[-1], f"the penultimate layer {dry.shapes(penultimate)} changes its shape; "
                                f"{dry.shapes(blocks[-1])} is the last block before the head that keeps it")


def _is_block(modules: dict, name: str) -> bool:
    """A block of a stage: a module with children and weight matrices, held in a Sequential or ModuleList."""
    module = modules[name]
    parent = modules.get(name.rsplit(".", 1)[0]) if "." in name else None
    return (bool(list(module.children())) and any(p.dim() >= 2 for p in module.parameters())
            and isinstance(parent, (torch.nn.Sequential, torch.nn.ModuleList)))


def without(model: torch.nn.Module, unit: str) -> tuple[torch.nn.Module, int]:
    """A copy of ``model`` with ``unit`` replaced by identity, and the number of parameters removed. The copy
    shares the parameter and buffer tensors (only the module tree is new): it is only ever run, and a second
    copy of a VGG would cost 550 MB."""
    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    slim = copy.deepcopy(model, memo=shared)
    removed = parameters_in(model, unit)
    parent_name, _, child = unit.rpartition(".")
    parent = slim.get_submodule(parent_name) if parent_name else slim
    parent._modules[child] = torch.nn.Identity()
    return slim, removed


def parameters_in(model: torch.nn.Module, unit: str) -> int:
    """Parameters of ``unit`` (what replacing it by identity removes)."""
    return int(sum(p.numel() for p in model.get_submodule(unit).parameters()))


def kl_divergence(full_probs: np.ndarray, slim_probs: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """KL(full || slim) of the softmax outputs, per image."""
    p = np.clip(full_probs.astype(np.float64), eps, 1.0)
    q = np.clip(slim_probs.astype(np.float64), eps, 1.0)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def deep_layer_after_removal(deep: str, unit: str) -> str:
    """Where the deep layer's CAM is read in the slimmed model: the layer itself, or the identity that stands
    in for the unit when the deep layer was inside it."""
    return unit if deep.startswith(unit + ".") else deep

