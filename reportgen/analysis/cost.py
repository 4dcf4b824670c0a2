"""What a backbone costs on the run's device: latency (every timed forward pass at batch 1, after warm-up, under
``torch.inference_mode``), throughput at the run's batch size (after a warm-up at that shape), and inference memory
(CUDA: peak allocated; CPU: weights plus the largest activation footprint of one module at batch 1, measured from
the tensors a forward pass makes), and the slimmed model's latency (the same passes minus the time spent inside the
unit slimming removes). Machine-dependent: kept in cost.json with the machine's fingerprint, apart from the
reproducible results.

Latency is timed until its median is stable (adding the last ten passes moves it by at most 1 %) once at least
MIN_PASSES passes are in, or until the per-model budget is spent (at least MIN_REPEATS passes), as timm's benchmark
warms up before it times; every pass is kept, so the decision can resample the timing noise.
"""
from __future__ import annotations

import os
import platform
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..results.schema import Cost, Machine
from .models import zeros_batch

WARMUP_PASSES = 3  # after the memory measurement's pass: caches, allocator and oneDNN kernels settle
WARMUP_BUDGET_S = 0.5
MIN_PASSES = 20  # where the budget allows
MIN_REPEATS = 3  # whatever the budget (a VGG on a CPU)
MAX_PASSES = 200
STABLE_WINDOW = 10  # the median is stable when the last STABLE_WINDOW passes move it by at most STABLE_CHANGE
STABLE_CHANGE = 0.01
LATENCY_BUDGET_S = 2.0  # per model: time spent in timed passes
THROUGHPUT_PASSES = 3  # timed at the run's batch size, after one warm-up pass at that shape
THROUGHPUT_BUDGET_S = 1.0


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


@dataclass(frozen=True)
class Latency:
    samples_ms: tuple  # every timed pass
    without_unit_ms: tuple  # each pass minus its time inside the unit (empty: no unit)
    warmup_passes: int
    stopped_because: str

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
    def without_unit_median_ms(self) -> Optional[float]:
        return statistics.median(self.without_unit_ms) if self.without_unit_ms else None


def _stable(samples: list) -> bool:
    if len(samples) < max(MIN_PASSES, 2 * STABLE_WINDOW):
        return False
    now, before = statistics.median(samples), statistics.median(samples[:-STABLE_WINDOW])
    return abs(now - before) <= STABLE_CHANGE * now


def latency_ms(model: torch.nn.Module, input_size, device: str, unit: Optional[str] = None,
               budget_s: float = LATENCY_BUDGET_S) -> Latency:
    """Batch-1 forward latency in milliseconds, every pass. With ``unit``, the time spent inside it is taken from
    the same passes: the slimmed model's latency is each pass minus its unit time (paired, so the saving is not
    the difference of two noisy medians, and no second model is timed)."""
    batch = zeros_batch(1, input_size, device)
    samples: list[float] = []
    without_unit: list[float] = []
    with torch.inference_mode():
        warmup, spent = 0, 0.0
        while warmup < WARMUP_PASSES and (warmup == 0 or spent < WARMUP_BUDGET_S):
            spent += _timed(model, batch, device)
            warmup += 1
        clock = _UnitClock(model.get_submodule(unit) if unit else None, device)
        try:
            spent, reason = 0.0, "maximum passes"
            while len(samples) < MAX_PASSES:
                seconds = _timed(model, batch, device)
                samples.append(seconds * 1000.0)
                without_unit.append((seconds - clock.take_seconds()) * 1000.0)
                spent += seconds
                if _stable(samples):
                    reason = "stable median"
                    break
                if spent >= budget_s and len(samples) >= MIN_REPEATS:
                    reason = "budget"
                    break
        finally:
            clock.remove()
    return Latency(tuple(samples), tuple(without_unit) if unit else (), warmup, reason)


def images_per_second(model: torch.nn.Module, input_size, device: str, batch_size: int) -> float:
    """Median throughput of timed passes at the run's batch size, after one warm-up pass at that shape."""
    batch = zeros_batch(batch_size, input_size, device)
    rates, spent = [], 0.0
    with torch.inference_mode():
        _timed(model, batch, device)
        while len(rates) < THROUGHPUT_PASSES and (not rates or spent < THROUGHPUT_BUDGET_S):
            seconds = _timed(model, batch, device)
            spent += seconds
            rates.append(batch_size / seconds if seconds > 0 else float("inf"))
    return statistics.median(rates)


def memory_mb(model: torch.nn.Module, input_size, device: str) -> tuple[float, str]:
    batch = zeros_batch(1, input_size, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            model(batch)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2 ** 20, "CUDA peak allocated, batch 1 (weights included)"
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
        throughput = images_per_second(model, input_size, device, batch_size)
    finally:
        model.train(was_training)
    q1, q3 = latency.quartiles_ms
    return Cost(latency.median_ms, q1, q3, len(latency.samples_ms), throughput, batch_size, memory, method,
                latency.without_unit_median_ms, machine(device, host), tuple(latency.samples_ms),
                tuple(latency.without_unit_ms), latency.warmup_passes, latency.stopped_because, load)
