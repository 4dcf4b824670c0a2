"""A whole ``reportgen run``: prepare (backbones, checkpoints, device, images, weights: every check that can
fail does so before heavy work), run the battery, render the report."""
from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from .. import __version__
from ..errors import InputDataError, OutputError, ReportgenError, UsageError
from ..inputs.decoded import DecodedInputs
from ..inputs.images import ImageSet, LabelSource, copies_in, default_image_dir, load_image_set
from ..inputs.labels import (IMAGENET_CLASSES, HeadNames, LabelReading, LabelSpace, choose_label_space,
                             checkpoint_label_names)
from ..report.render import render_report
from ..results.schema import CostReport
from ..results.store import COST, TIMINGS, mark_run_started, prune_unreferenced, write_json
from .request import RunRequest
from .run import BatteryOutcome, OnBatch, Progress, decode_inputs, run_battery


@dataclass(frozen=True, kw_only=True)
class PreparedRun:
    request: RunRequest
    plans: tuple  # analysis.weights.WeightsPlan per backbone
    image_set: ImageSet
    class_names: LabelSpace  # the run's classes: ImageNet-1k or the user's
    device: str
    decoded: Optional[DecodedInputs]  # every image, decoded once while the set was validated (None: Ray workers decode)
    device_note: str = ""  # what the run runs on and why ("device: cpu (2 CPU threads; auto: no CUDA device visible)")
    heads: dict = field(default_factory=dict)  # backbone name -> analysis.heads.HeadPlan
    train_set: Optional[ImageSet] = None  # --train-images: where a probe is fit
    # (printed by prepare as soon as the device is known; the request's config holds the device's sample sizes)


def _results_dir(out_dir: Path) -> Path:
    try:
        (out_dir / "results").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out_dir}: {exc.strerror}; choose another --out.") from None
    return out_dir / "results"


def prepare(request: RunRequest, note: Progress, decode: bool = True) -> PreparedRun:
    """Resolve and check everything the run needs; loads torch and timm, but no model. Each image is decoded
    once here, into the run's decoded-input cache under the results folder (``decode=False``: validated only,
    for runs whose workers decode their own slices)."""
    from ..analysis.autolayers import resolve_backbones
    from ..analysis.environment import device_note, resolve_device
    from ..analysis.probe import evaluation_set
    from ..analysis.weights import parse_checkpoints, plan_weights, require_available
    from ..inputs.config import with_device_sample_sizes

    battery = request.battery
    chosen = resolve_backbones(request.preset, request.backbones, battery.backbones if not request.backbones else ())
    # A [gate] whose champion is not in the run (or that has no challenger) would stop the report after every
    # measurement: one line now instead.
    from ..scoring.gate import check_candidates

    check_candidates(request.config.gate, [b.name for b in chosen], request.weights_mode == "random")
    from_file, ignored = battery.checkpoints_for(chosen)
    for spec in ignored:
        note(f"note: {battery.path} gives a checkpoint for {spec.name or spec.id}, which is not in this run "
             "(--backbone replaced the file's list); ignored")
    checkpoints = parse_checkpoints(from_file + request.checkpoints, chosen, request.trust_pickle)
    device = resolve_device(request.device)
    note(device_note(request.device, device))
    # The corruption and faithfulness sample sizes the battery file leaves out follow the device.
    request = replace(request, config=with_device_sample_sizes(request.config, device, request.battery.analysis))
    plans = plan_weights(chosen, request.weights_mode, checkpoints, offline=request.offline)
    require_available(plans)
    images_dir = Path(request.images_dir or default_image_dir()).resolve()
    class_names, heads = label_space_and_heads(plans, images_dir, request.labels_file, request.label_reading)
    if class_names.numbered is not None:
        note(f"note: {_numbers_note(class_names)}")
    if not class_names.is_imagenet:
        note(f"classes: {class_names.described()}, from {class_names.describe_source()}; "
             + ", ".join(f"{name}: {head.estimand}" for name, head in heads.items()))
    train_set = _training_set(request, class_names)
    # The decoded inputs live under the results folder; a run that stops here leaves no folder it made behind.
    made = [p for p in (request.out_dir, request.out_dir / "results") if not p.exists()]
    try:
        if decode:
            image_set, decoded = decode_inputs(plans, _results_dir(request.out_dir),
                                               lambda on_image, on_listed: load_image_set(
                                                   images_dir, class_names, request.config,
                                                   on_image=on_image, on_listed=on_listed), note)
        else:
            note(f"checking the images in {images_dir}")
            image_set, decoded = load_image_set(images_dir, class_names, request.config), None
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if image_set.labels_note:
        note(f"note: {image_set.labels_note}")
    # On the whole set, before a Ray run slices it: the hashed samples leave out what a probe's head is fit on.
    image_set = evaluation_set(image_set, class_names, request.config, train_set)
    copies = copies_in(image_set, train_set) if train_set is not None else ()
    if copies:
        note(f"warning: {len(copies)} of the images are byte-identical to --train-images images (e.g. "
             f"{', '.join(copies[:3])}): the probes are fit on them, so their accuracy on them is inflated; the "
             "report says so on page 1")
    return PreparedRun(request=request, plans=plans, image_set=image_set, class_names=class_names, device=device,
                       decoded=decoded, device_note=device_note(request.device, device), heads=heads,
                       train_set=train_set)


