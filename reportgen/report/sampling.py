"""Which images a heatmap grid shows when its group is too large to show whole: the best, median and worst
images by the deep-layer metric, plus misclassified ones. Data only; the caption says what was chosen."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence


@dataclass(frozen=True)
class ShownImage:
    position: int
    reason: str  # best | median | worst | misclassified | "" (the whole group is shown)


@dataclass(frozen=True)
class GridSample:
    shown: tuple  # ShownImage, in display order
    total: int  # images in the group
    ranked_by: str  # what best/median/worst refer to ("" when the whole group is shown)

    @property
    def sampled(self) -> bool:
        return len(self.shown) < self.total


def choose(members: Sequence[int], score: Callable[[int], Optional[float]], wrong: Callable[[int], int],
           max_images: int, each: int, ranked_by: str) -> GridSample:
    """The whole group when it has at most ``max_images`` images; otherwise ``each`` best, median and worst by
    ``score`` (higher is better; images without a score are never best/median/worst) and ``each`` of the
    misclassified images (``wrong``: how many backbones miss the label), most-missed first."""
    members = list(members)
    if len(members) <= max_images:
        return GridSample(tuple(ShownImage(p, "") for p in members), len(members), "")
    scored = sorted((p for p in members if score(p) is not None), key=lambda p: (-score(p), p))
    chosen: list[ShownImage] = []
    taken: set = set()

    def take(positions, reason):
        for p in positions:
            if p not in taken and sum(1 for c in chosen if c.reason == reason) < each:
                chosen.append(ShownImage(p, reason))
                taken.add(p)

    take(scored[:each], "best")
    middle = max(0, len(scored) // 2 - each // 2)
    take(scored[middle:middle + each], "median")
    take(list(reversed(scored[-each:])), "worst")
    missed = sorted((p for p in members if wrong(p) > 0), key=lambda p: (-wrong(p), score(p) or 0.0, p))
    take(missed, "misclassified")
    return GridSample(tuple(chosen), len(members), ranked_by)


def caption_note(sample: GridSample, each: int) -> str:
    """"showing 12 of 200 — ..." for a sampled grid, "" for a whole one."""
    if not sample.sampled:
        return ""
    counts = {reason: sum(1 for s in sample.shown if s.reason == reason)
              for reason in ("best", "median", "worst", "misclassified")}
    parts = [f"{n} {reason}" for reason, n in counts.items() if n]
    return (f"Showing {len(sample.shown)} of {sample.total} — {', '.join(parts)} by {sample.ranked_by}; "
            "all images in per_image.csv.")
