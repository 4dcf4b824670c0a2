"""``enum.StrEnum`` (Python 3.11) with a fallback for 3.10: members are strings, so they compare equal to
their values, serialise to JSON as their values and print as their values."""
from __future__ import annotations

try:
    from enum import StrEnum
except ImportError:  # pragma: no cover - Python 3.10
    from enum import Enum

    class StrEnum(str, Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)

__all__ = ["StrEnum"]
