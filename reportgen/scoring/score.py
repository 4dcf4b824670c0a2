"""From saved CAMs to ``metrics.json``: per-image localisation, baselines and grouped aggregates, with every
interval from the run's one paired bootstrap (:mod:`reportgen.scoring.bootstrap`). Pure numpy: runs again on
saved results without torch."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import numpy as np

from ..inputs.config import AnalysisConfig, sample_size_source
from ..inputs.registry import DEPTHS
from ..results import arrays as keys
from ..results.schema import (Aggregate, BackboneResult, CamStatus, ImageEntry, Interval, LastThreeSummary, Metrics,
                              PerImageRow, PredictionRow, RunIndex, RunStatus, SampleSize, SanityLayer, SanityStatus,
                              SanityStepScore, SanitySummary, SlimmingScore, SlimmingStatus)
from .beyond_paper import calibration_score, corruption_score, faithfulness_score
from .bootstrap import PairedDraws, interval
from .datacheck import check_data
from .task_report import task_report
from .measures import cam_similarity, centred_gaussian, ks_from_quantiles, localisation, uniform_map, upsample
from .vectors import Vectors, interval_of, run_draws

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
    return PerImageRow(image=image.file, backbone=entry.name, family=entry.family, layer=layer, role=role,
                       size=image.size, background=image.background, cam_status=status, **values)


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


def _group_masks(index: RunIndex) -> dict[str, np.ndarray]:
    """Image membership of every group that holds an image: all, each size, each background, each pair."""
    masks: dict = {}
    for position, image in enumerate(index.images):
        for group in groups_of(image.size, image.background):
            masks.setdefault(group, np.zeros(len(index.images), dtype=bool))[position] = True
    return masks


def aggregate(index: RunIndex, rows: list[PerImageRow], config: AnalysisConfig,
              draws: Optional[PairedDraws] = None) -> list[Aggregate]:
    """Group means with intervals from the run's paired bootstrap. A backbone's value per image is its row (the
    mean of the layers of a role held by several); a family's is the mean over its backbones of each image, so
    the images are the unit resampled, for every backbone and family alike."""
    draws = draws or run_draws(index)
    vectors = Vectors(index, rows)
    masks = _group_masks(index)
    strata_members = {group: np.array([bool(mask[draws.image_strata == s].any()) for s in range(len(draws.strata))])
                      for group, mask in masks.items()}
    scopes = [("backbone", b.name, role) for b in index.backbones for role in sorted(vectors.roles.get(b.name, ()))]
    families = sorted({b.family for b in index.backbones})
    family_roles = sorted({role for b in index.backbones for role in vectors.roles.get(b.name, ())
                           if role in DEPTHS or role.startswith("baseline:")})
    scopes += [("family", family, role) for family in families for role in family_roles]
    out = []
    for scope, name, role in sorted(scopes):
        for metric in METRIC_NAMES:
            values = vectors.backbone(name, role, metric) if scope == "backbone" else vectors.family(name, role, metric)
            sums, counts = draws.stratum_sums(values)
            for group in sorted(masks):
                members = masks[group]
                finite = values[members][np.isfinite(values[members])]
                chosen = strata_members[group]
                with np.errstate(invalid="ignore", divide="ignore"):
                    means = sums[:, chosen].sum(axis=1) / counts[:, chosen].sum(axis=1)
                low, high = interval(means) if finite.size >= 2 else (None, None)
                out.append(Aggregate(scope=scope, name=name, role=role, group=group, metric=metric,
                                     mean=float(finite.mean()) if finite.size else None, ci_low=low, ci_high=high,
                                     n=int(finite.size), small_group=int(finite.size) < config.rules.min_group_size))
    return sorted(out, key=lambda a: (a.scope, a.name, a.role, a.group, METRIC_NAMES.index(a.metric)))


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


def _sanity_layer(entry: BackboneResult, arrays: dict, role: str, layer: str, config: AnalysisConfig,
                  draws: PairedDraws) -> SanityLayer:
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
        per_image = np.full((2, draws.images), np.nan)
        for row, i in usable:
            per_image[:, i] = cam_similarity(trained[i], randomised[row], config.sanity_resolution)
        intervals = [interval_of(per_image[k], draws) or Interval(None, None, None, 0) for k in range(2)]
        steps.append(SanityStepScore(step.label, step.parameters,
                                     sum(step.cam_status[layer][row] != CamStatus.OK for row, _ in usable), *intervals))
    final = steps[-1]
    thresholds = config.rules
    stays_similar = bool(final.spearman.mean is not None and (
        final.spearman.mean >= thresholds.sanity_max_spearman or final.ssim.mean >= thresholds.sanity_max_ssim))
    return SanityLayer(role, tuple(steps), stays_similar)


def sanity_summary(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig,
                   draws: Optional[PairedDraws] = None) -> dict[str, SanitySummary]:
    """Per backbone and depth layer: similarity of the trained CAMs to those after each randomisation step.

    Images whose trained CAM is flagged are left out. A randomised CAM that is all zero counts as
    Spearman 0 (it ranks nothing) and its SSIM is computed against the zero map."""
    draws = draws or run_draws(index)
    out = {}
    for entry in index.backbones:
        if entry.sanity.status != SanityStatus.DONE:
            out[entry.name] = SanitySummary(entry.sanity.status, entry.sanity.reason, {})
            continue
        arrays = arrays_of(entry.name)
        layers = {layer: _sanity_layer(entry, arrays, role, layer, config, draws)
                  for role, layer in entry.depth_layers.items() if keys.cam(layer) in arrays}
        out[entry.name] = SanitySummary(SanityStatus.DONE, "", layers)
    return out


def slimming_score(entry: BackboneResult, labels: list, arrays: dict, draws: PairedDraws) -> SlimmingScore:
    """The slimmed model against the full one: agreement of top-1, accuracy change on labelled images, KL of
    the softmax outputs, deep-CAM Spearman, each with its interval from the run's paired bootstrap."""
    run = entry.slimming
    if run.status != SlimmingStatus.DONE:
        return SlimmingScore(status=run.status, unit=run.unit, reason=run.reason, params_removed=run.params_removed,
                             macs_removed=run.macs_removed, agreement=None, top1_full=None, top1_slim=None,
                             top1_change=None, kl=None, deep_cam_spearman=None)
    # The slimmed model runs through the head the CAMs explain (for a probe, the one fit on a per-class sample).
    full = (np.asarray(arrays[keys.HEAD_TOP1]) if keys.HEAD_TOP1 in arrays
            else np.array([p.top1.index for p in entry.predictions]))
    slim = arrays[keys.SLIM_TOP1]
    labelled = np.array([label is not None for label in labels])
    truth = np.array([label if label is not None else -1 for label in labels])
    full_correct = np.where(labelled, (full == truth).astype(float), np.nan)
    slim_correct = np.where(labelled, (slim == truth).astype(float), np.nan)
    spearman = arrays[keys.SLIM_SPEARMAN] if keys.SLIM_SPEARMAN in arrays else None
    return SlimmingScore(status=run.status, unit=run.unit, reason=run.reason, params_removed=run.params_removed,
                         macs_removed=run.macs_removed, agreement=interval_of((full == slim).astype(float), draws),
                         top1_full=float(np.nanmean(full_correct)) if labelled.any() else None,
                         top1_slim=float(np.nanmean(slim_correct)) if labelled.any() else None,
                         top1_change=interval_of(slim_correct - full_correct, draws),
                         kl=interval_of(arrays[keys.SLIM_KL], draws),
                         deep_cam_spearman=interval_of(spearman, draws) if spearman is not None else None)


