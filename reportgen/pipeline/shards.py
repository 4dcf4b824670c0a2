"""Fan a large battery out: ``run_shard`` analyses one backbone on a slice of the images and writes an
ordinary results folder (plus the running statistics needed to merge); ``merge_and_score`` combines
shards into one results folder, exactly as if everything had run in one process (see
:mod:`reportgen.results.merge`). Only ``run_shard`` needs torch, and imports it when called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import InputDataError, UsageError
from ..inputs.config import AnalysisConfig
from ..inputs.images import ImageSet, load_image_set
from ..results.merge import merge_shards
from .run import decode_inputs, run_battery, score_and_write


def run_shard(backbone, image_paths: Sequence[Path | str], out_dir: Path | str,
              config: AnalysisConfig = AnalysisConfig(), weights: str = "pretrained", device: str = "cpu",
              checkpoint: Path | str | None = None, offline: bool = False) -> Path:
    """Analyse one backbone (registry name, timm id or Backbone) on ``image_paths`` -> ``out_dir/results``.

    Images keep the annotations of the ``annotations.csv`` in their folder. Pure apart from the folder it
    writes; safe to call from a Ray task or a submitit job."""
    from ..analysis.autolayers import resolve_backbones
    from ..analysis.classes import ClassNames
    from ..analysis.weights import plan_weights, require_available

    chosen, = resolve_backbones("paper", (backbone,)) if isinstance(backbone, str) else (backbone,)
    class_names = ClassNames()
    wanted = [Path(p).resolve() for p in image_paths]
    checkpoints = {chosen.name: Path(checkpoint)} if checkpoint else {}
    plans = plan_weights((chosen,), weights, checkpoints, offline=offline)
    require_available(plans)
    return run_planned_shard(plans[0], wanted, out_dir, config, weights, device, class_names)[0]


def run_planned_shard(plan, image_paths: Sequence[Path | str], out_dir: Path | str, config: AnalysisConfig,
                      weights: str = "pretrained", device: str = "cpu", class_names=None,
                      with_cost: bool = True, fresh: bool = False) -> tuple[Path, str]:
    """``run_shard`` with the weights already planned (a driver planned them for every shard):
    (results folder, "computed" or "cached"). ``with_cost=False`` skips the latency measurement (a driver
    takes each backbone's cost from its first shard)."""
    from ..analysis.classes import ClassNames

    class_names = class_names or ClassNames()
    wanted = [Path(p).resolve() for p in image_paths]
    if not wanted:
        raise UsageError("run_shard: no images given.")
    results = Path(out_dir) / "results"
    results.mkdir(parents=True, exist_ok=True)
    plans = (plan,)
    image_set, decoded = decode_inputs(plans, results, lambda on_image: _shard_images(wanted, class_names, config,
                                                                                        on_image))
    outcome = run_battery(plans, image_set, class_names, config, results, device=device, weights_mode=weights,
                          keep_merge_state=True, decoded=decoded, with_cost=with_cost, fresh=fresh)
    return results, outcome.status[plan.backbone.name]


def _shard_images(wanted: list[Path], class_names, config: AnalysisConfig, on_image) -> ImageSet:
    """The shard's images with their set's annotations (in the set's order, folder by folder); only these are
    decoded."""
    by_folder: dict[Path, list[Path]] = {}
    roots: dict[Path, Path] = {}
    for path in wanted:
        if path.parent not in roots:
            roots[path.parent] = _set_root(path.parent, class_names)
        by_folder.setdefault(roots[path.parent], []).append(path)
    if len(set(wanted)) != len(wanted):
        raise InputDataError("run_shard: duplicate image paths in one shard; give each image once.")
    found: dict[Path, object] = {}
    ordered = []
    offset = 0
    for folder, paths in by_folder.items():
        loaded = load_image_set(folder, class_names.resolve, config, only=paths,
                                on_image=lambda position, record, image, base=offset: on_image(base + position,
                                                                                               record, image))
        found.update((r.path.resolve(), r) for r in loaded.records)
        ordered += loaded.records
        offset += len(loaded.records)
        missing = [p.name for p in paths if p not in found]
        if missing:
            raise InputDataError(f"{folder}: {', '.join(missing[:3])} not in its image set "
                                 "(not an image, skipped as unreadable, or not listed in annotations.csv).")
    first = next(iter(by_folder))
    return ImageSet(first, tuple(ordered))


def _set_root(parent: Path, class_names) -> Path:
    """The image set a folder's images belong to: the folder, or the one above when the folder is a class
    folder (``root/<class>/img.jpg``) or the manifest lies above it."""
    if (parent / "annotations.csv").is_file():
        return parent
    if (parent.parent / "annotations.csv").is_file():
        return parent.parent
    try:
        class_names.resolve(parent.name)
        return parent.parent
    except ValueError:
        return parent


def merge_and_score(shard_dirs: Sequence[Path | str], out_dir: Path | str) -> Path:
    """Merge shard results folders into ``out_dir/results`` and score them; returns that folder."""
    index, results = merge_shards(shard_dirs, out_dir)
    score_and_write(index, results)
    return results
