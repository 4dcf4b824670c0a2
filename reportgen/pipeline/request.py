"""What a ``reportgen run`` asks for, resolved from the command line, the battery file and the defaults
(the command line wins, then the file, then the flag's default), and checked before any model loads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..inputs.battery import Battery
from ..inputs.config import AnalysisConfig
from ..inputs.label_space import LabelReading
from ..report.formats import parse_formats  # light: the request is checked before the heavy imports

WEIGHTS_MODES = ("pretrained", "random")
DEVICES = ("cpu", "cuda", "auto")
EXECUTORS = ("local", "ray")
DEFAULT_SHARD_SIZE = 256


@dataclass(frozen=True)
class ExecutorSettings:
    """How the battery runs: in this process, or as (backbone x image slice) tasks on Ray."""
    kind: str = "local"  # local | ray
    address: Optional[str] = None  # Ray: None starts a local instance with this machine's CPUs
    shard_size: int = DEFAULT_SHARD_SIZE  # Ray: images per task (rounded up to a multiple of the batch size)
    # Ray, on CPUs: cores (and torch threads) per task. None: as many as torch uses in this process, so the
    # float results equal a single-process run's (the thread count changes float32 rounding).
    cpus_per_task: Optional[int] = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise UsageError(f"executor = {self.kind!r}: choose local or ray.")
        for key in ("shard_size", "cpus_per_task"):
            value = getattr(self, key)
            if key == "cpus_per_task" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{key} = {value!r}: give an integer >= 1.")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise UsageError(f"ray address = {self.address!r}: give host:port, or leave it out to run locally.")


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    battery: Battery
    preset: str
    backbones: tuple  # names or timm ids given with --backbone (replace the preset and the file's list)
    images_dir: Optional[Path]
    weights_mode: str  # pretrained | random (the criterion weights are config.decision.weights)
    checkpoints: tuple  # NAME=PATH from the command line
    trust_pickle: bool
    out_dir: Path
    device: str
    offline: bool
    fresh: bool
    formats: tuple
    config: AnalysisConfig
    executor: ExecutorSettings = ExecutorSettings()
    labels_file: Optional[Path] = None  # --labels / [images] labels: the user's class names
    train_dir: Optional[Path] = None  # --train-images / [images] train_dir: where a probe is fit
    label_reading: LabelReading = LabelReading.AUTO  # --label-reading / [images] label_reading


def resolve_request(battery: Battery, flags: dict, given: set) -> RunRequest:
    """``flags``: every option's value (given or default); ``given``: the options typed on the command line."""
    def pick(name, key=None):
        return flags[name] if name in given else battery.settings.get(key or name, flags[name])

    formats = flags["formats"] if "formats" in given else ",".join(battery.settings.get("formats",
                                                                                      flags["formats"].split(",")))
    weights_mode, device = pick("weights"), pick("device")
    if weights_mode not in WEIGHTS_MODES:
        raise UsageError(f"weights = {weights_mode!r}: choose pretrained or random.")
    if device not in DEVICES:
        raise UsageError(f"device = {device!r}: choose cpu, cuda or auto.")
    config = battery.analysis_config(
        batch_size=flags["batch_size"] if "batch_size" in given else None,
        seed=flags["seed"] if "seed" in given else None,
        sanity_check=False if flags["no_sanity"] else None)
    table = battery.executor
    executor = ExecutorSettings(
        flags["executor"] if "executor" in given else table.get("kind", "local"),
        flags["ray_address"] if "ray_address" in given else table.get("address"),
        flags["shard_size"] if "shard_size" in given else table.get("shard_size", DEFAULT_SHARD_SIZE),
        table.get("cpus_per_task"))
    return RunRequest(battery=battery, preset=pick("preset"), backbones=tuple(flags["backbones"]),
                      images_dir=flags["images_dir"] or battery.images_dir, weights_mode=weights_mode,
                      checkpoints=tuple(flags["checkpoints"]), trust_pickle=pick("trust_pickle"),
                      out_dir=Path(pick("out_dir", "out")), device=device, offline=pick("offline"),
                      fresh=flags["fresh"], formats=parse_formats(formats), config=config, executor=executor,
                      labels_file=flags.get("labels_file") or battery.labels_file,
                      train_dir=flags.get("train_dir") or battery.train_dir,
                      label_reading=LabelReading(flags["label_reading"] if "label_reading" in given else
                                                 battery.label_reading or flags.get("label_reading") or "auto"))
