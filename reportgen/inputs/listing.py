"""What a listing of the image folder yields before any pixel is read: one :class:`ListedImage` per file, with
the annotations its source (manifest, class folder, VOC file) gives."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import InputDataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True, kw_only=True)
class ListedImage:
    file: str  # path relative to the image folder
    path: Path
    class_index: Optional[int]
    box: Optional[tuple[float, float, float, float]]
    size_class: Optional[str]
    background: Optional[str]
    source: str
    licence: str
    notes: str
    where: str  # where the annotations came from, for error messages (manifest line, xml file, image path)
    box_source: str = ""  # manifest | voc: <how the box was chosen> | ""
    in_subfolder: bool = False  # below its class folder, not directly in it


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """Image files of a folder (hidden files and folders left out), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def parse_number(value: str, where: str, field: str) -> float:
    """A finite, non-negative number from an annotation field, or one message naming where it is wrong."""
    try:
        number = float(value)
    except ValueError:
        raise InputDataError(f"{where}: field {field!r} must be a number, got {value!r}; fix the manifest.") from None
    if not math.isfinite(number) or number < 0:
        raise InputDataError(f"{where}: field {field!r} must be a finite number >= 0, got {value!r}; fix the manifest.")
    return number
