"""Every image decoded once per run: while the image set is validated, each image's pixels go through every
geometry the run needs (the resize-and-crop part of each backbone's eval transform, and the report's display
copy) and are appended to one file per geometry. Model inputs are stored raw (uint8 RGB), so the tensors equal
those of decoding the file afresh; the display copy is stored as the JPEG the report uses (quality 90), a
twentieth of its raw size. Backbones, the sanity check, slimming and the display copies then read from these files a batch at
a time: nothing is decoded twice and memory stays flat in the number of images (positioned reads, no pixels
held)."""
from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
from PIL import Image

Geometry = Callable[[Image.Image], Image.Image]  # RGB image in, RGB image out (resize, crop)
DISPLAY = "display"
DISPLAY_MAX_SIDE = 512
DISPLAY_QUALITY = 90
# Disk estimate of one display copy (JPEG, quality 90, at most 512 px): a sixth of its raw size, 128 KB, an upper
# bound for photos (measured: the curated set averages 35 KB, at most 68 KB; synthetic validation photos 27 KB).
DISPLAY_BYTES_ESTIMATE = DISPLAY_MAX_SIDE * DISPLAY_MAX_SIDE * 3 // 6


def display_geometry(image: Image.Image) -> Image.Image:
    """The report's copy of an image: at most DISPLAY_MAX_SIDE pixels on its longer side."""
    copy = image.copy()
    copy.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE))
    return copy


def jpeg_bytes(image: Image.Image, quality: int = DISPLAY_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Slot:
    offset: int
    length: int  # bytes stored
    height: int
    width: int


class DecodedInputs:
    """Pixels of every image after each geometry, on disk under ``folder`` (scratch, removed with :meth:`remove`).
    Geometries named in ``compressed`` are kept as JPEG (quality 90): only the display copy, whose pixels are
    shown, never fed to a model."""

    def __init__(self, folder: Path | str, geometries: Mapping[str, Geometry], compressed: Iterable[str] = (DISPLAY,)):
        self.folder = Path(folder)
        if self.folder.exists():
            shutil.rmtree(self.folder)  # a killed run's leftovers
        self.folder.mkdir(parents=True)
        self.geometries = dict(geometries)
        self.compressed = frozenset(compressed) & set(self.geometries)
        self._slots: dict[str, dict[int, _Slot]] = {key: {} for key in self.geometries}
        self._sizes = {key: 0 for key in self.geometries}

    def _file(self, key: str) -> Path:
        return self.folder / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".u8")

    def add(self, position: int, image: Image.Image) -> None:
        """Run ``image`` (decoded RGB) through every geometry and append the result."""
        for key, geometry in self.geometries.items():
            shaped = geometry(image).convert("RGB")
            if key in self.compressed:
                data = jpeg_bytes(shaped)
            else:
                data = np.ascontiguousarray(np.asarray(shaped, dtype=np.uint8)).tobytes()
            with self._file(key).open("ab") as handle:
                handle.write(data)
            self._slots[key][position] = _Slot(self._sizes[key], len(data), shaped.height, shaped.width)
            self._sizes[key] += len(data)

    def has(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return max((len(slots) for slots in self._slots.values()), default=0)

    def stored(self, key: str, position: int) -> bytes:
        """The bytes kept for one image: raw pixels, or the JPEG of a compressed geometry."""
        slot = self._slots[key][position]
        with self._file(key).open("rb") as handle:
            handle.seek(slot.offset)
            return handle.read(slot.length)

    def read(self, key: str, positions: Iterable[int]) -> list[np.ndarray]:
        """(H, W, 3) uint8 arrays of the given images after geometry ``key``."""
        slots = self._slots[key]
        out = []
        with self._file(key).open("rb") as handle:
            for position in positions:
                slot = slots[position]
                handle.seek(slot.offset)
                data = handle.read(slot.length)
                if key in self.compressed:
                    with Image.open(io.BytesIO(data)) as image:
                        out.append(np.asarray(image.convert("RGB")))
                else:
                    out.append(np.frombuffer(data, dtype=np.uint8).reshape(slot.height, slot.width, 3))
        return out

    def image(self, key: str, position: int) -> Image.Image:
        return Image.fromarray(self.read(key, [position])[0], mode="RGB")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
