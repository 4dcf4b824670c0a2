"""Image sets: a folder of images plus an optional ``annotations.csv`` manifest.

Torch-free: the runner resolves class names/WordNet ids through a callable it passes in.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputDataError

MANIFEST = "annotations.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
REQUIRED_COLUMNS = ("file",)
KNOWN_COLUMNS = ("file", "class", "x0", "y0", "x1", "y1", "size", "background", "source", "licence", "notes")
SIZE_CLASSES = ("small", "medium", "large")
BACKGROUNDS = ("clean", "cluttered")
# Images outside these limits are skipped (and listed in the report), not analysed.
MIN_SIDE_PX = 16
MAX_ASPECT_RATIO = 20.0
# Transparent pixels are composited onto this neutral grey, never revealed as their stored colour.
NEUTRAL_BACKGROUND = (128, 128, 128)


class ImageSkipped(ValueError):
    """One image cannot be analysed; the message says why. The run goes on without it."""


@dataclass(frozen=True)
class SkippedImage:
    file: str
    reason: str


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
    decoding: str = ""  # how the pixels were made RGB, when that needed care (alpha, 16-bit, EXIF, animation)
    size_source: str = ""  # manifest | estimated (from the box share) | "" (no box)
    background_source: str = ""  # manifest | estimated (edge density outside the box)
    box_source: str = ""  # manifest | voc: <how the box was chosen> | "" (no box)

    @property
    def box_share(self) -> Optional[float]:
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0) / float(self.width * self.height)


class LabelSource:
    """Where the images' classes came from (recorded in results.json and printed in the report)."""
    MANIFEST = "manifest"
    CLASS_FOLDERS = "class folders"
    VOC = "VOC annotation files"
    NONE = "none"


@dataclass(frozen=True)
class ImageSet:
    root: Path
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedImage, ...] = ()
    labels: str = LabelSource.NONE  # a LabelSource value
    labels_note: str = ""  # e.g. the manifest won over class folders

    @property
    def sha256(self) -> str:
        """Identity of the annotated set: pixels and every annotation."""
        return image_set_digest((r.file, r.sha256, r.class_index, r.box, r.size_class, r.background)
                                for r in self.records)

    @property
    def model_inputs_sha256(self) -> str:
        """What the models see and compute from: each file's pixels (content hash) and the class its CAM
        explains. Boxes, sizes and backgrounds only feed scoring, so editing them recomputes no backbone."""
        digest = hashlib.sha256()
        for r in self.records:
            digest.update(f"{r.file}\0{r.sha256}\0{r.class_index}\n".encode())
        return digest.hexdigest()


def image_set_digest(rows) -> str:
    """One hash over (file, content hash, class, box, size, background) of every image, in order."""
    digest = hashlib.sha256()
    for file, sha, class_index, box, size_class, background in rows:
        box = tuple(box) if box is not None else None
        digest.update(f"{file}\0{sha}\0{class_index}\0{box}\0{size_class}\0{background}\n".encode())
    return digest.hexdigest()


def hashed_sample(content_hashes, count: int, seed: int) -> tuple[int, ...]:
    """Positions of at most ``count`` images, chosen by a hash of each image's content and the seed (the same
    images whatever the file order or names), returned in set order."""
    ranked = sorted(range(len(content_hashes)),
                    key=lambda i: (hashlib.sha256(f"{seed}:{content_hashes[i]}".encode()).hexdigest(), i))
    return tuple(sorted(ranked[:count]))


def default_image_dir() -> Path:
    """The curated set: ``images/`` of the source checkout (the README installs with ``pip install -e``)."""
    return Path(__file__).resolve().parents[2] / "images"


