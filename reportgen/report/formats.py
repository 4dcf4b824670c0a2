"""The report formats a run can write, and parsing ``--format`` (light: the command line checks it before the heavy
imports)."""
from __future__ import annotations

from ..errors import UsageError

REPORT_FORMATS = ("html", "pdf", "md", "json")


def parse_formats(text: str) -> tuple[str, ...]:
    """``"html,pdf"`` -> ("html", "pdf"); unknown or empty lists are a usage error."""
    chosen = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [f for f in chosen if f not in REPORT_FORMATS]
    if unknown or not chosen:
        raise UsageError(f"--format {text!r}: choose from {', '.join(REPORT_FORMATS)}, comma-separated (e.g. html,pdf).")
    return chosen
