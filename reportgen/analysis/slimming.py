"""Slimming verified by intervention: remove the unit the paper would cut (replace it by identity), run the
same images through the slimmed model without retraining, and measure what changed.

The unit must be something identity can stand in for without leaving a piece of it behind: a module that keeps
its input's shape and whose output no batch normalisation consumes (a BatchNorm left behind would normalise the
unit's input with the running statistics of its output, and the measured damage would be partly an artefact).
By the rule: the penultimate of the last three layers when it is such a module; else the smallest block (a module
of a stage: held in a Sequential or ModuleList) that contains it and is one; otherwise the last such block before
the head. The registry names the unit for its backbones (with the reason); any other
timm id gets it from the same rule, by a dry forward. Without retraining the numbers are a lower bound on what a
fine-tuned slim model would reach.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..inputs.registry import Backbone
from .autolayers import DryForward, dry_forward


@dataclass(frozen=True)
class SlimUnit:
    module: Optional[str]  # None: nothing can be removed
    reason: str


def _ancestors(name: str) -> list[str]:
    """Enclosing modules of ``name``, nearest first (the model itself left out)."""
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def feeds_a_batch_norm(dry: DryForward, modules: dict, name: str) -> bool:
    """Whether a normalisation with running statistics (BatchNorm) takes this module's output as its input: it
    would be left behind when the module is removed. (LayerNorm and GroupNorm compute their statistics from what
    they receive.)"""
    output = dry.seen.get(name, (0, None))[1]
    consumer = dry.consumer.get(id(output)) if torch.is_tensor(output) else None
    if consumer is None or consumer == name or consumer.startswith(name + "."):
        return False
    return getattr(modules[consumer], "running_mean", None) is not None


def choose_unit(model: torch.nn.Module, backbone: Backbone, input_size) -> SlimUnit:
    """The unit to remove by the rule in the module docstring, with the reason, from a dry forward."""
    dry = dry_forward(model, input_size)
    modules = dict(model.named_modules())
    penultimate = backbone.weights_module(backbone.last_three[1])

    def removable(name: str) -> bool:
        return dry.keeps_shape(name) and not feeds_a_batch_norm(dry, modules, name)

    if removable(penultimate):
        return SlimUnit(penultimate, f"the penultimate layer {dry.shapes(penultimate)} keeps its shape"
                        + ("" if list(modules[penultimate].children()) else " and no BatchNorm follows it"))
    why = "feeds a BatchNorm" if dry.keeps_shape(penultimate) else "changes its shape"
    enclosing = next((name for name in _ancestors(penultimate) if _is_block(modules, name) and removable(name)), None)
    if enclosing is not None:
        return SlimUnit(enclosing, f"the penultimate layer {dry.shapes(penultimate)} {why}; {dry.shapes(enclosing)}, "
                                   "the block that holds it, keeps its shape")
    head = backbone.last_three[-1]
    before_head = dry.order[:dry.order.index(head)] if head in dry.order else dry.order
    blocks = [name for name in before_head if _is_block(modules, name) and removable(name)]
    if not blocks:
        return SlimUnit(None, f"the penultimate layer {dry.shapes(penultimate)} {why}, and no block that holds it or "
                              "comes before the head keeps its shape, so nothing can be replaced by identity")
    return SlimUnit(blocks[-1], f"the penultimate layer {dry.shapes(penultimate)} {why} and no block holding it keeps "
                                f"its shape; {dry.shapes(blocks[-1])} is the last block before the head that keeps it")


def _is_block(modules: dict, name: str) -> bool:
    """A block of a stage: a module with children and weight matrices, held in a Sequential or ModuleList or
    repeated among its siblings (RegNet's stages hold b1, b2, ... as attributes)."""
    module = modules[name]
    parent = modules.get(name.rsplit(".", 1)[0]) if "." in name else None
    if parent is None or not list(module.children()) or not any(p.dim() >= 2 for p in module.parameters()):
        return False
    return isinstance(parent, (torch.nn.Sequential, torch.nn.ModuleList)) or \
        sum(type(child) is type(module) for child in parent.children()) >= 2


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

