"""How numbers read in every format (HTML, PDF, Markdown, and the sentences the report context builds): one place,
so a number is written the same way in a table and in the sentence that cites it."""
from __future__ import annotations

import math


def num(value, digits: int = 3) -> str:
    """Three significant digits; integers with thousands separators; "n/a" for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def pct(value) -> str:
    """A share as a percentage with one decimal."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def whole_pct(value) -> str:
    """A probability as a whole percentage ("93 %"), "<1 %" and ">99 %" at the ends."""
    if value is None:
        return "n/a"
    if 0 < value < 0.005:
        return "<1 %"
    if 0.995 <= value < 1:
        return ">99 %"
    return f"{100 * value:.0f} %"


def ci(row) -> str:
    """An Aggregate or Interval as "mean [low, high] (n=..)"."""
    if row is None or row.mean is None:
        return "n/a"
    if row.ci_low is None:
        return f"{num(row.mean)} (n={row.n})"
    return f"{num(row.mean)} [{num(row.ci_low)}, {num(row.ci_high)}] (n={row.n})"


def bracket(low, high, scale: float = 1.0) -> str:
    """" [low, high]" of an interval (scaled), "" when it has none."""
    if low is None or high is None:
        return ""
    return f" [{num(low * scale)}, {num(high * scale)}]"


def listing(items) -> str:
    """"a", "a and b", "a, b and c"."""
    items = [str(item) for item in items]
    if len(items) < 2:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def pct_interval(value, low=None, high=None) -> str:
    """"41.2 % [23.5, 64.7]": a share with its interval in percentage points, compact enough for a narrow column."""
    if value is None:
        return "n/a"
    if low is None or high is None:
        return pct(value)
    return f"{100 * value:.1f} % {pct_bracket(low, high)}"


def pct_bracket(low, high) -> str:
    """"[23.5, 64.7]": a share's interval in percentage points ("" when it has none)."""
    if low is None or high is None:
        return ""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"
