"""What a backbone costs on the run's device: latency (median and quartiles of timed forward passes at batch
1, after warm-up, under ``torch.inference_mode``), throughput at the run's batch size, and inference memory
(CUDA: peak allocated; CPU: weights plus the largest activation footprint of one module at batch 1, measured
from the tensors a forward pass makes), and the slimmed model's latency (the same passes minus the time spent inside
the unit slimming removes). Machine-dependent: kept in cost.json, apart from the reproducible results."""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..results.schema import Cost, Machine
from .models import zeros_batch

# No warm-up pass of its own: the memory measurement's forward pass (same model, batch 1) runs first.
LATENCY_REPEATS = 5
MIN_REPEATS = 3
# Big models on a CPU: stop repeating (after MIN_REPEATS) once this much time went into one measurement.
LATENCY_BUDGET_S = 1.0


def machine(device: str) -> Machine:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name() if device == "cuda" else (cpu or "cpu")
    return Machine(device, name, cpu, torch.get_num_threads(), torch.__version__)


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
    median_ms: float
    q1_ms: float
    q3_ms: float
    repeats: int
    without_unit_ms: Optional[float]  # median over the passes of (pass - time inside the unit); None: no unit


def latency_ms(model: torch.nn.Module, input_size, device: str, unit: Optional[str] = None) -> Latency:
    """Batch-1 forward latency in milliseconds (median, quartiles). With ``unit``, the time spent inside it is
    taken from the same passes: the slimmed model's latency is each pass minus its unit time (paired, so the
    saving is not the difference of two noisy medians, and no second model is timed)."""
    batch = zeros_batch(1, input_size, device)
    clock = _UnitClock(model.get_submodule(unit) if unit else None, device)
    samples: list[float] = []
    without_unit: list[float] = []
    try:
        with torch.inference_mode():
            spent = 0.0
            while len(samples) < LATENCY_REPEATS and (len(samples) < MIN_REPEATS or spent < LATENCY_BUDGET_S):
                seconds = _timed(model, batch, device)
                samples.append(seconds * 1000.0)
                without_unit.append((seconds - clock.take_seconds()) * 1000.0)
                spent += seconds
    finally:
        clock.remove()
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return Latency(median, q1, q3, len(samples), statistics.median(without_unit) if unit else None)


def images_per_second(model: torch.nn.Module, input_size, device: str, batch_size: int) -> float:
    """One timed pass at the run's batch size (the latency measurement before it warmed the model up)."""
    batch = zeros_batch(batch_size, input_size, device)
    with torch.inference_mode():
        seconds = _timed(model, batch, device)
    return batch_size / seconds if seconds > 0 else float("inf")


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
                 slim_unit: Optional[str] = None) -> Cost:
    """Cost of ``model``; ``slim_unit``: the module slimming removes, whose time inside the timed passes gives
    the slimmed model's latency."""
    was_training = model.training
    model.eval()
    try:
        memory, method = memory_mb(model, input_size, device)  # also the first warm-up pass
        latency = latency_ms(model, input_size, device, slim_unit)
        throughput = images_per_second(model, input_size, device, batch_size)
    finally:
        model.train(was_training)
    return Cost(latency.median_ms, latency.q1_ms, latency.q3_ms, latency.repeats, throughput, batch_size, memory,
                method, latency.without_unit_ms, machine(device))
