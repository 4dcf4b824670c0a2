"""Analysis and rule settings. Every threshold the rules use lives here, and the whole config is saved
with the results so a report states what it was judged by."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RuleThresholds:
    # A family difference counts only when the bootstrap 95 % intervals do not overlap
    # and the means differ by at least this fraction of the larger one.
    min_relative_difference: float = 0.05
    # Fewer images than this behind a group mean: the group is "small" and verdicts are inconclusive.
    min_group_size: int = 2
    # A deep-layer CAM "focuses on the object" when its mean mass_ratio exceeds this.
    focus_mass_ratio: float = 1.2
    # Slimming: the penultimate layer is redundant when its features are this similar (linear CKA)
    # to the layer before it.
    slim_cka: float = 0.8
    # ... and the Kolmogorov-Smirnov distance between their standardised weight distributions is at most this.
    slim_max_ks: float = 0.1
    # Sanity check: a layer is flagged when, after randomising every weight, its CAMs still correlate
    # with the trained model's at least this much (mean Spearman rank correlation over the images).
    sanity_max_spearman: float = 0.5
    # ... or when their mean SSIM is at least this.
    sanity_max_ssim: float = 0.5


@dataclass(frozen=True)
class AnalysisConfig:
    cam_method: str = "gradcam"
    batch_size: int = 8
    seed: int = 0
    bootstrap_samples: int = 1000
    histogram_bins: int = 60
    weight_quantiles: int = 1001
    # |w| below this fraction of the layer's largest |w| counts as "near zero".
    near_zero_fraction: float = 0.01
    # CAM >= this fraction of its maximum counts towards "spread".
    spread_level: float = 0.5
    # Images shown in the depth figure (section 3.2), by file name; empty = first of each size class.
    depth_figure_images: tuple = ()
    # Size class from the box's share of the image, when the manifest gives none: below -> small,
    # from -> large, between -> medium (the curated set's objects fill ~5 %, ~20 % and ~60 %).
    size_small_below: float = 0.10
    size_large_from: float = 0.35
    # Background class, when not given: "cluttered" when the share of edge pixels outside the box is at
    # least this (see imageset.edge_density).
    clutter_edge_density: float = 0.04
    # Model-parameter randomisation test (trained weights only).
    sanity_check: bool = True
    # Both CAMs are resized to this square size before Spearman / SSIM are computed.
    sanity_resolution: int = 64
    rules: RuleThresholds = field(default_factory=RuleThresholds)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["depth_figure_images"] = list(self.depth_figure_images)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisConfig":
        data = dict(data)
        rules = RuleThresholds(**data.pop("rules", {}))
        data["depth_figure_images"] = tuple(data.get("depth_figure_images", ()))
        return cls(rules=rules, **data)
