"""Grad-CAM for every target layer of a backbone from one forward and one backward per batch.

Hooks capture each target module's output; ``torch.autograd.grad`` then asks for the gradient of
the target-class scores with respect to those activations only (parameters are frozen, so no
parameter gradient is computed, and autograd stops at the shallowest target). The channel
weighting itself comes from pytorch-grad-cam, so any of its gradient-based methods can be used.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
}
ZERO_CAM_EPS = 1e-12


def cam_math(method: str):
    """A pytorch-grad-cam object used only for its weighting math: it hooks nothing."""
    cls = CAM_METHODS[method]
    holder = cls(model=torch.nn.Linear(1, 1), target_layers=[])
    holder.activations_and_grads.release()
    return holder


def tokens_to_map(model: torch.nn.Module, tensor: torch.Tensor) -> Optional[torch.Tensor]:
    """(B, C, H, W) view of a layer output; token sequences lose their prefix tokens and
    take the patch grid of the model; None for outputs without a spatial layout."""
    if tensor.dim() == 4:
        return tensor
    if tensor.dim() == 3 and hasattr(model, "patch_embed"):
        grid_h, grid_w = model.patch_embed.grid_size
        prefix = int(getattr(model, "num_prefix_tokens", 1))
        if tensor.shape[1] == prefix + grid_h * grid_w:
            patches = tensor[:, prefix:, :]
            return patches.reshape(tensor.shape[0], grid_h, grid_w, tensor.shape[2]).permute(0, 3, 1, 2)
    return None


@dataclass(frozen=True)
class BatchOutput:
    logits: np.ndarray  # (B, classes)
    targets: np.ndarray  # (B,) class index each CAM explains
    cams: dict  # layer -> (B, h, w) float32 raw CAM (after ReLU), spatial layers only
    cam_status: dict  # layer -> tuple of per-image status strings
    features: dict  # layer -> (B, D) float32 flattened activation, every layer
    feature_maps: dict  # layer -> (B, h, w) mean |activation| over channels, spatial layers


@contextlib.contextmanager
def _frozen_eval(model: torch.nn.Module):
    """eval mode and no parameter gradients for the duration; the previous state comes back after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class LayerCallError(RuntimeError):
    pass


