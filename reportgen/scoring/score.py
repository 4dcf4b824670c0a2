"""From saved CAMs to ``metrics.json``: per-image localisation, baselines and grouped aggregates
with bootstrap intervals. Pure numpy: runs again on saved results without torch."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator, Optional

import numpy as np

from ..inputs.config import AnalysisConfig
from ..inputs.registry import DEPTHS
from ..results import arrays as keys
from ..results.schema import (Aggregate, BackboneResult, CamStatus, ImageEntry, Interval, LastThreeSummary, Metrics,
                              PerImageRow, PredictionRow, RunIndex, SanityLayer, SanityStatus, SanityStepScore,
                              SanitySummary, SlimmingScore, SlimmingStatus)
from .measures import (bootstrap_ci, cam_similarity, centred_gaussian, ks_from_quantiles, localisation,
                       stable_seed, uniform_map, upsample)

METRIC_NAMES = ("mass_in_box", "mass_ratio", "pointing_hit", "spread", "entropy")
BASELINES = {"uniform": uniform_map, "gaussian": centred_gaussian}
LAST_THREE_ROLE = "last_three"
ArraysOf = Callable[[str], dict]


def baseline_role(name: str) -> str:
    return f"baseline:{name}"


def groups_of(size: Optional[str], background: Optional[str]) -> Iterator[str]:
    """The aggregate groups an image belongs to: all, its size, its background, and both."""
    yield "all"
    if size:
        yield f"size={size}"
    if background:
        yield f"background={background}"
    if size and background:
        yield f"size={size},background={background}"


def _row(image: ImageEntry, entry: BackboneResult, layer: str, role: str, status: CamStatus, found) -> PerImageRow:
    values = {name: (getattr(found, name) if found is not None else None) for name in METRIC_NAMES}
    return PerImageRow(image.file, entry.name, entry.family, layer, role, image.size, image.background, status,
                       **values)


def per_image_rows(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig) -> list[PerImageRow]:
    rows = []
    for entry in index.backbones:
        arrays = arrays_of(entry.name)
        roles = {layer: role for role, layer in entry.depth_layers.items()}
        for position, image in enumerate(index.images):
            view = entry.views[position]
            for layer in entry.layers:
                if keys.cam(layer) not in arrays:
                    continue
                status = entry.cam_status[layer][position]
                found = localisation(upsample(arrays[keys.cam(layer)][position], view.width, view.height), view.box,
                                     config.spread_level) if status == CamStatus.OK else None
                rows.append(_row(image, entry, layer, roles.get(layer, LAST_THREE_ROLE), status, found))
            for baseline, make in BASELINES.items():
                found = localisation(make(view.width, view.height), view.box, config.spread_level)
                rows.append(_row(image, entry, baseline_role(baseline), baseline_role(baseline), CamStatus.OK, found))
    return rows


def aggregate(rows: list[PerImageRow], config: AnalysisConfig) -> list[Aggregate]:
    buckets: dict = defaultdict(list)
    for row in rows:
        for group in groups_of(row.size, row.background):
            buckets[("backbone", row.backbone, row.role, group)].append(row)
            if row.role in DEPTHS or row.role.startswith("baseline:"):
                buckets[("family", row.family, row.role, group)].append(row)
    out = []
    for bucket, members in sorted(buckets.items()):
        seed = stable_seed(config.seed, *bucket)
        for metric in METRIC_NAMES:
            values = [float(m.value(metric)) for m in members if m.value(metric) is not None]
            mean, low, high = bootstrap_ci(values, config.bootstrap_samples, seed)
            out.append(Aggregate(*bucket, metric, mean, low, high, len(values),
                                 len(values) < config.rules.min_group_size))
    return out


def last_three_summary(index: RunIndex, arrays_of: ArraysOf) -> dict[str, LastThreeSummary]:
    """Per backbone: linear CKA between the last three layers' features (measured over all images by the
    engine), and Wasserstein-1 / Kolmogorov-Smirnov between their standardised weight distributions
    (from stored quantiles)."""
    out = {}
    for entry in index.backbones:
        arrays = arrays_of(entry.name)
        layers = entry.last_three
        cka = entry.feature_cka.matrix or tuple((None,) * len(layers) for _ in layers)
        standardised = []
        for layer in layers:
            q = arrays[keys.quantiles(layer)].astype(np.float64)
            stats = entry.weight_stats[layer]
            standardised.append((q - stats.mean) / stats.std if stats.std else q * 0)
        pairs = range(len(layers) - 1)
        out[entry.name] = LastThreeSummary(
            layers=tuple(layers), cka=tuple(tuple(row) for row in cka),
            weight_w1_consecutive=tuple(float(np.mean(np.abs(standardised[i] - standardised[i + 1]))) for i in pairs),
            weight_ks_consecutive=tuple(ks_from_quantiles(standardised[i], standardised[i + 1]) for i in pairs),
            feature_variance=tuple(entry.feature_stats[layer].variance for layer in layers))
    return out


def _mean_only(values) -> Interval:
    return Interval(float(np.mean(values)) if values else None, None, None, len(values))


def sanity_positions(entry: BackboneResult) -> tuple[int, ...]:
    """Set positions of the sanity sample (results of an older reportgen: every image)."""
    return entry.sanity.images or tuple(range(len(entry.views)))


def _sanity_layer(entry: BackboneResult, arrays: dict, role: str, layer: str, config: AnalysisConfig) -> SanityLayer:
    trained = arrays[keys.cam(layer)]
    sample = sanity_positions(entry)
    # (row in the sanity arrays, position in the set) of sampled images whose trained CAM is usable
    usable = [(row, i) for row, i in enumerate(sample) if entry.cam_status[layer][i] == CamStatus.OK]
    # Reference point: the trained CAMs against themselves (1.0 unless the similarity code is broken).
    reference = [cam_similarity(trained[i], trained[i], config.sanity_resolution) for _, i in usable]
    steps = [SanityStepScore("none (trained)", 0, 0, _mean_only([p[0] for p in reference]),
                             _mean_only([p[1] for p in reference]))]
    for number, step in enumerate(entry.sanity.steps):
        randomised = arrays[keys.sanity_cam(number, layer)]
        pairs = [cam_similarity(trained[i], randomised[row], config.sanity_resolution) for row, i in usable]
        seed = stable_seed(config.seed, "sanity", entry.name, layer, number)
        intervals = [Interval(*bootstrap_ci([p[k] for p in pairs], config.bootstrap_samples, seed), len(pairs))
                     for k in range(2)]
        steps.append(SanityStepScore(step.label, step.parameters,
                                     sum(step.cam_status[layer][row] != CamStatus.OK for row, _ in usable), *intervals))
    final = steps[-1]
    thresholds = config.rules
    stays_similar = bool(final.spearman.mean is not None and (
        final.spearman.mean >= thresholds.sanity_max_spearman or final.ssim.mean >= thresholds.sanity_max_ssim))
    return SanityLayer(role, tuple(steps), stays_similar)


def sanity_summary(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig) -> dict[str, SanitySummary]:
    """Per backbone and depth layer: similarity of the trained CAMs to those after each randomisation step.

    Images whose trained CAM is flagged are left out. A randomised CAM that is all zero counts as
    Spearman 0 (it ranks nothing) and its SSIM is computed against the zero map."""
    out = {}
    for entry in index.backbones:
        if entry.sanity.status != SanityStatus.DONE:
            out[entry.name] = SanitySummary(entry.sanity.status, entry.sanity.reason, {})
            continue
        arrays = arrays_of(entry.name)
        layers = {layer: _sanity_layer(entry, arrays, role, layer, config)
                  for role, layer in entry.depth_layers.items() if keys.cam(layer) in arrays}
        out[entry.name] = SanitySummary(SanityStatus.DONE, "", layers)
    return out


def _interval(values, config: AnalysisConfig, *key) -> Optional[Interval]:
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None
    return Interval(*bootstrap_ci(values, config.bootstrap_samples, stable_seed(config.seed, *key)), len(values))


def slimming_score(entry: BackboneResult, labels: list, arrays: dict, config: AnalysisConfig) -> SlimmingScore:
    """The slimmed model against the full one: agreement of top-1, accuracy change on labelled images, KL of
    the softmax outputs, deep-CAM Spearman, each with a bootstrap interval over the images."""
    run = entry.slimming
    if run.status != SlimmingStatus.DONE:
        return SlimmingScore(run.status, run.unit, run.reason, run.params_removed, run.macs_removed, None, None, None,
                             None, None, None)
    full = np.array([p.top5[0].index for p in entry.predictions])
    slim = arrays[keys.SLIM_TOP1]
    labelled = [i for i, label in enumerate(labels) if label is not None]
    full_correct = np.array([full[i] == labels[i] for i in labelled], dtype=float)
    slim_correct = np.array([slim[i] == labels[i] for i in labelled], dtype=float)
    name = entry.name
    return SlimmingScore(
        run.status, run.unit, run.reason, run.params_removed, run.macs_removed,
        _interval((full == slim).astype(float), config, "slim-agreement", name),
        float(full_correct.mean()) if labelled else None,
        float(slim_correct.mean()) if labelled else None,
        _interval(slim_correct - full_correct, config, "slim-top1", name),
        _interval(arrays[keys.SLIM_KL], config, "slim-kl", name),
        _interval(arrays[keys.SLIM_SPEARMAN], config, "slim-spearman", name) if keys.SLIM_SPEARMAN in arrays else None)


def predictions_table(index: RunIndex) -> list[PredictionRow]:
    """Per image and backbone: the class the CAM explains, top-5 with probabilities, correct or not."""
    return [PredictionRow(image.file, entry.name, image.class_index, p.target, p.target_name, p.target_source,
                          p.top5, p.correct_top1, p.correct_top5)
            for entry in index.backbones for image, p in zip(index.images, entry.predictions)]


def score(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig) -> Metrics:
    rows = per_image_rows(index, arrays_of, config)
    return Metrics(
        schema_version=index.schema_version,
        per_image=tuple(rows),
        predictions=tuple(predictions_table(index)),
        aggregates=tuple(aggregate(rows, config)),
        last_three=last_three_summary(index, arrays_of),
        sanity=sanity_summary(index, arrays_of, config),
        slimming={entry.name: slimming_score(entry, [image.class_index for image in index.images],
                                             arrays_of(entry.name), config) for entry in index.backbones},
    )