def label_space_and_heads(plans: tuple, images_dir: Path, labels_file: Optional[Path],
                          reading: LabelReading = LabelReading.AUTO) -> tuple[LabelSpace, dict]:
    """The run's classes (``--labels``, else names stored with a checkpoint, else the folder's names when they are
    not ImageNet's, as ``reading`` reads them) and how each candidate is scored in them; one message (exit 3) when a
    head fits neither."""
    from ..analysis.classes import imagenet_label_space
    from ..analysis.heads import plan_head
    from ..results.schema import WeightsSource

    stored = []
    for plan in plans:
        if plan.source == WeightsSource.CHECKPOINT:
            found = checkpoint_label_names(Path(plan.location))
            if found is not None:
                stored.append(HeadNames(plan.backbone.name, *found))
    space = choose_label_space(images_dir, imagenet_label_space().imagenet, labels_file, tuple(stored), reading)
    return space, {plan.backbone.name: plan_head(plan, space) for plan in plans}


def _numbers_note(space: LabelSpace) -> str:
    """Page 1's sentence on how numbered class names were read, said as the run starts (the ImageNet reading with
    what the first numbers mean)."""
    from ..report.decision_page import label_reading_sentence

    numbers = [n for n in space.numbered.numbers if n < IMAGENET_CLASSES][:3]
    examples = (", ".join(f"{n} {space.name(n).split(',')[0]}" for n in numbers)
                + (", …" if len(space.numbered.numbers) > 3 else "")) if space.is_imagenet else ""
    return label_reading_sentence(space, examples)


def _training_set(request: RunRequest, space: LabelSpace) -> Optional[ImageSet]:
    """``--train-images``: labelled images in the run's classes, validated (not decoded: the probe reads them once)."""
    if request.train_dir is None:
        return None
    if space.is_imagenet:
        raise UsageError("--train-images fits a linear probe on your own classes, but this run's classes are "
                         "ImageNet-1k's (the images name ImageNet classes); leave it out, or pass --labels FILE.")
    try:
        train = load_image_set(Path(request.train_dir).resolve(), space, request.config)
    except InputDataError as exc:  # e.g. a class folder the run's classes lack: say which folder it is
        if "class folder" not in str(exc):
            raise
        raise InputDataError(f"--train-images {request.train_dir}: its classes do not match the run's "
                             f"({space.described()}): {exc}") from None
    unlabelled = [r.file for r in train.records if r.class_index is None]
    if train.labels == LabelSource.NONE or unlabelled:
        raise InputDataError(f"--train-images {request.train_dir}: {len(unlabelled) or len(train.records)} images "
                             f"have no class (e.g. {(unlabelled or [train.records[0].file])[0]}); put every training "
                             "image in a class folder.")
    return train


@dataclass(frozen=True)
class RunResult:
    outcome: BatteryOutcome
    written: dict  # format -> path
    shards: Optional[list] = None  # distributed.ShardOutcome per shard (Ray runs)


def execute(prepared: PreparedRun, progress: Progress, on_batch: OnBatch, note: Progress) -> RunResult:
    request = prepared.request
    out_dir = request.out_dir
    results = _results_dir(out_dir)
    shards = None
    if request.executor.kind == "ray":
        mark_run_started(results, __version__)  # (run_battery marks a local run) an interrupted run stays ours
        outcome, shards = _execute_on_ray(prepared, results, note)
    else:
        outcome = run_battery(prepared.plans, prepared.image_set, prepared.class_names, request.config, results,
                              device=prepared.device, weights_mode=request.weights_mode, progress=progress,
                              fresh=request.fresh, on_batch=on_batch, battery_file=request.battery.raw,
                              decoded=prepared.decoded, heads=prepared.heads, train_set=prepared.train_set)
    prune_unreferenced(results)
    note(f"rendering {', '.join(request.formats)}")
    render_timings: dict = {}
    outcome.timings["render"] = render_timings
    try:
        written = render_report(results, out_dir, request.formats, timings=render_timings)
    except Exception as exc:  # the analyses are done and saved: say how to get the report without redoing them
        raise render_failed(exc, results, out_dir, request.formats) from exc
    finally:
        write_json(results / TIMINGS, outcome.timings)
    return RunResult(outcome, written, shards)


