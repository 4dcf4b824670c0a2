""""Your data": what the checks of the user's images found (duplicates, near-duplicates, training and evaluation
overlap, likely label errors, class balance), right after the task section. Rows and sentences built once for every
format from metrics.json's ``data`` (scoring/datacheck.py made the numbers and the flags; this only lays them out,
with thumbnails of the flagged images). The report lists; nothing of the user's is changed."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

from PIL import Image, ImageDraw, ImageOps

from ..results.csv_files import FLAGGED_CSV
from ..results.schema import CheckName, DataCheck, Flag, FlagReason, RunStatus
from ..results.store import SavedResults
from .figure_numbers import Figure, FigureNumbers
from .formatting import MISSING, listing, num, pct
from .phrases import Sentence, text

REASON_TEXT = {
    FlagReason.EXACT_DUPLICATE: "exact duplicate",
    FlagReason.NEAR_DUPLICATE: "near-duplicate",
    FlagReason.TRAIN_EVAL_COPY: "copy of a training image",
    FlagReason.TRAIN_EVAL_NEAR_COPY: "near-copy of a training image",
    FlagReason.LABEL_ISSUE: "likely label error",
}
REASONS_TEXT = {  # the plural of each, for counts
    FlagReason.EXACT_DUPLICATE: "exact duplicates",
    FlagReason.NEAR_DUPLICATE: "near-duplicates",
    FlagReason.TRAIN_EVAL_COPY: "copies of training images",
    FlagReason.TRAIN_EVAL_NEAR_COPY: "near-copies of training images",
    FlagReason.LABEL_ISSUE: "likely label errors",
}
THUMB = 112  # pixels of a thumbnail's longer side
THUMBS_PER_ROW = 6


@dataclass(frozen=True)
class CheckRow:
    check: str
    status: str  # "ran" | "skipped"
    basis: str
    flagged: str


@dataclass(frozen=True, kw_only=True)
class FlagRow:
    rank: str
    image: str
    reason: str
    other: str
    similarity: str
    given: str
    suggested: str
    score: str


@dataclass(frozen=True)
class BalanceRow:
    name: str
    images: int
    share: str
    half_width: str
    smallest: bool


@dataclass(frozen=True, kw_only=True)
class DataSection:
    intro: Sentence
    checks: tuple  # CheckRow
    copies: tuple  # FlagRow: duplicates and overlap, in the run's order within each reason
    copies_more: int  # flags of that kind not listed (all in the CSV)
    issues: tuple  # FlagRow: likely label errors, likeliest first
    issues_more: int
    issues_note: Sentence
    balance: tuple  # BalanceRow
    balance_note: Sentence
    figure: Optional[Figure]
    csv: str
    threshold: str = ""  # the near-duplicate cosine


def _row(flag: Flag) -> FlagRow:
    return FlagRow(rank=str(flag.rank) if flag.rank else "", image=flag.image, reason=REASON_TEXT[flag.reason],
                   other=flag.other or MISSING, similarity=num(flag.similarity) if flag.similarity is not None else "",
                   given=flag.given, suggested=flag.suggested,
                   score=num(flag.score) if flag.score is not None else "")


def _thumb(results: SavedResults, position: Optional[int]) -> Image.Image:
    if position is None:  # a training image: the run keeps no copy of it
        tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
        ImageDraw.Draw(tile).text((8, THUMB // 2 - 6), "training image", fill=(90, 90, 90))
        return tile
    with Image.open(results.image_path(position)) as copy:
        return ImageOps.pad(copy.convert("RGB"), (THUMB, THUMB), color=(255, 255, 255))


def flagged_thumbnails(results: SavedResults, flags: list) -> bytes:
    """One JPEG: each flag a tile (the image, with the image it copies beside it for a duplicate) over two caption
    lines, THUMBS_PER_ROW tiles a row."""
    tiles = []
    for flag in flags:
        pair = flag.reason != FlagReason.LABEL_ISSUE
        width = THUMB * (2 if pair else 1) + (4 if pair else 0)
        tile = Image.new("RGB", (width, THUMB + 30), (255, 255, 255))
        tile.paste(_thumb(results, flag.position), (0, 0))
        if pair:
            tile.paste(_thumb(results, flag.other_position), (THUMB + 4, 0))
        draw = ImageDraw.Draw(tile)
        name = flag.image.rsplit("/", 1)[-1]
        first = f"#{flag.rank} {name}" if flag.rank else name
        second = (f"{flag.given} -> {flag.suggested}" if not pair
                  else f"{REASON_TEXT[flag.reason]} {num(flag.similarity)}")
        draw.text((2, THUMB + 2), first[:width // 6], fill=(0, 0, 0))
        draw.text((2, THUMB + 15), second[:width // 6], fill=(160, 0, 0))
        tiles.append(tile)
    rows, row, x = [], [], 0
    for tile in tiles:
        if row and x + tile.width > THUMBS_PER_ROW * (THUMB + 6):
            rows.append(row)
            row, x = [], 0
        row.append(tile)
        x += tile.width + 6
    rows.append(row)
    page = Image.new("RGB", (THUMBS_PER_ROW * (THUMB + 6), len(rows) * (THUMB + 36)), (255, 255, 255))
    for r, line in enumerate(rows):
        x = 0
        for tile in line:
            page.paste(tile, (x, r * (THUMB + 36)))
            x += tile.width + 6
    buffer = io.BytesIO()
    page.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _intro(data: DataCheck) -> Sentence:
    kinds = [(len(data.flagged(r)), r) for r in FlagReason]
    found = [f"{count:,} {REASON_TEXT[reason] if count == 1 else REASONS_TEXT[reason]}" for count, reason in kinds
             if count]
    unlabelled = data.labelled == 0
    head = (f"The {data.images:,} images were checked for exact and near-duplicates"
            + ("" if unlabelled else ", likely label errors and class balance")
            + (": " + listing(found) + "." if found else ": nothing flagged."))
    parts = [text(head, strong=bool(found))]
    if unlabelled:
        parts.append(text(" The images have no labels, so only the duplicate checks ran."))
    parts.append(text(f" Every flagged image and its reason is in {FLAGGED_CSV}, to take back to your labelling tool; "
                      "nothing of yours was changed, and the decision above is on the data as given."))
    return tuple(parts)


def _issues_note(data: DataCheck) -> Sentence:
    run = data.run_of(CheckName.LABEL_ISSUES)
    if run is None or run.status != RunStatus.DONE:
        return (text(f"Likely label errors were not looked for: {run.basis if run else 'not run'}."),)
    return (text("Confident learning (cleanlab, Northcutt et al. 2021) on "
                 f"{run.basis}: an image is listed when its held-out probabilities confidently favour another of the "
                 "classes than its label; the score is the probability of the given label (lower: likelier an "
                 "error). A listed image is a candidate for a second look, not a verdict."),)


def _balance_note(data: DataCheck) -> Sentence:
    filled = [c for c in data.classes if c.images]
    if not filled:
        return ()
    small = min(filled, key=lambda c: (c.images, c.index))
    empty = [c.name for c in data.classes if not c.images]
    one = small.images == 1
    out = [text(f"The smallest class, {small.name}, has {small.images:,} labelled image{'' if one else 's'}: an "
                f"accuracy (its recall) measured on {'it' if one else 'them'} has a 95 % interval up to "
                f"±{pct(small.half_width)} (half its width)"
                + (f", and macro-F1 weighs it as much as the largest class ({data.imbalance:g} times its images)"
                   if data.imbalance and data.imbalance > 1 else "") + ".")]
    if empty:
        out.append(text(f" No labelled image: {listing(empty)}.", flag=True))
    return tuple(out)


def build_data(results: SavedResults, numbered: FigureNumbers) -> Optional[DataSection]:
    """The section from metrics.json's ``data`` (None: results without it)."""
    data = results.metrics.data
    if data is None:
        return None
    limit = results.index.config.table_max_rows
    copies = [f for f in data.flags if f.reason != FlagReason.LABEL_ISSUE]
    issues = list(data.flagged(FlagReason.LABEL_ISSUE))
    shown = (issues[:THUMBS_PER_ROW * 2] + copies[:THUMBS_PER_ROW])
    figure = numbered.add_pages(
        "fig-data", "Flagged images: likely label errors (likeliest first; the given class -> the suggested one) "
        "and copies (each beside the image it copies, with their similarity).",
        [flagged_thumbnails(results, shown)])[0] if shown else None
    checks = tuple(CheckRow(c.check.value, "ran" if c.status == RunStatus.DONE else "skipped", c.basis,
                            f"{c.flagged:,}" if c.status == RunStatus.DONE else MISSING) for c in data.checks)
    return DataSection(
        intro=_intro(data), checks=checks, copies=tuple(_row(f) for f in copies[:limit]),
        copies_more=max(0, len(copies) - limit), issues=tuple(_row(f) for f in issues[:limit]),
        issues_more=max(0, len(issues) - limit), issues_note=_issues_note(data),
        balance=tuple(BalanceRow(c.name, c.images, pct(c.share), f"±{pct(c.half_width)}" if c.half_width else MISSING,
                                 c.smallest) for c in data.classes),
        balance_note=_balance_note(data), figure=figure, csv=FLAGGED_CSV, threshold=num(data.near_threshold))
