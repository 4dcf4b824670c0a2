"""A candidate whose outputs cannot be read as a backbone's: one class for most images, top-1 at chance, or deep-layer
heatmaps that are all-zero or NaN for most images. A broken checkpoint, a bad export or the wrong input
normalisation leaves such a model; its heatmaps and scores then describe the damage, not the architecture, so the
decision names it and never recommends it (issue 27). Pure numbers in, a record out; the sentence is built in
report/."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

from ..inputs.config import DecisionSettings
from ..inputs.labels import IMAGENET_CLASSES
from ..inputs.label_space import LabelSpace, LabelSpaceKind
from ..results.schema import CamStatus, Prediction


@dataclass(frozen=True, kw_only=True)
class Degeneracy:
    """What is wrong with one candidate's outputs (``flagged`` False: nothing the checks could see)."""
    backbone: str
    display_name: str
    images: int
    top_class: str  # the class it predicts most often
    top_class_share: float  # share of the images predicted as that class
    collapsed: bool  # top_class_share at or above the limit (and the labels are not that uniform in that class)
    top1: Optional[float]  # on the labelled images
    top1_high: Optional[float]  # upper end of its interval
    chance: float  # 1 / number of classes
    at_chance: bool  # the whole top-1 interval lies within the chance margin
    broken_cams: int  # images whose deep-layer CAM is all-zero or NaN
    cams_broken: bool  # on at least the limit's share of the images

    @property
    def flagged(self) -> bool:
        return self.collapsed or self.at_chance or self.cams_broken


def assess(backbone: str, display_name: str, predictions: Sequence[Prediction], deep_statuses: Sequence[CamStatus],
           top1: Optional[float], top1_high: Optional[float], settings: DecisionSettings,
           classes: int = IMAGENET_CLASSES) -> Degeneracy:
    """The three checks on one candidate's predictions over the run's images, its top-1 with the upper end of its
    interval, and the status of its deep-layer CAM per image. Fewer images than ``degenerate_min_images`` (or
    labelled images, for the chance check) decide nothing."""
    images = len(predictions)
    enough = images >= settings.degenerate_min_images
    counts = Counter((p.top1.index, p.top1.name) for p in predictions if p.top5)
    (top_index, top_class), top_count = counts.most_common(1)[0] if counts else ((None, ""), 0)
    share = top_count / images if images else 0.0
    labels = Counter(p.target for p in predictions if p.correct_top1 is not None)
    labelled = sum(labels.values())
    # a folder that is mostly one class may be predicted as mostly *that* class (a collapse onto another class is
    # no less a collapse for the folder being uniform); enough labels to say so, as for the chance check
    labels_uniform = (labelled >= settings.degenerate_min_images
                      and labels[top_index] / labelled >= settings.degenerate_class_share)
    collapsed = enough and share >= settings.degenerate_class_share and not labels_uniform
    chance = 1.0 / classes
    ceiling = chance + settings.degenerate_chance_margin * (1.0 - chance)
    high = top1_high if top1_high is not None else top1
    at_chance = (labelled >= settings.degenerate_min_images and high is not None and high <= ceiling)
    broken = sum(status in (CamStatus.ZERO, CamStatus.NAN) for status in deep_statuses)
    cams_broken = (len(deep_statuses) >= settings.degenerate_min_images
                   and broken >= settings.degenerate_cam_share * len(deep_statuses))
    return Degeneracy(backbone=backbone, display_name=display_name, images=images, top_class=top_class,
                      top_class_share=share, collapsed=collapsed, top1=top1, top1_high=top1_high, chance=chance,
                      at_chance=at_chance, broken_cams=broken, cams_broken=cams_broken)


def reading_suspected(degenerate: Sequence[Degeneracy], candidates: int, space: LabelSpace) -> bool:
    """Every candidate degenerate on images whose numbered class names were read as ImageNet indices: a checkpoint
    breaks one candidate, a wrong reading of the labels breaks them all (a digits set in folders 0 … 9 read as
    tench, goldfish, …), so page 1 names the reading as the likeliest cause before any checkpoint (issue 34)."""
    numbered = space.numbered
    flagged = {found.backbone for found in degenerate if found.flagged}
    return (candidates > 0 and len(flagged) == candidates and numbered is not None
            and numbered.read_as == LabelSpaceKind.IMAGENET)
