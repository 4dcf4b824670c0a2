"""A report's figures and their numbers: each figure is numbered in the order it is made, so the sections that make
figures (context, the task section, the beyond section) share one count."""
from __future__ import annotations

import base64
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    anchor: str
    caption: str
    png: bytes  # the image's bytes (PNG, or JPEG for photo grids: see ``mime``)
    mime: str = "image/png"

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.png).decode("ascii")


class FigureNumbers:
    """Numbers figures in the order they are made."""

    def __init__(self):
        self.made: list[Figure] = []
        self.count = 0

    def add(self, anchor: str, caption: str, png: bytes) -> Figure:
        self.count += 1
        figure = Figure(anchor, f"Figure {self.count}. {caption}", png)
        self.made.append(figure)
        return figure

    def add_pages(self, anchor: str, caption: str, pages: list[bytes]) -> tuple:
        """One numbered figure in JPEG pages: the first captioned in full, the others "(continued)"."""
        self.count += 1
        made = tuple(Figure(anchor if n == 0 else f"{anchor}-{n + 1}",
                            f"Figure {self.count}. {caption}" if n == 0 else
                            f"Figure {self.count} (continued, {n + 1} of {len(pages)}). {caption.split('. ')[0].rstrip('.')}.",
                            page, "image/jpeg")
                     for n, page in enumerate(pages))
        self.made.extend(made)
        return made
