"""Figures from saved results (matplotlib Agg + numpy/PIL; no torch). Each returns PNG bytes."""
from __future__ import annotations

import io
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

from ..results import arrays as keys  # noqa: E402
from ..results.schema import AggregateLookup, BackboneResult, CamStatus, RunIndex, SanitySummary  # noqa: E402
from ..results.store import SavedResults  # noqa: E402
from ..scoring.measures import normalise01, upsample  # noqa: E402

CMAP = colormaps["jet"]
PAGE_WIDTH_IN = 7.2
FLAG_COLOUR = "#c00000"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pil_kwargs={"compress_level": 3})
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


def _grid(cells: list[list[Image.Image | None]], column_titles: list[str], row_labels: list[str]) -> bytes:
    rows, cols = len(cells), len(cells[0])
    width = LABEL_PX + cols * (CELL_PX + GAP_PX) + BAR_PX
    height = TITLE_PX + rows * (CELL_PX + GAP_PX)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(column_titles):
        for k, line in enumerate(title.split("\n")[:2]):
            _text(draw, (LABEL_PX + c * (CELL_PX + GAP_PX) + CELL_PX / 2, 4 + 15 * k), _fit(line, 13, CELL_PX + GAP_PX),
                  13, anchor="ma")
    for r, row in enumerate(cells):
        top = TITLE_PX + r * (CELL_PX + GAP_PX)
        _text(draw, (LABEL_PX - 6, top + CELL_PX / 2), _fit(row_labels[r], 13, LABEL_PX - 10), 13, anchor="rm")
        for c, cell in enumerate(row):
            if cell is None:
                continue
            left = LABEL_PX + c * (CELL_PX + GAP_PX)
            canvas.paste(cell, (left + (CELL_PX - cell.width) // 2, top + (CELL_PX - cell.height) // 2))
    canvas.paste(_colour_bar(min(height - TITLE_PX, 260)), (width - BAR_PX, TITLE_PX))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def object_grid(cache: ViewCache, positions: list[int], role: str = "deep") -> bytes:
    """Images (rows) x backbones (columns), CAM of the given depth over the model's view, box dashed."""
    backbones = cache.results.index.backbones
    cells = []
    for position in positions:
        row = []
        for entry in backbones:
            cam, status = _cam_of(cache, entry, entry.depth_layers[role], position)
            row.append(_cell_image(cache.view(entry, position), cam, entry.views[position].box, _flag_text(status)))
        cells.append(row)
    return _grid(cells, [entry.display_name for entry in backbones],
                 [cache.results.index.images[p].file for p in positions])


def depth_grid(cache: ViewCache, position: int) -> bytes:
    """Backbones (rows) x (input, shallow, middle, deep) for one image; each cell titled by its layer."""
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
    fig.tight_layout()
    return _png(fig)


def localisation_plot(index: RunIndex, lookup: AggregateLookup, metric: str) -> bytes:
    """Deep-layer metric per backbone by size class, with the uniform and Gaussian baselines drawn in."""
    backbones = index.backbones
    sizes = ("small", "medium", "large")
    fig, axes = plt.subplots(1, len(backbones), figsize=(PAGE_WIDTH_IN, 2.0), sharey=True, squeeze=False)
    for c, entry in enumerate(backbones):
        ax = axes[0][c]
        for background, colour, shift in (("clean", "#2a7fd4", -0.12), ("cluttered", "#d45f2a", 0.12)):
            for s, size in enumerate(sizes):
                row = lookup("backbone", entry.name, "deep", f"size={size},background={background}", metric)
                if row and row.mean is not None:
                    low = row.mean - row.ci_low if row.ci_low is not None else 0
                    high = row.ci_high - row.mean if row.ci_high is not None else 0
                    ax.errorbar(s + shift, row.mean, yerr=[[low], [high]], fmt="o", color=colour, ms=3, lw=0.8,
                                label=background if s == 0 else None)
        for baseline, style in (("uniform", ":"), ("gaussian", "--")):
            row = lookup("backbone", entry.name, f"baseline:{baseline}", "all", metric)
            if row and row.mean is not None:
                ax.axhline(row.mean, color="grey", ls=style, lw=0.8, label=f"{baseline} baseline")
        ax.set_xticks(range(3), sizes, fontsize=6)
        ax.set_title(entry.display_name, fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel(f"{metric} (deep layer)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _png(fig)


def sanity_plot(index: RunIndex, sanity: dict[str, SanitySummary], threshold: float) -> bytes:
    """Similarity of trained to randomised CAMs along the randomisation cascade, one panel per backbone."""
    done = [entry for entry in index.backbones if sanity[entry.name].status == "done"]
    fig, axes = plt.subplots(1, len(done), figsize=(PAGE_WIDTH_IN, 2.1), sharey=True, squeeze=False)
    colours = {"shallow": "#7a9e3b", "middle": "#2a7fd4", "deep": "#b00020"}
    for c, entry in enumerate(done):
        ax = axes[0][c]
        labels = []
        for layer, found in sanity[entry.name].layers.items():
            labels = [step.step.replace(" (trained)", "") for step in found.steps]
            xs = np.arange(len(found.steps))
            for metric, style in (("spearman", "-"), ("ssim", "--")):
                intervals = [getattr(step, metric) for step in found.steps]
                means = [i.mean for i in intervals]
                lows = [m - (i.ci_low if i.ci_low is not None else m) for m, i in zip(means, intervals)]
                highs = [(i.ci_high if i.ci_high is not None else m) - m for m, i in zip(means, intervals)]
                ax.errorbar(xs, means, yerr=[lows, highs], color=colours.get(found.role, "black"), ls=style,
                            marker="o", ms=2.5, lw=0.9, capsize=1.5,
                            label=f"{found.role} {metric}" if c == 0 else None)
        ax.axhline(threshold, color="grey", ls=":", lw=0.8, label="flag threshold" if c == 0 else None)
        ax.axhline(0, color="black", lw=0.4)
        ax.set_xticks(range(len(labels)), labels, fontsize=5.5, rotation=30)
        ax.set_title(entry.display_name, fontsize=7)
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
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN * 0.62, 2.4))
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
