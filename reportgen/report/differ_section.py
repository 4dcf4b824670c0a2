""""Where they differ" (issue 33): the decision's top two candidates (and, with a ``[gate]``, the champion against
each challenger) lined up image by image. The numbers come from :mod:`reportgen.scoring.differ`; this lays them out:
a sentence with page 1's McNemar counts, a gallery of the discordant images (a deterministic sample in the PDF, up
to ``differ_html_images`` in all in the HTML, every one in differences.csv), the strata table, each candidate's
most confident errors and, on the user's own classes, the confusions that differ. Thumbnails and heatmaps are the
run's saved views and CAM arrays (:mod:`report.figures`), never a forward pass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..results.schema import RunIndex
from ..scoring.differ import Basis, Differences, PairDifference, PairRole, gallery_sample
from . import figures
from .figure_numbers import Figure, FigureNumbers
from .formatting import num, pct_bracket, whole_pct
from .phrases import Sentence, text

DIFFERENCES_CSV = "differences.csv"
CONFUSIONS_SHOWN = 10  # confusions listed per pair (all of them in metrics.json)
DIFFERENCES_COLUMNS = ("pair", "first", "second", "file", "label", "size", "background", "wrong_for",
                       "first_prediction", "first_confidence", "first_correct", "second_prediction",
                       "second_confidence", "second_correct")


@dataclass(frozen=True, kw_only=True)
class StratumRow:
    stratum: str
    images: int
    counts: str  # "2 / 0": right for the first only / the second only
    difference: str  # percentage points, second minus first
    interval: str
    p_value: str
    p_holm: str
    flagged: bool


@dataclass(frozen=True)
class ConfusionRow:
    true_class: str
    predicted: str
    first_count: int
    second_count: int


@dataclass(frozen=True)
class ImageRow:
    file: str
    label: str
    first: str  # "tabby 0.93 ✓"
    second: str


@dataclass(frozen=True, kw_only=True)
class PairBlock:
    anchor: str
    title: str
    first: str  # display names
    second: str
    summary: Sentence
    gallery: tuple  # Figure pages of the PDF's sample (numbered)
    rest: tuple  # Figure pages of the HTML's other images (unnumbered, not in the PDF)
    rest_note: str
    sample_rows: tuple  # ImageRow of the sample (the Markdown lists them)
    # ImageRow of every image beyond the HTML's thumbnails (HTML only, a table: every image is in the HTML)
    listed: tuple = ()
    listed_note: str = ""
    strata_note: Sentence
    strata: tuple  # StratumRow
    errors: tuple  # Figure pages
    errors_note: Sentence
    confusions_note: Sentence
    confusions: tuple  # ConfusionRow


@dataclass(frozen=True)
class DifferSection:
    intro: Sentence
    pairs: tuple  # PairBlock


def _mark(correct: Optional[bool]) -> str:
    return "" if correct is None else " ✓" if correct else " ✗"


def _short(name: str) -> str:
    return name.split(",")[0]


def _title(pair: PairDifference) -> str:
    why = {PairRole.TOP_TWO: "the decision's top two", PairRole.GATE: "the gate's champion and a challenger",
           PairRole.RUNS: "the two runs' picks"}[pair.role]
    return f"{pair.first_display} and {pair.second_display} ({why})"


def summary(pair: PairDifference) -> Sentence:
    """The counts both ways with page 1's McNemar test, or why there is no right or wrong."""
    a, b, images = pair.first_display, pair.second_display, pair.compared
    if pair.basis == Basis.DISAGREE:
        return (text(f"No image is labelled for both {a} and {b}, so neither is right or wrong on any: shown "
                     f"instead are the {pair.disagreements:,} of {images:,} images where their top-1 predictions "
                     "differ, those both were surest of first.", flag=True),)
    test = pair.mcnemar
    verdict = "a difference this large is unlikely by chance" if test.p_value < 1 - pair.confidence else \
        "the difference is within chance"
    return (text(f"On the {test.labelled:,} images labelled for both, "),
            text(f"{test.first_only} {'is' if test.first_only == 1 else 'are'} right for {a} and wrong for {b}",
                 strong=True),
            text(", "), text(f"{test.second_only} right for {b} and wrong for {a}", strong=True),
            text(f" (exact McNemar p = {num(test.p_value, 2)}: {verdict}). Their top-1 predictions differ on "
                 f"{pair.disagreements:,} of {images:,} images."))