def decode_rgb(path: Path) -> tuple[Image.Image, str]:
    """RGB pixels of an image file and a note on how they were obtained ("" when plain).

    Raises ImageSkipped for anything that should not be analysed: unreadable, truncated, a
    decompression bomb, degenerate size or aspect ratio."""
    notes = []
    try:
        if path.stat().st_size == 0:
            raise ImageSkipped("empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat that as fatal for this file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"animated ({img.n_frames} frames): first frame used")
                    img.seek(0)
                img.load()
                orientation = img.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    image = ImageOps.exif_transpose(img)
                    notes.append(f"EXIF orientation {orientation} applied")
                else:
                    image = img.copy()
    except ImageSkipped:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageSkipped(f"decompression bomb refused ({exc})") from None
    except UnidentifiedImageError:
        raise ImageSkipped("not an image Pillow can read (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageSkipped(f"unreadable or truncated image data ({exc})") from None
    width, height = image.size
    if min(width, height) < MIN_SIDE_PX:
        raise ImageSkipped(f"{width}x{height} pixels is below the {MIN_SIDE_PX}-pixel minimum side")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageSkipped(f"aspect ratio {max(width, height) / min(width, height):.0f}:1 exceeds "
                           f"{MAX_ASPECT_RATIO:.0f}:1")
    rgb, how = _to_rgb(image)
    if how:
        notes.append(how)
    return rgb, "; ".join(notes)


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    mode = image.mode
    if mode == "RGB":
        return image, ""
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
            scaled, how = values / 257.0, "16-bit values rescaled to 8 bits"  # 65535 -> 255, no clipping
        else:
            low, high = float(values.min()), float(values.max())
            scaled = (values - low) / (high - low) * 255.0 if high > low else values * 0
            how = f"{mode} values rescaled from [{low:g}, {high:g}] to 8 bits"
        grey = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
        return grey.convert("RGB"), how
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info) \
        or (mode in ("L", "RGB") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, NEUTRAL_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB"), "transparency composited on neutral grey"
    if mode == "CMYK":
        return image.convert("RGB"), "CMYK converted to RGB"
    return image.convert("RGB"), "" if mode in ("L", "P", "1") else f"{mode} converted to RGB"


def load_rgb(path: Path) -> Image.Image:
    return decode_rgb(Path(path))[0]


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


def edge_density(image: Image.Image, box=None, max_side: int = 256, edge_level: float = 0.1) -> float:
    """Share of pixels outside the box whose grey-level gradient magnitude exceeds ``edge_level`` (of the
    0..1 range), on a copy no larger than ``max_side``: the clutter measure. The curated set gives 0.00-0.03
    for clean backgrounds and 0.05-0.32 for cluttered ones."""
    grey = image.convert("L")
    scale = min(1.0, max_side / max(grey.size))
    if scale < 1.0:
        grey = grey.resize((max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.BILINEAR)
    values = np.asarray(grey, dtype=np.float64) / 255.0
    gy, gx = np.gradient(values)
    edges = np.hypot(gx, gy) > edge_level
    outside = np.ones_like(edges)
    if box is not None:
        x0, y0, x1, y1 = (v * scale for v in box)
        outside[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))] = False
    if not outside.any():
        outside[:] = True
    return float(edges[outside].mean())


def size_class_of(box_share: float, small_below: float, large_from: float) -> str:
    return "small" if box_share < small_below else "large" if box_share >= large_from else "medium"


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(root: Path) -> list[Path]:
    """Sub-folders holding images: the torchvision ImageFolder layout ``root/<class>/*.jpg``."""
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _image_files(d, True))


def _folder_class(folder: Path, root: Path, resolve_class) -> int:
    try:
        return resolve_class(folder.name)
    except ValueError as exc:
        raise InputDataError(f"class folder {folder.name!r} in {root} is not an ImageNet class ({exc}); name "
                             "class folders by index (0-999), WordNet id (n02123045) or exact ImageNet name, "
                             "or add an annotations.csv.") from None