def render_failed(exc: Exception, results: Path, out_dir: Path, formats) -> ReportgenError:
    """The error to raise when rendering fails after a run: the cause, the saved results, the command that retries
    the rendering alone. A user-facing error keeps its exit code (5 for a full disk); anything else is internal (1)."""
    retry = f"reportgen render {shlex.quote(str(results))} --out {shlex.quote(str(out_dir))} " \
            f"--format {','.join(formats)}"
    known = isinstance(exc, ReportgenError)
    error = ReportgenError(f"rendering failed ({exc if known else f'internal error {exc!r}'}); the analyses' results "
                           f"are saved in {results}: retry with `{retry}`"
                           + ("" if known else " and report the error with its --debug output."))
    error.exit_code = exc.exit_code if known else ReportgenError.exit_code
    return error


def finish_merged_probes(index, results: Path, prepared: PreparedRun, setups: dict):
    """The linear probe, k-NN and LogME of every probed backbone, fit once on the merged features (the shards kept
    them): the same computation, on the same numbers, as in one process."""
    from ..analysis.probe import finish_probe
    from ..results.schema import Estimand
    from ..results.store import load_arrays, write_arrays
    from ..scoring.task_report import truth_of

    labels = truth_of(index)
    entries = []
    for entry in index.backbones:
        if entry.estimand != Estimand.LINEAR_PROBE:
            entries.append(entry)
            continue
        finished, arrays = finish_probe(entry, load_arrays(results / entry.arrays), labels,
                                        prepared.class_names.name, prepared.request.config, setups.get(entry.name),
                                        groups=[image.sha256 for image in index.images])
        write_arrays(results / entry.arrays, arrays)
        write_json((results / entry.arrays).with_suffix(".json"), finished)
        entries.append(finished)
    return replace(index, backbones=tuple(entries))


def _execute_on_ray(prepared: PreparedRun, results: Path, note: Progress) -> tuple[BatteryOutcome, list]:
    """The shards on Ray, the exact merge, every backbone's cost on one node, then scoring into ``results`` (the
    report is rendered as usual)."""
    from ..results.merge import merge_shards
    from .distributed import measure_costs, ray_session, run_shards
    from .run import score_and_write

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    settings = prepared.request.executor
    with ray_session(settings, note) as ray:
        mark = time.perf_counter()
        distributed = run_shards(ray, prepared, settings, note)
        shard_seconds = time.perf_counter() - mark
        note("merging shards")
        index, merged = merge_shards([Path(s.spec.out_dir) / "results" for s in distributed.shards], results.parent)
        index = finish_merged_probes(index, merged, prepared, distributed.setups)
        mark = time.perf_counter()
        costs = measure_costs(ray, prepared, settings, index, note)
        cost_seconds = time.perf_counter() - mark
    write_json(merged / COST, CostReport(costs))
    image_set = prepared.image_set
    index = replace(index, battery_file=prepared.request.battery.raw,
                    skipped_images=tuple(image_set.skipped),
                    image_set=replace(index.image_set, root_name=image_set.root.name, labels=image_set.labels,
                                      labels_note=image_set.labels_note),
                    train_copies=copies_in(image_set, prepared.train_set) if prepared.train_set is not None else (),
                    train_files=(tuple(r.file for r in prepared.train_set.records)
                                 if prepared.train_set is not None else ()))
    mark = time.perf_counter()
    score_and_write(index, merged)
    outcome = BatteryOutcome(merged)
    for shard in distributed.shards:
        name = shard.spec.backbone
        outcome.status[name] = "computed" if shard.status == "computed" or outcome.status.get(name) == "computed" \
            else "cached"
    outcome.timings = {"started": started, "executor": "ray", "shards_s": shard_seconds, "cost_s": cost_seconds,
                       "scoring_s": time.perf_counter() - mark,
                       "shards": {s.spec.name: {"status": s.status, "seconds": s.seconds} for s in distributed.shards},
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return outcome, distributed.shards
