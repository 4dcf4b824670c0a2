"""ImageNet-1k class names through timm's ImageNetInfo (imports timm): the names provider of the ImageNet label
space (``inputs.label_space.LabelSpace`` is torch-free, so the names come in from here)."""
from __future__ import annotations

from functools import lru_cache

import timm.data

from ..inputs.label_space import LabelSpace, imagenet_space


class ClassNames:
    """Accepts an index, a WordNet id or an exact name; gives the description of an index."""

    def __init__(self):
        self.info = timm.data.ImageNetInfo()
        self.wnids = self.info.label_names()
        self.descriptions = [self.info.index_to_description(i) for i in range(len(self.wnids))]

    def resolve(self, value: str) -> int:
        text = value.strip()
        if text.isdigit():
            index = int(text)
            if index >= len(self.wnids):
                raise ValueError(f"class index {index} is out of range 0..{len(self.wnids) - 1}.")
            return index
        if text in self.wnids:
            return self.wnids.index(text)
        for i, description in enumerate(self.descriptions):
            if text.lower() in [part.strip().lower() for part in description.split(",")] or text == description:
                return i
        raise ValueError(f"unknown ImageNet class {text!r}; give an index 0-999, a WordNet id (n02123045) or an exact name.")

    def name(self, index: int) -> str:
        return self.descriptions[index]


@lru_cache(maxsize=1)
def imagenet_label_space() -> LabelSpace:
    """ImageNet-1k's label space, its names read from timm once per process."""
    return imagenet_space(ClassNames())
