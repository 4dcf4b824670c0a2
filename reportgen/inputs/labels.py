"""The label space of a run: ImageNet-1k (the stock heads' classes) or the user's own classes.

A run has one label space, chosen before any image is decoded, in this order:

1. ``--labels FILE`` / ``[images] labels``: a text file, one name per line (line *i* = logit *i*, timm's class-map
   convention), or JSON: a list of names, or ``{"0": "ants", ...}`` (Hugging Face's ``id2label``);
2. names stored with a checkpoint: ``id2label`` of a Hugging Face-style ``config.json`` beside it, or the
   ``label_names`` entry of the ``.safetensors`` metadata (a JSON list; :func:`label_names_metadata` writes it);
3. the names the annotations use (class folders, else ``annotations.csv``), read as ``--label-reading`` /
   ``[images] label_reading`` says (:data:`LABEL_READINGS`): ``own``: the sorted names are the classes, in
   torchvision ``ImageFolder`` order (``sorted()``, case-sensitive: folder ``10`` before ``2``); ``imagenet``: every
   name is an ImageNet class; ``auto`` (the default): when most name an ImageNet class the run keeps ImageNet's
   meaning, and a name that does not is reported as a typo, otherwise the names are the user's classes. A WordNet id
   or an exact ImageNet name names an ImageNet class; a number does only when the numbers are not a count of the
   user's own (:func:`read_numbers`): folders ``0`` … ``9`` are ten classes of the user's, folders ``1``, ``151``,
   ``207``, ``281``, ``949`` ImageNet indices.

The space itself (one record, saved as it is in results.json) is :class:`reportgen.inputs.label_space.LabelSpace`.
Torch-free: the ImageNet names come in through a resolver the runner passes (``analysis.classes.ClassNames``).
"""
from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from ..errors import InputDataError, UsageError
from .class_folders import class_folders
# The space and its parts, re-exported: callers that choose or read a label space import it from here.
from .label_space import (IMAGENET_CLASSES, LABEL_READINGS, ImageNetResolver, LabelReading,  # noqa: F401
                          LabelSpace, LabelSpaceKind, NamesSource, NumberedNames, NumbersReason, imagenet_space,
                          listed_names, own_space)
from .manifest import MANIFEST

WORDNET_LOOKING = re.compile(r"n\d{8}")  # a WordNet id, known or mistyped
NUMBER = re.compile(r"[0-9]+")  # a class named by a whole number: an ImageNet index, or the user's own numbering
# A count of the user's own runs from 0 or 1 to the number of classes; this share of the numbers up to the largest
# may be missing (one always may: a class left out of an export) before the numbers stop looking like a count.
COUNT_MAY_MISS = 0.1
LABEL_NAMES_KEY = "label_names"  # safetensors metadata: a JSON list of the head's class names, in output order
MAX_SAFETENSORS_HEADER = 100 * 2 ** 20

# The note the report prints when the classes are the folders' names: the classic cause of a permuted head.
FOLDER_ORDER_NOTE = ("class indices follow torchvision's ImageFolder order (sorted(), case-sensitive); timm's own "
                     "folder reader sorts case-insensitively in natural order, so a head trained with it may "
                     "number the classes differently: pass --labels FILE with the training order if so")


# --- names given by the user ------------------------------------------------------------------------------------

def check_names(names, where: str) -> tuple[str, ...]:
    """One message for the first problem of a list of class names: blank, duplicated, not text, too few."""
    names = list(names)
    if len(names) < 2:
        raise InputDataError(f"{where}: {len(names)} class name(s); a label list needs at least two classes.")
    for position, name in enumerate(names):
        if not isinstance(name, str):
            raise InputDataError(f"{where}: class {position} is {name!r}, not a name; give text names.")
        if not name.strip():
            raise InputDataError(f"{where}: class {position} has a blank name; give every class a name (line "
                                 f"{position + 1} = logit {position}).")
    stripped = [name.strip() for name in names]
    duplicates = [name for name, count in Counter(stripped).items() if count > 1]
    if duplicates:
        at = [i for i, name in enumerate(stripped) if name == duplicates[0]]
        raise InputDataError(f"{where}: class name {duplicates[0]!r} appears {len(at)} times (classes "
                             f"{', '.join(map(str, at))}); every class needs its own name.")
    return tuple(stripped)