def _strata_rows(pair: PairDifference) -> tuple:
    return tuple(StratumRow(stratum=s.stratum, images=s.images, counts=f"{s.first_only} / {s.second_only}",
                            difference=f"{100 * s.difference:+.1f}", interval=pct_bracket(s.ci_low, s.ci_high),
                            p_value=num(s.p_value, 2), p_holm=num(s.p_holm, 2), flagged=s.flagged)
                 for s in pair.strata)


def _strata_note(pair: PairDifference) -> Sentence:
    if pair.mcnemar is not None and not pair.first_only + pair.second_only:
        return (text("Where they concentrate: nowhere; they are right and wrong on the same labelled images."),)
    if not pair.strata:
        return (text("Where they concentrate: not measured (no image labelled for both"
                     + (")." if pair.basis == Basis.DISAGREE else " has a size, a background or a class).")),)
    alpha = 1 - pair.confidence
    flagged = [s.stratum for s in pair.strata if s.flagged]
    return (text(f"Where they concentrate, per {pair.strata_by}: accuracy of {pair.second_display} minus "
                 f"{pair.first_display}'s in points on the images labelled for both, Tango's "
                 f"{whole_pct(pair.confidence)} interval (per stratum), the exact McNemar p-value and the same "
                 f"Holm-adjusted over the {len(pair.strata)} strata; a stratum is flagged only where the adjusted p "
                 f"is below {num(alpha)}. "),
            text(f"Flagged: {', '.join(flagged)}." if flagged else "No stratum survives the adjustment.",
                 strong=bool(flagged)))


def _caption_rows(pair: PairDifference, chosen, index: RunIndex) -> tuple:
    captions, labels, rows = [], [], []
    for image in chosen:
        first = f"{_short(image.first_prediction)} {image.first_confidence:.2f}{_mark(image.first_correct)}"
        second = f"{_short(image.second_prediction)} {image.second_confidence:.2f}{_mark(image.second_correct)}"
        captions.append((first, second))
        name = image.file.rsplit("/", 1)[-1]
        labels.append((name, f"true: {_short(image.label)}" if image.label else "no label"))
        rows.append(ImageRow(image.file, _short(image.label) if image.label else "no label", first, second))
    return captions, labels, tuple(rows)


