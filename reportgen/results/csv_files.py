"""The one writer of every CSV file reportgen produces.

Cells come from untrusted input (file names, class folder names, manifest text). A spreadsheet runs a cell that
begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as a formula (OWASP "CSV Injection"), so such
text cells are prefixed with a single quote; numbers are written as numbers (``-0.25`` stays ``-0.25``).
"""
from __future__ import annotations

import csv
import io
import math
import numbers
from pathlib import Path
from typing import Iterable, Sequence

from .store import atomic_write_bytes

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value) -> str:
    """One cell as text: numbers as numbers (floats round-trip exactly), None and non-finite floats empty,
    text that a spreadsheet would run as a formula prefixed with a single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value)) if math.isfinite(value) else ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buffer = io.StringIO()
    # RFC 4180 line ends: the writer quotes a cell holding any character of its line terminator, so a name with
    # a carriage return or a line feed stays inside its cell instead of starting a row of its own.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([spreadsheet_cell(name) for name in header])
    for row in rows:
        writer.writerow([spreadsheet_cell(value) for value in row])
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """``path`` written atomically (temp name, then rename), UTF-8."""
    atomic_write_bytes(Path(path), csv_text(header, rows).encode("utf-8"))


# "Your data": every flagged image with its reason, the file a user takes back to the labelling tool (one row per
# image and reason; the report lists, nothing of the user's is changed).
FLAGGED_CSV = "flagged_images.csv"
FLAGGED_HEADER = ("image", "reason", "other_image", "similarity", "given_label", "suggested_label", "label_quality",
                  "rank")


def write_flagged_csv(path: Path, data) -> None:
    """``data``: metrics.json's ``DataCheck``; its flags in its order (by reason, label issues likeliest first)."""
    write_csv(path, FLAGGED_HEADER, ((f.image, f.reason.value, f.other, f.similarity, f.given, f.suggested, f.score,
                                      f.rank or None) for f in data.flags))