def read_labels_file(path: Path) -> LabelSpace:
    """``--labels FILE``: text (one name per line) or JSON (a list, or id2label)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputDataError(f"labels file {path} not found; pass an existing file with --labels.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"labels file {path} cannot be read ({exc}); save it as UTF-8 text.") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"labels file {path}: not valid JSON ({exc}); give a list of names or "
                                 '{"0": "name", ...}.') from None
        names = _names_of_json(value, str(path))
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():  # a trailing newline is not a blank class
            lines.pop()
        names = lines
    return own_space(check_names(names, f"labels file {path}"), NamesSource.LABELS_FILE, path.name)


def _names_of_json(value, where: str) -> list:
    if isinstance(value, dict) and "id2label" in value and isinstance(value["id2label"], dict):
        value = value["id2label"]
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        try:
            indexed = {int(key): name for key, name in value.items()}
        except (TypeError, ValueError):
            raise InputDataError(f"{where}: id2label keys must be class indices (\"0\", \"1\", ...).") from None
        if sorted(indexed) != list(range(len(indexed))):
            missing = sorted(set(range(max(indexed) + 1)) - set(indexed)) if indexed else [0]
            raise InputDataError(f"{where}: id2label lacks class {missing[0]}; number the classes 0..N-1.")
        return [indexed[i] for i in range(len(indexed))]
    raise InputDataError(f"{where}: expected a list of names or an id2label object, got {type(value).__name__}.")


# --- names stored with a checkpoint -----------------------------------------------------------------------------

def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor shapes and ``__metadata__``), read without loading tensors."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise InputDataError(f"checkpoint {path} is too short to be a .safetensors file; re-export it.")
        (length,) = struct.unpack("<Q", raw)
        if length > MAX_SAFETENSORS_HEADER:
            raise InputDataError(f"checkpoint {path}: header of {length} bytes; not a .safetensors file.")
        try:
            return json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputDataError(f"checkpoint {path}: unreadable .safetensors header; re-export it.") from None


def label_names_metadata(names) -> dict:
    """The ``.safetensors`` metadata entry that stores a head's class names (``save_file(..., metadata=...)``)."""
    return {LABEL_NAMES_KEY: json.dumps(list(names))}


def checkpoint_label_names(path: Path) -> Optional[tuple[tuple[str, ...], str]]:
    """(names, how they were found) stored with a checkpoint, or None: ``config.json`` beside it (``id2label``),
    else the ``label_names`` metadata of a .safetensors file."""
    path = Path(path)
    config = path.parent / "config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"{config}: not valid JSON ({exc}); fix it or remove it.") from None
        if isinstance(value, dict) and isinstance(value.get("id2label"), dict):
            names = _names_of_json(value["id2label"], f"{config} id2label")
            return check_names(names, f"{config} id2label"), f"{path.name}, id2label of config.json beside it"
    if path.suffix == ".safetensors":
        metadata = safetensors_header(path).get("__metadata__") or {}
        if LABEL_NAMES_KEY in metadata:
            where = f"checkpoint {path} metadata {LABEL_NAMES_KEY!r}"
            try:
                names = json.loads(metadata[LABEL_NAMES_KEY])
            except json.JSONDecodeError:
                raise InputDataError(f"{where}: not a JSON list of names; write it with "
                                     "json.dumps([...]).") from None
            if not isinstance(names, list):
                raise InputDataError(f"{where}: expected a JSON list of names.")
            return check_names(names, where), f"{path.name}, {LABEL_NAMES_KEY} in its metadata"
    return None


# --- names the annotations use ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AnnotationNames:
    """The class names an image folder's annotations use, before any is resolved."""
    names: tuple[str, ...]  # distinct, in first-seen order of the source
    source: NamesSource  # FOLDERS or ANNOTATIONS
    where: str  # "class folders of X" / "annotations.csv" / "VOC files"


