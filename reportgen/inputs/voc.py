"""Pascal VOC annotation files beside the images (``cat.jpg`` + ``cat.xml``): the box (and class) of the object
each image's CAM is scored against."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputDataError
from .label_space import LabelSpace
from .listing import ListedImage, parse_number


def _objects(xml_path: Path, space: LabelSpace) -> list[tuple]:
    """(area, name, class of the label space or None, box) per object of a VOC file."""
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
            values.append(parse_number(text.strip(), where, field))
        x0, y0, x1, y1 = values
        if not (x0 < x1 and y0 < y1):
            raise InputDataError(f"{where} ({object_name}): box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted.")
        try:
            class_index = space.resolve(object_name) if object_name else None
        except ValueError:
            class_index = None
        objects.append(((x1 - x0) * (y1 - y0), object_name, class_index, (x0, y0, x1, y1)))
    return objects


def voc_listing(root: Path, files: list[Path], space: LabelSpace,
                folder_class_of: Callable[[Path], Optional[int]] = lambda path: None,
                in_subfolder: Callable[[Path], bool] = lambda path: False) -> list[ListedImage]:
    """One entry per file of ``files`` (inside ``root``), with its VOC file's box when there is one.

    The class is the image's class folder when it has one; otherwise of several objects the target is the
    largest whose name is a class of ``space``, the run's label space (for ImageNet an index, WordNet id or exact
    name), else the largest, whose CAM then explains the model's top-1 class. With a class folder the box is the largest object of that class
    (else the largest)."""
    listed = []
    for path in files:
        name = path.relative_to(root).as_posix()
        folder_class = folder_class_of(path)
        nested = in_subfolder(path)
        xml_path = path.with_suffix(".xml")
        objects = _objects(xml_path, space) if xml_path.is_file() else []
        if not objects:
            where = str(xml_path) if xml_path.is_file() else str(path)
            listed.append(ListedImage(file=name, path=path, class_index=folder_class, box=None, size_class=None,
                                      background=None, source="", licence="", notes="", where=where, box_source="",
                                      in_subfolder=nested))
            continue
        if folder_class is not None:
            same = [o for o in objects if o[2] == folder_class]
            _, object_name, _, box = max(same or objects, key=lambda o: o[0])
            how = f"voc: object {object_name!r}" + ("" if same else " (largest; none of the folder's class)")
            listed.append(ListedImage(file=name, path=path, class_index=folder_class, box=box, size_class=None,
                                      background=None, source="", licence="", notes="", where=str(xml_path),
                                      box_source=how, in_subfolder=nested))
            continue
        known = [o for o in objects if o[2] is not None]
        _, object_name, class_index, box = max(known or objects, key=lambda o: o[0])
        how = (f"voc: object {object_name!r}" + (" (largest of its class)" if len(known) > 1 else "")
               if known else f"voc: largest of {len(objects)} objects ({object_name!r}, {space.not_a_class()})")
        listed.append(ListedImage(file=name, path=path, class_index=class_index, box=box, size_class=None,
                                  background=None, source="", licence="", notes="", where=str(xml_path),
                                  box_source=how, in_subfolder=nested))
    return listed
