"""The battery run: each backbone in turn (or its saved result), then the index and the scores.

Orchestration only: models run in :mod:`reportgen.analysis` (imported when a backbone must be computed),
files are written through :mod:`reportgen.results.store`, numbers come from :mod:`reportgen.scoring`.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from ..errors import OutputError
from ..inputs.config import AnalysisConfig
from ..inputs.decoded import DISPLAY, DISPLAY_BYTES_ESTIMATE, DecodedInputs, display_geometry
from ..inputs.decoding import load_rgb
from ..inputs.images import ImageSet, copies_in
from ..results.keys import analysis_key
from ..results.schema import (SCHEMA_VERSION, CostReport, ImageEntry, ImageSetInfo, RunIndex,
                              WeightsMode)
from ..results.store import (BACKBONES_DIR, COST, COST_SUFFIX, INDEX, METRICS, TIMINGS, atomic_write_bytes,
                             load_arrays, mark_run_started, read_backbone, read_cost, remove_stale_temp_files,
                             write_arrays, write_json)
from ..results.views import views_of
from ..scoring.score import score

if TYPE_CHECKING:  # analysis imports torch; the pipeline imports it only to compute
    from ..analysis.backbone import RunSettings
    from ..inputs.label_space import LabelSpace

DECODED_DIR = ".decoded"  # scratch under the results folder: the run's decoded inputs, removed at the end
DISK_MARGIN_BYTES = 64 * 2 ** 20  # results, figures and the report besides the images
Progress = Callable[[str], None]
OnBatch = Callable[[str, str, int, int], None]  # (backbone, stage, done, total)


@dataclass
class BatteryOutcome:
    results_dir: Path
    status: dict = field(default_factory=dict)  # backbone -> computed | cached
    timings: dict = field(default_factory=dict)


def display_copy_path(position: int) -> str:
    return f"images/{position:03d}.jpg"


def _geometries(plans: tuple) -> dict:
    """The display copy's geometry and every backbone's resize-and-crop (imports torchvision)."""
    from ..analysis.transforms import input_geometries

    return {DISPLAY: display_geometry, **input_geometries(plan.backbone for plan in plans)}


def bytes_per_image(plans: tuple) -> int:
    """Disk one image takes while the run lasts: each distinct model input raw under ``.decoded/``, and its
    display copy twice (the cache's JPEG and the copy under ``images/`` that the report reads)."""
    from ..analysis.transforms import input_bytes

    return input_bytes(plan.backbone for plan in plans) + 2 * DISPLAY_BYTES_ESTIMATE


def require_disk_space(folder: Path, images: int, per_image: int) -> None:
    """Stop before decoding (exit 5) when the file system holding ``folder`` lacks the room the run needs."""
    needed = images * per_image + DISK_MARGIN_BYTES
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OutputError(f"{folder.parent}: decoding {images} images needs about {_size(needed)} under "
                          f"{folder.name}/ ({_size(per_image)} per image) and its file system has {_size(free)} free; "
                          "free some space or choose an --out on a larger disk.")


def _size(count: int) -> str:
    for unit, scale in (("GB", 2 ** 30), ("MB", 2 ** 20), ("KB", 2 ** 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def decode_inputs(plans: tuple, results_dir: Path, image_set_loader: Callable[..., ImageSet],
                  progress: Progress = lambda message: None) -> tuple:
    """(image set, decoded inputs): the set is loaded and validated by ``image_set_loader(on_image=...,
    on_listed=...)``, which hands every image's pixels once to the cache of each geometry the backbones need plus
    the display copy's; before the first image is decoded, the free disk space is checked. Imports torchvision
    (through the backbones' transforms)."""
    results_dir = Path(results_dir)
    geometries = _geometries(plans)
    decoded = DecodedInputs(results_dir / DECODED_DIR, geometries)
    per_image = bytes_per_image(plans)

    def listed(count: int) -> None:
        require_disk_space(results_dir, count, per_image)
        progress(f"checking and decoding {count} images once ({len(geometries) - 1} model input size(s) and a "
                 "display copy)")
    try:
        image_set = image_set_loader(on_image=lambda position, record, image: decoded.add(position, image),
                                     on_listed=listed)
    except BaseException:
        decoded.remove()
        raise
    return image_set, decoded


def _decode_again(plans: tuple, image_set: ImageSet, results_dir: Path) -> DecodedInputs:
    """For callers that pass an image set without its decoded inputs (library use): one decode per image."""
    decoded = DecodedInputs(Path(results_dir) / DECODED_DIR, _geometries(plans))
    for position, record in enumerate(image_set.records):
        decoded.add(position, load_rgb(record.path))
    return decoded


def write_display_copies(image_set: ImageSet, decoded: DecodedInputs, results_dir: Path) -> None:
    """Screen-sized JPEG copies of the images, the figures' source (the report never reads the originals)."""
    for position in range(len(image_set.records)):
        atomic_write_bytes(results_dir / display_copy_path(position), decoded.stored(DISPLAY, position))


def image_entries(image_set: ImageSet, class_name: Callable[[int], str]) -> tuple[ImageEntry, ...]:
    return tuple(ImageEntry(
        file=record.file, sha256=record.sha256, width=record.width, height=record.height,
        class_index=record.class_index,
        class_name=class_name(record.class_index) if record.class_index is not None else None,
        box=tuple(record.box) if record.box else None, box_share=record.box_share,
        size=record.size_class, background=record.background, source=record.source,
        licence=record.licence, notes=record.notes, decoding=record.decoding,
        size_source=record.size_source, background_source=record.background_source,
        box_source=record.box_source, display_copy=display_copy_path(position),
        in_subfolder=record.in_subfolder,
    ) for position, record in enumerate(image_set.records))


@dataclass(frozen=True, kw_only=True)
class BatteryRun:
    """What every backbone of one run shares: what it is measured on and with, where its results go, and per
    backbone the head it is scored through."""
    settings: "RunSettings"  # the images, the label space, the settings, the device
    results_dir: Path
    versions: dict
    fresh: bool = False
    heads: dict = field(default_factory=dict)  # backbone name -> analysis.heads.HeadPlan (default: ImageNet head)
    setups: dict = field(default_factory=dict)  # backbone name -> its probe's explaining head, fit by a driver (shards)

    def task_identity(self, name: str) -> str:
        """What the user's label space adds to a backbone's cache key: the classes, its head, the training set."""
        space = self.settings.class_names
        if space.is_imagenet:
            return ""
        head = self.heads.get(name)
        train_set = self.settings.train_set
        return "|".join([space.kind, *space.names, str(head.estimand if head else ""),
                         train_set.sha256 if train_set is not None else "", _setup_digest(self.setups.get(name)),
                         _unsampled_digest(self.settings.image_set)])

    def job(self, plan):
        """One backbone's :class:`~reportgen.analysis.backbone.BackboneJob` (imports torch)."""
        from ..analysis.backbone import IMAGENET_HEAD, BackboneJob

        name = plan.backbone.name
        return BackboneJob(plan=plan, run=self.settings, head=self.heads.get(name) or IMAGENET_HEAD,
                           setup=self.setups.get(name))


def _unsampled_digest(image_set: ImageSet) -> str:
    """The images the hashed samples leave out (those a probe's explaining head saw) change every sample."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(image_set.unsampled)).encode()).hexdigest() if image_set.unsampled else ""


def _setup_digest(setup) -> str:
    """A shard's explaining head comes fit by the driver on the whole set: its key changes when the fit does."""
    if setup is None or setup.explaining is None:
        return ""
    import hashlib

    digest = hashlib.sha256(np.ascontiguousarray(setup.explaining.weight).tobytes())
    digest.update(np.ascontiguousarray(setup.explaining.bias).tobytes())
    return digest.hexdigest()


def _compute(plan, run: BatteryRun, key: str, stem: str):
    """Run one backbone and save it (arrays first: the entry file is what marks it finished)."""
    from ..analysis.backbone import measure_backbone

    measured = measure_backbone(run.job(plan))
    result = replace(measured.result, cache_key=key, arrays=f"{BACKBONES_DIR}/{stem}.npz")
    write_arrays(run.results_dir / result.arrays, measured.arrays)
    if measured.cost is not None:
        write_json(run.results_dir / BACKBONES_DIR / f"{stem}{COST_SUFFIX}", measured.cost)
    write_json(run.results_dir / BACKBONES_DIR / f"{stem}.json", result)
    return result, measured.timings, measured.cost


def run_battery(plans: tuple, image_set: ImageSet, class_names, config: AnalysisConfig, results_dir: Path,
                device: str = "cpu", weights_mode: str = "pretrained", progress: Progress = lambda message: None,
                fresh: bool = False, on_batch: OnBatch = lambda name, stage, done, total: None,
                keep_merge_state: bool = False, battery_file: Optional[dict] = None,
                decoded: Optional[DecodedInputs] = None, with_cost: bool = True, heads: Optional[dict] = None,
                train_set: Optional[ImageSet] = None, setups: Optional[dict] = None) -> BatteryOutcome:
    """Run every backbone (or reuse its saved result), then write results.json / metrics.json.

    Each backbone's result is saved under ``backbones/`` as soon as it finishes, named by a key of
    everything that determines it, so an interrupted run resumes where it stopped and an unchanged
    battery is not recomputed. ``fresh`` ignores saved results. ``decoded``: the inputs :func:`decode_inputs`
    made while loading the set (decoded here when not given); removed when the run ends."""
    from ..analysis.backbone import RunSettings
    from ..analysis.environment import library_versions, long_lived_objects_frozen
    from ..analysis.probe import evaluation_set

    results_dir = Path(results_dir)
    if not keep_merge_state:  # the whole set (a shard's slice carries the whole set's samples)
        image_set = evaluation_set(image_set, class_names, config, train_set)
    (results_dir / "images").mkdir(parents=True, exist_ok=True)
    (results_dir / BACKBONES_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(results_dir)
    versions = library_versions()
    outcome = BatteryOutcome(results_dir)
    outcome.timings = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backbones": {}}
    decoded = decoded if decoded is not None else _decode_again(plans, image_set, results_dir)
    try:
        mark_run_started(results_dir, versions["reportgen"])  # an interrupted run's folder stays recognisable
        write_display_copies(image_set, decoded, results_dir)
        # The analyses time nothing: latency is timed after them, every candidate in interleaved sessions.
        settings = RunSettings(image_set=image_set, class_names=class_names, config=config, device=device,
                               weights_mode=weights_mode, decoded=decoded, train_set=train_set,
                               keep_merge_state=keep_merge_state, with_cost=False, progress=progress,
                               on_batch=on_batch)
        run = BatteryRun(settings=settings, results_dir=results_dir, versions=versions, fresh=fresh, heads=heads or {},
                         setups=setups or {})
        with long_lived_objects_frozen():
            entries, stems = _backbones(plans, run, outcome)
    finally:
        decoded.remove()
    costs = timing_stage(plans, entries, run, stems, outcome) if with_cost else {}

    index = RunIndex(
        schema_version=SCHEMA_VERSION, versions=versions, config=config, seed=config.seed,
        weights_mode=WeightsMode(weights_mode), device=device,
        image_set=ImageSetInfo(image_set.root.name, image_set.sha256, len(image_set.records), image_set.labels,
                               image_set.labels_note, image_set.from_subfolders),
        images=image_entries(image_set, class_names.name),
        skipped_images=tuple(image_set.skipped),
        backbones=tuple(entries), timings_file=TIMINGS, battery_file=battery_file or {},
        label_space=class_names, train_copies=copies_in(image_set, train_set) if train_set is not None else (),
        train_files=tuple(r.file for r in train_set.records) if train_set is not None else ())
    write_json(results_dir / COST, CostReport(costs))
    progress(f"scoring: CAM metrics, calibration, corruptions and faithfulness, {config.bootstrap_samples:,} paired "
             "bootstrap draws")
    mark = time.perf_counter()
    score_and_write(index, results_dir)
    outcome.timings["scoring_s"] = time.perf_counter() - mark
    outcome.timings["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(results_dir / TIMINGS, outcome.timings)
    return outcome


def _backbones(plans, run: BatteryRun, outcome: BatteryOutcome) -> tuple[list, dict]:
    """Each backbone's result (reused when its key matches a saved one, else computed and saved) and the stem of
    its files."""
    from ..analysis.environment import release_memory
    from ..analysis.weights import weights_identity

    entries, stems = [], {}
    settings, folder = run.settings, run.results_dir / BACKBONES_DIR
    config, progress = settings.config, settings.progress
    shard = "-shard" if settings.keep_merge_state else ""
    for plan in plans:
        name = plan.backbone.name
        key = analysis_key(plan.backbone, weights_identity(plan, config.seed), settings.image_set.model_inputs_sha256,
                           config, run.versions, run.task_identity(name)) + shard
        stem = stems[name] = f"{name}-{key[:16]}"
        saved = None if run.fresh else read_backbone(folder, stem, key)
        if saved is not None:
            progress(f"{name}: unchanged since the last run, reusing {BACKBONES_DIR}/{stem}")
            # Boxes are not part of the key: map today's boxes into the model's view.
            entry = replace(saved, views=views_of(settings.image_set, saved.data_config))
            outcome.status[name] = "cached"
            outcome.timings["backbones"][name] = {"cached": True}
        else:
            progress(f"{name}: loading weights ({plan.source})")
            started = time.perf_counter()
            entry, timings, _ = _compute(plan, run, key, stem)
            release_memory()
            outcome.status[name] = "computed"
            outcome.timings["backbones"][name] = timings
            progress(f"{name}: done in {time.perf_counter() - started:.1f}s")
        entries.append(entry)
        settings.on_batch(name, "backbones", len(entries), len(plans))
    return entries, stems


def timing_stage(plans, entries: list, run: BatteryRun, stems: dict, outcome: BatteryOutcome) -> dict:
    """Every candidate's cost, after the analyses: the latency of all of them timed in interleaved sessions on this
    machine (:func:`~reportgen.analysis.backbone.session_costs`), each saved beside its backbone's files. Reused only
    when every candidate's saved cost comes from one timing stage of exactly these candidates on this machine
    (sessions are shared by the candidates timed in them: a cost timed beside other candidates is not)."""
    from ..analysis.backbone import current_machine, session_costs
    from ..scoring.timing import one_timing_stage

    settings, folder = run.settings, run.results_dir / BACKBONES_DIR
    names = [plan.backbone.name for plan in plans]
    saved = {name: read_cost(folder / f"{stems[name]}{COST_SUFFIX}") for name in names}
    here = current_machine(settings.device)
    if not run.fresh and all(c is not None and c.machine.fingerprint == here for c in saved.values()) \
            and one_timing_stage(saved.values(), settings.config.latency_sessions) \
            and all(c.latency_budget_s == settings.config.latency_budget_s for c in saved.values()) \
            and all(outcome.status.get(name) == "cached" for name in names):
        settings.progress(f"latency: reusing the {settings.config.latency_sessions} sessions saved with these "
                          "candidates")
        return saved
    for name, cost in saved.items():
        if cost is not None and cost.machine.fingerprint != here:
            # Latency from another device, CPU, thread count or torch is never ranked beside this run's.
            was = ", ".join(f"{a} -> {b}" for a, b in zip(cost.machine.fingerprint, here) if a != b)
            settings.progress(f"{name}: cost measured on {was}: measuring it again on this machine")
    mark = time.perf_counter()
    costs = session_costs(plans, settings.config, settings.device, {e.name: e.slimming.unit for e in entries},
                          {e.name: e.batch_size for e in entries}, run.heads, progress=settings.progress)
    for name, cost in costs.items():
        write_json(folder / f"{stems[name]}{COST_SUFFIX}", cost)
    outcome.timings["latency_sessions_s"] = time.perf_counter() - mark
    return costs


def score_and_write(index: RunIndex, results_dir: Path) -> None:
    """metrics.json from the index and the arrays, then results.json (the index is written last: a
    results folder with an index is complete)."""
    metrics = score(index, arrays_loader(results_dir, index), index.config)
    write_json(results_dir / METRICS, metrics)
    write_json(results_dir / INDEX, index)


def arrays_loader(results_dir: Path, index: RunIndex):
    """arrays_of(name) for scoring: one backbone's arrays in memory at a time."""
    files = {entry.name: results_dir / entry.arrays for entry in index.backbones}
    held: dict = {}

    def arrays_of(name: str) -> dict:
        if name not in held:
            held.clear()
            held[name] = load_arrays(files[name])
        return held[name]
    return arrays_of