def annotation_names(root: Path) -> AnnotationNames:
    """Class names used by the folder's labels: the manifest's ``class`` column, else the class folders. (The
    manifest wins over folders, as when the set is loaded.) VOC files name every object in an image, not the
    image's class, so their names never choose the label space; they accept the user's names once a label list,
    a checkpoint or the folders have."""
    root = Path(root)
    if not root.is_dir():
        return AnnotationNames((), NamesSource.ANNOTATIONS, str(root))
    manifest = root / MANIFEST
    if manifest.is_file():
        import csv

        try:
            with manifest.open(newline="", encoding="utf-8-sig") as handle:
                values = [(row.get("class") or "").strip() for row in csv.DictReader(handle)]
        except (UnicodeDecodeError, csv.Error):
            values = []  # load_image_set says what is wrong with the manifest
        return AnnotationNames(tuple(dict.fromkeys(v for v in values if v)), NamesSource.ANNOTATIONS, MANIFEST)
    folders = class_folders(root)
    if folders:
        return AnnotationNames(tuple(f.name for f in folders), NamesSource.FOLDERS, f"class folders of {root}")
    return AnnotationNames((), NamesSource.ANNOTATIONS, "VOC files")


def read_numbers(numbers) -> tuple[LabelSpaceKind, NumbersReason]:
    """How ``auto`` reads class names that are whole numbers (an exported dataset's folders usually are; torchvision's
    ImageFolder takes them as names): as the user's classes when they count from 0 or 1 (0..K-1 or 1..K, at most
    :data:`COUNT_MAY_MISS` of the numbers up to the largest missing, one always) or when one is above 999 (ImageNet's
    indices stop there); as ImageNet indices when they are no such count (``1, 151, 207, 281, 949``: a user numbers
    classes from the start, a pick of ImageNet classes scatters over 0..999), or when the count reaches 999 (all of
    ImageNet-1k, or nearly)."""
    numbers = sorted(set(numbers))
    top = numbers[-1]
    if top >= IMAGENET_CLASSES:
        return LabelSpaceKind.OWN, NumbersReason.ABOVE_IMAGENET
    base = 0 if numbers[0] == 0 else 1
    span = top - base + 1
    if span - len(numbers) > max(1, int(COUNT_MAY_MISS * span)):
        return LabelSpaceKind.IMAGENET, NumbersReason.NOT_A_COUNT
    if top == IMAGENET_CLASSES - 1:
        return LabelSpaceKind.IMAGENET, NumbersReason.WHOLE_IMAGENET
    return LabelSpaceKind.OWN, NumbersReason.COUNT


def numbered_names(used: "AnnotationNames", reading: LabelReading) -> Optional[NumberedNames]:
    """The annotations' names that are whole numbers and how ``reading`` reads them (None: no name is a number)."""
    numbers = [int(name) for name in used.names if NUMBER.fullmatch(name.strip())]
    if not numbers:
        return None
    if reading == LabelReading.AUTO:
        kind, reason = read_numbers(numbers)
    else:
        kind = LabelSpaceKind.OWN if reading == LabelReading.OWN else LabelSpaceKind.IMAGENET
        reason = NumbersReason.ASKED
    return NumberedNames(tuple(sorted(set(numbers))), used.source, kind, reason)


def _mostly_imagenet(names, resolver: ImageNetResolver, numbers: Optional[NumberedNames]) -> bool:
    """More than half of the names are ImageNet classes: the set is ImageNet's, and a name that is not is a typo the
    loader names in one line (a user's own classes rarely look like WordNet ids or exact ImageNet names). A number
    counts as ImageNet's when the numbers read as ImageNet indices (``numbers``: :func:`numbered_names`) or when they
    stand beside ImageNet's names (WordNet ids, ImageNet class names): a set that mixes the two is ImageNet's, and
    its index 5000 a typo, not the user's class."""
    def imagenet_name(name: str) -> bool:
        try:
            resolver.resolve(name)
            return True
        except ValueError:
            return bool(WORDNET_LOOKING.fullmatch(name.strip()))  # a WordNet id mistyped

    named = [imagenet_name(name) for name in names if not NUMBER.fullmatch(name.strip())]
    indices = numbers is not None and (numbers.read_as == LabelSpaceKind.IMAGENET or any(named))
    known = sum(named) + indices * sum(bool(NUMBER.fullmatch(name.strip())) for name in names)
    return known * 2 > len(names)


