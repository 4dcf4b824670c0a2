"""The label space of a run: the classes its images are labelled in and its heads are scored on, ImageNet-1k's or
the user's own. One record from the first class resolved to results.json: the run chooses it
(:func:`reportgen.inputs.labels.choose_label_space`), the loaders resolve class names through it, the analyses name
classes with it, and ``RunIndex.label_space`` stores it as it is (its ImageNet names provider is not saved).

Torch-free: ImageNet's names come from timm (in :mod:`reportgen.analysis.classes`), handed in as ``imagenet``; a
space read back from results.json has none, and the render side never needs one (the results hold every name).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from ..strenum import StrEnum

IMAGENET_CLASSES = 1000
NOT_SAVED = {"saved": False}  # field metadata: the results codec leaves the field out of the JSON


class LabelSpaceKind(StrEnum):
    IMAGENET = "imagenet"
    OWN = "own"


class NamesSource(StrEnum):
    IMAGENET = "ImageNet-1k"
    LABELS_FILE = "labels file"
    CHECKPOINT = "checkpoint"
    FOLDERS = "class folders"
    ANNOTATIONS = "annotations"


class LabelReading(StrEnum):
    """How the class names the annotations use are read (``--label-reading`` / ``[images] label_reading``)."""
    AUTO = "auto"
    OWN = "own"
    IMAGENET = "imagenet"


# The one table of readings: the option's choices and help, the battery file's check and the docs read it.
LABEL_READINGS = {
    LabelReading.AUTO: "numbers that count from 0 or 1 (0..K-1 or 1..K, at most one in ten missing) or pass 999 are "
                       "your classes, other numbers ImageNet indices; WordNet ids and exact ImageNet names are "
                       "ImageNet's, other names yours",
    LabelReading.OWN: "every name is one of your classes (sorted() order), whatever it looks like",
    LabelReading.IMAGENET: "every name is an ImageNet-1k class: numbers are indices 0-999",
}


class NumbersReason(StrEnum):
    """Why numbered class names were read as they were: the rule's case, or the user's choice."""
    COUNT = "a count from 0 or 1"  # your classes: 0..K-1 or 1..K, at most one in ten missing
    ABOVE_IMAGENET = "above 999"  # your classes: ImageNet's indices stop at 999
    NOT_A_COUNT = "not a count from 0 or 1"  # ImageNet indices: e.g. 1, 151, 207, 281, 949
    WHOLE_IMAGENET = "reach 999"  # ImageNet indices: a count that reaches ImageNet's last index is ImageNet-1k's
    ASKED = "asked"  # --label-reading / [images] label_reading said so
    OTHER_NAMES = "the other names"  # the set's other names decided: most name ImageNet classes, or most do not


@dataclass(frozen=True)
class NumberedNames:
    """The class names of the annotations that are whole numbers, and how the run read them (page 1 says it and
    how to get the other reading)."""
    numbers: tuple[int, ...]  # distinct, ascending
    source: "NamesSource"  # FOLDERS or ANNOTATIONS
    read_as: "LabelSpaceKind"  # IMAGENET: ImageNet indices; OWN: your classes
    reason: NumbersReason

    def __post_init__(self):
        object.__setattr__(self, "numbers", tuple(int(n) for n in self.numbers))
        object.__setattr__(self, "source", NamesSource(self.source))
        object.__setattr__(self, "read_as", LabelSpaceKind(self.read_as))
        object.__setattr__(self, "reason", NumbersReason(self.reason))


class ImageNetResolver(Protocol):
    def resolve(self, value: str) -> int: ...

    def name(self, index: int) -> str: ...


@dataclass(frozen=True, kw_only=True)
class LabelSpace:
    """The classes a run's images are labelled in and its heads are scored on. The fields, in this order, are the
    ``label_space`` record of results.json and metrics.json."""
    kind: LabelSpaceKind
    source: NamesSource
    source_detail: str = ""  # the file or checkpoint the names came from
    names: tuple[str, ...] = ()  # the user's names in logit order (empty for ImageNet: its names come from timm)
    note: str = ""
    imagenet: Optional[ImageNetResolver] = field(default=None, compare=False, repr=False, metadata=NOT_SAVED)
    numbered: Optional[NumberedNames] = None  # the numbered names of the annotations and how they were read

    def __post_init__(self):
        object.__setattr__(self, "kind", LabelSpaceKind(self.kind))
        object.__setattr__(self, "source", NamesSource(self.source))
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def is_imagenet(self) -> bool:
        return self.kind == LabelSpaceKind.IMAGENET

    @property
    def size(self) -> int:
        return IMAGENET_CLASSES if self.is_imagenet else len(self.names)

    def resolve(self, value: str) -> int:
        """A class given by name (or, for the user's classes, by index 0..C-1) -> its index; ValueError with a
        readable message otherwise."""
        if self.is_imagenet:
            return self._imagenet_names().resolve(value)
        text = value.strip()
        if text in self.names:
            return self.names.index(text)
        if text.isdigit() and int(text) < len(self.names):
            return int(text)
        raise ValueError(f"{text!r} is not one of the {len(self.names)} classes of {self.describe_source()} "
                         f"({listed_names(self.names)})")

    def name(self, index: int) -> str:
        return self._imagenet_names().name(index) if self.is_imagenet else self.names[index]

    def describe_source(self) -> str:
        return f"{self.source.value} {self.source_detail}".strip()

    def described(self, limit: int = 6) -> str:
        """'your 2 classes (ants, bees)', the first ``limit`` names shown; 'ImageNet-1k' for ImageNet's."""
        if self.is_imagenet:
            return "ImageNet-1k"
        return f"your {len(self.names)} classes ({listed_names(self.names, limit)})"

    def not_a_class(self) -> str:
        """What a name that is none of the space's classes is: 'not an ImageNet class', or 'not one of your 3
        classes (cats, coffee, rockets)'."""
        return "not an ImageNet class" if self.is_imagenet else f"not one of {self.described()}"

    def _imagenet_names(self) -> ImageNetResolver:
        if self.imagenet is None:  # not a ValueError: callers read that as "not a class" and go on
            raise RuntimeError("this ImageNet-1k label space carries no class names (one read back from the results "
                               "has none); build it with analysis.classes.imagenet_label_space().")
        return self.imagenet


def listed_names(names, limit: int = 8) -> str:
    """'ants, bees, … (3 more)': the first ``limit`` names, then how many are left out."""
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


def imagenet_space(resolver: Optional[ImageNetResolver] = None,
                   numbered: Optional[NumberedNames] = None) -> LabelSpace:
    """ImageNet-1k's classes, resolved and named by ``resolver`` (``analysis.classes.ClassNames``); without one,
    the record only (as results.json holds it)."""
    return LabelSpace(kind=LabelSpaceKind.IMAGENET, source=NamesSource.IMAGENET, imagenet=resolver,
                      numbered=numbered)


def own_space(names, source: NamesSource, detail: str = "", note: str = "",
              numbered: Optional[NumberedNames] = None) -> LabelSpace:
    return LabelSpace(kind=LabelSpaceKind.OWN, source=source, source_detail=detail, names=tuple(names), note=note,
                      numbered=numbered)
