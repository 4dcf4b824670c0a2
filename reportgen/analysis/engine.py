"""Grad-CAM for every target layer of a backbone from one forward and one backward per batch.

Hooks capture each target module's output; ``torch.autograd.grad`` then asks for the gradient of
the target-class scores with respect to those activations only (parameters are frozen, so no
parameter gradient is computed, and autograd stops at the shallowest target). The channel
weighting itself comes from pytorch-grad-cam, so any of its gradient-based methods can be used.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM

from ..inputs.config import CAM_METHOD_NAMES
from ..inputs.registry import Layout
from ..results.schema import CamStatus
from ..results.stats import RunningMoments, linear_cka

CAM_METHODS = dict(zip(CAM_METHOD_NAMES, (GradCAM, GradCAMPlusPlus, XGradCAM, HiResCAM, LayerCAM)))
ZERO_CAM_EPS = 1e-12
CONSTANT_CAM_RTOL = 1e-6  # a map whose minimum is within this share of its maximum is constant
FEATURE_VECTOR_UNITS = 256  # units kept per image of a non-spatial layer, for the feature picture
MAX_CKA_UNITS = 8192  # widest pooled feature kept for the CKA (images x units, float32)


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


def to_map(model: torch.nn.Module, tensor: torch.Tensor, layout: Optional[str] = None) -> Optional[torch.Tensor]:
    """(B, C, H, W) view of a layer output whatever its layout (NHWC stages, e.g. Swin, are permuted)."""
    if layout == Layout.NHWC and tensor.dim() == 4:
        return tensor.permute(0, 3, 1, 2)
    return tokens_to_map(model, tensor)


@dataclass(frozen=True, kw_only=True)
class BatchOutput:
    logits: np.ndarray  # (B, classes)
    targets: np.ndarray  # (B,) class index each CAM explains
    cams: dict  # layer -> (B, h, w) float32 raw CAM (after ReLU), spatial layers only
    cam_status: dict  # layer -> tuple of per-image status strings
    pooled: dict  # layer -> (B, C) channel means (spatial/token layers) or the vector itself
    unit_mean: dict  # layer -> (D,) mean over the batch of every unit of the flattened output
    unit_m2: dict  # layer -> (D,) sum of squared deviations from that mean
    feature_maps: dict  # layer -> (B, h, w) mean |activation| over channels, spatial layers
    head_units: dict  # layer -> (B, k) first units, non-spatial layers


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


def _to_host(tensors: dict, pack: Optional[bool] = None) -> dict:
    """Every tensor to float32 numpy with ONE device-to-host copy (no copy at all on the CPU).
    ``pack`` forces or skips the single-buffer path (default: pack when not on the CPU)."""
    if not tensors:
        return {}
    first = next(iter(tensors.values()))
    if not (pack if pack is not None else first.device.type != "cpu"):
        return {k: v.float().numpy() for k, v in tensors.items()}
    flat = torch.cat([v.float().reshape(-1) for v in tensors.values()]).cpu().numpy()
    out, offset = {}, 0
    for key, value in tensors.items():
        size = value.numel()
        out[key] = flat[offset:offset + size].reshape(tuple(value.shape))
        offset += size
    return out


class _Capture:
    """Forward hooks that keep each target layer's output (for the gradient) and reduce it at once, on the
    device, to what is kept per batch: a later in-place op (e.g. ReLU(inplace=True)) would change it."""

    def __init__(self, model: torch.nn.Module, layouts: dict):
        self.model, self.layouts = model, layouts
        self.outputs: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.summaries: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}

    def hook(self, name: str):
        def capture(_module, _inputs, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if not torch.is_tensor(output):
                raise LayerCallError(f"layer {name!r} returns {type(output).__name__}, not a tensor; choose another module")
            if torch.is_grad_enabled() and not output.requires_grad:
                # The first hooked layer starts the graph: nothing before it needs its activations saved for the
                # backward pass (the high-resolution early layers hold most of them). A copy, not the leaf
                # itself, so that a later in-place op is detected as before instead of failing.
                output = output.detach().requires_grad_(True).clone()
            self.outputs[name] = output
            self.versions[name] = output._version
            with torch.no_grad():
                self._summarise(name, output.detach().float())
            return output
        return capture

    def _summarise(self, name: str, value: torch.Tensor) -> None:
        flat = value.reshape(value.shape[0], -1)
        mean = flat.mean(dim=0)
        self.summaries[f"mean:{name}"] = mean
        self.summaries[f"m2:{name}"] = ((flat - mean) ** 2).sum(dim=0)
        spatial = to_map(self.model, value, self.layouts.get(name))
        if spatial is not None and spatial.shape[-1] * spatial.shape[-2] > 1:
            self.summaries[f"pooled:{name}"] = spatial.mean(dim=(2, 3))
            self.summaries[f"featmap:{name}"] = spatial.abs().mean(dim=1)
        else:
            # Token sequences without a patch grid: mean over tokens; anything else: as flattened.
            self.summaries[f"pooled:{name}"] = value.mean(dim=1) if value.dim() == 3 else flat
            self.summaries[f"head:{name}"] = flat[:, :FEATURE_VECTOR_UNITS]

    def check_calls(self, layer_names: Sequence[str]) -> None:
        repeated = [n for n, c in self.calls.items() if c != 1]
        missing = [n for n in layer_names if n not in self.calls]
        if repeated or missing:
            raise LayerCallError(f"layers called more than once ({repeated}) or never ({missing}) in one forward; "
                                 "hook modules that run exactly once")

    def spatial_maps(self, layer_names: Sequence[str]) -> dict:
        """(B, C, H, W) views of the captured outputs that have a spatial map."""
        maps = {}
        for name in layer_names:
            spatial = to_map(self.model, self.outputs[name].detach(), self.layouts.get(name))
            if spatial is not None and spatial.shape[-1] * spatial.shape[-2] > 1:
                maps[name] = spatial
        return maps


def _forward_backward(model, batch, layer_names, class_targets, capture: _Capture):
    """One forward, then the gradient of the target scores w.r.t. the spatial layers' outputs only.
    Returns (logits, targets, maps, layers with gradients, their gradients, layers overwritten in place)."""
    handles = []
    modules = dict(model.named_modules())
    try:
        for name in layer_names:
            handles.append(modules[name].register_forward_hook(capture.hook(name)))
        with torch.enable_grad():
            logits = model(batch)
        capture.check_calls(layer_names)
        top1 = logits.argmax(dim=1).tolist()  # one device sync for the batch, not one per image
        targets = torch.tensor([t if t is not None else top1[i] for i, t in enumerate(class_targets)],
                               device=logits.device)
        score = logits.gather(1, targets[:, None]).sum()
        maps = capture.spatial_maps(layer_names)
        in_place = [n for n in maps if capture.outputs[n]._version != capture.versions[n]]
        asked = [n for n in maps if n not in in_place]
        # Gradients w.r.t. the captured outputs themselves (a reshaped view is not in the graph).
        grads = torch.autograd.grad(score, [capture.outputs[n] for n in asked], allow_unused=True) if asked else []
    finally:
        for handle in handles:
            handle.remove()
    return logits, targets, maps, asked, grads, in_place


def run_batch(model: torch.nn.Module, batch: torch.Tensor, layer_names: Sequence[str],
              class_targets: Sequence[Optional[int]], method: str = "gradcam", math=None,
              layouts: Optional[dict] = None) -> BatchOutput:
    """One forward + one backward for all layers. ``class_targets[i]`` None -> top-1 prediction."""
    math = math or cam_math(method)
    capture = _Capture(model, layouts or {})
    with _frozen_eval(model):
        logits, targets, maps, asked, grads, in_place = _forward_backward(model, batch, layer_names, class_targets,
                                                                          capture)
        summaries = capture.summaries
        for name, grad in zip(asked, grads):
            summaries[f"acts:{name}"] = maps[name]
            summaries[f"grads:{name}"] = (torch.zeros_like(maps[name]) if grad is None
                                          else to_map(model, grad, capture.layouts.get(name)))
        summaries["logits"] = logits.detach()
        summaries["targets"] = targets
        host = _to_host(summaries)

    cams, status = {}, {}
    for name in asked:
        cam = math.get_cam_image(None, None, None, host[f"acts:{name}"], host[f"grads:{name}"])
        cams[name] = np.maximum(cam, 0).astype(np.float32)
        status[name] = tuple(_cam_status(c) for c in cams[name])
    for name in in_place:
        status[name] = (CamStatus.OVERWRITTEN,) * batch.shape[0]

    def pick(prefix):
        return {n: host[f"{prefix}:{n}"] for n in layer_names if f"{prefix}:{n}" in host}

    return BatchOutput(logits=host["logits"], targets=host["targets"].astype(np.int64), cams=cams, cam_status=status,
                       pooled=pick("pooled"), unit_mean=pick("mean"), unit_m2=pick("m2"), feature_maps=pick("featmap"),
                       head_units=pick("head"))


def _cam_status(cam: np.ndarray) -> CamStatus:
    if not np.all(np.isfinite(cam)):
        return CamStatus.NAN
    top = float(cam.max())
    if top <= ZERO_CAM_EPS or float(cam.min()) >= top * (1.0 - CONSTANT_CAM_RTOL):
        return CamStatus.ZERO  # all-zero, or constant: either way it points nowhere (issue 27: a broken model)
    return CamStatus.OK


@dataclass(frozen=True, kw_only=True)
class LayerAnalysis:
    name: str
    cam: Optional[np.ndarray]  # (N, h, w) raw CAM, None when the layer has no spatial map
    cam_status: tuple  # per image
    feature_map: Optional[np.ndarray]  # (N, h, w) mean |activation| over channels, spatial layers
    feature_vector: Optional[np.ndarray]  # (N, k) first units, non-spatial layers
    feature_variance: float  # mean over units of the variance across images
    feature_dim: int


@dataclass(frozen=True, kw_only=True)
class BackboneAnalysis:
    layers: tuple  # LayerAnalysis per hooked layer
    targets: np.ndarray  # (N,)
    target_from_prediction: np.ndarray  # (N,) bool
    top5_index: np.ndarray  # (N, k), k = min(5, classes), best first
    top5_prob: np.ndarray  # (N, k)
    probs: np.ndarray  # (N, classes) softmax, float32
    logits: np.ndarray  # (N, classes) float32
    cka_layers: tuple  # layers of the CKA matrix
    cka: tuple  # linear CKA between cka_layers over all images (pooled features), rows of floats
    moments: dict  # layer -> RunningMoments (to merge shards of an image set)
    pooled: dict  # cka layer -> (N, units) float32 pooled features (to merge shards); empty: CKA not available
    prelogits: Optional[np.ndarray] = None  # (N, D) float32 input of the classifier, when asked for

    def layer(self, name: str) -> LayerAnalysis:
        return next(layer for layer in self.layers if layer.name == name)


def analyse_backbone(model: torch.nn.Module, batches: Iterable[torch.Tensor], layer_names: Sequence[str],
                     class_targets: Sequence[Optional[int]], method: str = "gradcam",
                     device: str = "cpu", cka_layers: Sequence[str] = (),
                     on_batch: Callable[[int], None] = lambda n: None,
                     layouts: Optional[dict] = None, prelogits: bool = False) -> BackboneAnalysis:
    """Run the engine over all batches and reduce to per-layer results (pure: no files, no printing).
    Only per-image outputs (CAMs, small feature pictures, the last three layers' pooled features for the CKA)
    are kept; unit statistics are merged batch by batch, so memory does not grow with the activations of all
    images. ``prelogits``: also keep every image's pooled pre-logit features (the classifier's input, read by a
    hook in the same forward pass: the linear probe needs no pass of its own)."""
    math = cam_math(method)
    moments = {name: RunningMoments() for name in layer_names}
    keep_pooled = bool(cka_layers)
    kept: dict = {"cams": [], "status": [], "featmap": [], "head": [], "logits": [], "targets": [], "pooled": []}
    dims: dict = {}
    head_inputs: list = []
    handle = model.get_classifier().register_forward_pre_hook(
        lambda _module, inputs: head_inputs.append(
            inputs[0].detach().float().reshape(inputs[0].shape[0], -1).cpu().numpy())) if prelogits else None
    start = 0
    try:
        for batch in batches:
            n = batch.shape[0]
            out = run_batch(model, batch.to(device), layer_names, class_targets[start:start + n], method, math,
                            layouts)
            start += n
            for name in layer_names:
                moments[name].add(n, out.unit_mean[name], out.unit_m2[name])
                dims[name] = int(out.unit_mean[name].shape[0])
            if keep_pooled and max(out.pooled[k].shape[1] for k in cka_layers) > MAX_CKA_UNITS:
                keep_pooled = False  # too wide to keep for every image; CKA is reported as not available
            if keep_pooled:
                kept["pooled"].append({k: np.asarray(out.pooled[k], dtype=np.float32) for k in cka_layers})
            for key, value in (("cams", out.cams), ("status", out.cam_status), ("featmap", out.feature_maps),
                               ("head", out.head_units)):
                kept[key].append(value)
            kept["logits"].append(out.logits)
            kept["targets"].append(out.targets)
            on_batch(n)
    finally:
        if handle is not None:
            handle.remove()
    pooled = ({k: np.concatenate([p[k] for p in kept["pooled"]]) for k in cka_layers}
              if keep_pooled and kept["pooled"] else {})
    logits = np.concatenate(kept["logits"])
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    layers = []
    for name in layer_names:
        has_cam = name in kept["cams"][0]
        spatial = name in kept["featmap"][0]
        status = sum((s.get(name, (CamStatus.NOT_SPATIAL,) * len(lg)) for s, lg in zip(kept["status"], kept["logits"])), ())
        layers.append(LayerAnalysis(
            name=name,
            cam=np.concatenate([c[name] for c in kept["cams"]]) if has_cam else None,
            cam_status=status,
            feature_map=np.concatenate([f[name] for f in kept["featmap"]]) if spatial else None,
            feature_vector=None if spatial else np.concatenate([h[name] for h in kept["head"]]),
            feature_variance=moments[name].mean_variance(),
            feature_dim=dims[name],
        ))
    return BackboneAnalysis(
        layers=tuple(layers),
        targets=np.concatenate(kept["targets"]),
        target_from_prediction=np.array([t is None for t in class_targets]),
        top5_index=top5,
        top5_prob=np.take_along_axis(probs, top5, axis=1).astype(np.float32),
        probs=probs.astype(np.float32),
        logits=logits.astype(np.float32),
        cka_layers=tuple(cka_layers),
        cka=tuple(tuple(row) for row in linear_cka([pooled[k] for k in cka_layers])) if pooled else (),
        moments=moments,
        pooled=pooled,
        prelogits=np.concatenate(head_inputs).astype(np.float32) if head_inputs else None,
    )


def forward_probs(model: torch.nn.Module, batches: Iterable[torch.Tensor], device: str = "cpu",
                  on_batch: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """Softmax outputs of every image, forward passes only (no hooks, no gradients)."""
    out = []
    with _frozen_eval(model), torch.inference_mode():
        for batch in batches:
            out.append(torch.softmax(model(batch.to(device)).float(), dim=1).cpu().numpy())
            on_batch(batch.shape[0])
    return np.concatenate(out).astype(np.float32)
