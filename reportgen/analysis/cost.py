"""What a backbone costs on the run's device: latency (every timed forward pass at batch 1, after warm-up, under
``torch.inference_mode``), throughput at the run's batch size (timed where that is cheap, else bounded below by the
batch-1 latency), and inference memory (CUDA: peak allocated; CPU: weights plus the largest activation footprint of
one module at batch 1, measured from the tensors a forward pass makes), and the slimmed model's latency (the same
passes minus the time spent inside the unit slimming removes). Machine-dependent: kept in cost.json with the
machine's fingerprint, apart from the reproducible results.

Latency is timed until its median is known to a stated precision: the distribution-free 95 % interval of the median
(order statistics, :func:`median_interval`) lies within ±LATENCY_PRECISION of it, checked at MIN_PASSES passes and
then each time the passes have grown by a fifth (looking after every pass would stop on lucky streaks: the
interval's coverage at the stop fell to 94 % in simulation) -- or until the per-model time budget is spent (after at
least MIN_REPEATS passes, the fewest that have such an interval), or MAX_PASSES. The precision reached and what
stopped the timing are kept with every pass, so the decision can resample the timing noise.

Latency drifts between timing sessions by far more than one session's passes vary (tens of per cent on a shared
machine), so the run times every candidate in ``latency_sessions`` sessions, interleaved across the candidates
(A B C, B C A, C A B ...), after the analyses, on one machine (:func:`time_in_sessions`): the decision's interval spans
that drift (a random-effects interval over the sessions, :mod:`reportgen.scoring.timing`), and a session effect
shared by every candidate cancels in their ratio. The per-model budget is split over the sessions.
"""
from __future__ import annotations

import math
import os
import platform
import socket
import statistics
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional, Sequence

import torch

from ..inputs.config import AnalysisConfig
from ..results.schema import MAXIMUM_PASSES, PRECISION_REACHED, TIME_BUDGET, Cost, LatencySession, Machine
from .models import zeros_batch

WARMUP_PASSES = 2  # after the memory measurement's pass: caches, allocator and oneDNN kernels settle
WARMUP_BUDGET_S = 0.3  # ... at least one, whatever it takes
LATENCY_CONFIDENCE = 0.95  # the median's interval
LATENCY_PRECISION = 0.02  # stop once that interval lies within ±2 % of the median ...
LATENCY_BUDGET_S = AnalysisConfig.latency_budget_s  # ... or once this much time went into timed passes (per model)
MIN_PASSES = 10  # the precision is first checked here ...
CHECK_GROWTH = 1.2  # ... and again each time the passes have grown by a fifth
MIN_REPEATS = 6  # whatever the budget: the fewest passes whose median has a distribution-free 95 % interval
MAX_PASSES = 200
MIN_SESSION_REPEATS = 2  # a timing session's fewest passes (MIN_REPEATS split over the sessions, at least this)
THROUGHPUT_PASSES = 3  # timed at the run's batch size, after one warm-up pass at that shape, ...
THROUGHPUT_BUDGET_S = 0.5  # ... when those passes should take at most this (else bounded by the batch-1 latency)


def load_per_core() -> Optional[float]:
    """The 1-minute load average divided by the cores this process may use (None where the OS has no load
    average)."""
    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return os.getloadavg()[0] / max(cores, 1)
    except (AttributeError, OSError):
        return None


def machine(device: str, host: str = "") -> Machine:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name() if device == "cuda" else (cpu or "cpu")
    return Machine(device, name, cpu, torch.get_num_threads(), torch.__version__, host or socket.gethostname())


