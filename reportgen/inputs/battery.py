"""Battery files (``reportgen run --config battery.toml``): which backbones, which images, which analyses,
which thresholds, which outputs. Torch-free; every key is checked, unknown ones get a close-match hint.
Command-line flags override the file."""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from .config import (DEFAULT_DECISION_WEIGHTS, TUPLE_FIELDS, AnalysisConfig, DecisionSettings, GateSettings,
                     RuleThresholds)
from .label_space import LABEL_READINGS, LabelReading
from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_LEVEL = {"preset": str, "weights": str, "device": str, "out": str, "formats": list, "offline": bool,
             "trust_pickle": bool, "images": dict, "analysis": dict, "rules": dict, "decision": dict,
             "backbone": list, "executor": dict, "gate": dict}
GATE_KEYS = {"champion": str, "min_p_better": float, "max_accuracy_drop": float, "constraints": str,
             "on_uncertain": str}
EXECUTOR_KEYS = {"kind": str, "address": str, "shard_size": int, "cpus_per_task": int}
IMAGES_KEYS = {"dir": str, "labels": str, "train_dir": str, "label_reading": str}
BACKBONE_KEYS = {"id": str, "name": str, "family": str, "layers": dict, "last_three": list, "checkpoint": str}
LAYER_KEYS = ("shallow", "middle", "deep")
ANALYSIS_KEYS = {f.name: f.type for f in fields(AnalysisConfig) if f.name != "rules"}
RULE_KEYS = {f.name: f.type for f in fields(RuleThresholds)}
DECISION_KEYS = {"max_params_m": float, "max_gmacs": float, "max_latency_ms": float, "min_top1": float,
                 "weights": dict, "confidence": float, "weight_uncertainty": float, "min_win_probability": float,
                 "tie_points": float, "degenerate_class_share": float, "degenerate_chance_margin": float,
                 "degenerate_cam_share": float, "degenerate_min_images": int, "busy_load_per_core": float,
                 "survival_min_images": int}


@dataclass(frozen=True)
class BackboneSpec:
    id: str
    name: Optional[str] = None
    family: Optional[str] = None
    layers: Optional[dict] = None
    last_three: Optional[tuple] = None
    checkpoint: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class Battery:
    path: Optional[Path]
    settings: dict  # top-level scalars as given (preset, weights, device, out, formats, offline, trust_pickle)
    images_dir: Optional[Path]
    analysis: dict  # AnalysisConfig fields as given
    rules: dict  # RuleThresholds fields as given
    decision: dict  # DecisionSettings fields as given
    backbones: tuple  # BackboneSpec
    raw: dict  # the file as parsed, saved with the results
    executor: dict = field(default_factory=dict)  # [executor] as given (kind, address, shard_size, cpus_per_task)
    labels_file: Optional[Path] = None  # [images] labels
    train_dir: Optional[Path] = None  # [images] train_dir
    gate: dict = field(default_factory=dict)  # [gate] as given
    label_reading: Optional[LabelReading] = None  # [images] label_reading

    def checkpoints_for(self, backbones) -> tuple[tuple[str, ...], tuple[BackboneSpec, ...]]:
        """``NAME=PATH`` checkpoint values of the file for the run's backbones, and the specs whose
        checkpoint names a backbone that is not in the run (``--backbone`` replaced the file's list)."""
        names = {n for b in backbones for n in (b.name, b.timm_id, b.architecture)}
        used, ignored = [], []
        for spec in self.backbones:
            if spec.checkpoint:
                name = spec.name or spec.id
                (used if name in names or spec.id in names else ignored).append(spec)
        return tuple(f"{spec.name or spec.id}={spec.checkpoint}" for spec in used), tuple(ignored)

    def analysis_config(self, **overrides) -> AnalysisConfig:
        values = {**self.analysis, **{k: v for k, v in overrides.items() if v is not None}}
        for key in TUPLE_FIELDS:
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return AnalysisConfig(rules=RuleThresholds(**self.rules), decision=DecisionSettings(**self.decision),
                              gate=GateSettings(**self.gate), **values)


