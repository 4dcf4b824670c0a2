"""What a ``reportgen run`` asks for, resolved from the command line, the battery file and the defaults
(the command line wins, then the file, then the flag's default), and checked before any model loads."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import UsageError
from ..inputs.battery import Battery
from ..inputs.config import AnalysisConfig
from ..report.render import parse_formats

WEIGHTS_MODES = ("pretrained", "random")
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class RunRequest:
    battery: Battery
    preset: str
    backbones: tuple  # names or timm ids given with --backbone (replace the preset and the file's list)
    images_dir: Optional[Path]
    weights: str
    checkpoints: tuple  # NAME=PATH from the command line
    trust_pickle: bool
    out_dir: Path
    device: str
    offline: bool
    fresh: bool
    formats: tuple
    config: AnalysisConfig


def resolve_request(battery: Battery, flags: dict, given: set) -> RunRequest:
    """``flags``: every option's value (given or default); ``given``: the options typed on the command line."""
    def pick(name, key=None):
        return flags[name] if name in given else battery.settings.get(key or name, flags[name])

    formats = flags["formats"] if "formats" in given else ",".join(battery.settings.get("formats",
                                                                                      flags["formats"].split(",")))
    weights, device = pick("weights"), pick("device")
    if weights not in WEIGHTS_MODES:
        raise UsageError(f"weights = {weights!r}: choose pretrained or random.")
    if device not in DEVICES:
        raise UsageError(f"device = {device!r}: choose cpu, cuda or auto.")
    config = battery.analysis_config(
        batch_size=flags["batch_size"] if "batch_size" in given else None,
        seed=flags["seed"] if "seed" in given else None,
        sanity_check=False if flags["no_sanity"] else None)
    return RunRequest(battery, pick("preset"), tuple(flags["backbones"]), flags["images_dir"] or battery.images_dir,
                      weights, tuple(flags["checkpoints"]), pick("trust_pickle"), Path(pick("out_dir", "out")),
                      device, pick("offline"), flags["fresh"], parse_formats(formats), config)