def folder_order_note(names) -> str:
    """The class-order note of folder names; numbered folders that sort as text otherwise than as numbers say so."""
    numbers = [name for name in names if NUMBER.fullmatch(name)]
    if sorted(numbers) == sorted(numbers, key=int):
        return FOLDER_ORDER_NOTE
    text_order = sorted(numbers)
    moved = next(position for position, name in enumerate(text_order) if name != sorted(numbers, key=int)[position])
    shown = ", ".join(text_order[:moved + 2])
    return (f"{FOLDER_ORDER_NOTE}. The numbered folders sort as text, not as numbers: {shown}, … (folder "
            f"{text_order[moved]!r} is class {sorted(names).index(text_order[moved])}), as ImageFolder numbers them")


@dataclass(frozen=True)
class HeadNames:
    """Class names stored with one candidate's checkpoint."""
    backbone: str
    names: tuple[str, ...]
    how: str


def choose_label_space(images_dir: Path, resolver: ImageNetResolver, labels_file: Optional[Path] = None,
                       head_names: tuple[HeadNames, ...] = (),
                       reading: LabelReading = LabelReading.AUTO) -> LabelSpace:
    """The run's label space (see the module's docstring for the order), checked against the folder's names;
    ``reading``: how the annotations' names are read when no label list or checkpoint names the classes."""
    reading = LabelReading(reading)
    used = annotation_names(images_dir)
    if reading == LabelReading.IMAGENET and (labels_file is not None or head_names):
        given = (f"--labels {labels_file}" if labels_file is not None
                 else f"the class names stored with {head_names[0].how}")
        raise UsageError(f"label reading 'imagenet' reads the images' class names as ImageNet-1k's, but {given} "
                         "names your own classes; leave one of them out.")
    if labels_file is not None:
        space = read_labels_file(labels_file)
    elif head_names:
        first = head_names[0]
        for other in head_names[1:]:
            if other.names != first.names:
                raise InputDataError(f"checkpoints of {first.backbone} and {other.backbone} store different class "
                                     f"names ({listed_names(first.names, 4)} against "
                                     f"{listed_names(other.names, 4)}); pass --labels FILE to say which order the "
                                     "run uses.")
        space = own_space(first.names, NamesSource.CHECKPOINT, first.how)
    else:
        numbered = numbered_names(used, reading)
        own = reading == LabelReading.OWN or (reading == LabelReading.AUTO and used.names
                                               and not _mostly_imagenet(used.names, resolver, numbered))
        kind = LabelSpaceKind.OWN if own and used.names else LabelSpaceKind.IMAGENET
        if numbered is not None and numbered.read_as != kind:  # numbers beside names that decided otherwise
            numbered = replace(numbered, read_as=kind, reason=NumbersReason.OTHER_NAMES)
        if kind == LabelSpaceKind.IMAGENET:
            return imagenet_space(resolver, numbered)
        if used.source == NamesSource.FOLDERS:
            return own_space(sorted(used.names), NamesSource.FOLDERS, "", folder_order_note(used.names), numbered)
        return own_space(sorted(used.names), NamesSource.ANNOTATIONS, used.where,
                         f"class indices follow the sorted names of {used.where}", numbered)
    _check_agreement(space, used)
    return space


def _check_agreement(space: LabelSpace, used: AnnotationNames) -> None:
    """Every class the annotations use must be in the list (a listed class without images is allowed)."""
    unknown = []
    for name in used.names:
        try:
            space.resolve(name)
        except ValueError:
            unknown.append(name)
    if unknown:
        without = [n for n in space.names if n not in used.names]
        raise InputDataError(
            f"{used.where} and {space.describe_source()} disagree: not in the labels: {listed_names(unknown, 6)}; "
            f"in the labels without images: {listed_names(without, 6) if without else 'none'}; rename the folders "
            "or fix the label list.")