EMPTY = Battery(path=None, settings={}, images_dir=None, analysis={}, rules={}, decision={}, backbones=(), raw={})


def _check_keys(where: str, table: dict, allowed: dict) -> None:
    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(sorted(allowed))}.")
        _check_type(f"{where}.{key}", value, allowed[key])


def _check_type(where: str, value: Any, expected) -> None:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number", list: "a list",
             dict: "a table", tuple: "a list"}
    expected = {"str": str, "bool": bool, "int": int, "float": float, "tuple": tuple}.get(expected, expected)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if expected is tuple and isinstance(value, list):
        return
    if expected is int and isinstance(value, bool):
        raise UsageError(f"{where}: expected {names[int]}, got {value!r}.")
    if isinstance(expected, type) and not isinstance(value, expected):
        raise UsageError(f"{where}: expected {names.get(expected, expected.__name__)}, got {value!r}.")


def load_battery(path: Path) -> Battery:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: file not found; `reportgen init {path}` writes an example.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}).") from None
    _check_keys(str(path), raw, TOP_LEVEL)
    images = raw.get("images", {})
    _check_keys(f"{path} [images]", images, IMAGES_KEYS)
    label_reading = _label_reading(f"{path} [images] label_reading", images.get("label_reading"))
    analysis = raw.get("analysis", {})
    _check_keys(f"{path} [analysis]", analysis, ANALYSIS_KEYS)
    rules = raw.get("rules", {})
    _check_keys(f"{path} [rules]", rules, RULE_KEYS)
    decision = raw.get("decision", {})
    if isinstance(decision, dict) and "bootstrap_samples" in decision:
        raise UsageError(f"{path} [decision]: bootstrap_samples moved to [analysis] bootstrap_samples (one paired "
                         "bootstrap serves the whole report).")
    _check_keys(f"{path} [decision]", decision, DECISION_KEYS)
    executor = raw.get("executor", {})
    _check_keys(f"{path} [executor]", executor, EXECUTOR_KEYS)
    gate = raw.get("gate", {})
    _check_keys(f"{path} [gate]", gate, GATE_KEYS)
    specs = []
    for number, table in enumerate(raw.get("backbone", []), start=1):
        where = f"{path} [[backbone]] #{number}"
        if not isinstance(table, dict):
            raise UsageError(f"{where}: expected a table.")
        _check_keys(where, table, BACKBONE_KEYS)
        if "id" not in table:
            raise UsageError(f"{where}: needs id = \"<timm model id or registry name>\".")
        layers = table.get("layers")
        if layers is not None:
            _check_keys(f"{where} layers", layers, {k: str for k in LAYER_KEYS})
            if set(layers) != set(LAYER_KEYS):
                raise UsageError(f"{where} layers: give all of shallow, middle, deep.")
        last_three = table.get("last_three")
        if last_three is not None and (len(last_three) != 3 or not all(isinstance(x, str) for x in last_three)):
            raise UsageError(f"{where} last_three: give three module names.")
        checkpoint = table.get("checkpoint")
        if checkpoint is not None and not Path(checkpoint).is_absolute():
            checkpoint = str((path.parent / checkpoint).resolve())
        specs.append(BackboneSpec(table["id"], table.get("name"), table.get("family"), layers,
                                  tuple(last_three) if last_three else None, checkpoint))
    images_dir, labels_file, train_dir = (_relative_to(path, images.get(key)) for key in ("dir", "labels", "train_dir"))
    settings = {k: raw[k] for k in ("preset", "weights", "device", "out", "formats", "offline", "trust_pickle")
                if k in raw}
    if "out" in settings and not Path(settings["out"]).is_absolute():
        settings["out"] = str((path.parent / settings["out"]).resolve())
    try:
        Battery(path=path, settings=settings, images_dir=None, analysis=analysis, rules=rules, decision=decision,
                backbones=(), raw=raw, gate=gate).analysis_config()
    except TypeError as exc:
        raise UsageError(f"{path}: {exc}.") from None
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return Battery(path=path, settings=settings, images_dir=images_dir, analysis=analysis, rules=rules,
                   decision=decision, backbones=tuple(specs), raw=raw, executor=executor, labels_file=labels_file,
                   train_dir=train_dir, gate=gate, label_reading=label_reading)


