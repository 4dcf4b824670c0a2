"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity checks for saliency maps").

The weights are re-initialised from the head downwards in cascading steps and the CAMs recomputed for
the same images and the same target classes. A CAM that explains the trained model must change; the
similarity numbers are computed later from the saved maps (``metrics.sanity_similarity``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .engine import analyse_backbone

# Parameters owned by modules without ``reset_parameters`` (class tokens, position embeddings,
# layer-scale gammas) get this normal init, the ViT convention.
FALLBACK_STD = 0.02


@dataclass(frozen=True)
class RandomisedStep:
    label: str
    modules: tuple  # module paths re-initialised in this step (cumulative with earlier steps)
    parameters: int  # parameters re-initialised so far, all steps up to this one
    cams: dict  # layer -> (N, h, w) raw CAM of the randomised model
    cam_status: dict  # layer -> per-image status


@dataclass(frozen=True)
class SanityAnalysis:
    steps: tuple  # RandomisedStep, in cascade order


def _covered(name: str, prefixes: Sequence[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def randomise(model: torch.nn.Module, prefixes: Sequence[str], seed: int) -> set:
    """Re-initialise, in place, every parameter and BN statistic under the given module paths with
    each module's own init (``reset_parameters``). Returns the ids of the parameters touched."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    touched = set()
    try:
        with torch.no_grad():
            for name, module in model.named_modules():
                if not _covered(name, prefixes):
                    continue
                own = list(module.parameters(recurse=False))
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                elif hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
                else:
                    for p in own:
                        p.normal_(0.0, FALLBACK_STD)
                touched.update(id(p) for p in own)
    finally:
        torch.random.set_rng_state(generator_state)
    return touched


def cascading_randomisation(model: torch.nn.Module, batches: Sequence[torch.Tensor], layer_names: Sequence[str],
                            class_targets: Sequence[int], steps: Sequence[tuple[str, Sequence[str]]],
                            method: str = "gradcam", device: str = "cpu", seed: int = 0,
                            on_batch: Callable[[int], None] = lambda n: None,
                            layouts: Optional[dict] = None) -> SanityAnalysis:
    """CAMs of ``layer_names`` after each cumulative randomisation step. The trained ``model`` is not
    modified (a copy is randomised); targets are the trained model's, so the same class is explained."""
    randomised = copy.deepcopy(model)
    out = []
    sizes = {id(p): p.numel() for p in randomised.parameters()}
    touched: set = set()
    try:
        for number, (label, prefixes) in enumerate(steps):
            touched |= randomise(randomised, prefixes, seed + number)
            total = sum(sizes.get(i, 0) for i in touched)
            analysis = analyse_backbone(randomised, batches, layer_names, list(class_targets), method, device,
                                        on_batch=on_batch, layouts=layouts)
            cams = {layer.name: layer.cam for layer in analysis.layers if layer.cam is not None}
            status = {layer.name: layer.cam_status for layer in analysis.layers}
            out.append(RandomisedStep(label, tuple(prefixes), total, cams, status))
    finally:
        del randomised
    return SanityAnalysis(tuple(out))
