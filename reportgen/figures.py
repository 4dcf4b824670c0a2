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
from PIL import Image  # noqa: E402

from .metrics import normalise01, upsample  # noqa: E402
from .store import SavedResults  # noqa: E402

CMAP = colormaps["jet"]
PAGE_WIDTH_IN = 7.2
FLAG_COLOUR = "#c00000"


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
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

    def view(self, backbone: dict, position: int) -> np.ndarray:
        crop = tuple(backbone["views"][position]["crop"])
        size = (backbone["views"][position]["width"], backbone["views"][position]["height"])
        key = (position, crop, size)
        if key not in self._images:
            info = self.results.index["images"][position]
            with Image.open(self.results.image_path(position)) as copy:
                copy = copy.convert("RGB")
                fx, fy = copy.width / info["width"], copy.height / info["height"]
                box = (crop[0] * fx, crop[1] * fy, crop[2] * fx, crop[3] * fy)
                self._images[key] = np.asarray(copy.resize(size, Image.BICUBIC, box=box), dtype=np.float32) / 255.0
        return self._images[key]


def overlay(view: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    heat = CMAP(normalise01(upsample(cam, view.shape[1], view.shape[0])))[..., :3]
    return (1 - alpha) * view + alpha * heat


def _cell(ax, image, box=None, flag=None, title=None, ylabel=None):
    ax.imshow(image, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if box is not None:
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, lw=1.2, ec="white", ls="--"))
    if flag:
        ax.text(0.5, 0.5, flag, transform=ax.transAxes, ha="center", va="center", color="white", fontsize=7,
                fontweight="bold", bbox=dict(facecolor=FLAG_COLOUR, edgecolor="none", pad=2))
    if title:
        ax.set_title(title, fontsize=7)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=6, rotation=0, ha="right", va="center", labelpad=4)


def _colourbar(fig, axes):
    mappable = plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap=CMAP)
    bar = fig.colorbar(mappable, ax=axes, fraction=0.025, pad=0.01)
    bar.set_label("Grad-CAM (min-max per map)", fontsize=6)
    bar.ax.tick_params(labelsize=6)


def _flag_text(status: str) -> str | None:
    return None if status == "ok" else {"zero": "ALL-ZERO CAM", "nan": "NaN CAM"}.get(status, status.upper())


def object_grid(cache: ViewCache, positions: list[int], role: str = "deep") -> bytes:
    """Images (rows) x backbones (columns), CAM of the given depth over the model's view, box dashed."""
    backbones = cache.results.index["backbones"]
    rows, cols = len(positions), len(backbones)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, 1.15 * rows + 0.4), squeeze=False)
    for c, entry in enumerate(backbones):
        layer = entry["depth_layers"][role]
        cams = cache.arrays(entry["name"]).get(f"cam__{layer}")
        for r, position in enumerate(positions):
            view = cache.view(entry, position)
            status = entry["cam_status"][layer][position]
            image = overlay(view, cams[position]) if cams is not None and status == "ok" else view
            _cell(axes[r][c], image, entry["views"][position]["box"], _flag_text(status),
                  title=entry["display_name"] if r == 0 else None,
                  ylabel=_short(cache.results.index["images"][position]["file"]) if c == 0 else None)
    _colourbar(fig, axes)
    return _png(fig)


def depth_grid(cache: ViewCache, position: int) -> bytes:
    """Backbones (rows) x (input, shallow, middle, deep) for one image."""
    backbones = cache.results.index["backbones"]
    fig, axes = plt.subplots(len(backbones), 4, figsize=(PAGE_WIDTH_IN * 0.72, 1.45 * len(backbones) + 0.3),
                             squeeze=False)
    for r, entry in enumerate(backbones):
        view = cache.view(entry, position)
        _cell(axes[r][0], view, entry["views"][position]["box"], title="input" if r == 0 else None,
              ylabel=entry["display_name"])
        for c, role in enumerate(("shallow", "middle", "deep"), start=1):
            layer = entry["depth_layers"][role]
            cams = cache.arrays(entry["name"]).get(f"cam__{layer}")
            status = entry["cam_status"][layer][position]
            image = overlay(view, cams[position]) if cams is not None and status == "ok" else view
            _cell(axes[r][c], image, None, _flag_text(status), title=f"{role}\n{layer}" if r == 0 else None)
            if r > 0:
                axes[r][c].set_title(layer, fontsize=5)
    _colourbar(fig, axes)
    return _png(fig)


