"""Hand-made decision inputs with latency timed in sessions (no torch): each candidate's cost.json entry holds its
sessions' passes, positions interleaved as the timing stage writes them (A B C ... A B C ...)."""
import numpy as np

from reportgen.inputs.config import AnalysisConfig, DecisionSettings
from reportgen.results.schema import (SCHEMA_VERSION, BackboneResult, CamStatus, Cost, CostReport, FeatureCka,
                                      ImageEntry, ImageSetInfo, LatencySession, Machine, Metrics, Prediction,
                                      RankedClass, RunIndex, SanityRun, SlimmingRun, WeightsInfo)

N = 24
MACHINE = Machine("cpu", "test cpu", "test cpu", 2, "x")


def image(i):
    return ImageEntry(file=f"img{i}.png", sha256="", width=100, height=100, class_index=1, class_name="x", box=None,
                      box_share=None, size=None, background=None, source="", licence="", notes="", decoding="",
                      size_source="", background_source="", box_source="", display_copy="")


def backbone(name, architecture=None, params_m=5.0, correct=None):
    correct = [i < 16 for i in range(N)] if correct is None else correct
    return BackboneResult(
        name=name, timm_id=name, architecture=architecture or name, display_name=name.upper(), family="deeper",
        family_source="registry", layer_source="registry", depth_layers={"deep": "x"}, last_three=("a", "b", "c"),
        weight_modules={}, layers=("x",), weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={},
        params=int(params_m * 1e6), macs=params_m * 1e8, cam_status={"x": (CamStatus.OK,) * N}, feature_stats={},
        weight_stats={}, feature_cka=FeatureCka((), (), ""), views=(),
        predictions=tuple(Prediction(1, "x", "manifest", (RankedClass(1 if ok else 2, "x", 0.9),), bool(ok), bool(ok))
                          for ok in correct),
        sanity=SanityRun("skipped", "test", ()),
        slimming=SlimmingRun(status="not-possible", unit=None, unit_source="registry", reason="test", params_removed=0,
                             macs_removed=0.0, deep_cam_layer=None), batch_size=1)


def session_cost(sessions, positions, machine=MACHINE):
    """``sessions``: per session the timed passes (ms); ``positions``: each session's place in the timing order."""
    records = tuple(LatencySession(session=s, position=int(p), samples_ms=tuple(float(v) for v in passes))
                    for s, (passes, p) in enumerate(zip(sessions, positions)))
    medians = [float(np.median(r.samples_ms)) for r in records]
    point = float(np.exp(np.mean(np.log(medians))))
    samples = tuple(v for r in records for v in r.samples_ms)
    return Cost(latency_ms_median=point, latency_ms_q1=point, latency_ms_q3=point, latency_repeats=len(samples),
                images_per_s=10.0, throughput_batch_size=1, memory_mb=100.0, memory_method="test",
                slim_latency_ms_median=None, machine=machine, latency_ms_samples=samples, latency_sessions=records)


def interleaved(timings):
    """name -> per session passes  =>  name -> Cost, positions A B C ... A B C ... in the dict's order."""
    names = list(timings)
    return {name: session_cost(passes, [s * len(names) + k for s in range(len(passes))])
            for k, (name, passes) in enumerate(timings.items())}


def run_inputs(costs, architectures=None, decision=DecisionSettings(weights={"accuracy": 1.0, "latency": 1.0}),
               samples=200):
    """(index, metrics, cost report) of candidates with these costs (name -> Cost)."""
    architectures = architectures or {}
    config = AnalysisConfig(decision=decision, bootstrap_samples=samples)
    backbones = tuple(backbone(name, architectures.get(name)) for name in costs)
    index = RunIndex(schema_version=SCHEMA_VERSION, versions={}, config=config, seed=0, weights_mode="pretrained",
                     device="cpu", image_set=ImageSetInfo("t", "", N), images=tuple(image(i) for i in range(N)),
                     skipped_images=(), backbones=backbones, timings_file="timings.json", battery_file={})
    metrics = Metrics(schema_version=SCHEMA_VERSION, per_image=(), predictions=(), aggregates=(), last_three={},
                      sanity={}, slimming={})
    return index, metrics, CostReport(dict(costs))
