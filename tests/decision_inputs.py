"""Hand-made decision inputs without a model (no torch, no timm): a run's images, its candidates' predictions,
per-image CAM mass ratios, ROAD gaps and timed latency passes, built into the records ``decide`` and
``evaluate_gate`` read. From the review's ``mk.py`` (issue 32, ../shared/review/statistics-2026-12-06/) and
tests/test_decision.py's helpers, on the current schema; used by tests/test_invariance.py."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from reportgen.inputs.config import AnalysisConfig, DecisionSettings, GateSettings
from reportgen.results import arrays as keys
from reportgen.results.schema import (SCHEMA_VERSION, BackboneResult, CamStatus, Cost, CostReport, FaithfulnessRun,
                                      FeatureCka, ImageEntry, ImageSetInfo, Machine, Metrics, PerImageRow, Prediction,
                                      RankedClass, RunIndex, RunStatus, SanityRun, SlimmingRun, WeightsInfo)
from reportgen.scoring.decision import decide, decision_inputs
from reportgen.scoring.gate import evaluate_gate
from reportgen.scoring.vectors import run_draws

MACHINE = Machine("cpu", "test cpu", "test cpu", 2, "x")


@dataclass(frozen=True, kw_only=True)
class Picture:
    """One image of the run: labelled or not (its class), boxed or not (then a size class and a background)."""
    target: Optional[int]  # class index; None: unlabelled
    size: Optional[str]  # small | medium | large; None: no box
    background: Optional[str]  # clean | cluttered (boxed images only)


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One candidate. Per image (the run's order): ``correct`` its top-1 outcome (None: not scored, as on an
    unlabelled image or for a probe that could not be fit), ``confidence`` its top-1 probability, ``mass`` its deep
    CAM mass ratio (NaN: no usable CAM), ``gaps`` its ROAD gap (None: faithfulness not measured; NaN: outside the
    sample). ``latency``: its timed passes (ms)."""
    params_m: float
    architecture: str
    correct: tuple
    confidence: tuple
    mass: tuple
    latency: tuple
    gaps: Optional[tuple] = None


def image_entry(i: int, picture: Picture) -> ImageEntry:
    boxed = picture.size is not None
    return ImageEntry(file=f"img{i}.png", sha256=f"{i:064x}", width=100, height=100, class_index=picture.target,
                      class_name=None if picture.target is None else f"class{picture.target}",
                      box=(0.0, 0.0, 50.0, 50.0) if boxed else None, box_share=0.25 if boxed else None,
                      size=picture.size, background=picture.background if boxed else None, source="", licence="",
                      notes="", decoding="", size_source="", background_source="", box_source="", display_copy="")


def _prediction(i: int, picture: Picture, correct: Optional[bool], confidence: float) -> Prediction:
    # A wrong or unscored answer names a class of its own, so that no candidate predicts one class for most images
    # (the degenerate check's collapse) unless its answers are right.
    if picture.target is not None and correct is not None:
        predicted = picture.target if correct else 500 + i
    else:
        predicted = 700 + i
    target = picture.target if picture.target is not None else predicted
    return Prediction(target, f"class{target}", "manifest" if picture.target is not None else "prediction",
                      (RankedClass(predicted, f"class{predicted}", float(confidence)),),
                      None if picture.target is None else correct,
                      None if picture.target is None or correct is None else correct)


def _backbone(name: str, spec: Spec, pictures: tuple) -> BackboneResult:
    count = len(pictures)
    entry = BackboneResult(
        name=name, timm_id=name, architecture=spec.architecture, display_name=name.upper(), family="deeper",
        family_source="registry", layer_source="registry", depth_layers={"deep": "x"}, last_three=("a", "b", "c"),
        weight_modules={}, layers=("x",), weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={},
        params=int(round(spec.params_m * 1e6)), macs=spec.params_m * 1e8, cam_status={"x": (CamStatus.OK,) * count},
        feature_stats={}, weight_stats={}, feature_cka=FeatureCka((), (), ""), views=(),
        predictions=tuple(_prediction(i, p, ok, c) for i, (p, ok, c) in
                          enumerate(zip(pictures, spec.correct, spec.confidence))),
        sanity=SanityRun("skipped", "test", ()),
        slimming=SlimmingRun(status="not-possible", unit=None, unit_source="registry", reason="test", params_removed=0,
                             macs_removed=0.0, deep_cam_layer=None), batch_size=1)
    if spec.gaps is not None:
        entry = replace(entry, faithfulness=FaithfulnessRun(status=RunStatus.DONE, reason="", layer="x",
                                                            percentiles=(50,), imputation_side=64,
                                                            images=tuple(range(count)), design="balanced"))
    return entry