def last_three_figure(cache: ViewCache, backbone: dict, position: int) -> bytes:
    """Weight histograms (top), feature visualisation (middle) and Grad-CAM (bottom) of the last three layers."""
    arrays = cache.arrays(backbone["name"])
    fig, axes = plt.subplots(3, 3, figsize=(PAGE_WIDTH_IN, 6.2))
    view = cache.view(backbone, position)
    for c, layer in enumerate(backbone["last_three"]):
        counts, edges = arrays[f"histcounts__{layer}"], arrays[f"histedges__{layer}"]
        stats = backbone["weight_stats"][layer]
        ax = axes[0][c]
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#3b6ea8")
        ax.set_title(f"{layer}\nweights: std {stats['std']:.3g}, kurt {stats['excess_kurtosis']:.2g}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
        ax.set_xlabel("weight value (0.5-99.5 pct)", fontsize=6)

        ax = axes[1][c]
        if f"featmap__{layer}" in arrays:
            fmap = arrays[f"featmap__{layer}"][position]
            heat = colormaps["viridis"](normalise01(upsample(fmap, view.shape[1], view.shape[0])))[..., :3]
            _cell(ax, 0.4 * view + 0.6 * heat, title="features: mean |activation|")
        else:
            matrix = arrays[f"featvec__{layer}"]
            ax.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set_title(f"features: first {matrix.shape[1]} units x images", fontsize=7)
            ax.set_xlabel("unit", fontsize=6)
            ax.set_ylabel("image", fontsize=6)
            ax.tick_params(labelsize=5)

        ax = axes[2][c]
        status = backbone["cam_status"][layer][position]
        if f"cam__{layer}" in arrays and status == "ok":
            _cell(ax, overlay(view, arrays[f"cam__{layer}"][position]), title="Grad-CAM")
        else:
            _cell(ax, view * 0.35 + 0.65, flag=_flag_text(status) if status != "not-spatial" else "NO SPATIAL MAP",
                  title="Grad-CAM")
    fig.tight_layout()
    return _png(fig)


def localisation_plot(index: dict, aggregates: list[dict], metric: str) -> bytes:
    """Deep-layer metric per backbone by size class, with the uniform and Gaussian baselines drawn in."""
    from .scoring import find

    backbones = index["backbones"]
    sizes = ("small", "medium", "large")
    fig, axes = plt.subplots(1, len(backbones), figsize=(PAGE_WIDTH_IN, 2.0), sharey=True, squeeze=False)
    for c, entry in enumerate(backbones):
        ax = axes[0][c]
        for background, colour, shift in (("clean", "#2a7fd4", -0.12), ("cluttered", "#d45f2a", 0.12)):
            for s, size in enumerate(sizes):
                row = find(aggregates, "backbone", entry["name"], "deep", f"size={size},background={background}", metric)
                if row and row["mean"] is not None:
                    low = row["mean"] - row["ci_low"] if row["ci_low"] is not None else 0
                    high = row["ci_high"] - row["mean"] if row["ci_high"] is not None else 0
                    ax.errorbar(s + shift, row["mean"], yerr=[[low], [high]], fmt="o", color=colour, ms=3, lw=0.8,
                                label=background if s == 0 else None)
        for baseline, style in (("uniform", ":"), ("gaussian", "--")):
            row = find(aggregates, "backbone", entry["name"], f"baseline:{baseline}", "all", metric)
            if row and row["mean"] is not None:
                ax.axhline(row["mean"], color="grey", ls=style, lw=0.8, label=f"{baseline} baseline")
        ax.set_xticks(range(3), sizes, fontsize=6)
        ax.set_title(entry["display_name"], fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel(f"{metric} (deep layer)", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return _png(fig)


def _short(name: str, limit: int = 22) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def sanity_plot(index: dict, sanity: dict, threshold: float) -> bytes:
    """Similarity of trained to randomised CAMs along the randomisation cascade, one panel per backbone."""
    done = [entry for entry in index["backbones"] if sanity[entry["name"]]["status"] == "done"]
    fig, axes = plt.subplots(1, len(done), figsize=(PAGE_WIDTH_IN, 2.1), sharey=True, squeeze=False)
    colours = {"shallow": "#7a9e3b", "middle": "#2a7fd4", "deep": "#b00020"}
    for c, entry in enumerate(done):
        ax = axes[0][c]
        labels = []
        for layer, found in sanity[entry["name"]]["layers"].items():
            labels = [step["step"].replace(" (trained)", "") for step in found["steps"]]
            xs = np.arange(len(found["steps"]))
            for metric, style in (("spearman", "-"), ("ssim", "--")):
                means = [step[metric]["mean"] for step in found["steps"]]
                lows = [m - (step[metric]["ci_low"] if step[metric]["ci_low"] is not None else m)
                        for m, step in zip(means, found["steps"])]
                highs = [(step[metric]["ci_high"] if step[metric]["ci_high"] is not None else m) - m
                         for m, step in zip(means, found["steps"])]
                ax.errorbar(xs, means, yerr=[lows, highs], color=colours.get(found["role"], "black"), ls=style,
                            marker="o", ms=2.5, lw=0.9, capsize=1.5,
                            label=f"{found['role']} {metric}" if c == 0 else None)
        ax.axhline(threshold, color="grey", ls=":", lw=0.8, label="flag threshold" if c == 0 else None)
        ax.axhline(0, color="black", lw=0.4)
        ax.set_xticks(range(len(labels)), labels, fontsize=5.5, rotation=30)
        ax.set_title(entry["display_name"], fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_ylim(-0.3, 1.05)
    axes[0][0].set_ylabel("similarity to trained CAM", fontsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    return _png(fig)
