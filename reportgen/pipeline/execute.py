"""A whole ``reportgen run``: prepare (backbones, checkpoints, device, images, weights: every check that can
fail does so before heavy work), run the battery, render the report."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import OutputError
from ..inputs.images import ImageSet, default_image_dir, load_image_set
from ..report.render import render_report
from ..results.store import TIMINGS, prune_unreferenced, write_json
from .request import RunRequest
from .run import BatteryOutcome, OnBatch, Progress, run_battery


@dataclass(frozen=True)
class PreparedRun:
    request: RunRequest
    plans: tuple  # analysis.weights.WeightsPlan per backbone
    image_set: ImageSet
    class_names: object  # analysis.classes.ClassNames
    device: str


def prepare(request: RunRequest, note: Progress) -> PreparedRun:
    """Resolve and check everything the run needs; loads torch and timm, but no model."""
    from ..analysis.autolayers import resolve_backbones
    from ..analysis.classes import ClassNames
    from ..analysis.environment import resolve_device
    from ..analysis.weights import parse_checkpoints, plan_weights, require_available

    battery = request.battery
    chosen = resolve_backbones(request.preset, request.backbones, battery.backbones if not request.backbones else ())
    from_file, ignored = battery.checkpoints_for(chosen)
    for spec in ignored:
        note(f"note: {battery.path} gives a checkpoint for {spec.name or spec.id}, which is not in this run "
             "(--backbone replaced the file's list); ignored")
    checkpoints = parse_checkpoints(from_file + request.checkpoints, chosen, request.trust_pickle)
    device = resolve_device(request.device)
    class_names = ClassNames()
    image_set = load_image_set(request.images_dir or default_image_dir(), class_names.resolve, request.config)
    plans = plan_weights(chosen, request.weights, checkpoints, offline=request.offline)
    require_available(plans)
    return PreparedRun(request, plans, image_set, class_names, device)


@dataclass(frozen=True)
class RunResult:
    outcome: BatteryOutcome
    written: dict  # format -> path


def execute(prepared: PreparedRun, progress: Progress, on_batch: OnBatch, note: Progress) -> RunResult:
    request = prepared.request
    out_dir = request.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}; choose another --out.") from None
    results = out_dir / "results"
    outcome = run_battery(prepared.plans, prepared.image_set, prepared.class_names, request.config, results,
                          device=prepared.device, weights_mode=request.weights, progress=progress,
                          fresh=request.fresh, on_batch=on_batch, battery_file=request.battery.raw)
    prune_unreferenced(results)
    note(f"rendering {', '.join(request.formats)}")
    render_timings: dict = {}
    written = render_report(results, out_dir, request.formats, timings=render_timings)
    outcome.timings["render"] = render_timings
    write_json(results / TIMINGS, outcome.timings)
    return RunResult(outcome, written)
