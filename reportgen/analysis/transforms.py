"""A backbone's eval transform, split where pixels become a tensor: the PIL part (resize, crop) is what the
decoded-input cache stores per geometry; the tensor part (to-tensor, normalise) runs per batch. Applying the two
parts in turn is the whole transform, so cached inputs equal freshly decoded ones bit for bit."""
from __future__ import annotations

from typing import Callable, Optional

import timm
import timm.data
from torchvision import transforms as T


def eval_transform(data_config: dict) -> T.Compose:
    return timm.data.create_transform(**data_config)


def split(transform: T.Compose) -> tuple[str, Callable, Callable]:
    """(geometry key, PIL part, tensor part) of a composed eval transform."""
    steps = list(transform.transforms)
    cut = next((i for i, step in enumerate(steps) if "ToTensor" in type(step).__name__), len(steps))
    pil_part, tensor_part = T.Compose(steps[:cut]), T.Compose(steps[cut:])
    key = " | ".join(repr(step) for step in steps[:cut]) or "identity"
    return key, pil_part, tensor_part


def pretrained_data_config(timm_id: str) -> Optional[dict]:
    """Input size, crop and mean/std of a timm id's pretrained tag, without building the model (None: no tag)."""
    pretrained_cfg = timm.models.get_pretrained_cfg(timm_id)
    if pretrained_cfg is None:
        return None
    return timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict())


def geometry_of(timm_id: str) -> Optional[tuple[str, Callable]]:
    """(key, PIL part) of a timm id's eval transform, from its pretrained config without building the model;
    None when the id has no pretrained config (its inputs are then decoded per backbone)."""
    data_config = pretrained_data_config(timm_id)
    if data_config is None:
        return None
    key, pil_part, _ = split(eval_transform(data_config))
    return key, pil_part


def input_bytes(backbones) -> int:
    """Bytes of one image's raw model inputs in the decoded-input cache: one uint8 RGB crop per distinct geometry
    of the run's backbones (a backbone without a pretrained config decodes its own inputs and stores none)."""
    sizes = {}
    for backbone in backbones:
        data_config = pretrained_data_config(backbone.timm_id)
        if data_config is None:
            continue
        key, _, _ = split(eval_transform(data_config))
        _, height, width = data_config["input_size"]
        sizes[key] = 3 * height * width
    return sum(sizes.values())


def input_geometries(backbones) -> dict:
    """Geometry key -> PIL part, for every backbone of the run that has a pretrained config."""
    found = {}
    for backbone in backbones:
        geometry = geometry_of(backbone.timm_id)
        if geometry is not None:
            found[geometry[0]] = geometry[1]
    return found
