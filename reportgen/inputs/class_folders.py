"""Class folders: torchvision's ``ImageFolder`` layout, ``root/<class>/**/*.jpg``. Every image anywhere below a
class folder takes that folder's class (as ``ImageFolder`` does); the folder names a class of the run's label space
(an ImageNet index, WordNet id or exact name, or one of the user's classes), and a folder that names none stops the
run with one message."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputDataError
from .label_space import LabelSpace
from .listing import image_files


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` holding images at any depth."""
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and image_files(d, True))


def folder_class(folder: Path, root: Path, space: LabelSpace) -> int:
    """The class of the run's label space that ``folder`` names; one message when it names none."""
    try:
        return space.resolve(folder.name)
    except ValueError as exc:
        if space.is_imagenet:
            raise InputDataError(f"class folder {folder.name!r} in {root} is not an ImageNet class ({exc}), unlike "
                                 "most folders beside it; rename it (index 0-999, WordNet id n02123045 or exact "
                                 "ImageNet name), or pass --label-reading own or --labels FILE to use your own classes.") from None
        raise InputDataError(f"class folder {folder.name!r} in {root} names no class of this run ({exc}); rename "
                             "the folder, or fix the label list (--labels).") from None


def class_folder_of(path: Path, root: Path) -> Path:
    """The top-level folder of ``root`` that holds ``path`` (``root`` itself for a loose image)."""
    relative = path.relative_to(root)
    return root / relative.parts[0] if len(relative.parts) > 1 else root