def _voc_rows(root: Path, files: list[Path], resolve_class, folder_classes: Optional[dict] = None) -> list[tuple]:
    """Rows for ``files`` (inside ``root``) with Pascal VOC files beside them (``cat.jpg`` + ``cat.xml``).

    The class is the image's class folder when it has one; otherwise of several objects the target is the
    largest whose name is an ImageNet class (index, WordNet id or exact name), else the largest, whose CAM
    then explains the model's top-1 class. With a class folder the box is the largest object of that class
    (else the largest)."""
    import xml.etree.ElementTree as ElementTree

    folder_classes = folder_classes or {}
    rows = []
    for path in files:
        name = path.relative_to(root).as_posix()
        folder_class = folder_classes.get(path.parent)
        xml_path = path.with_suffix(".xml")
        if not xml_path.is_file():
            rows.append((name, path, folder_class, None, None, None, "", "", "", str(path), ""))
            continue
        try:
            tree = ElementTree.parse(xml_path)
        except ElementTree.ParseError as exc:
            raise InputDataError(f"{xml_path}:{exc.position[0]}: not valid XML ({exc}); fix or remove it.") from None
        objects = []
        for number, obj in enumerate(tree.getroot().iter("object"), start=1):
            where = f"{xml_path}: object {number}"
            object_name = (obj.findtext("name") or "").strip()
            box_node = obj.find("bndbox")
            if box_node is None:
                raise InputDataError(f"{where} ({object_name or 'unnamed'}): no <bndbox>; give xmin, ymin, xmax, ymax.")
            values = []
            for field in ("xmin", "ymin", "xmax", "ymax"):
                text = box_node.findtext(field)
                if text is None:
                    raise InputDataError(f"{where} ({object_name}): <bndbox> lacks <{field}>.")
                values.append(_parse_float(text.strip(), where, field))
            x0, y0, x1, y1 = values
            if not (x0 < x1 and y0 < y1):
                raise InputDataError(f"{where} ({object_name}): box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted.")
            try:
                class_index = resolve_class(object_name) if object_name else None
            except ValueError:
                class_index = None
            objects.append(((x1 - x0) * (y1 - y0), object_name, class_index, (x0, y0, x1, y1)))
        if not objects:
            rows.append((name, path, folder_class, None, None, None, "", "", "", str(xml_path), ""))
            continue
        if folder_class is not None:
            same = [o for o in objects if o[2] == folder_class]
            area, object_name, _, box = max(same or objects, key=lambda o: o[0])
            rows.append((name, path, folder_class, box, None, None, "", "", "", str(xml_path),
                         f"voc: object {object_name!r}" + ("" if same else " (largest; none of the folder's class)")))
            continue
        known = [o for o in objects if o[2] is not None]
        area, object_name, class_index, box = max(known or objects, key=lambda o: o[0])
        how = (f"voc: object {object_name!r}" + (" (largest of its class)" if len(known) > 1 else "")
               if known else f"voc: largest of {len(objects)} objects ({object_name!r}, not an ImageNet class)")
        rows.append((name, path, class_index, box, None, None, "", "", "", str(xml_path), how))
    return rows


OnImage = Callable[[int, ImageRecord, Image.Image], None]


