"""``annotations.csv``: the curated set's manifest (file, class, box, size, background, source, licence, notes).
Every mistake stops the run with one message naming the file, the line and the field."""
from __future__ import annotations

import csv
import difflib
from pathlib import Path

from ..errors import InputDataError
from .listing import ListedImage, parse_number

MANIFEST = "annotations.csv"
KNOWN_COLUMNS = ("file", "class", "x0", "y0", "x1", "y1", "size", "background", "source", "licence", "notes")
# The one definition of the annotation classes (manifest, estimates, scoring and the report read these).
SIZES = ("small", "medium", "large")
BACKGROUNDS = ("clean", "cluttered")


def manifest_rows(root: Path, manifest: Path, resolve_class) -> list[ListedImage]:
    """The manifest's rows, validated (every file inside ``root`` and present, boxes in order, known classes)."""
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
    listed, seen = [], set()
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
            x0, y0, x1, y1 = (parse_number(v, where, k) for v, k in zip(raw_box, ("x0", "y0", "x1", "y1")))
            if not (x0 < x1 and y0 < y1):
                raise InputDataError(f"{where}: box ({x0:g},{y0:g},{x1:g},{y1:g}) is inverted or outside the image; "
                                     "use pixel coordinates with x0<x1<=width, y0<y1<=height.")
            box = (x0, y0, x1, y1)

        size_class = (row.get("size") or "").strip() or None
        if size_class is not None and size_class not in SIZES:
            raise InputDataError(f"{where}: field 'size' must be one of {', '.join(SIZES)}, got {size_class!r}.")
        background = (row.get("background") or "").strip() or None
        if background is not None and background not in BACKGROUNDS:
            raise InputDataError(f"{where}: field 'background' must be one of {', '.join(BACKGROUNDS)}, got {background!r}.")
        listed.append(ListedImage(file=name, path=path, class_index=class_index, box=box, size_class=size_class,
                                  background=background, source=(row.get("source") or "").strip(),
                                  licence=(row.get("licence") or "").strip(), notes=(row.get("notes") or "").strip(),
                                  where=where, box_source="manifest" if box is not None else ""))
    return listed