def _label_reading(where: str, value: Optional[str]) -> Optional[LabelReading]:
    """One of the readings of LABEL_READINGS, or one line naming them."""
    if value is None:
        return None
    if value not in LABEL_READINGS:
        close = difflib.get_close_matches(value, [str(reading) for reading in LABEL_READINGS], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{where} = {value!r}{hint}: choose {', '.join(LABEL_READINGS)}.")
    return LabelReading(value)


def _relative_to(battery_path: Path, value: Optional[str]) -> Optional[Path]:
    """A path of the file, relative to the file's folder unless absolute."""
    if value is None:
        return None
    return Path(value) if Path(value).is_absolute() else (battery_path.parent / value).resolve()


EXAMPLE = '''# reportgen battery file: `reportgen run --config battery.toml`. Flags on the command line override it.
# Relative paths are relative to this file.

# preset = "paper"                # paper | lite; ignored when [[backbone]] tables are given
weights = "pretrained"            # pretrained | random (random is bannered as "not evidence")
device = "auto"                   # auto (CUDA when a GPU is visible, else cpu) | cpu | cuda
out = "output"
formats = ["html", "pdf", "md", "json"]
# offline = true                  # never contact the hub
# trust_pickle = false            # accept .pth/.bin checkpoints (loaded with torch.load(weights_only=True))

[images]
dir = "images"                    # images + annotations.csv, or class folders images/<class>/*.jpg (class =
                                  # ImageNet index, WordNet id or exact name, or your own class names), or
                                  # Pascal VOC .xml beside images
# labels = "classes.txt"          # your class names in the heads' output order (one per line, or JSON list /
                                  # id2label); default: names stored with a checkpoint, else the sorted folder names
# train_dir = "train"             # labelled class folders to fit the linear probe on (default: 5-fold
                                  # cross-validation on dir)
# label_reading = "auto"          # how numbered folders (0, 1, ...) are read: auto (a count from 0 or 1 is your
                                  # classes, other numbers ImageNet indices) | own | imagenet

[analysis]
cam_method = "gradcam"            # gradcam | gradcam++ | xgradcam | hirescam | layercam
batch_size = 8
seed = 0
# latency_sessions = 3            # latency timed in this many sessions interleaved across the candidates, ...
# latency_budget_s = 1.0          # ... each candidate's passes stopping after this many seconds, split over them
sanity_check = true               # model-parameter randomisation test (trained weights only)
sanity_max_images = 32            # ... on at most this many images (a fixed sample by content hash and seed)
spread_level = 0.5
bootstrap_samples = 1000
size_small_below = 0.10           # box share of the image under which an object is "small"
size_large_from = 0.35            # ... from which it is "large"; between: "medium"
clutter_edge_density = 0.04       # edge density outside the box from which a background is "cluttered"
grid_max_images = 24              # larger image groups show a sample in the heatmap grids (best/median/worst
grid_sample_each = 3              # ... by the deep-layer metric, and misclassified: this many of each)
table_max_rows = 40               # longer per-image tables are summarised (all rows in per_image.csv)
differ_pdf_images = 12            # "Where they differ": the PDF shows this many of the images two candidates
differ_html_images = 400          # ... disagree on, the HTML this many (all of them in differences.csv)
differ_errors_shown = 4           # ... and each candidate's most confident errors
# Your own classes: an ImageNet backbone is scored through a linear probe on its frozen pooled features
probe_folds = 5                   # stratified cross-validation folds (classes with fewer images are left out)
probe_repeats = 5                 # ... drawn this many times, each image's out-of-fold outputs averaged
probe_refits = 10                 # bootstrap refits that widen the probe's accuracy interval for refitting (0: off)
probe_c = 1.0                     # inverse L2 regularisation of the logistic regression
knn_k = 20                        # cosine k-NN cross-check, DINO's weighted vote ...
knn_temperature = 0.07            # ... at this temperature
label_order_min_gain = 0.10       # warn that a head's class order differs when remapping gains this much

[rules]
min_relative_difference = 0.05
min_group_size = 2
focus_mass_ratio = 1.2
slim_cka = 0.8
slim_max_ks = 0.1
sanity_max_spearman = 0.5
sanity_max_ssim = 0.5
slim_min_agreement = 0.9          # slimming verified by removing the unit: top-1 agreement with the full model
slim_max_top1_drop = 0.02         # ... and at most this drop in top-1 accuracy (0.02 = 2 points)

# Where the battery runs: in this process (local), or as (backbone x image slice) tasks on Ray
# (pip install -e '.[ray]'; images and --out on a filesystem every worker mounts).
[executor]
kind = "local"                    # local | ray
# address = "10.0.0.5:6379"       # join this Ray cluster; leave out to start a local one with this machine's CPUs
shard_size = 256                  # images per task (rounded up to a multiple of batch_size)
# cpus_per_task = 4               # cores and torch threads per CPU task (default: as many as torch uses on the
                                  # driver, which keeps the numbers equal to one process; GPU tasks: one GPU)

# The decision: hard constraints (leave out = no limit) and how much each criterion counts. A file holding
# only this table works with --preset and other flags: reportgen run --preset lite --config budget.toml
[decision]
# max_params_m = 5.0              # millions of parameters
# max_gmacs = 1.0                 # GMACs per image
# max_latency_ms = 50             # median latency at batch 1 on the run's device
# min_top1 = 0.5                  # top-1 accuracy on the labelled images (0..1)
weights = DEFAULT_WEIGHTS
                                  # the defaults; name only what you change, the others keep their default
# localisation is weighted by the image set's own mix of small / medium / large objects;
# clutter is how much localisation is kept on cluttered backgrounds (cluttered / clean mass_ratio).
# weight_uncertainty = 0.2        # weights drawn around these in every bootstrap draw (0 = fixed)
# min_win_probability = 0.9       # recommend only a candidate that ranks first in this share of the draws
# degenerate_class_share = 0.8    # a candidate predicting one class for this share of the images,
# degenerate_chance_margin = 0.05 # or with top-1 within this margin of chance, or with all-zero deep
# degenerate_cam_share = 0.5      # CAMs on this share of them, is named on page 1 and never recommended
# degenerate_min_images = 10      # (the checks need at least this many images)
# survival_min_images = 10        # page 1 recomputes the pick without the flagged images if this many remain

# The decision as a gate in CI (`reportgen run --gate`, or `reportgen gate OUT/results`): exit 0 when every
# challenger (every candidate but the champion) meets every condition given, 8 when one does not. Each condition is
# judged on the report's numbers and intervals: pass, fail, uncertain when its interval straddles the limit, or
# not measured (nothing to judge: always a fail).
# [gate]
# champion = "resnet50-prod"      # the candidate in production
# min_p_better = 0.9              # P(challenger's score > champion's) over the draws
# max_accuracy_drop = 0.01        # task accuracy may drop by at most 1 point (Tango's interval, paired)
# constraints = "pass"            # every [decision] constraint must pass; uncertain is not a pass ("ignore": off)
# on_uncertain = "fail"           # how an uncertain min_p_better or max_accuracy_drop counts: fail | pass

# One table per backbone. id: a registry name or any timm model id. Layers not given are chosen
# automatically (see the README); family not given comes from the registry or a heuristic.
# The two below run offline on real weights; the commented one needs the hub (or a checkpoint).
[[backbone]]
id = "efficientnet_lite0"

[[backbone]]
id = "efficientnet_lite2"
family = "deeper"

# [[backbone]]
# id = "resnet18"                 # any timm id
# family = "deeper"
# layers = { shallow = "layer2", middle = "layer3", deep = "layer4" }
# last_three = ["layer4.1.conv1", "layer4.1.conv2", "fc"]
# checkpoint = "weights/resnet18.safetensors"
'''
# The weights line is written from the defaults themselves, so the example never lists fewer criteria than the run has.
EXAMPLE = EXAMPLE.replace("DEFAULT_WEIGHTS", "{ " + ", ".join(f"{key} = {weight:g}" for key, weight in
                                                            DEFAULT_DECISION_WEIGHTS.items()) + " }")

