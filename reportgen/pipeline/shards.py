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
from .run import run_battery, score_and_write


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
    if not wanted:
        raise UsageError("run_shard: no images given.")
    by_folder: dict[Path, list[Path]] = {}
    for path in wanted:
        by_folder.setdefault(path.parent, []).append(path)
    records = []
    for folder, paths in by_folder.items():
        found = {r.path.resolve(): r for r in load_image_set(folder, class_names.resolve, config).records}
        missing = [p.name for p in paths if p not in found]
        if missing:
            raise InputDataError(f"{folder}: {', '.join(missing[:3])} not in its image set "
                                 "(not an image, or not listed in annotations.csv).")
        records += [found[p] for p in paths]
    image_set = ImageSet(Path(next(iter(by_folder))), tuple(records))
    checkpoints = {chosen.name: Path(checkpoint)} if checkpoint else {}
    plans = plan_weights((chosen,), weights, checkpoints, offline=offline)
    require_available(plans)
    results = Path(out_dir) / "results"
    run_battery(plans, image_set, class_names, config, results, device=device, weights_mode=weights,
                keep_merge_state=True)
    return results


def merge_and_score(shard_dirs: Sequence[Path | str], out_dir: Path | str) -> Path:
    """Merge shard results folders into ``out_dir/results`` and score them; returns that folder."""
    index, results = merge_shards(shard_dirs, out_dir)
    score_and_write(index, results)
    return results