def _arrays(spec: Spec, count: int) -> dict:
    if spec.gaps is None:
        return {}
    road = np.zeros((count, 3, 2))
    road[:, 0, 1] = 2 * np.asarray(spec.gaps, dtype=float)  # LeRF change; MoRF 0: the gap is (LeRF - MoRF) / 2
    return {keys.ROAD: road}


def _cost(samples) -> Cost:
    samples = tuple(float(v) for v in samples)
    median = float(np.median(samples))
    return Cost(latency_ms_median=median, latency_ms_q1=median, latency_ms_q3=median, latency_repeats=len(samples),
                images_per_s=10.0, throughput_batch_size=8, memory_mb=100.0, memory_method="test",
                slim_latency_ms_median=None, machine=MACHINE, latency_ms_samples=samples, load_per_core=None)


@dataclass(frozen=True, kw_only=True)
class Run:
    index: RunIndex
    metrics: Metrics
    cost: CostReport
    arrays: dict  # name -> saved arrays

    def arrays_of(self, name: str) -> dict:
        return self.arrays[name]


def build(specs: dict, pictures: tuple, decision: DecisionSettings = DecisionSettings(), samples: int = 60,
          seed: int = 0, calibration_min_labelled: int = 5) -> Run:
    """The run of ``specs`` (name -> :class:`Spec`, in the battery's order) on ``pictures``."""
    config = AnalysisConfig(decision=decision, bootstrap_samples=samples, seed=seed,
                            calibration_min_labelled=calibration_min_labelled)
    images = tuple(image_entry(i, p) for i, p in enumerate(pictures))
    backbones = tuple(_backbone(name, spec, pictures) for name, spec in specs.items())
    rows = tuple(PerImageRow(image=image.file, backbone=name, family="deeper", layer="x", role="deep", size=image.size,
                             background=image.background, cam_status=CamStatus.OK, mass_in_box=0.5,
                             mass_ratio=(float(spec.mass[i]) if image.box is not None and np.isfinite(spec.mass[i])
                                         else None),
                             pointing_hit=True, spread=0.1, entropy=0.5)
                 for name, spec in specs.items() for i, image in enumerate(images))
    index = RunIndex(schema_version=SCHEMA_VERSION, versions={}, config=config, seed=seed, weights_mode="pretrained",
                     device="cpu", image_set=ImageSetInfo("t", "", len(images)), images=images, skipped_images=(),
                     backbones=backbones, timings_file="timings.json", battery_file={})
    metrics = Metrics(schema_version=SCHEMA_VERSION, per_image=rows, predictions=(), aggregates=(), last_three={},
                      sanity={}, slimming={})
    cost = CostReport({name: _cost(spec.latency) for name, spec in specs.items()})
    return Run(index=index, metrics=metrics, cost=cost,
               arrays={name: _arrays(spec, len(images)) for name, spec in specs.items()})


def decide_and_gate(run: Run, gate: Optional[GateSettings] = None) -> tuple:
    """(Decision, DecisionInputs, GateReport or None) on the run's own draws, as ``reportgen`` computes them."""
    draws = run_draws(run.index)
    inputs = decision_inputs(run.index, run.metrics, run.cost, draws, run.arrays_of)
    decision = decide(run.index, run.metrics, run.cost, draws, run.arrays_of, inputs)
    settings = run.index.config.decision
    report = None if gate is None else evaluate_gate(decision, inputs, [b.name for b in run.index.backbones], gate,
                                                     draws, settings.weight_uncertainty, settings.confidence)
    return decision, inputs, report
