"""Image sets: a folder of images plus an optional ``annotations.csv`` manifest.

Torch-free: the runner resolves class names/WordNet ids through a callable it passes in.
"""
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from PIL import Image, UnidentifiedImageError

from .errors import InputDataError

MANIFEST = "annotations.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
REQUIRED_COLUMNS = ("file",)
KNOWN_COLUMNS = ("file", "class", "x0", "y0", "x1", "y1", "size", "background", "source", "licence", "notes")
SIZE_CLASSES = ("small", "medium", "large")
BACKGROUNDS = ("clean", "cluttered")


@dataclass(frozen=True)
class ImageRecord:
    file: str  # path relative to the image folder
    path: Path
    width: int
    height: int
    sha256: str
    class_index: Optional[int]  # None: the target is the model's top-1 prediction
    box: Optional[tuple[float, float, float, float]]  # x0, y0, x1, y1 in pixels of the original image
    size_class: Optional[str]
    background: Optional[str]
    source: str = ""
    licence: str = ""
    notes: str = ""

    @property
    def box_share(self) -> Optional[float]:
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0) / float(self.width * self.height)


@dataclass(frozen=True)
class ImageSet:
    root: Path
    records: tuple[ImageRecord, ...]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for r in self.records:
            digest.update(f"{r.file}\0{r.sha256}\0{r.class_index}\0{r.box}\0{r.size_class}\0{r.background}\n".encode())
        return digest.hexdigest()


def default_image_dir() -> Path:
    """The curated set: ``images/`` of the source checkout (the README installs with ``pip install -e``)."""
    return Path(__file__).resolve().parent.parent / "images"


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _parse_float(value: str, where: str, field: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise InputDataError(f"{where}: field {field!r} must be a number, got {value!r}; fix the manifest.") from None
    if not math.isfinite(number) or number < 0:
        raise InputDataError(f"{where}: field {field!r} must be a finite number >= 0, got {value!r}; fix the manifest.")
    return number


def _open_size(path: Path, where: str) -> tuple[int, int]:
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputDataError(f"{where}: {path.name} is not a readable image ({exc}); replace or remove it.") from None


def load_image_set(root: Path, resolve_class: Callable[[str], int]) -> ImageSet:
    """Read and validate the whole set before any model loads.

    ``resolve_class`` maps a manifest class (index, WordNet id or exact name) to an ImageNet index
    and raises ValueError with a readable message when it cannot.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"image folder {root} does not exist; pass an existing folder with --images.")
    manifest = root / MANIFEST
    if manifest.is_file():
        records = _records_from_manifest(root, manifest, resolve_class)
    else:
        records = []
        for path in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            width, height = _open_size(path, str(path))
            records.append(ImageRecord(path.name, path, width, height, _file_sha256(path), None, None, None, None))
    if not records:
        raise InputDataError(f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)}); add images or fix --images.")
    return ImageSet(root, tuple(records))


def _records_from_manifest(root: Path, manifest: Path, resolve_class) -> list[ImageRecord]:
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        unknown = [c for c in columns if c not in KNOWN_COLUMNS]
        if unknown or "file" not in columns:
            raise InputDataError(f"{manifest}: columns must include 'file' and only {', '.join(KNOWN_COLUMNS)}; "
                                 f"found {', '.join(columns) or 'none'}.")
        rows = list(reader)
    records, seen = [], set()
    root_resolved = root.resolve()
    for line, row in enumerate(rows, start=2):
        where = f"{manifest}:{line}"
        name = (row.get("file") or "").strip()
        if not name:
            raise InputDataError(f"{where}: empty 'file' field; name an image in {root}.")
        path = (root / name).resolve()
        if root_resolved not in path.parents:
            raise InputDataError(f"{where}: file {name!r} points outside the image folder; use a path inside it.")
        if name in seen:
            raise InputDataError(f"{where}: duplicate row for {name!r}; keep one row per image.")
        seen.add(name)
        if not path.is_file():
            raise InputDataError(f"{where}: file {name!r} not found in {root}; fix the name or add the image.")
        width, height = _open_size(path, where)

        class_index = None
        raw_class = (row.get("class") or "").strip()
        if raw_class:
            try:
                class_index = resolve_class(raw_class)
            except ValueError as exc:
                raise InputDataError(f"{where}: field 'class': {exc}") from None

        box = None
        raw_box = [(row.get(k) or "").strip() for k in ("x0", "y0", "x1", "y1")]
        if any(raw_box):
            if not all(raw_box):
                raise InputDataError(f"{where}: box needs all of x0,y0,x1,y1 or none of them.")
            x0, y0, x1, y1 = (_parse_float(v, where, k) for v, k in zip(raw_box, ("x0", "y0", "x1", "y1")))
            if not (x0 < x1 <= width and y0 < y1 <= height):
                raise InputDataError(f"{where}: box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted or outside the "
                                     f"{width}x{height} image; use pixel coordinates with x0<x1<=width, y0<y1<=height.")
            box = (x0, y0, x1, y1)

        size_class = (row.get("size") or "").strip() or None
        if size_class is not None and size_class not in SIZE_CLASSES:
            raise InputDataError(f"{where}: field 'size' must be one of {', '.join(SIZE_CLASSES)}, got {size_class!r}.")
        background = (row.get("background") or "").strip() or None
        if background is not None and background not in BACKGROUNDS:
            raise InputDataError(f"{where}: field 'background' must be one of {', '.join(BACKGROUNDS)}, got {background!r}.")
        records.append(ImageRecord(
            name, path, width, height, _file_sha256(path), class_index, box, size_class, background,
            (row.get("source") or "").strip(), (row.get("licence") or "").strip(), (row.get("notes") or "").strip(),
        ))
    return records


# --- geometry of timm's eval transform (resize shorter side to size/crop_pct, centre crop) ---

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
    """Where timm's eval transform (crop_mode 'center' or 'squash') takes its pixels from."""
    _, out_h, out_w = data_config["input_size"]
    crop_pct = data_config.get("crop_pct") or 0.875
    mode = data_config.get("crop_mode") or "center"
    scale_h, scale_w = math.floor(out_h / crop_pct), math.floor(out_w / crop_pct)
    if mode == "squash":
        new_w, new_h = scale_w, scale_h
    elif mode == "center" and scale_h == scale_w:
        # torchvision Resize(int): shorter side -> size, longer side -> int(size * long / short)
        if width <= height:
            new_w, new_h = scale_w, int(scale_w * height / width)
        else:
            new_w, new_h = int(scale_h * width / height), scale_h
    else:
        raise ValueError(f"unsupported crop_mode {mode!r} with a non-square input size")
    left = int(round((new_w - out_w) / 2.0))
    top = int(round((new_h - out_h) / 2.0))
    fx, fy = width / new_w, height / new_h
    return CropWindow(left * fx, top * fy, (left + out_w) * fx, (top + out_h) * fy, out_w, out_h)