def run_batch(model: torch.nn.Module, batch: torch.Tensor, layer_names: Sequence[str],
              class_targets: Sequence[Optional[int]], method: str = "gradcam", math=None) -> BatchOutput:
    """One forward + one backward for all layers. ``class_targets[i]`` None -> top-1 prediction."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    versions: dict[str, int] = {}
    features: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}
    handles = []
    math = math or cam_math(method)

    def make_hook(name):
        def hook(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if not torch.is_tensor(output):
                raise LayerCallError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another module")
            captured[name] = output
            versions[name] = output._version
            # Copy now: a later in-place op (e.g. ReLU(inplace=True)) would change these values.
            features[name] = output.detach().float().reshape(output.shape[0], -1).cpu().numpy().copy()
        return hook

    with _frozen_eval(model):
        try:
            for name in layer_names:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            inputs = batch.requires_grad_(True)
            logits = model(inputs)
            repeated = [n for n, c in calls.items() if c != 1]
            missing = [n for n in layer_names if n not in calls]
            if repeated or missing:
                raise LayerCallError(f"layers called more than once ({repeated}) or never ({missing}) in one forward; "
                                     "hook modules that run exactly once")
            top1 = logits.argmax(dim=1)
            targets = torch.tensor([t if t is not None else int(top1[i]) for i, t in enumerate(class_targets)],
                                   device=logits.device)
            score = logits.gather(1, targets[:, None]).sum()
            maps = {}
            for name in layer_names:
                spatial = tokens_to_map(model, captured[name].detach())
                if spatial is not None and spatial.shape[-1] * spatial.shape[-2] > 1:
                    maps[name] = spatial
            in_place = [n for n in maps if captured[n]._version != versions[n]]
            asked = [n for n in maps if n not in in_place]
            # Gradients w.r.t. the captured outputs themselves (a reshaped view is not in the graph).
            raw_grads = torch.autograd.grad(score, [captured[n] for n in asked], allow_unused=True) if asked else []
            grads = [None if g is None else tokens_to_map(model, g) for g in raw_grads]
        finally:
            for handle in handles:
                handle.remove()
            batch.requires_grad_(False)

        cams, status = {}, {}
        feature_maps = {n: m.float().abs().mean(dim=1).cpu().numpy() for n, m in maps.items()}
        for name, grad in zip(asked, grads):
            acts = maps[name].float().cpu().numpy()
            if grad is None:
                cam = np.zeros((acts.shape[0],) + acts.shape[2:], dtype=np.float32)
            else:
                grad_np = grad.detach().float().cpu().numpy()
                cam = math.get_cam_image(None, None, None, acts, grad_np)
                cam = np.maximum(cam, 0).astype(np.float32)
            cams[name] = cam
            status[name] = tuple(_cam_status(c) for c in cam)
        for name in in_place:
            status[name] = ("overwritten-in-place",) * batch.shape[0]
    return BatchOutput(logits.detach().float().cpu().numpy(), targets.cpu().numpy(), cams, status, features,
                       feature_maps)


def _cam_status(cam: np.ndarray) -> str:
    if not np.all(np.isfinite(cam)):
        return "nan"
    if float(cam.max()) <= ZERO_CAM_EPS:
        return "zero"
    return "ok"


@dataclass(frozen=True)
class LayerAnalysis:
    name: str
    cam: Optional[np.ndarray]  # (N, h, w) raw CAM, None when the layer has no spatial map
    cam_status: tuple  # per image
    feature_map: Optional[np.ndarray]  # (N, h, w) mean |activation| over channels, spatial layers
    feature_vector: Optional[np.ndarray]  # (N, k) first units, non-spatial layers
    feature_variance: float  # mean over units of the variance across images
    feature_dim: int
    gram: np.ndarray  # (N, N) Gram matrix of column-centred features (for linear CKA)


@dataclass(frozen=True)
class BackboneAnalysis:
    layers: tuple  # LayerAnalysis per hooked layer
    targets: np.ndarray  # (N,)
    target_from_prediction: np.ndarray  # (N,) bool
    top5_index: np.ndarray  # (N, 5)
    top5_prob: np.ndarray  # (N, 5)

    def layer(self, name: str) -> LayerAnalysis:
        return next(layer for layer in self.layers if layer.name == name)


FEATURE_VECTOR_UNITS = 256


def analyse_backbone(model: torch.nn.Module, batches: Iterable[torch.Tensor], layer_names: Sequence[str],
                     class_targets: Sequence[Optional[int]], method: str = "gradcam",
                     device: str = "cpu") -> BackboneAnalysis:
    """Run the engine over all batches and reduce to per-layer arrays (pure: no files, no printing)."""
    math = cam_math(method)
    outputs = []
    start = 0
    for batch in batches:
        n = batch.shape[0]
        outputs.append(run_batch(model, batch.to(device), layer_names, class_targets[start:start + n], method, math))
        start += n
    logits = np.concatenate([o.logits for o in outputs])
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    layers = []
    for name in layer_names:
        feats = np.concatenate([o.features[name] for o in outputs]).astype(np.float64)
        centred = feats - feats.mean(axis=0, keepdims=True)
        has_cam = name in outputs[0].cams
        spatial = name in outputs[0].feature_maps
        status = sum((o.cam_status.get(name, ("not-spatial",) * o.logits.shape[0]) for o in outputs), ())
        layers.append(LayerAnalysis(
            name=name,
            cam=np.concatenate([o.cams[name] for o in outputs]) if has_cam else None,
            cam_status=status,
            feature_map=np.concatenate([o.feature_maps[name] for o in outputs]) if spatial else None,
            feature_vector=None if spatial else feats[:, :FEATURE_VECTOR_UNITS].astype(np.float32),
            feature_variance=float(feats.var(axis=0).mean()),
            feature_dim=int(feats.shape[1]),
            gram=centred @ centred.T,
        ))
    return BackboneAnalysis(
        layers=tuple(layers),
        targets=np.concatenate([o.targets for o in outputs]),
        target_from_prediction=np.array([t is None for t in class_targets]),
        top5_index=top5,
        top5_prob=np.take_along_axis(probs, top5, axis=1).astype(np.float32),
    )