def _block(n: int, pair: PairDifference, index: RunIndex, cache, numbered: FigureNumbers,
           shown_errors: dict) -> PairBlock:
    config, entries = index.config, {b.name: b for b in index.backbones}
    first, second = entries[pair.first], entries[pair.second]
    anchor = f"differ-{n}"
    shown = gallery_sample(pair.images, config.differ_pdf_images)
    chosen = [pair.images[k] for k in shown]
    what = "right for one and wrong for the other" if pair.basis == Basis.RIGHT_WRONG else "top-1 predictions differ"
    gallery, rows = (), ()
    if chosen:
        captions, labels, rows = _caption_rows(pair, chosen, index)
        note = (f"All {len(chosen)} shown." if len(chosen) == len(pair.images) else
                f"{len(chosen)} of {len(pair.images)} shown: a deterministic sample, the most confident of each "
                f"direction first, the rest evenly spread over the order; the HTML shows up to "
                f"{config.differ_html_images:,}, {DIFFERENCES_CSV} lists all {len(pair.images):,}.")
        order = "how confidently the wrong one was wrong" if pair.basis == Basis.RIGHT_WRONG else \
            "the lower of the two confidences"
        gallery = numbered.add_pages(
            f"fig-{anchor}", f"Images where {pair.first_display} and {pair.second_display} differ ({what}): the "
            "image, then each one's deep-layer Grad-CAM captioned with its top-1 prediction and confidence (✓ right, "
            f"✗ wrong), ordered by {order}. {note}",
            figures.pair_grid(cache, [i.position for i in chosen], first, second, captions, labels))
    others = [image for k, image in enumerate(pair.images) if k not in set(shown)][
        :max(0, config.differ_html_images - len(chosen))]
    rest, rest_note, listed, listed_note = (), "", (), ""
    beyond = [image for k, image in enumerate(pair.images) if k not in set(shown)][len(others):]
    if beyond:
        listed = _caption_rows(pair, beyond, index)[2]
        listed_note = (f"The other {len(beyond):,} images where they differ, without thumbnails (HTML only; a "
                       f"gallery holds at most differ_html_images = {config.differ_html_images:,})")
    if others:
        captions, labels, _ = _caption_rows(pair, others, index)
        pages = figures.pair_grid(cache, [i.position for i in others], first, second, captions, labels)
        # captions without numbers: the Markdown states them once, in rest_note (tests/test_formats.py counts)
        rest = tuple(Figure(f"fig-{anchor}-all-{k + 1}", "The other images where they differ, in the same order "
                            "(HTML only).", page, "image/jpeg") for k, page in enumerate(pages))
        left = len(pair.images) - len(chosen) - len(others)
        rest_note = (f"The other {len(others):,} images where they differ (HTML only)"
                     + (f"; {left:,} more listed below and in {DIFFERENCES_CSV}" if left else "") + ".")
    errors, errors_note = _errors(pair, entries, cache, numbered, anchor, shown_errors)
    confusions_note = ()
    if index.own_task and pair.basis == Basis.RIGHT_WRONG:
        confusions_note = (text(f"Confusions (true class → predicted) that {pair.first_display} and "
                                f"{pair.second_display} make a different number of times, the largest change first"
                                + (f" ({CONFUSIONS_SHOWN} of {len(pair.confusions)}; all in metrics.json)"
                                   if len(pair.confusions) > CONFUSIONS_SHOWN else "") + "."
                                if pair.confusions else "Both make the same confusions, as often."),)
    return PairBlock(anchor=anchor, title=_title(pair), first=pair.first_display, second=pair.second_display,
                     summary=summary(pair), gallery=gallery,
                     rest=rest, rest_note=rest_note, listed=listed, listed_note=listed_note, sample_rows=rows, strata_note=_strata_note(pair),
                     strata=_strata_rows(pair) if pair.first_only + pair.second_only else (), errors=errors,
                     errors_note=errors_note,
                     confusions_note=confusions_note,
                     confusions=tuple(ConfusionRow(_short(c.true_class), _short(c.predicted), c.first_count,
                                                   c.second_count) for c in pair.confusions[:CONFUSIONS_SHOWN]))


def _errors(pair: PairDifference, entries: dict, cache, numbered: FigureNumbers, anchor: str,
            shown_errors: dict) -> tuple:
    """One figure per candidate with errors (its name in the caption: a grid's labels are too narrow for it), made
    the first time the candidate appears in the section; a later pair points back to it (``shown_errors``: name ->
    its figure)."""
    made, missing, earlier = (), [], []
    for k, (name, display, errors) in enumerate(((pair.first, pair.first_display, pair.first_errors),
                                                 (pair.second, pair.second_display, pair.second_errors)), start=1):
        if not errors:
            missing.append(display)
            continue
        if name in shown_errors:
            earlier.append((display, shown_errors[name]))
            continue
        rows = [(entries[e.backbone], e.position, f"{_short(e.prediction)} {e.confidence:.2f} ✗",
                 (e.file.rsplit("/", 1)[-1], f"true: {_short(e.label)}")) for e in errors]
        pages = numbered.add_pages(
            f"fig-{anchor}-errors-{k}", f"The {len(errors)} most confident errors of {display} (wrong with the highest "
            "top-1 probability), each with its deep-layer Grad-CAM captioned with the wrong prediction.",
            figures.error_grid(cache, rows))
        made += pages
        shown_errors[name] = pages[0]
    note = []
    for display, figure in earlier:
        note += [text(f"The most confident errors of {display}: "), text(figure.caption.split(".")[0], figure.anchor),
                 text(". ")]
    if missing:
        why = "no image is labelled for both" if pair.basis == Basis.DISAGREE else "no error on a labelled image"
        note.append(text(f"Most confident errors of {' and '.join(missing)}: none to show ({why})."))
    return made, tuple(note)



