"""What each image looks like to a model: the crop of timm's eval transform and the box in its pixels."""
from __future__ import annotations

from ..inputs.geometry import crop_window
from ..inputs.images import ImageSet
from .schema import View


def views_of(image_set: ImageSet, data_config: dict) -> tuple[View, ...]:
    """Per image: the crop (original pixels), the model's input size, and the annotated box mapped into the
    model's pixels (None without a box or when the crop cuts it off)."""
    out = []
    for record in image_set.records:
        window = crop_window(record.width, record.height, data_config)
        box = window.map_box(record.box)
        out.append(View(tuple(window.as_tuple()[:4]), window.out_width, window.out_height,
                        tuple(box) if box is not None else None))
    return tuple(out)
