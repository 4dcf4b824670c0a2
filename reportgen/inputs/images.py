"""Image sets: a folder of images and the annotations that come with it (an ``annotations.csv`` manifest, class
folders, or Pascal VOC files), validated and decoded once before any model loads.

Torch-free: the runner resolves class names and WordNet ids through a callable it passes in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Collection, Optional

from PIL import Image

from ..errors import InputDataError
from . import decoding
from .class_folders import class_folder_of, class_folders, folder_class
from .clutter import edge_density, size_class_of
from .label_space import LabelSpace
from .listing import IMAGE_SUFFIXES, ListedImage, image_files
from .manifest import MANIFEST, manifest_rows
from .voc import voc_listing


@dataclass(frozen=True)
class SkippedImage:
    """A file of the folder the set leaves out, and why (results.json keeps these records as they are)."""
    file: str
    reason: str


@dataclass(frozen=True, kw_only=True)
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
    in_subfolder: bool = False  # below its class folder rather than directly in it

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


@dataclass(frozen=True, kw_only=True)
class ImageSet:
    """A validated image set, or a slice of one: the driver of a sharded run validates the whole set once and
    hands each shard its records, annotations included, so no shard re-derives them."""
    root: Path
    records: tuple[ImageRecord, ...]
    skipped: tuple[SkippedImage, ...] = ()
    labels: str = LabelSource.NONE  # a LabelSource value
    labels_note: str = ""  # e.g. the manifest won over class folders
    # A slice keeps the whole set's sampling: ((seed, count, cutoff key), ...), "" when the sample is every image.
    sample_cutoffs: tuple = ()
    # Content hashes the hashed samples leave out: the images a probe's explaining head is fit on. The corruption
    # and faithfulness checks score through that head, and on an image it saw they measure memory, not robustness
    # (analysis.probe.evaluation_set sets it, on the whole set, before any slicing).
    unsampled: frozenset = frozenset()

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

    @property
    def from_subfolders(self) -> int:
        """Images found below their class folder (labelled with the class folder's class)."""
        return sum(1 for r in self.records if r.in_subfolder)

    def slices(self, size: int, seed: int = 0, sample_counts: Collection[int] = ()) -> list["ImageSet"]:
        """Consecutive slices of at most ``size`` records; each keeps the set's root, labels and skipped list, and
        the whole set's hashed samples of ``sample_counts`` images (so a shard samples exactly the images one
        process would, and shards merge exactly)."""
        keys = sorted(sample_key(seed, r.sha256) for r in self.records if r.sha256 not in self.unsampled)
        cutoffs = tuple((seed, count, keys[count - 1] if count < len(keys) else "") for count in sorted(set(sample_counts)))
        return [replace(self, records=self.records[start:start + size], sample_cutoffs=cutoffs)
                for start in range(0, len(self.records), size)]

    def sample_positions(self, count: int, seed: int) -> tuple[int, ...]:
        """Positions (in this set or slice) of the images in the hashed sample of at most ``count`` images of the
        whole set (see :func:`hashed_sample`), none of them ``unsampled``."""
        eligible = [i for i, r in enumerate(self.records) if r.sha256 not in self.unsampled]
        for cut_seed, cut_count, cutoff in self.sample_cutoffs:
            if (cut_seed, cut_count) == (seed, count):
                return tuple(i for i in eligible
                             if not cutoff or sample_key(seed, self.records[i].sha256) <= cutoff)
        return tuple(eligible[j] for j in hashed_sample([self.records[i].sha256 for i in eligible], count, seed))


def image_set_digest(rows) -> str:
    """One hash over (file, content hash, class, box, size, background) of every image, in order."""
    digest = hashlib.sha256()
    for file, sha, class_index, box, size_class, background in rows:
        box = tuple(box) if box is not None else None
        digest.update(f"{file}\0{sha}\0{class_index}\0{box}\0{size_class}\0{background}\n".encode())
    return digest.hexdigest()


def sample_key(seed: int, content_hash: str) -> str:
    return hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()


def hashed_sample(content_hashes, count: int, seed: int) -> tuple[int, ...]:
    """Positions of at most ``count`` images, chosen by a hash of each image's content and the seed (the same
    images whatever the file order or names), returned in set order. Samples of different sizes are nested: the
    sanity check's 32 images are among the corruption check's 64."""
    ranked = sorted(range(len(content_hashes)), key=lambda i: (sample_key(seed, content_hashes[i]), i))
    return tuple(sorted(ranked[:count]))


def copies_in(image_set: ImageSet, other: ImageSet) -> tuple[str, ...]:
    """Files of ``image_set`` byte-identical (the same sha256) to an image of ``other``, in set order."""
    hashes = {r.sha256 for r in other.records}
    return tuple(r.file for r in image_set.records if r.sha256 in hashes)


def default_image_dir() -> Path:
    """The curated set: ``images/`` of the source checkout (the README installs with ``pip install -e``)."""
    return Path(__file__).resolve().parents[2] / "images"


OnImage = Callable[[int, ImageRecord, Image.Image], None]


def _listing(root: Path, space: LabelSpace) -> tuple[list[ListedImage], str, str]:
    """(every image with its annotations, label source, note on the labels) before any pixel is read."""
    manifest = root / MANIFEST
    folders = class_folders(root)
    if manifest.is_file():
        note = (f"{MANIFEST} gives the labels; the class folders ({len(folders)}) were not used as labels"
                if folders else "")
        return manifest_rows(root, manifest, space.resolve), LabelSource.MANIFEST, note
    classes = {folder: folder_class(folder, root, space) for folder in folders}
    files = image_files(root, False) + [p for folder in folders for p in image_files(folder, True)]
    listed = voc_listing(root, files, space, lambda path: classes.get(class_folder_of(path, root)),
                         lambda path: class_folder_of(path, root) != root and path.parent != class_folder_of(path, root))
    if not listed:
        raise InputDataError(f"no images found in {root} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                             "add images or fix --images.")
    if folders:
        loose = sum(1 for p in files if p.parent == root)
        return listed, LabelSource.CLASS_FOLDERS, f"{loose} images outside the class folders have no label" if loose else ""
    return listed, LabelSource.VOC if any(entry.box_source for entry in listed) else LabelSource.NONE, ""


def load_image_set(root: Path, space: LabelSpace, config=None,
                   only: Optional[Collection[Path]] = None, on_image: Optional[OnImage] = None,
                   on_listed: Callable[[int], None] = lambda count: None) -> ImageSet:
    """Read and validate the whole set before any model loads; each image is decoded here once.

    Labels come from ``annotations.csv`` when there is one, else from class folders (``root/<class>/**``, the
    folder named by a class of ``space``, the run's label space: for ImageNet an index, WordNet id or exact name;
    images in sub-folders take the class folder's class), else from Pascal VOC files beside the images. Manifest
    mistakes stop the run with one message naming file, line and field; so does a class folder that names no class
    of the space. An image that cannot be analysed (unreadable, truncated, a decompression bomb, degenerate size) is
    skipped with its reason; the run stops only when every image is skipped. ``only`` keeps just these files
    (resolved paths). ``on_listed(count)`` hears how many images will be decoded before the first is; ``on_image(position,
    record, rgb)`` receives every kept image's decoded pixels, so callers that need the pixels (the model-input
    cache, display copies) never decode the file again.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"image folder {root} does not exist; pass an existing folder with --images.")
    from .config import AnalysisConfig

    config = config or AnalysisConfig()
    listed, labels, labels_note = _listing(root, space)
    if only is not None:
        wanted = {Path(p).resolve() for p in only}
        listed = [entry for entry in listed if entry.path.resolve() in wanted]
    on_listed(len(listed))
    records, skipped = [], []
    for entry in listed:
        try:
            image, how = decoding.decode_rgb(entry.path)
        except decoding.ImageSkipped as exc:
            skipped.append(SkippedImage(entry.file, str(exc)))
            continue
        record = _record(entry, image, how, config)
        if on_image is not None:
            on_image(len(records), record, image)
        records.append(record)
    if not records:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in skipped[:3])
        raise InputDataError(f"every image in {root} was skipped ({reasons}{'; ...' if len(skipped) > 3 else ''}); "
                             "add readable images.")
    return ImageSet(root=root, records=tuple(records), skipped=tuple(skipped), labels=labels, labels_note=labels_note)


def _record(entry: ListedImage, image: Image.Image, how: str, config) -> ImageRecord:
    """The image's record: its annotations, with size and background estimated where none were given."""
    width, height = image.size
    box, size_class, background = entry.box, entry.size_class, entry.background
    if box is not None and not (box[2] <= width and box[3] <= height):
        raise InputDataError(f"{entry.where}: box ({box[0]:g},{box[1]:g},{box[2]:g},{box[3]:g}) is outside the "
                             f"{width}x{height} image {entry.file!r}; use pixel coordinates x1<=width, y1<=height.")
    size_source = "manifest" if size_class else ""
    if size_class is None and box is not None:
        share = (box[2] - box[0]) * (box[3] - box[1]) / float(width * height)
        size_class, size_source = size_class_of(share, config.size_small_below, config.size_large_from), "estimated"
    background_source = "manifest" if background else "estimated"
    if background is None:
        density = edge_density(image, box)
        background = "cluttered" if density >= config.clutter_edge_density else "clean"
    return ImageRecord(file=entry.file, path=entry.path, width=width, height=height,
                       sha256=decoding.file_sha256(entry.path), class_index=entry.class_index, box=box,
                       size_class=size_class, background=background, source=entry.source, licence=entry.licence,
                       notes=entry.notes, decoding=how, size_source=size_source, background_source=background_source,
                       box_source=entry.box_source, in_subfolder=entry.in_subfolder)


def decode_records(image_set: ImageSet, on_image: OnImage,
                   on_listed: Callable[[int], None] = lambda count: None) -> ImageSet:
    """Decode the images of a set validated elsewhere (a shard's slice): the records keep the annotations the
    driver gave them; each file must still decode and hold the pixels the driver hashed."""
    on_listed(len(image_set.records))
    for position, record in enumerate(image_set.records):
        try:
            image, _ = decoding.decode_rgb(record.path)
        except decoding.ImageSkipped as exc:
            raise InputDataError(f"{record.path}: {exc}, although it was readable when the set was validated; "
                                 "keep the images unchanged while a run reads them.") from None
        if decoding.file_sha256(record.path) != record.sha256:
            raise InputDataError(f"{record.path} changed after the image set was validated; keep the images "
                                 "unchanged while a run reads them, then run again.")
        on_image(position, record, image)
    return image_set