def load_image_set(root: Path, resolve_class: Callable[[str], int], config=None,
                   only: Optional[Collection[Path]] = None, on_image: Optional[OnImage] = None) -> ImageSet:
    """Read and validate the whole set before any model loads; each image is decoded here once.

    Labels come from ``annotations.csv`` when there is one, else from class folders (``root/<class>/*.jpg``,
    the folder named by ImageNet index, WordNet id or exact name), else from Pascal VOC files beside the
    images. Manifest mistakes stop the run with one message naming file, line and field; so does a class
    folder that names no ImageNet class. An image that cannot be analysed (unreadable, truncated, a
    decompression bomb, degenerate size) is skipped with its reason; the run stops only when every image is
    skipped. ``resolve_class`` maps a class (index, WordNet id or exact name) to an ImageNet index and raises
    ValueError with a readable message. ``only`` keeps just these files (resolved paths; a shard's slice).
    ``on_image(position, record, rgb)`` receives every kept image's decoded pixels, so callers that need the
    pixels (the model-input cache, display copies) never decode the file again.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"image folder {root} does not exist; pass an existing folder with --images.")
    from .config import AnalysisConfig

    config = config or AnalysisConfig()
    manifest = root / MANIFEST
    folders = _class_folders(root)
    labels, labels_note = LabelSource.NONE, ""
    if manifest.is_file():
        rows = [row + ("manifest" if row[3] is not None else "",)
                for row in _records_from_manifest(root, manifest, resolve_class)]
        labels = LabelSource.MANIFEST
        if folders:
            labels_note = (f"{MANIFEST} gives the labels; the class folders ({len(folders)}) were not used as "
                           "labels")
    else:
        folder_classes = {folder: _folder_class(folder, root, resolve_class) for folder in folders}
        files = _image_files(root, False) + [p for folder in folders for p in _image_files(folder, True)]
        rows = _voc_rows(root, files, resolve_class, folder_classes)
        if not rows:
            raise InputDataError(f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                                 "add images or fix --images.")
        if folders:
            labels = LabelSource.CLASS_FOLDERS
            loose = sum(1 for p in files if p.parent == root)
            if loose:
                labels_note = f"{loose} images outside the class folders have no label"
        elif any(row[10] for row in rows):
            labels = LabelSource.VOC
    if only is not None:
        wanted = {Path(p).resolve() for p in only}
        rows = [row for row in rows if row[1].resolve() in wanted]
    records, skipped = [], []
    for name, path, class_index, box, size_class, background, source, licence, notes, where, box_source in rows:
        try:
            image, decoding = decode_rgb(path)
        except ImageSkipped as exc:
            skipped.append(SkippedImage(name, str(exc)))
            continue
        width, height = image.size
        if box is not None and not (box[2] <= width and box[3] <= height):
            raise InputDataError(f"{where}: box ({box[0]:g},{box[1]:g},{box[2]:g},{box[3]:g}) is outside the "
                                 f"{width}x{height} image {name!r}; use pixel coordinates x1<=width, y1<=height.")
        size_source = "manifest" if size_class else ""
        if size_class is None and box is not None:
            share = (box[2] - box[0]) * (box[3] - box[1]) / float(width * height)
            size_class, size_source = size_class_of(share, config.size_small_below, config.size_large_from), "estimated"
        background_source = "manifest" if background else "estimated"
        if background is None:
            density = edge_density(image, box)
            background = "cluttered" if density >= config.clutter_edge_density else "clean"
        record = ImageRecord(name, path, width, height, _file_sha256(path), class_index, box, size_class,
                             background, source, licence, notes, decoding, size_source, background_source,
                             box_source)
        if on_image is not None:
            on_image(len(records), record, image)
        records.append(record)
    if not records:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in skipped[:3])
        raise InputDataError(f"every image in {root} was skipped ({reasons}{'; ...' if len(skipped) > 3 else ''}); "
                             "add readable images.")
    return ImageSet(root, tuple(records), tuple(skipped), labels, labels_note)


def _records_from_manifest(root: Path, manifest: Path, resolve_class) -> list[tuple]:
    """Validated manifest rows: (file, path, class, box, size, background, source, licence, notes, where)."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputDataError(f"{manifest}: not a UTF-8 CSV file ({exc}); save it as UTF-8 CSV.") from None
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], KNOWN_COLUMNS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputDataError(f"{manifest}:1: unknown column {unknown[0]!r}{hint}; known columns: "
                             f"{', '.join(KNOWN_COLUMNS)}.")
    if "file" not in columns:
        raise InputDataError(f"{manifest}:1: no 'file' column; the header must name it (known columns: "
                             f"{', '.join(KNOWN_COLUMNS)}).")
    records, seen = [], set()
    root_resolved = root.resolve()
    for line, row in enumerate(rows, start=2):
        where = f"{manifest}:{line}"
        if None in row:
            raise InputDataError(f"{where}: more fields than the header's {len(columns)} columns; quote values "
                                 "that contain commas.")
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
            if not (x0 < x1 and y0 < y1):
                raise InputDataError(f"{where}: box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted or outside the image; "
                                     "use pixel coordinates with x0<x1<=width, y0<y1<=height.")
            box = (x0, y0, x1, y1)

        size_class = (row.get("size") or "").strip() or None
        if size_class is not None and size_class not in SIZE_CLASSES:
            raise InputDataError(f"{where}: field 'size' must be one of {', '.join(SIZE_CLASSES)}, got {size_class!r}.")
        background = (row.get("background") or "").strip() or None
        if background is not None and background not in BACKGROUNDS:
            raise InputDataError(f"{where}: field 'background' must be one of {', '.join(BACKGROUNDS)}, got {background!r}.")
        records.append((name, path, class_index, box, size_class, background, (row.get("source") or "").strip(),
                        (row.get("licence") or "").strip(), (row.get("notes") or "").strip(), where))
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
