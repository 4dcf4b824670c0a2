"""The "Your task" section's figure: confusion matrices on the user's classes as small multiples (matplotlib Agg,
PNG through :func:`figures._png`; no torch)."""
from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import MaxNLocator

from .figures import PAGE_WIDTH_IN, _png, plt

# Above this many classes the cells carry no numbers (they would not be legible) and only some names are ticked.
CELL_NUMBERS_MAX_CLASSES = 20
NAME_CHARACTERS = 14  # class names on the axes are cut to this many characters (with an ellipsis)
MAX_TICKED_NAMES = 40  # above this many classes every k-th name is ticked
MAX_HEIGHT_IN = 8.4  # the PDF's figures are at most 225 mm tall with room for the caption


def short_name(name: str, limit: int = NAME_CHARACTERS) -> str:
    """``name`` cut to ``limit`` characters, the last an ellipsis when it was longer."""
    name = str(name)
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def axis_names(class_names: list[str]) -> list[str]:
    """The names on the axes: shortened; each led by its class index when shortening makes two of them alike."""
    short = [short_name(n) for n in class_names]
    if len(set(short)) == len(short):
        return short
    return [f"{i} {short_name(n, NAME_CHARACTERS - len(str(i)) - 1)}" for i, n in enumerate(class_names)]


def _layout(panels: int, classes: int) -> tuple[int, int, float]:
    """(columns, rows, panel side in inches): panels side by side across the page, fewer per row the more classes,
    smaller when the rows would make the figure taller than a page."""
    per_row = 3 if classes <= 8 else 2 if classes <= CELL_NUMBERS_MAX_CLASSES else 1
    if classes > CELL_NUMBERS_MAX_CLASSES and panels > 1:
        per_row = 2
    columns = max(1, min(per_row, panels))
    rows = math.ceil(panels / columns)
    # Room for the names on the y axis (left) and the x axis (below) beside each panel.
    side = min(PAGE_WIDTH_IN / columns - 0.9, 1.7 if classes <= 4 else 2.1 if classes <= 8 else 3.2)
    side = min(side, MAX_HEIGHT_IN / rows - 1.1)
    return columns, rows, max(side, 1.0)


def confusion_plot(titles: list[str], class_names: list[str], matrices: list) -> bytes:
    """One confusion matrix per candidate (rows: true class, columns: predicted), on one colour scale (counts, from 0
    to the largest cell of any panel), the counts written in the cells up to ``CELL_NUMBERS_MAX_CLASSES`` classes,
    class names (shortened) on both axes."""
    classes = len(class_names)
    columns, rows, side = _layout(len(titles), classes)
    numbers = classes <= CELL_NUMBERS_MAX_CLASSES
    fontsize = 6.5 if classes <= 8 else 5.5 if numbers else 4.5
    step = max(1, math.ceil(classes / MAX_TICKED_NAMES))
    ticks = list(range(0, classes, step))
    labels = axis_names(list(class_names))
    names = [labels[i] for i in ticks]
    arrays = [np.asarray(m, dtype=float).reshape(classes, classes) if classes else np.zeros((0, 0))
              for m in matrices]
    top = max([float(a.max()) for a in arrays if a.size] + [1.0])
    label_room = 0.09 * max((len(n) for n in names), default=1) * fontsize / 6.5
    fig, axes = plt.subplots(rows, columns, squeeze=False, layout="constrained",
                             figsize=(columns * (side + label_room + 0.3) + 0.6, rows * (side + label_room + 0.45)))
    image = None
    for n, (title, matrix) in enumerate(zip(titles, arrays)):
        ax = axes[n // columns][n % columns]
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
        if numbers:
            for (r, c), value in np.ndenumerate(matrix):
                ax.text(c, r, f"{int(value)}", ha="center", va="center", fontsize=fontsize,
                        color="white" if value > 0.55 * top else ("#1a1a1a" if value else "#9a9a9a"))
        ax.set_xticks(ticks, names, rotation=45 if classes <= 8 else 90, ha="right" if classes <= 8 else "center",
                      rotation_mode="anchor" if classes <= 8 else "default", fontsize=fontsize)
        ax.set_yticks(ticks, names, fontsize=fontsize)
        ax.tick_params(length=2, pad=1.5)
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("predicted", fontsize=6.5)
        if n % columns == 0:
            ax.set_ylabel("true class", fontsize=6.5)
    for n in range(len(titles), rows * columns):
        axes[n // columns][n % columns].axis("off")
    if image is not None:
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04 if columns > 1 else 0.06, pad=0.02,
                           shrink=0.9 if rows == 1 else 0.6)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        bar.set_label("images", fontsize=6.5)
        bar.ax.tick_params(labelsize=6)
    return _png(fig)