def predictions_table(index: RunIndex) -> list[PredictionRow]:
    """Per image and backbone: the class the CAM explains, top-5 with probabilities, correct or not."""
    return [PredictionRow(image=image.file, backbone=entry.name, class_index=image.class_index, target=p.target,
                          target_name=p.target_name, target_source=p.target_source, top5=p.top5,
                          correct_top1=p.correct_top1, correct_top5=p.correct_top5)
            for entry in index.backbones for image, p in zip(index.images, entry.predictions)]


def score(index: RunIndex, arrays_of: ArraysOf, config: AnalysisConfig) -> Metrics:
    draws = run_draws(index)
    rows = per_image_rows(index, arrays_of, config)
    return Metrics(
        schema_version=index.schema_version,
        per_image=tuple(rows),
        predictions=tuple(predictions_table(index)),
        aggregates=tuple(aggregate(index, rows, config, draws)),
        last_three=last_three_summary(index, arrays_of),
        sanity=sanity_summary(index, arrays_of, config, draws),
        slimming={entry.name: slimming_score(entry, [image.class_index for image in index.images],
                                             arrays_of(entry.name), draws) for entry in index.backbones},
        calibration={entry.name: calibration_score(index, entry, arrays_of(entry.name), config, draws)
                     for entry in index.backbones},
        corruption={entry.name: corruption_score(index, entry, arrays_of(entry.name), draws)
                    for entry in index.backbones},
        faithfulness={entry.name: faithfulness_score(index, entry, arrays_of(entry.name), draws)
                      for entry in index.backbones},
        device=index.device,
        sample_sizes=sample_sizes(index),
        task=task_report(index, arrays_of, config, draws),
        train_copies=index.train_copies,
        data=check_data(index, arrays_of, config),
    )


def sample_sizes(index: RunIndex) -> tuple[SampleSize, ...]:
    """The corruption and faithfulness sample sizes of the run: the limit, where it came from (the battery file's
    [analysis] table, the device's default) and the images it gave."""
    given = (index.battery_file or {}).get("analysis", {})
    rows = []
    for check, key, run_of in (("corruptions", "corruption_max_images", lambda b: b.corruption),
                               ("faithfulness", "faithfulness_max_images", lambda b: b.faithfulness)):
        limit = getattr(index.config, key)
        ran = any(run_of(b) is not None and run_of(b).status == RunStatus.DONE for b in index.backbones)
        rows.append(SampleSize(check, key, limit, sample_size_source(key, limit, index.device, given),
                               min(limit, len(index.images)), ran))
    return tuple(rows)
