"""Results on disk: ``results.json`` (index), ``metrics.json`` (numbers behind every table),
``timings.json`` (wall-clock data, kept apart so the other two are reproducible), one ``.npz`` of
arrays per backbone, and display copies of the images. Every file is written to a temporary name
and renamed, so a killed run never leaves a half-written file behind."""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputDataError, OutputError

SCHEMA_VERSION = 1
INDEX = "results.json"
METRICS = "metrics.json"
TIMINGS = "timings.json"


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
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions.") from None


def _plain(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path: Path, data) -> None:
    atomic_write_bytes(path, (json.dumps(_plain(data), indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode())


def write_arrays(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class SavedResults:
    root: Path
    index: dict
    metrics: dict
    timings: dict

    def arrays(self, backbone_name: str) -> dict:
        entry = self.backbone(backbone_name)
        with np.load(self.root / entry["arrays"], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def backbone(self, name: str) -> dict:
        return next(b for b in self.index["backbones"] if b["name"] == name)

    def image_path(self, position: int) -> Path:
        return self.root / self.index["images"][position]["display_copy"]


def load_results(root: Path) -> SavedResults:
    root = Path(root)
    index_path = root / INDEX
    if not index_path.is_file():
        raise InputDataError(f"{root} holds no {INDEX}; pass the results/ folder of a finished `reportgen run`.")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        metrics = json.loads((root / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{root}: results are unreadable ({exc}); re-run `reportgen run`.") from None
    if index.get("schema_version") != SCHEMA_VERSION:
        raise InputDataError(f"{index_path}: schema_version {index.get('schema_version')!r}, this reportgen reads "
                             f"{SCHEMA_VERSION}; re-run `reportgen run` with this version.")
    timings_path = root / TIMINGS
    timings = json.loads(timings_path.read_text(encoding="utf-8")) if timings_path.is_file() else {}
    return SavedResults(root, index, metrics, timings)