def build_differ(index: RunIndex, differences: Differences, cache, numbered: FigureNumbers) -> Optional[DifferSection]:
    """The section, or None when the run has fewer than two candidates."""
    if not differences.pairs:
        return None
    intro = (text("Page 1 says which candidate and how sure; this section says where: the images one candidate gets "
                  "right and the other wrong, counted both ways with page 1's exact McNemar test, where they "
                  "concentrate, and what each model looked at (the deep-layer Grad-CAM the run saved). Every such "
                  f"image of every pair is in {DIFFERENCES_CSV}, the counts and file names in metrics.json."),)
    shown_errors: dict = {}
    return DifferSection(intro=intro, pairs=tuple(_block(n, pair, index, cache, numbered, shown_errors)
                                                  for n, pair in enumerate(differences.pairs, start=1)))


def differences_table(differences: Differences) -> tuple:
    """differences.csv: every image of every pair (:data:`DIFFERENCES_COLUMNS`)."""
    return tuple((f"{pair.role}", pair.first, pair.second, image.file, image.label, image.size, image.background,
                  image.wrong, image.first_prediction, image.first_confidence, image.first_correct,
                  image.second_prediction, image.second_confidence, image.second_correct)
                 for pair in differences.pairs for image in pair.images)


@dataclass(frozen=True, kw_only=True)
class PicksBlock:
    """``reportgen compare``: run A's pick against run B's on the images both scored (no thumbnails: two runs' views
    of one image need not be the same crop)."""
    title: str
    first: str
    second: str
    summary: Sentence
    strata_note: Sentence
    strata: tuple  # StratumRow
    rows: tuple  # ImageRow: the deterministic sample (the PDF)
    rest: tuple  # ImageRow: the others, up to differ_html_images in all (the HTML only)
    rest_note: str


def picks_block(pair: Optional[PairDifference], labels: tuple, pdf_images: int, html_images: int,
                why_none: str = "") -> PicksBlock:
    """The diff of two runs' picks (``pair`` None: the runs share no image, or lack a pick: ``why_none``)."""
    if pair is None:
        return PicksBlock(title="The two runs' picks, image by image", first="", second="",
                          summary=(text(why_none),), strata_note=(), strata=(), rows=(), rest=(), rest_note="")
    shown = gallery_sample(pair.images, pdf_images)
    _, _, rows = _caption_rows(pair, [pair.images[k] for k in shown], None)
    others = [image for k, image in enumerate(pair.images) if k not in set(shown)][:max(0, html_images - len(rows))]
    _, _, rest = _caption_rows(pair, others, None)
    left = len(pair.images) - len(rows) - len(rest)
    return PicksBlock(
        title=f"The two runs' picks, image by image: {pair.first_display} ({labels[0]}) and {pair.second_display} "
              f"({labels[1]})", first=f"{pair.first_display} ({labels[0]})",
        second=f"{pair.second_display} ({labels[1]})",
        summary=summary(pair),
        strata_note=_strata_note(pair), strata=_strata_rows(pair) if pair.first_only + pair.second_only else (),
        rows=rows, rest=rest,
        rest_note=(f"{len(rows)} of {len(pair.images)} images shown (the most confident of each direction first, "
                   "the rest evenly spread); the others below" if rest else "")
        + (f"; {left:,} not listed" if left else ""))