class _UnitClock:
    """Time spent inside one module during a forward pass (every call summed): forward pre-hook and hook around
    it, CUDA events on a GPU (read after the pass's synchronisation)."""

    def __init__(self, module: Optional[torch.nn.Module], device: str):
        self.device, self.spans, self.handles = device, [], []
        if module is not None:
            self.handles = [module.register_forward_pre_hook(self._enter), module.register_forward_hook(self._leave)]

    def _now(self):
        if self.device == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _enter(self, _module, _inputs):
        self.spans.append([self._now(), None])

    def _leave(self, _module, _inputs, _output):
        self.spans[-1][1] = self._now()

    def take_seconds(self) -> float:
        if self.device == "cuda":
            seconds = sum(start.elapsed_time(end) / 1000.0 for start, end in self.spans)
        else:
            seconds = sum(end - start for start, end in self.spans)
        self.spans = []
        return seconds

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _timed(model: torch.nn.Module, batch: torch.Tensor, device: str) -> float:
    """Seconds of one forward pass (CUDA: events, synchronised)."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        model(batch)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1000.0
    started = time.perf_counter()
    model(batch)
    return time.perf_counter() - started


@lru_cache(maxsize=None)
def _median_rank(passes: int, confidence: float) -> int:
    """k of the distribution-free interval [x_(k), x_(n+1-k)] of the median of ``passes`` values: the largest k with
    P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2, so it covers the median with at least ``confidence``
    whatever the distribution (0: too few values for any such interval)."""
    tail, below, k = (1.0 - confidence) / 2.0, 0.0, 0
    for i in range(passes):
        below += math.comb(passes, i) / 2.0 ** passes
        if below > tail:
            break
        k = i + 1
    return k


def median_interval(samples: Sequence[float], confidence: float = LATENCY_CONFIDENCE) -> Optional[tuple]:
    """The distribution-free ``confidence`` interval of the median of ``samples`` (order statistics; no
    resampling, so no seed), or None with too few values (fewer than 6 at 95 %)."""
    k = _median_rank(len(samples), confidence)
    if k == 0:
        return None
    ordered = sorted(samples)
    return ordered[k - 1], ordered[len(ordered) - k]


def relative_precision(samples: Sequence[float], confidence: float = LATENCY_CONFIDENCE) -> Optional[float]:
    """How far the median's interval reaches from the median, as a share of it (the larger side): 0.02 = the
    interval lies within ±2 %. None: too few values for an interval."""
    interval = median_interval(samples, confidence)
    if interval is None:
        return None
    median = statistics.median(samples)
    if median <= 0:
        return None
    return max(median - interval[0], interval[1] - median) / median


class StoppingRule:
    """When to stop timing: ``check(samples, spent_s)`` after each pass returns why to stop, or "" to go on.
    The precision is looked at on a geometric schedule (MIN_PASSES, then each time the passes grew by
    CHECK_GROWTH), the budget after every pass."""

    def __init__(self, budget_s: float = LATENCY_BUDGET_S, precision: float = LATENCY_PRECISION,
                 confidence: float = LATENCY_CONFIDENCE, min_passes: int = MIN_PASSES,
                 min_repeats: int = MIN_REPEATS, max_passes: int = MAX_PASSES):
        self.budget_s, self.precision, self.confidence = budget_s, precision, confidence
        self.min_repeats, self.max_passes = min_repeats, max_passes
        self._next_check = min_passes

    def check(self, samples: Sequence[float], spent_s: float) -> str:
        passes = len(samples)
        if passes >= self._next_check:
            self._next_check = max(passes + 1, math.ceil(passes * CHECK_GROWTH))
            reached = relative_precision(samples, self.confidence)
            if reached is not None and reached <= self.precision:
                return PRECISION_REACHED
        if passes >= self.max_passes:
            return MAXIMUM_PASSES
        if spent_s >= self.budget_s and passes >= self.min_repeats:
            return TIME_BUDGET
        return ""


@dataclass(frozen=True)
class Latency:
    samples_ms: tuple  # every timed pass
    without_unit_ms: tuple  # each pass minus its time inside the unit (empty: no unit)
    warmup_passes: int
    stopped_because: str  # precision reached | time budget | maximum passes
    budget_s: float = LATENCY_BUDGET_S

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def quartiles_ms(self) -> tuple:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0], self.samples_ms[0]
        q1, _, q3 = statistics.quantiles(self.samples_ms, n=4, method="inclusive")
        return q1, q3

    @property
    def interval_ms(self) -> Optional[tuple]:
        return median_interval(self.samples_ms)

    @property
    def precision(self) -> Optional[float]:
        return relative_precision(self.samples_ms)

    @property
    def without_unit_median_ms(self) -> Optional[float]:
        return statistics.median(self.without_unit_ms) if self.without_unit_ms else None


def latency_ms(model: torch.nn.Module, input_size, device: str, unit: Optional[str] = None,
               budget_s: float = LATENCY_BUDGET_S, min_repeats: int = MIN_REPEATS,
               warmup_budget_s: float = WARMUP_BUDGET_S) -> Latency:
    """Batch-1 forward latency in milliseconds, every pass, timed under :class:`StoppingRule`. With ``unit``, the
    time spent inside it is taken from the same passes: the slimmed model's latency is each pass minus its unit
    time (paired, so the saving is not the difference of two noisy medians, and no second model is timed)."""
    batch = zeros_batch(1, input_size, device)
    samples: list[float] = []
    without_unit: list[float] = []
    rule = StoppingRule(budget_s, min_repeats=min_repeats)
    with torch.inference_mode():
        warmup, spent = 0, 0.0
        while warmup < WARMUP_PASSES and (warmup == 0 or spent < warmup_budget_s):
            spent += _timed(model, batch, device)
            warmup += 1
        clock = _UnitClock(model.get_submodule(unit) if unit else None, device)
        try:
            spent, reason = 0.0, ""
            while not reason:
                seconds = _timed(model, batch, device)
                samples.append(seconds * 1000.0)
                without_unit.append((seconds - clock.take_seconds()) * 1000.0)
                spent += seconds
                reason = rule.check(samples, spent)
        finally:
            clock.remove()
    return Latency(tuple(samples), tuple(without_unit) if unit else (), warmup, reason, budget_s)


def images_per_second(model: torch.nn.Module, input_size, device: str, batch_size: int,
                      latency_median_ms: float) -> tuple[float, int, str]:
    """(images/s, batch size, how): the median of THROUGHPUT_PASSES timed passes at the run's batch size after one
    warm-up pass at that shape, when those passes should fit in THROUGHPUT_BUDGET_S (a batch costing at most
    ``batch_size`` batch-1 passes); otherwise 1000 / the batch-1 median latency, a lower bound (batching only
    helps), at no extra time (a batch of 8 VGG19 images takes seconds on two CPU cores)."""
    expected_s = (THROUGHPUT_PASSES + 1) * batch_size * latency_median_ms / 1000.0
    if batch_size == 1 or expected_s > THROUGHPUT_BUDGET_S:
        why = "" if batch_size == 1 else \
            f" (a lower bound at batch {batch_size}; timing it would take about {expected_s:.1f} s)"
        return 1000.0 / latency_median_ms, 1, f"1000 / median batch-1 latency{why}"
    batch = zeros_batch(batch_size, input_size, device)
    rates = []
    with torch.inference_mode():
        _timed(model, batch, device)
        while len(rates) < THROUGHPUT_PASSES:
            seconds = _timed(model, batch, device)
            rates.append(batch_size / seconds if seconds > 0 else float("inf"))
    return statistics.median(rates), batch_size, f"median of {THROUGHPUT_PASSES} timed passes at batch " \
                                                  f"{batch_size}, after a warm-up pass at that shape"


def memory_mb(model: torch.nn.Module, input_size, device: str, resident_bytes: int = 0) -> tuple[float, str]:
    """``resident_bytes``: CUDA memory held by other models loaded before this one (the timing stage holds every
    candidate), left out of this one's peak."""
    batch = zeros_batch(1, input_size, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            model(batch)
        torch.cuda.synchronize()
        return ((torch.cuda.max_memory_allocated() - resident_bytes) / 2 ** 20,
                "CUDA peak allocated, batch 1 (weights included)")
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    largest = [0]

    def hook(_module, inputs, output):
        held = sum(t.numel() * t.element_size() for t in inputs if torch.is_tensor(t))
        if torch.is_tensor(output):
            held += output.numel() * output.element_size()
        largest[0] = max(largest[0], held)
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return (weights + largest[0]) / 2 ** 20, "weights + largest input+output of one module, batch 1 (measured)"


@dataclass(frozen=True)
class TimedCandidate:
    """One candidate of the timing stage: ``load()`` gives its model as analysed (same weights and head; random
    weights from the run's seed) on the run's device and its input size."""
    name: str
    load: Callable[[], tuple]  # -> (model, input_size)
    batch_size: int
    slim_unit: Optional[str] = None


def time_in_sessions(candidates: Sequence[TimedCandidate], device: str, sessions: int,
                     budget_s: float = LATENCY_BUDGET_S, host: str = "",
                     progress: Callable[[str], None] = lambda message: None) -> dict:
    """Every candidate's cost, its latency timed in ``sessions`` sessions interleaved across the candidates (A B C,
    then B C A, C A B ...: each session starts one candidate later): each candidate is loaded once and held (memory measured right after its load), each session
    times every candidate in turn under :class:`StoppingRule` with ``budget_s / sessions`` and MIN_REPEATS / sessions
    passes at least (so the whole timing takes about what one timing of ``budget_s`` did), and throughput follows the
    last session. name -> Cost."""
    loaded, memory, timed = {}, {}, {name.name: [] for name in candidates}
    try:
        for candidate in candidates:
            resident = torch.cuda.memory_allocated() if device == "cuda" else 0
            model, input_size = candidate.load()
            model.eval()
            loaded[candidate.name] = (model, input_size)
            memory[candidate.name] = memory_mb(model, input_size, device, resident)
        progress(timing_plan(budget_s, sessions))
        position = 0
        for session in range(sessions):
            progress(f"latency session {session + 1} of {sessions}: {len(candidates)} candidate(s) in turn")
            # Each session starts one candidate later (A B C, B C A, C A B, ...): a drift within a session or an
            # effect of the position would otherwise bias every within-session difference the same way, out of
            # reach of the sessions' spread.
            shift = session % len(candidates)
            for candidate in list(candidates[shift:]) + list(candidates[:shift]):
                model, input_size = loaded[candidate.name]
                # The budget and the fewest passes split over the sessions, so the timing costs about what one
                # session did; a session's median needs no interval of its own (the sessions' spread carries the
                # pass noise into the decision's). The first session warms up as one timing did; later ones, whose
                # kernels were built then, for a share of that.
                latency = latency_ms(model, input_size, device, candidate.slim_unit, budget_s / sessions,
                                     max(MIN_SESSION_REPEATS, math.ceil(MIN_REPEATS / sessions)),
                                     WARMUP_BUDGET_S if session == 0 else WARMUP_BUDGET_S / sessions)
                timed[candidate.name].append((LatencySession(
                    session=session, position=position, samples_ms=latency.samples_ms,
                    warmup_passes=latency.warmup_passes, stopped_because=latency.stopped_because,
                    load_per_core=load_per_core()), latency))
                position += 1
        costs = {}
        for candidate in candidates:
            model, input_size = loaded[candidate.name]
            costs[candidate.name] = _session_cost(model, input_size, device, candidate, timed[candidate.name],
                                                  memory[candidate.name], budget_s, host)
            progress(f"{candidate.name}: {timing_outcome(costs[candidate.name])}")
        return costs
    finally:
        loaded.clear()


def _session_cost(model, input_size, device: str, candidate: TimedCandidate, timed: list, memory: tuple,
                  budget_s: float, host: str) -> Cost:
    """One candidate's Cost from its sessions: the point latency is the geometric mean of the session medians (the
    decision's estimate on the log scale); the pooled passes give the quartiles and the within-session precision."""
    sessions = tuple(s for s, _ in timed)
    samples = tuple(v for s in sessions for v in s.samples_ms)
    without_unit = tuple(v for _, latency in timed for v in latency.without_unit_ms)
    medians = [statistics.median(s.samples_ms) for s in sessions]
    point = math.exp(statistics.fmean(math.log(m) for m in medians)) if all(m > 0 for m in medians) else \
        statistics.median(samples)
    throughput, throughput_batch, throughput_method = images_per_second(model, input_size, device,
                                                                        candidate.batch_size, point)
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive") if len(samples) > 1 else (samples[0],) * 3
    interval = median_interval(samples)
    loads = [s.load_per_core for s in sessions if s.load_per_core is not None]
    return Cost(latency_ms_median=point, latency_ms_q1=q1, latency_ms_q3=q3, latency_repeats=len(samples),
                images_per_s=throughput, throughput_batch_size=throughput_batch, memory_mb=memory[0],
                memory_method=memory[1],
                slim_latency_ms_median=statistics.median(without_unit) if without_unit else None,
                machine=machine(device, host), latency_ms_samples=samples, slim_latency_ms_samples=without_unit,
                warmup_passes=sum(s.warmup_passes for s in sessions),
                stopped_because=", ".join(dict.fromkeys(s.stopped_because for s in sessions)),
                load_per_core=max(loads) if loads else None,  # the busiest session: the busy-machine flag's
                latency_precision=relative_precision(samples), latency_ms_ci=tuple(interval) if interval else (),
                latency_target_precision=LATENCY_PRECISION, latency_confidence=LATENCY_CONFIDENCE,
                latency_budget_s=budget_s, throughput_method=throughput_method, latency_sessions=sessions)


def timing_plan(budget_s: float = LATENCY_BUDGET_S, sessions: int = 0) -> str:
    """The progress line before the cost measurement (``sessions``: the timing stage's)."""
    if sessions:
        return (f"latency and memory: every candidate timed in {sessions} interleaved sessions (A B C, B C A, C A B ...), "
                f"each until its median's {100 * LATENCY_CONFIDENCE:g} % interval lies within "
                f"±{100 * LATENCY_PRECISION:g} % of it, or for {budget_s / sessions:.3g} s")
    return (f"latency and memory: timed until the median's {100 * LATENCY_CONFIDENCE:g} % interval lies within "
            f"±{100 * LATENCY_PRECISION:g} % of it, or for {budget_s:g} s")


def timing_outcome(cost: Cost) -> str:
    """The progress line after it: the median, the precision reached and what stopped the timing."""
    if cost.latency_sessions:
        medians = ", ".join(f"{m:.3g}" for m in cost.session_medians_ms)
        return (f"latency {cost.latency_ms_median:.3g} ms (session medians {medians} ms), {cost.latency_repeats} "
                f"passes ({cost.stopped_because})")
    reached = f"within ±{100 * cost.latency_precision:.1f} %" if cost.latency_precision is not None else \
        "no interval (too few passes)"
    return (f"latency {cost.latency_ms_median:.3g} ms, {reached} after {cost.latency_repeats} passes "
            f"({cost.stopped_because})")


def measure_cost(model: torch.nn.Module, input_size, device: str, batch_size: int,
                 slim_unit: Optional[str] = None, host: str = "") -> Cost:
    """Cost of ``model``; ``slim_unit``: the module slimming removes, whose time inside the timed passes gives
    the slimmed model's latency."""
    was_training = model.training
    model.eval()
    try:
        memory, method = memory_mb(model, input_size, device)
        latency = latency_ms(model, input_size, device, slim_unit)
        load = load_per_core()
        throughput, throughput_batch, throughput_method = images_per_second(model, input_size, device, batch_size,
                                                                            latency.median_ms)
    finally:
        model.train(was_training)
    q1, q3 = latency.quartiles_ms
    interval = latency.interval_ms
    return Cost(latency_ms_median=latency.median_ms, latency_ms_q1=q1, latency_ms_q3=q3,
                latency_repeats=len(latency.samples_ms), images_per_s=throughput,
                throughput_batch_size=throughput_batch, memory_mb=memory, memory_method=method,
                slim_latency_ms_median=latency.without_unit_median_ms, machine=machine(device, host),
                latency_ms_samples=tuple(latency.samples_ms), slim_latency_ms_samples=tuple(latency.without_unit_ms),
                warmup_passes=latency.warmup_passes, stopped_because=latency.stopped_because, load_per_core=load,
                latency_precision=latency.precision, latency_ms_ci=tuple(interval) if interval else (),
                latency_target_precision=LATENCY_PRECISION, latency_confidence=LATENCY_CONFIDENCE,
                latency_budget_s=latency.budget_s, throughput_method=throughput_method)
