"""What a backbone costs on the run's device: latency (median and quartiles of timed forward passes at batch
1, after warm-up, under ``torch.inference_mode``), throughput at the run's batch size, and inference memory
(CUDA: peak allocated; CPU: weights plus the largest activation footprint of one module at batch 1, measured
from the tensors a forward pass makes). Machine-dependent: kept in cost.json, apart from the reproducible results."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Optional

import torch

from ..results.schema import Cost, Machine

# The memory measurement's forward pass (same model, same batch-1 shape) runs first and is the warm-up; the
# slimmed model reuses the full model's layers and shapes, so it is warm too.
WARMUP = 0
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


def latency_ms(model: torch.nn.Module, input_size, device: str) -> tuple[float, float, float, int]:
    """(median, first quartile, third quartile, repeats) of batch-1 forward latency in milliseconds."""
    batch = torch.zeros((1,) + tuple(input_size), device=device)
    samples: list[float] = []
    with torch.inference_mode():
        for _ in range(WARMUP):
            _timed(model, batch, device)
        spent = 0.0
        while len(samples) < LATENCY_REPEATS and (len(samples) < MIN_REPEATS or spent < LATENCY_BUDGET_S):
            samples.append(_timed(model, batch, device) * 1000.0)
            spent += samples[-1] / 1000.0
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return median, q1, q3, len(samples)


def images_per_second(model: torch.nn.Module, input_size, device: str, batch_size: int) -> float:
    """One timed pass at the run's batch size (the latency measurement before it warmed the model up)."""
    batch = torch.zeros((batch_size,) + tuple(input_size), device=device)
    with torch.inference_mode():
        seconds = _timed(model, batch, device)
    return batch_size / seconds if seconds > 0 else float("inf")


def memory_mb(model: torch.nn.Module, input_size, device: str) -> tuple[float, str]:
    batch = torch.zeros((1,) + tuple(input_size), device=device)
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
                 slim: Optional[torch.nn.Module] = None) -> Cost:
    was_training = model.training
    model.eval()
    try:
        memory, method = memory_mb(model, input_size, device)  # also the first warm-up pass
        median, q1, q3, repeats = latency_ms(model, input_size, device)
        throughput = images_per_second(model, input_size, device, batch_size)
        slim_median = latency_ms(slim.eval(), input_size, device)[0] if slim is not None else None
    finally:
        model.train(was_training)
    return Cost(median, q1, q3, repeats, throughput, batch_size, memory, method, slim_median, machine(device))
