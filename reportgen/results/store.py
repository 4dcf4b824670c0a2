"""Results on disk: ``results.json`` (index), ``metrics.json`` (numbers behind every table),
``timings.json`` (wall-clock data, kept apart so the other two are reproducible), one ``.npz`` of
arrays per backbone, and display copies of the images. Every file is written to a temporary name
and renamed, so a killed run never leaves a half-written file behind."""
from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputDataError, OutputError
from .schema import SCHEMA_VERSION, BackboneResult, Cost, CostReport, Metrics, RunIndex

INDEX = "results.json"
METRICS = "metrics.json"
TIMINGS = "timings.json"
COST = "cost.json"  # latency, throughput, memory: machine-dependent, apart from the reproducible files
COST_SUFFIX = ".cost.json"  # beside each backbone's files, so a reused backbone keeps its cost
BACKBONES_DIR = "backbones"  # one <name>-<key>.json + .npz per finished backbone
# Written when a run starts, so a folder whose run was interrupted before results.json is still known as ours.
RUN_MARKER = ".reportgen-run.json"
INDEX_KEYS = ("schema_version", "versions", "config", "images", "backbones")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions.") from None
    finally:
        tmp.unlink(missing_ok=True)  # after a rename this is a no-op; after a failure or Ctrl-C it removes the debris


def plain(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, data) -> None:
    """``data``: a schema record (written with its ``to_json``) or plain JSON data."""
    if hasattr(data, "to_json"):
        data = data.to_json()
    atomic_write_bytes(path, (json.dumps(plain(data), indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode())


def write_arrays(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_backbone(folder: Path, stem: str, key: str) -> Optional[BackboneResult]:
    """A finished backbone's saved result when its key matches and its arrays load; else None."""
    entry_path, arrays_path = folder / f"{stem}.json", folder / f"{stem}.npz"
    try:
        entry = json.loads(entry_path.read_text(encoding="utf-8"))
        if entry.get("cache_key") != key:
            return None
        with np.load(arrays_path, allow_pickle=False) as data:
            data.files  # noqa: B018 -- reading the zip directory checks the file is complete
        return BackboneResult.from_json(entry)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_cost(path: Path) -> Optional[Cost]:
    try:
        return Cost.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: Path) -> int:
    """Temp files (``.<name>.tmp-<pid>``) left by a process that was killed before it could rename them.
    Files of a process still running are left alone."""
    removed = 0
    for path in Path(folder).rglob(".*.tmp-*"):
        pid = path.name.rsplit(".tmp-", 1)[-1]
        if path.is_file() and pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# Names of the per-backbone files reportgen writes: <name>-<key prefix>.json|.npz|.cost.json (or -merged).
BACKBONE_FILE = re.compile(r"^.+-([0-9a-f]{16}|merged)(\.json|\.npz|\.cost\.json)$")


def prune_unreferenced(results_dir: Path) -> int:
    """Per-backbone files the current results.json does not use (older configs, removed backbones). Files that
    are not named like reportgen's own are never touched."""
    results_dir = Path(results_dir)
    index = read_index(results_dir / INDEX)
    keep = set()
    for entry in index.backbones:
        arrays = results_dir / entry.arrays
        keep.update(p.resolve() for p in (arrays, arrays.with_suffix(".json"), arrays.with_suffix(COST_SUFFIX)))
    removed = 0
    for path in (results_dir / BACKBONES_DIR).glob("*"):
        if path.is_file() and BACKBONE_FILE.match(path.name) and path.resolve() not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@dataclass
class SavedResults:
    root: Path
    index: RunIndex
    metrics: Metrics
    timings: dict
    cost: CostReport  # empty when the run measured none (e.g. results of an older reportgen)

    def arrays(self, backbone_name: str) -> dict:
        return load_arrays(self.root / self.index.backbone(backbone_name).arrays)

    def image_path(self, position: int) -> Path:
        return self.root / self.index.images[position].display_copy


def mark_run_started(results_dir: Path, version: str) -> None:
    """The marker by which a later run recognises this folder as reportgen's, even if this run is interrupted."""
    write_json(Path(results_dir) / RUN_MARKER, {"reportgen": version, "schema_version": SCHEMA_VERSION})


def holds_reportgen_results(results_dir: Path) -> bool:
    """Whether ``results_dir`` was written by reportgen: a ``results.json`` with the index's fields (of any schema
    version), or the marker of a run that started there. A folder that merely is called ``results/`` is not."""
    results_dir = Path(results_dir)
    try:
        index = json.loads((results_dir / INDEX).read_text(encoding="utf-8"))
        if isinstance(index, dict) and isinstance(index.get("schema_version"), int) and all(
                key in index for key in INDEX_KEYS):
            return True
    except (OSError, ValueError):
        pass
    try:
        marker = json.loads((results_dir / RUN_MARKER).read_text(encoding="utf-8"))
        return isinstance(marker, dict) and isinstance(marker.get("schema_version"), int) and \
            isinstance(marker.get("reportgen"), str)
    except (OSError, ValueError):
        return False


def read_index(path: Path) -> RunIndex:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: results are unreadable ({exc}); re-run `reportgen run`.") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise InputDataError(f"{path}: schema_version {found!r}, this reportgen reads "
                             f"{SCHEMA_VERSION}; re-run `reportgen run` with this version.")
    try:
        return RunIndex.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(f"{path}: not a reportgen results index ({exc}); re-run `reportgen run`.") from None


def load_results(root: Path) -> SavedResults:
    root = Path(root)
    index_path = root / INDEX
    if not index_path.is_file():
        raise InputDataError(f"{root} holds no {INDEX}; pass the results/ folder of a finished `reportgen run`.")
    index = read_index(index_path)
    try:
        metrics = Metrics.from_json(json.loads((root / METRICS).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{root}: results are unreadable ({exc}); re-run `reportgen run`.") from None
    timings_path = root / TIMINGS
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.is_file() else {}
    try:
        cost = CostReport.from_json(json.loads((root / COST).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        cost = CostReport({})
    return SavedResults(root, index, metrics, timings, cost)
