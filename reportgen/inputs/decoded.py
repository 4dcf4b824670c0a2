"""Every image decoded once per run: while the image set is validated, each image's pixels go through every
geometry the run needs (the resize-and-crop part of each backbone's eval transform, and the report's display
copy) and the results are appended, as raw uint8 RGB, to one file per geometry. Backbones, the sanity check,
slimming and the display copies then read from these files a batch at a time: nothing is decoded twice and
memory stays flat in the number of images (positioned reads, no pixels held)."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from PIL import Image

Geometry = Callable[[Image.Image], Image.Image]  # RGB image in, RGB image out (resize, crop)
DISPLAY = "display"
DISPLAY_MAX_SIDE = 512


def display_geometry(image: Image.Image) -> Image.Image:
    """The report's copy of an image: at most DISPLAY_MAX_SIDE pixels on its longer side."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    return copy


@dataclass(frozen=True)
class _Slot:
    offset: int
    height: int
    width: int


class DecodedInputs:
    """Pixels of every image after each geometry, on disk under ``folder`` (scratch, removed with :meth:`remove`)."""

    def __init__(self, folder: Path | str, geometries: Mapping[str, Geometry]):
        self.folder = Path(folder)
        if self.folder.exists():
            shutil.rmtree(self.folder)  # a killed run's leftovers
        self.folder.mkdir(parents=True)
        self.geometries = dict(geometries)
        self._slots: dict[str, dict[int, _Slot]] = {key: {} for key in self.geometries}
        self._sizes = {key: 0 for key in self.geometries}

    def _file(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".u8")

    def add(self, position: int, image: Image.Image) -> None:
        """Run ``image`` (decoded RGB) through every geometry and append the pixels."""
        for key, geometry in self.geometries.items():
            pixels = np.ascontiguousarray(np.asarray(geometry(image).convert("RGB"), dtype=np.uint8))
            with self._file(key).open("ab") as handle:
                handle.write(pixels.tobytes())
            self._slots[key][position] = _Slot(self._sizes[key], pixels.shape[0], pixels.shape[1])
            self._sizes[key] += pixels.nbytes

    def has(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return max((len(slots) for slots in self._slots.values()), default=0)

    def read(self, key: str, positions: Iterable[int]) -> list[np.ndarray]:
        """(H, W, 3) uint8 arrays of the given images after geometry ``key``."""
        slots = self._slots[key]
        out = []
        with self._file(key).open("rb") as handle:
            for position in positions:
                slot = slots[position]
                handle.seek(slot.offset)
                count = slot.height * slot.width * 3
                out.append(np.frombuffer(handle.read(count), dtype=np.uint8).reshape(slot.height, slot.width, 3))
        return out

    def image(self, key: str, position: int) -> Image.Image:
        return Image.fromarray(self.read(key, [position])[0], mode="RGB")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
