"""Fan a large battery out: ``image_slices`` validates the image set once and cuts it into slices that carry
their annotations; ``run_shard`` analyses one backbone on one slice and writes an ordinary results folder (plus
the running statistics needed to merge); ``merge_and_score`` combines shards into one results folder, exactly as
if everything had run in one process (see :mod:`reportgen.results.merge`). ``image_slices`` and ``run_shard``
need torch, and import it when called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..errors import UsageError
from ..inputs.config import AnalysisConfig
from ..inputs.images import ImageSet, decode_records, load_image_set
from ..inputs.label_space import LabelSpace
from ..results.lock import output_folder_lock
from ..results.merge import merge_shards
from .run import decode_inputs, run_battery, score_and_write


def image_slices(images_dir: Path | str, size: int, config: AnalysisConfig = AnalysisConfig(),
                 space: Optional[LabelSpace] = None) -> list[ImageSet]:
    """The image set at ``images_dir``, validated once here (labels, boxes, sizes, backgrounds, unreadable files),
    cut into slices of ``size`` images rounded up to whole batches. Each slice carries its images' annotations
    and the set's skipped files, so shards never re-derive them. ``space``: the label space the labels name
    (default ImageNet-1k's, whose names need torch: imported then)."""

    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise UsageError(f"image_slices: size = {size!r}; give an integer >= 1.")
    from ..analysis.probe import evaluation_set

    space = space or _imagenet()
    # The whole set's hashed samples leave out what a probe's explaining head is fit on (as in one process).
    image_set = evaluation_set(load_image_set(Path(images_dir).resolve(), space, config), space, config)
    return image_set.slices(whole_batches(size, config.batch_size), config.seed, sample_counts(config))


def sample_counts(config: AnalysisConfig) -> tuple:
    """The hashed samples the battery draws (sanity check, corruptions, faithfulness): a slice keeps the whole
    set's, so shards measure exactly the images one process would."""
    return (config.sanity_max_images, config.corruption_max_images, config.faithfulness_max_images)


def whole_batches(size: int, batch_size: int) -> int:
    """``size`` rounded up to a multiple of ``batch_size``: every batch of a shard holds the images it holds in
    one process, so the numbers agree."""
    return max(batch_size, -(-size // batch_size) * batch_size)


def run_shard(backbone, images: ImageSet, out_dir: Path | str, config: AnalysisConfig = AnalysisConfig(),
              weights_mode: str = "pretrained", device: str = "cpu", checkpoint: Path | str | None = None,
              offline: bool = False) -> Path:
    """Analyse one backbone (registry name, timm id or Backbone) on a slice of an image set (from
    :func:`image_slices`) -> ``out_dir/results``. Pure apart from the folder it writes; safe to call from a Ray
    task or a submitit job."""
    from ..analysis.autolayers import resolve_backbones
    from ..analysis.weights import plan_weights, require_available

    if not isinstance(images, ImageSet):
        raise UsageError("run_shard takes a slice from image_slices(DIR, SIZE), which carries the set's labels and "
                         "boxes; a list of paths would lose them.")
    chosen, = resolve_backbones("paper", (backbone,)) if isinstance(backbone, str) else (backbone,)
    checkpoints = {chosen.name: Path(checkpoint)} if checkpoint else {}
    plans = plan_weights((chosen,), weights_mode, checkpoints, offline=offline)
    require_available(plans)
    return run_planned_shard(plans[0], images, out_dir, config, weights_mode, device, _imagenet())[0]


def run_planned_shard(plan, images: ImageSet, out_dir: Path | str, config: AnalysisConfig,
                      weights_mode: str = "pretrained", device: str = "cpu",
                      class_names: Optional[LabelSpace] = None,
                      with_cost: bool = True, fresh: bool = False, head=None, setup=None) -> tuple[Path, str]:
    """``run_shard`` with the weights already planned (a driver planned them for every shard):
    (results folder, "computed" or "cached"). ``with_cost=False`` skips the latency measurement (a driver
    measures each backbone's cost on its own). ``class_names`` is the run's label space (default ImageNet-1k's);
    on the user's classes ``head`` is the backbone's head plan and ``setup`` its probe's explaining head, fit on the
    whole set (the shard keeps the features; the probe is fit after the merge)."""
    class_names = class_names or _imagenet()
    if not images.records:
        raise UsageError("run_shard: no images given.")
    results = Path(out_dir) / "results"
    results.mkdir(parents=True, exist_ok=True)
    plans = (plan,)
    with output_folder_lock(Path(out_dir)):
        image_set, decoded = decode_inputs(plans, results, lambda on_image, on_listed: decode_records(
            images, on_image, on_listed))
        name = plan.backbone.name
        outcome = run_battery(plans, image_set, class_names, config, results, device=device, weights_mode=weights_mode,
                              keep_merge_state=True, decoded=decoded, with_cost=with_cost, fresh=fresh,
                              heads={name: head} if head is not None else None,
                              setups={name: setup} if setup is not None else None)
    return results, outcome.status[plan.backbone.name]


def _imagenet() -> LabelSpace:
    """ImageNet-1k's label space, the default of the library shard API (imports torch and timm)."""
    from ..analysis.classes import imagenet_label_space

    return imagenet_label_space()


def merge_and_score(shard_dirs: Sequence[Path | str], out_dir: Path | str) -> Path:
    """Merge shard results folders into ``out_dir/results`` and score them; returns that folder."""
    index, results = merge_shards(shard_dirs, out_dir)
    score_and_write(index, results)
    return results
