"""How numbers read in every format (HTML, PDF, Markdown, and the sentences the report context builds): one place,
so a number is written the same way in a table and in the sentence that cites it."""
from __future__ import annotations

import math

# What every format writes where a measurement left no value (None or NaN): a table cell, a sentence, a figure label.
MISSING = "not measured"


def missing(value) -> bool:
    """No value: None, or a float that is not finite (NaN from an empty mean, inf from a division by zero)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def num(value, digits: int = 3) -> str:
    """Three significant digits; integers, and values of ``digits`` digits or more before the point, with thousands
    separators (10,400, not 1.04e+04: a latency interval on a busy machine reaches that far); "not measured" for a
    missing value."""
    if missing(value):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    rounded = float(f"{value:.{digits}g}")
    if 10 ** digits <= abs(rounded) < 1e15:  # beyond, a run has gone wrong: the exponent says so at a glance
        return f"{int(rounded):,}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def pct(value) -> str:
    """A share as a percentage with one decimal."""
    return MISSING if missing(value) else f"{100 * value:.1f} %"


def whole_pct(value) -> str:
    """A probability as a whole percentage ("93 %"), "<1 %" and ">99 %" at the ends."""
    if missing(value):
        return MISSING
    if 0 < value < 0.005:
        return "<1 %"
    if 0.995 <= value < 1:
        return ">99 %"
    return f"{100 * value:.0f} %"


def ci(row) -> str:
    """An Aggregate or Interval as "mean [low, high] (n=..)"."""
    if row is None or missing(row.mean):
        return MISSING
    if missing(row.ci_low) or missing(row.ci_high):
        return f"{num(row.mean)} (n={row.n})"
    return f"{num(row.mean)} [{num(row.ci_low)}, {num(row.ci_high)}] (n={row.n})"


def points(row) -> str:
    """A difference of shares as "-1.2 pts [-3.4, 0.5] (n=..)" (percentage points), "not measured" without one."""
    if row is None or missing(row.mean):
        return MISSING
    return f"{num(row.mean * 100)} pts{bracket(row.ci_low, row.ci_high, 100)} (n={row.n})"


def bracket(low, high, scale: float = 1.0) -> str:
    """" [low, high]" of an interval (scaled), "" when it has none."""
    if missing(low) or missing(high):
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
    if missing(value):
        return MISSING
    if missing(low) or missing(high):
        return pct(value)
    return f"{100 * value:.1f} % {pct_bracket(low, high)}"


def pct_bracket(low, high) -> str:
    """"[23.5, 64.7]": a share's interval in percentage points ("" when it has none)."""
    if missing(low) or missing(high):
        return ""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"
