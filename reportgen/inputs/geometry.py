"""Where timm's eval transform takes its pixels from, in original-image coordinates, so boxes can be mapped into
each model's input without torch. ``tests/test_metrics.py`` checks it against timm's own transform for every
registry backbone, every crop mode timm has and non-square inputs."""
from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_CROP_PCT = 0.875  # timm's, when a model's config gives none


@dataclass(frozen=True)
class CropWindow:
    """The part of the original image the model sees, in original pixel coordinates."""
    x0: float
    y0: float
    x1: float
    y1: float
    out_width: int
    out_height: int

    def map_box(self, box):
        """Original-pixel box -> box in model-input pixels, clipped to the view (None if it falls outside)."""
        if box is None:
            return None
        sx = self.out_width / (self.x1 - self.x0)
        sy = self.out_height / (self.y1 - self.y0)
        bx0 = min(max((box[0] - self.x0) * sx, 0.0), self.out_width)
        bx1 = min(max((box[2] - self.x0) * sx, 0.0), self.out_width)
        by0 = min(max((box[1] - self.y0) * sy, 0.0), self.out_height)
        by1 = min(max((box[3] - self.y0) * sy, 0.0), self.out_height)
        if bx1 - bx0 < 1 or by1 - by0 < 1:
            return None
        return (bx0, by0, bx1, by1)

    def as_tuple(self):
        return (self.x0, self.y0, self.x1, self.y1, self.out_width, self.out_height)


def crop_window(width: int, height: int, data_config: dict) -> CropWindow:
    """Where timm's eval transform takes its pixels from, for each of its crop modes: "center" (shorter side to
    size / crop_pct, centre crop), "squash" (both sides to size / crop_pct, centre crop) and "border" (longer side
    to size / crop_pct, pad, centre crop; the window then reaches past the image into the padding)."""
    _, out_h, out_w = data_config["input_size"]
    crop_pct = data_config.get("crop_pct") or DEFAULT_CROP_PCT
    mode = data_config.get("crop_mode") or "center"
    if data_config.get("crop_border_pixels"):
        raise ValueError("crop_border_pixels (trimming the image before resizing) is not supported")
    scale_h, scale_w = math.floor(out_h / crop_pct), math.floor(out_w / crop_pct)
    if mode == "squash":  # torchvision Resize((h, w))
        new_w, new_h = scale_w, scale_h
    elif mode == "center" and scale_h == scale_w:
        # torchvision Resize(int): shorter side -> size, longer side -> int(size * long / short)
        if width <= height:
            new_w, new_h = scale_w, int(scale_w * height / width)
        else:
            new_w, new_h = int(scale_h * width / height), scale_h
    elif mode in ("center", "border"):
        # timm ResizeKeepRatio: the shorter side (center, longest=0) or the longer one (border, longest=1) to size
        ratio_h, ratio_w = height / scale_h, width / scale_w
        ratio = max(ratio_h, ratio_w) if mode == "border" else min(ratio_h, ratio_w)
        new_w, new_h = round(width / ratio), round(height / ratio)
    else:
        raise ValueError(f"unsupported crop_mode {mode!r}; timm's are center, squash and border")
    left, top = _centre_offset(new_w, out_w), _centre_offset(new_h, out_h)
    fx, fy = width / new_w, height / new_h
    return CropWindow(left * fx, top * fy, (left + out_w) * fx, (top + out_h) * fy, out_w, out_h)


def _centre_offset(size: int, crop: int) -> int:
    """Offset of a centred crop of ``crop`` pixels in ``size`` (torchvision CenterCrop, timm CenterCropOrPad):
    negative when the image is padded to reach the crop."""
    if crop > size:
        return -((crop - size) // 2)
    return int(round((size - crop) / 2.0))
