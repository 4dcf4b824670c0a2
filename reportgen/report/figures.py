"""Figures from saved results (matplotlib Agg + numpy/PIL; no torch). Charts are PNG; heatmap grids of photos
are JPEG pages, each sized to fit a PDF page."""
from __future__ import annotations

import io
import math
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from pathlib import Path  # noqa: E402

from PIL import Image, ImageDraw  # noqa: E402

from ..inputs.manifest import BACKGROUNDS, SIZES  # noqa: E402
from ..results import arrays as keys  # noqa: E402
from ..results.schema import AggregateLookup, BackboneResult, CamStatus, RunIndex, SanitySummary, measured  # noqa: E402
from ..results.store import SavedResults  # noqa: E402
from ..scoring.measures import normalise01, upsample  # noqa: E402
from .formatting import MISSING  # noqa: E402

CMAP = colormaps["jet"]
PAGE_WIDTH_IN = 7.2
FLAG_COLOUR = "#c00000"


def _png(fig, tight: bool = True) -> bytes:
    """``tight=False`` for a figure already laid out by ``tight_layout`` with nothing outside its axes: a
    tight bounding box draws the figure twice."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight" if tight else None,
                pil_kwargs={"compress_level": 3})
    plt.close(fig)
    return buffer.getvalue()


class ViewCache:
    """Model views (the crop each backbone saw) of the display copies, built once per image and size."""

    def __init__(self, results: SavedResults):
        self.results = results
        self._images: dict = {}
        self._arrays: dict = {}

    def arrays(self, backbone: str) -> dict:
        if backbone not in self._arrays:
            self._arrays[backbone] = self.results.arrays(backbone)
        return self._arrays[backbone]

    def view(self, backbone: BackboneResult, position: int) -> np.ndarray:
        crop = tuple(backbone.views[position].crop)
        size = (backbone.views[position].width, backbone.views[position].height)
        key = (position, crop, size)
        if key not in self._images:
            info = self.results.index.images[position]
            with Image.open(self.results.image_path(position)) as copy:
                copy = copy.convert("RGB")
                fx, fy = copy.width / info.width, copy.height / info.height
                box = (crop[0] * fx, crop[1] * fy, crop[2] * fx, crop[3] * fy)
                self._images[key] = np.asarray(copy.resize(size, Image.BICUBIC, box=box), dtype=np.float32) / 255.0
        return self._images[key]


def overlay(view: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    heat = CMAP(normalise01(upsample(cam, view.shape[1], view.shape[0])))[..., :3]
    return (1 - alpha) * view + alpha * heat


NOTE_COLOUR = "#666666"


def _cell(ax, image, box=None, flag=None, title=None, ylabel=None, flag_colour=FLAG_COLOUR):
    ax.imshow(image, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if box is not None:
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=1.2, ec="white", ls="--"))
    if flag:
        ax.text(0.5, 0.5, flag, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=7,
                fontweight="bold", bbox=dict(facecolor=flag_colour, edgecolor="none", pad=2))
    if title:
        ax.set_title(title, fontsize=7)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=6, rotation=0, ha="right", va="center", labelpad=4)


def _colourbar(fig, axes):
    mappable = plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap=CMAP)
    bar = fig.colorbar(mappable, ax=axes, fraction=0.025, pad=0.01)
    bar.set_label("Grad-CAM (min-max per map)", fontsize=6)
    bar.ax.tick_params(labelsize=6)


FLAG_TEXT = {CamStatus.ZERO: "ALL-ZERO CAM", CamStatus.NAN: "NaN CAM", CamStatus.NOT_SPATIAL: "NO SPATIAL MAP"}


def _flag_text(status: CamStatus) -> str | None:
    return None if status == CamStatus.OK else FLAG_TEXT.get(status, str(status).upper())


def _cam_of(cache: "ViewCache", entry: BackboneResult, layer: str, position: int):
    """(CAM of one image at one layer or None, its status)."""
    cams = cache.arrays(entry.name).get(keys.cam(layer))
    status = entry.cam_status[layer][position]
    return (cams[position] if cams is not None and status == CamStatus.OK else None), status


# Heatmap grids are composed with numpy/PIL: one matplotlib figure per grid cost more than the
# analyses themselves (see bench/). Text uses matplotlib's bundled DejaVu Sans.
CELL_PX = 150
GAP_PX = 6
LABEL_PX = 150
TITLE_PX = 30
BAR_PX = 70


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)


def _cell_image(view: np.ndarray, cam: np.ndarray | None, box, flag: str | None, caption: str = "") -> Image.Image:
    pixels = overlay(view, cam) if cam is not None else (view * 0.35 + 0.65 if flag else view)
    image = Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8))
    scale = CELL_PX / max(image.width, image.height)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    if box is not None:
        x0, y0, x1, y1 = (v * scale for v in box)
        _dashed_rectangle(draw, (x0, y0, x1, y1))
    if flag:
        font = _font(11)
        left, top, right, bottom = draw.textbbox((0, 0), flag, font=font)
        w, h = right - left, bottom - top
        cx, cy = image.width / 2, image.height / 2
        draw.rectangle((cx - w / 2 - 4, cy - h / 2 - 4, cx + w / 2 + 4, cy + h / 2 + 4), fill=FLAG_COLOUR)
        draw.text((cx - w / 2 - left, cy - h / 2 - top), flag, fill="white", font=font)
    if caption:
        draw.rectangle((0, image.height - 17, image.width, image.height), fill=(30, 30, 30))
        draw.text((image.width / 2, image.height - 2), _fit(caption, 12, image.width - 4), fill="white", font=_font(12),
                  anchor="md")
    return image


def _dashed_rectangle(draw, box, dash: int = 5, colour=(255, 255, 255)) -> None:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line((ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1),
                      fill=colour, width=2)


def _fit(text: str, size: int, width: float) -> str:
    """``text``, shortened with an ellipsis until it is at most ``width`` pixels wide."""
    font = _font(size)
    if font.getlength(text) <= width:
        return text
    while len(text) > 1 and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _text(draw, xy, text: str, size: int, anchor: str = "la", fill=(20, 20, 20)) -> None:
    draw.text(xy, text, fill=fill, font=_font(size), anchor=anchor)


def _colour_bar(height: int) -> Image.Image:
    bar = Image.new("RGB", (BAR_PX, height), "white")
    strip = (CMAP(np.linspace(1, 0, height - 20))[:, :3] * 255).astype(np.uint8)
    bar.paste(Image.fromarray(np.repeat(strip[:, None, :], 14, axis=1)), (6, 10))
    draw = ImageDraw.Draw(bar)
    for value in (0.0, 0.5, 1.0):
        y = 10 + (1 - value) * (height - 21)
        draw.line((20, y, 24, y), fill=(20, 20, 20))
        _text(draw, (27, y), f"{value:.1f}", 11, anchor="lm")
    _text(draw, (27, height / 2 + 20), "CAM", 10, anchor="lm", fill=(80, 80, 80))
    return bar


# Page geometry of the PDF (A4, margins in templates/_style.css.j2): a grid image is shown at its natural size
# (96 px per CSS inch) up to the content width, and each page of a grid stays below the height that leaves room
# for its caption. Wider grids are scaled down, so they may hold more rows.
CONTENT_WIDTH_IN = 7.2
GRID_PAGE_HEIGHT_IN = 8.4
CSS_PX_PER_IN = 96
# Narrow grids (few backbones) place several images side by side, up to this width, so a page holds more.
GRID_MAX_WIDTH_PX = 1320
GRID_JPEG_QUALITY = 85


def _jpeg(canvas: Image.Image) -> bytes:
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=GRID_JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def grid_layout(rows: int, cols: int) -> tuple[int, int]:
    """(images side by side, image rows per page) for a grid of ``rows`` images x ``cols`` cells each."""
    block = LABEL_PX + cols * (CELL_PX + GAP_PX)
    across = max(1, min(rows, (GRID_MAX_WIDTH_PX - BAR_PX) // block))
    width = across * block + BAR_PX
    shown_width_in = min(width / CSS_PX_PER_IN, CONTENT_WIDTH_IN)
    allowed_px = GRID_PAGE_HEIGHT_IN * width / shown_width_in
    return across, max(1, int((allowed_px - TITLE_PX) // (CELL_PX + GAP_PX)))


def _grid(cells: list[list[Image.Image | None]], column_titles: list[str], row_labels: list) -> list[bytes]:
    """JPEG pages of a heatmap grid: each item is one image's row of cells, labelled by one or two lines."""
    cols = len(cells[0])
    across, rows_per_page = grid_layout(len(cells), cols)
    block = LABEL_PX + cols * (CELL_PX + GAP_PX)
    per_page = across * rows_per_page
    pages = []
    for start in range(0, len(cells), per_page):
        items = list(range(start, min(start + per_page, len(cells))))
        used_across = min(across, len(items))
        page_rows = -(-len(items) // used_across)
        width = used_across * block + BAR_PX
        height = TITLE_PX + page_rows * (CELL_PX + GAP_PX)
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        for b in range(used_across):
            for c, title in enumerate(column_titles):
                for k, line in enumerate(title.split("\n")[:2]):
                    _text(draw, (b * block + LABEL_PX + c * (CELL_PX + GAP_PX) + CELL_PX / 2, 4 + 15 * k),
                          _fit(line, 13, CELL_PX + GAP_PX), 13, anchor="ma")
        for n, item in enumerate(items):
            b, r = n % used_across, n // used_across
            top, left0 = TITLE_PX + r * (CELL_PX + GAP_PX), b * block
            label = row_labels[item] if isinstance(row_labels[item], (tuple, list)) else (row_labels[item],)
            middle = top + CELL_PX / 2 - (8 if len(label) > 1 else 0)
            _text(draw, (left0 + LABEL_PX - 6, middle), _fit(label[0], 13, LABEL_PX - 10), 13, anchor="rm")
            if len(label) > 1 and label[1]:
                _text(draw, (left0 + LABEL_PX - 6, middle + 17), _fit(label[1], 11, LABEL_PX - 10), 11, anchor="rm",
                      fill=(110, 110, 110))
            for c, cell in enumerate(cells[item]):
                if cell is None:
                    continue
                left = left0 + LABEL_PX + c * (CELL_PX + GAP_PX)
                canvas.paste(cell, (left + (CELL_PX - cell.width) // 2, top + (CELL_PX - cell.height) // 2))
        canvas.paste(_colour_bar(min(height - TITLE_PX, 260)), (width - BAR_PX, TITLE_PX))
        pages.append(_jpeg(canvas))
    return pages


def object_grid(cache: ViewCache, positions: list[int], role: str = "deep", notes: list[str] | None = None) -> list[bytes]:
    """Images (rows) x backbones (columns), CAM of the given depth over the model's view, box dashed; JPEG
    pages that each fit a PDF page. ``notes``: a second label line per image (why it is shown)."""
    backbones = cache.results.index.backbones
    cells = []
    for position in positions:
        row = []
        for entry in backbones:
            cam, status = _cam_of(cache, entry, entry.depth_layers[role], position)
            row.append(_cell_image(cache.view(entry, position), cam, entry.views[position].box, _flag_text(status)))
        cells.append(row)
    # The file's own name: a class-folder prefix would leave no room for it (the class is in per_image.csv).
    files = [cache.results.index.images[p].file.rsplit("/", 1)[-1] for p in positions]
    labels = [(f, note) for f, note in zip(files, notes)] if notes else files
    return _grid(cells, [entry.display_name for entry in backbones], labels)


def pair_grid(cache: ViewCache, positions: list[int], first: BackboneResult, second: BackboneResult,
              captions: list[tuple], labels: list[tuple]) -> list[bytes]:
    """Where two candidates differ (issue 33): per image the model view, then each candidate's deep-layer CAM
    captioned with its prediction (``captions``: (first's, second's) per image); JPEG pages like the object grids."""
    cells = []
    for position, (first_caption, second_caption) in zip(positions, captions):
        row = [_cell_image(cache.view(first, position), None, first.views[position].box, None)]
        for entry, caption in ((first, first_caption), (second, second_caption)):
            cam, status = _cam_of(cache, entry, entry.depth_layers["deep"], position)
            row.append(_cell_image(cache.view(entry, position), cam, None, _flag_text(status), caption=caption))
        cells.append(row)
    return _grid(cells, ["image", first.display_name, second.display_name], labels)


def error_grid(cache: ViewCache, rows: list[tuple]) -> list[bytes]:
    """Confident errors: per (entry, position, caption, label) the model view and that candidate's deep-layer CAM
    captioned with its (wrong) prediction."""
    cells = []
    for entry, position, caption, _ in rows:
        cam, status = _cam_of(cache, entry, entry.depth_layers["deep"], position)
        view = cache.view(entry, position)
        cells.append([_cell_image(view, None, entry.views[position].box, None),
                      _cell_image(view, cam, None, _flag_text(status), caption=caption)])
    return _grid(cells, ["image", "deep-layer CAM"], [label for *_, label in rows])


def depth_grid(cache: ViewCache, position: int) -> list[bytes]:
    """Backbones (rows) x (input, shallow, middle, deep) for one image; each cell titled by its layer (JPEG
    pages, like the object grids)."""
    backbones = cache.results.index.backbones
    cells = []
    for entry in backbones:
        view = cache.view(entry, position)
        row = [_cell_image(view, None, entry.views[position].box, None)]
        for role in ("shallow", "middle", "deep"):
            layer = entry.depth_layers[role]
            cam, status = _cam_of(cache, entry, layer, position)
            row.append(_cell_image(view, cam, None, _flag_text(status), caption=layer))
        cells.append(row)
    return _grid(cells, ["input", "shallow", "middle", "deep"], [entry.display_name for entry in backbones])


def last_three_figure(cache: ViewCache, backbone: BackboneResult, position: int) -> bytes:
    """Weight histograms (top), feature visualisation (middle) and Grad-CAM (bottom) of the last three layers."""
    arrays = cache.arrays(backbone.name)
    fig, axes = plt.subplots(3, 3, figsize=(PAGE_WIDTH_IN, 6.2))
    view = cache.view(backbone, position)
    for c, layer in enumerate(backbone.last_three):
        counts, edges = arrays[keys.hist_counts(layer)], arrays[keys.hist_edges(layer)]
        stats = backbone.weight_stats[layer]
        kurtosis = stats.excess_kurtosis if stats.excess_kurtosis is not None else float("nan")
        ax = axes[0][c]
        ax.stairs(counts, edges, fill=True, color="#3b6ea8")
        owner = backbone.weights_module(layer)
        source = "weights" if owner == layer else f"weights of {owner.rsplit('.', 1)[-1]}"
        ax.set_title(f"{layer}\n{source}: std {stats.std:.3g}, kurt {kurtosis:.2g}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        ax.set_xlabel("weight value (0.5-99.5 pct)", fontsize=6)

        ax = axes[1][c]
        if keys.feature_map(layer) in arrays:
            fmap = arrays[keys.feature_map(layer)][position]
            heat = colormaps["viridis"](normalise01(upsample(fmap, view.shape[1], view.shape[0])))[..., :3]
            _cell(ax, 0.4 * view + 0.6 * heat, title="features: mean |activation|")
        else:
            matrix = arrays[keys.feature_vector(layer)]
            ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set_title(f"features: first {matrix.shape[1]} units x images", fontsize=7)
            ax.set_xlabel("unit", fontsize=6)
            ax.set_ylabel("image", fontsize=6)
            ax.tick_params(labelsize=5)

        ax = axes[2][c]
        cam, status = _cam_of(cache, backbone, layer, position)
        if cam is not None:
            _cell(ax, overlay(view, cam), title="Grad-CAM")
        else:
            # A vector layer has no map to show (a note, in grey); an empty map of a spatial layer is flagged (red).
            _cell(ax, view * 0.35 + 0.65, flag=_flag_text(status), title="Grad-CAM",
                  flag_colour=NOTE_COLOUR if status == CamStatus.NOT_SPATIAL else FLAG_COLOUR)
    fig.tight_layout(pad=0.4)
    return _png(fig, tight=False)


def localisation_plot(index: RunIndex, lookup: AggregateLookup, metric: str) -> bytes:
    """Deep-layer metric per backbone by size class, with the uniform and Gaussian baselines drawn in."""
    backbones = index.backbones
    fig, axes = plt.subplots(1, len(backbones), figsize=(PAGE_WIDTH_IN, 2.0), sharey=True, squeeze=False)
    for c, entry in enumerate(backbones):
        ax = axes[0][c]
        for background, colour, shift in zip(BACKGROUNDS, ("#2a7fd4", "#d45f2a"), (-0.12, 0.12)):
            for s, size in enumerate(SIZES):
                row = lookup("backbone", entry.name, "deep", f"size={size},background={background}", metric)
                if row and row.mean is not None:
                    # clipped at 0: a point interval computed another way can differ from the mean in the last bit
                    low = max(0.0, row.mean - row.ci_low) if row.ci_low is not None else 0
                    high = max(0.0, row.ci_high - row.mean) if row.ci_high is not None else 0
                    ax.errorbar(s + shift, row.mean, yerr=[[low], [high]], fmt="o", color=colour, ms=3, lw=0.8,
                                label=background if s == 0 else None)
        for baseline, style in (("uniform", ":"), ("gaussian", "--")):
            row = lookup("backbone", entry.name, f"baseline:{baseline}", "all", metric)
            if row and row.mean is not None:
                ax.axhline(row.mean, color="grey", ls=style, lw=0.8, label=f"{baseline} baseline")
        ax.set_xticks(range(len(SIZES)), SIZES, fontsize=6)
        ax.set_title(entry.display_name, fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel(f"{metric} (deep layer)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _png(fig)


def _error_bars(intervals) -> tuple[list, list, list]:
    """Means and the error bars' lengths below and above, NaN where a point was not measured (matplotlib leaves a
    gap there); an interval without bounds gets a bar of length 0."""
    means, lows, highs = [], [], []
    for found in intervals:
        mean = found.mean if measured(found) else math.nan
        means.append(mean)
        low = found.ci_low if measured(found) and found.ci_low is not None else mean
        high = found.ci_high if measured(found) and found.ci_high is not None else mean
        lows.append(max(0.0, mean - low) if mean == mean else 0.0)
        highs.append(max(0.0, high - mean) if mean == mean else 0.0)
    return means, lows, highs


def sanity_plot(index: RunIndex, sanity: dict[str, SanitySummary], threshold: float) -> bytes:
    """Similarity of trained to randomised CAMs along the randomisation cascade, one panel per backbone."""
    done = [entry for entry in index.backbones if sanity[entry.name].status == "done"]
    fig, axes = plt.subplots(1, len(done), figsize=(PAGE_WIDTH_IN, 2.1), sharey=True, squeeze=False)
    colours = {"shallow": "#7a9e3b", "middle": "#2a7fd4", "deep": "#b00020"}
    for c, entry in enumerate(done):
        ax = axes[0][c]
        labels = []
        unmeasured = 0
        for layer, found in sanity[entry.name].layers.items():
            labels = [step.step.replace(" (trained)", "") for step in found.steps]
            xs = np.arange(len(found.steps))
            for metric, style in (("spearman", "-"), ("ssim", "--")):
                means, lows, highs = _error_bars([getattr(step, metric) for step in found.steps])
                unmeasured += sum(mean != mean for mean in means)
                ax.errorbar(xs, means, yerr=[lows, highs], color=colours.get(found.role, "black"), ls=style,
                            marker="o", ms=2.5, lw=0.9, capsize=1.5,
                            label=f"{found.role} {metric}" if c == 0 else None)
        ax.axhline(threshold, color="grey", ls=":", lw=0.8, label="flag threshold" if c == 0 else None)
        ax.axhline(0, color="black", lw=0.4)
        ax.set_xticks(range(len(labels)), labels, fontsize=5.5, rotation=30)
        ax.set_title(entry.display_name, fontsize=7)
        if unmeasured:
            ax.text(0.5, 0.04, f"{unmeasured} point{'s' if unmeasured != 1 else ''} {MISSING}", fontsize=5.5,
                    ha="center", transform=ax.transAxes, color="#b00020")
        ax.tick_params(labelsize=6)
        ax.set_ylim(-0.3, 1.05)
    axes[0][0].set_ylabel("similarity to trained CAM", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return _png(fig)


def decision_plot(decision) -> bytes:
    """Quality (top-1 accuracy, or localisation without labels) against latency; marker area ~ parameters;
    the Pareto front of the candidates that meet the constraints drawn as a line; failing ones hollow."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.62, 2.0))
    points = []
    largest = max((c.params_m for c in decision.candidates), default=1.0) or 1.0
    for c in decision.chartable:
        quality = decision.quality_of(c)
        size = 40 + 360 * c.params_m / largest
        chosen = c.backbone == decision.recommended
        colour = "#176b2c" if chosen else ("#3b6ea8" if not c.failed else "#999999")
        ax.scatter([c.latency_ms], [quality], s=size, facecolors=colour if not c.failed else "none",
                   edgecolors=colour, linewidths=1.2, alpha=0.8, zorder=3)
        ax.annotate(f"{c.display_name}\n{c.params_m:.3g} M", (c.latency_ms, quality), fontsize=6,
                    xytext=(6, 4), textcoords="offset points")
        if c.pareto:
            points.append((c.latency_ms, quality))
    if len(points) > 1:
        xs, ys = zip(*sorted(points))
        ax.step(xs, ys, where="post", color="#176b2c", lw=0.8, ls="--", label="Pareto front", zorder=2)
        ax.legend(fontsize=6, loc="lower right")
    ax.set_xlabel("latency, batch 1 (ms, median)", fontsize=7)
    ax.set_ylabel(decision.quality_axis, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.margins(x=0.25, y=0.2)
    if decision.illustrative:
        ax.text(0.5, 0.5, "ILLUSTRATIVE — UNTRAINED WEIGHTS", transform=ax.transAxes, ha="center", va="center",
                fontsize=9, color=FLAG_COLOUR, alpha=0.5, rotation=12)
    fig.tight_layout()
    return _png(fig)


BACKBONE_COLOURS = ("#3b6ea8", "#d45f2a", "#2a9d5c", "#8e44ad", "#c0392b", "#7f8c8d", "#b7950b", "#16a085", "#34495e")


def distribution_plot(metrics: list[tuple[str, str]], groups: list[str], backbones: list[str], values: dict) -> bytes:
    """Per metric (rows of panels): the distribution of the per-image values per group (x) and backbone
    (colour) as violins with the median marked; groups of fewer than 3 images as dots.
    ``values[(metric, group, backbone)]``: the finite per-image values."""
    fig, axes = plt.subplots(len(metrics), 1, figsize=(PAGE_WIDTH_IN, 1.55 * len(metrics) + 0.5), squeeze=False)
    width = 0.8 / max(1, len(backbones))
    for r, (metric, label) in enumerate(metrics):
        ax = axes[r][0]
        for b, backbone in enumerate(backbones):
            colour = BACKBONE_COLOURS[b % len(BACKBONE_COLOURS)]
            for g, group in enumerate(groups):
                data = values.get((metric, group, backbone), [])
                x = g - 0.4 + width * (b + 0.5)
                if len(data) >= 3 and np.ptp(data) > 0:
                    parts = ax.violinplot([data], positions=[x], widths=width * 0.95, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(colour)
                        body.set_edgecolor(colour)
                        body.set_alpha(0.55)
                    ax.plot([x - width * 0.3, x + width * 0.3], [np.median(data)] * 2, color="black", lw=0.9)
                elif data:
                    ax.plot([x] * len(data), data, "o", ms=2.5, color=colour)
        ax.set_xticks(range(len(groups)), groups if r == len(metrics) - 1 else [""] * len(groups), fontsize=6)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=6)
        ax.grid(axis="y", lw=0.3, alpha=0.5)
    handles = [Rectangle((0, 0), 1, 1, color=BACKBONE_COLOURS[b % len(BACKBONE_COLOURS)], alpha=0.6)
               for b in range(len(backbones))]
    fig.legend(handles, backbones, loc="upper center", ncol=min(len(backbones), 6), fontsize=6, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _png(fig)


def reliability_plot(names: list[str], scores: list) -> bytes:
    """One reliability diagram per backbone: accuracy against mean top-1 confidence per bin (marker area ~ images),
    the diagonal for a calibrated model."""
    fig, axes = plt.subplots(1, len(names), figsize=(PAGE_WIDTH_IN, 2.0), sharey=True, squeeze=False)
    for c, (name, score) in enumerate(zip(names, scores)):
        ax = axes[0][c]
        ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
        if score.reliability:
            most = max(b.images for b in score.reliability)
            xs = [b.confidence for b in score.reliability]
            ys = [b.accuracy for b in score.reliability]
            ax.plot(xs, ys, color=BACKBONE_COLOURS[c % len(BACKBONE_COLOURS)], lw=0.9)
            ax.scatter(xs, ys, s=[8 + 60 * b.images / most for b in score.reliability],
                       color=BACKBONE_COLOURS[c % len(BACKBONE_COLOURS)], zorder=3)
        ax.set_title(f"{name}\nECE {score.ece.mean:.3f}" if measured(score.ece) else f"{name}\nECE {MISSING}",
                     fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("top-1 confidence", fontsize=6.5)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel("accuracy", fontsize=7)
    fig.tight_layout()
    return _png(fig)


def corruption_plot(names: list[str], scores: list, corruptions: tuple, severities: tuple, measure: str) -> bytes:
    """One panel per corruption: the measure (top-1, or agreement with the clean prediction) against severity,
    one line per backbone (severity 0: the clean crops), with intervals."""
    columns = min(4, len(corruptions))
    rows = -(-len(corruptions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PAGE_WIDTH_IN, 1.7 * rows + 0.4), sharey=True, squeeze=False)
    unmeasured = set()
    for n, corruption in enumerate(corruptions):
        ax = axes[n // columns][n % columns]
        for b, (name, score) in enumerate(zip(names, scores)):
            if not measured(score.clean):
                unmeasured.add(name)
                continue
            cells = {c.severity: c.value for c in score.cells if c.corruption == corruption}
            points = [(v, i) for v, i in [(0, score.clean)] + [(v, cells[v]) for v in severities if v in cells]
                      if measured(i)]  # a cell the balanced design gave no image
            xs = [v for v, _ in points]
            ys, lows, highs = _error_bars([i for _, i in points])
            ax.errorbar(np.array(xs) + 0.06 * (b - len(names) / 2), ys, yerr=[lows, highs], marker="o", ms=2.5,
                        lw=0.9, capsize=1.5, color=BACKBONE_COLOURS[b % len(BACKBONE_COLOURS)],
                        label=name if n == 0 else None)
        ax.set_title(corruption.replace("_", " "), fontsize=7)
        ax.set_xticks([0] + list(severities), ["clean"] + [str(v) for v in severities], fontsize=6)
        ax.set_ylim(-0.02, 1.05)
        ax.tick_params(labelsize=6)
    for n in range(len(corruptions), rows * columns):
        axes[n // columns][n % columns].axis("off")
    for r in range(rows):
        axes[r][0].set_ylabel(measure, fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if unmeasured:
        handles += [Rectangle((0, 0), 0, 0, visible=False)]
        labels += [f"{', '.join(sorted(unmeasured))}: {MISSING}"]
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=min(6, len(labels)), bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return _png(fig)


def faithfulness_plot(names: list[str], scores: list) -> bytes:
    """ROAD gap per backbone for its deep-layer CAM and the random and Gaussian maps (95 % intervals): a faithful
    map stands above the random one."""
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.62, 2.1))
    colours = {"cam": "#176b2c", "random": "#999999", "gaussian": "#3b6ea8"}
    labels = {"cam": "deep-layer CAM", "random": "uniform-random map", "gaussian": "centred Gaussian"}
    for b, score in enumerate(scores):
        for m, found in enumerate(score.maps):
            if not measured(found.gap):
                ax.text(b + (m - 1) * 0.26, 0, MISSING, rotation=90, fontsize=5, ha="center", va="bottom",
                        color=colours[found.map])
                continue
            (value,), (low,), (high,) = _error_bars([found.gap])
            error = [[low], [high]]
            ax.bar(b + (m - 1) * 0.26, value, width=0.24, color=colours[found.map], yerr=error, capsize=2,
                   error_kw={"lw": 0.8}, label=labels[found.map] if b == 0 else None)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(names)), names, fontsize=6.5)
    ax.set_ylabel("ROAD gap (probability)", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return _png(fig)
