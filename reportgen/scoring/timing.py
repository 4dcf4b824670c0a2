"""Latency as the decision reads it: timing classes (candidates whose timed difference is noise by construction),
one class's latency from its members' timings, and the notes page 1 gives about them."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..results.schema import Cost, CostReport, RunIndex
from .bootstrap import PairedDraws, stable_seed


def timing_class(entry, found: Optional[Cost]) -> Optional[tuple]:
    """What a candidate's batch-1 latency depends on: the architecture, its size (parameters, MACs, so its head),
    the input shape and the machine it was timed on (its fingerprint), not the weights' values (dense kernels do
    the same arithmetic whatever the numbers). Two candidates of one class have the same true latency: their timed
    difference is noise by construction. None: not timed."""
    if found is None:
        return None
    return (entry.architecture, entry.params, round(entry.macs), tuple(entry.data_config.get("input_size", ())),
            found.machine.fingerprint)


def timing_classes(index: RunIndex, cost: CostReport) -> dict:
    """name -> the names of its :func:`timing_class` (in the index's order), for the candidates that share theirs
    with another; the others are absent."""
    keys = {b.name: timing_class(b, cost.backbones.get(b.name)) for b in index.backbones}
    groups: dict = {}
    for name, key in keys.items():
        if key is not None:
            groups.setdefault(key, []).append(name)
    return {name: tuple(members) for members in groups.values() if len(members) > 1 for name in members}


def timed(name: str, cost: CostReport, draws: PairedDraws) -> tuple:
    """A candidate's own median latency and its (B,) resampled medians (NaN: not timed)."""
    found: Optional[Cost] = cost.backbones.get(name)
    if found is None:
        return np.nan, np.full(draws.samples, np.nan)
    if found.latency_ms_samples:
        return float(np.median(found.latency_ms_samples)), draws.resampled_medians(found.latency_ms_samples, name)
    return found.latency_ms_median, np.full(draws.samples, found.latency_ms_median)  # an older cost.json


def class_latency(members: tuple, cost: CostReport, draws: PairedDraws) -> tuple:
    """One timing class, one true latency: its members' timings are measurements of it (their spread is the
    machine's drift between measurements), so each member gets their geometric mean, drawn the same way."""
    timings = [timed(member, cost, draws) for member in members]
    if len(timings) == 1:
        return timings[0]  # its own timing, bit for bit (exp(log(x)) need not give x back)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(np.exp(np.mean([np.log(p) for p, _ in timings])))
        logs = np.log(np.stack([d for _, d in timings]))  # (members, B)
        # The drift between the members' sessions is noise each one's resampled passes do not hold (16.4
        # against 12.9 ms, each within ±3.4 %): each draw also resamples the sessions (the members, with
        # replacement), so the class's interval spans the spread its timings showed instead of narrowing below
        # each one's. Seeded by the class, so every member gets the same draws.
        rng = np.random.default_rng(stable_seed(draws.seed, "timing class", *members))
        sessions = rng.integers(0, len(members), size=(draws.samples, len(members)))
        logs = logs[sessions, np.arange(draws.samples)[:, None]].T
        drawn = np.exp(np.mean(logs, axis=0))
    return point, drawn


def different_machines(index: RunIndex, cost: CostReport) -> Optional[str]:
    """Why latency cannot be weighed: the candidates were timed on different machines (None: one machine)."""
    names = [b.name for b in index.backbones]
    fingerprints = {c.machine.fingerprint for n, c in cost.backbones.items() if n in names}
    return "measured on different machines, so not comparable" if len(fingerprints) > 1 else None


def timing_notes(index: RunIndex, cost: CostReport, classes: dict, latency: list) -> list:
    """Page 1's notes on each timing class's shared latency (``latency``: each candidate's Measure, in the index's
    order) and on latency without timed passes to resample."""
    names = [b.name for b in index.backbones]
    notes = []
    # Whether or not latency is weighed, page 1's table and the max_latency_ms check show the class's latency.
    for members in dict.fromkeys(classes.values()):
        shown = [index.backbones[names.index(m)].display_name for m in members]
        timings = " and ".join(f"{cost.backbones[m].latency_ms_median:.3g}" for m in members)
        hosts = list(dict.fromkeys(cost.backbones[m].machine.host for m in members))
        # The fingerprint leaves out the host: members may have been timed on identical nodes (Ray) or machines.
        where = ("on one machine" if len(hosts) == 1 else
                 f"on identical machines ({', '.join(host or 'unnamed' for host in hosts)})")
        pooled = latency[names.index(members[0])]
        spread = "" if pooled.ci_low is None else \
            f"; its interval [{pooled.ci_low:.3g}, {pooled.ci_high:.3g}] ms resamples the timings, not only the passes"
        notes.append(f"{' and '.join(shown)} share one architecture, size and input {where}, so one latency: "
                     f"{pooled.value:.3g} ms, the geometric mean of their timings ({timings} ms; what separates them "
                     f"is the machine's drift between two measurements, not the weights){spread}")
    if any(not cost.backbones[n].latency_ms_samples for n in names if n in cost.backbones):
        notes.append("latency of an older cost.json has no timed passes to resample: its noise is not in the intervals")
    return notes


def busy_latency(index: RunIndex, cost: CostReport, threshold: float) -> tuple:
    """(display name, load average per core) of each candidate timed while the load per core was above
    ``threshold``."""
    return tuple((b.display_name, cost.backbones[b.name].load_per_core) for b in index.backbones
                 if b.name in cost.backbones and (cost.backbones[b.name].load_per_core or 0) > threshold)
