"""Latency as the decision reads it: timing classes (candidates whose timed difference is noise by construction),
one class's latency from its members' timings, and the notes page 1 gives about them.

Every candidate is timed in the same interleaved sessions (A B C, B C A, C A B ...; :mod:`reportgen.analysis.cost`),
because sessions drift by far more than one session's passes vary. On the log scale, a timing class's latency in
session s is its session median (a class of several: its members' mean in that session), y[s] = mu + d[s] + e[s],
the session effect d random. The estimate is the mean over the S sessions (the geometric mean of the session
medians) and its interval the one-way random-effects (ANOVA) interval of a mean of S session values:
exp(mean +- t(S - 1) * sd / sqrt(S)), sd the sample SD of the S values -- exact under normal drift between the
sessions, whatever its size, because the sessions' spread estimates it. The sessions are consecutive stretches of one
run: the interval holds the drift within that run, not from one day (or machine state) to another. Each class is estimated from its own sessions only: no other
candidate's timing changes its interval or its draws (adding a candidate changes nothing of the others'; pooling
the drift across the run's candidates would buy degrees of freedom at that price).

A ratio of two classes timed in the same sessions loses the drift the sessions share: its log is the mean of the
within-session differences y1[s] - y2[s], with the one-way interval of those S differences (t with S - 1 df).

The decision's draws carry the same noise and the same pairing: draw b is mean + sum_s g[b, s] (y[s] - mean) /
sqrt(S (S - 1)) / sqrt(w[b] / (S - 1)), with g ~ N(0, 1) per session and w ~ chi-square(S - 1), both shared by every
class timed in those sessions and seeded by the run's seed alone. Given the timings a draw is then se * t(S - 1),
its percentiles the interval above, and two classes' draws differ by their within-session differences' se * t:
the drift they share cancels in P(best), as in the ratio.
"""
from __future__ import annotations

from dataclasses import dataclass
import hashlib
from typing import Iterable, Optional

import numpy as np

from ..results.schema import Cost, CostReport, RunIndex
from .bootstrap import PairedDraws, stable_seed

SESSIONS = "sessions"  # CriterionInputs.by_class's key of the run's SessionLayout


def one_way_interval(values, level: float) -> tuple:
    """(mean, low, high) of the mean of ``values`` (log scale): mean +- t(n - 1) sd / sqrt(n); low and high None
    with fewer than two values."""
    from scipy.special import stdtrit  # Student's t quantile (here, not at import: scoring starts without scipy)

    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if values.size < 2:
        return mean, None, None
    half = float(stdtrit(values.size - 1, (1 + level) / 2) * values.std(ddof=1) / np.sqrt(values.size))
    return mean, mean - half, mean + half


def one_timing_stage(costs: Iterable[Optional[Cost]], sessions: Optional[int] = None) -> bool:
    """Whether these costs come from one timing stage of exactly these candidates: each timed in the same number
    of sessions (``sessions`` when given), their positions together 0, 1, ... without a gap."""
    costs = list(costs)
    if not costs or any(c is None or not c.latency_sessions for c in costs):
        return False
    counts = {len(c.latency_sessions) for c in costs}
    positions = sorted(s.position for c in costs for s in c.latency_sessions)
    return (len(counts) == 1 and (sessions is None or counts == {sessions})
            and positions == list(range(len(positions)))
            and all(sorted(s.session for s in c.latency_sessions) == list(range(len(c.latency_sessions)))
                    for c in costs))


@dataclass(frozen=True, kw_only=True)
class SessionLayout:
    """The run's timing classes timed in sessions: per row (a class, its members' names sorted) its log latency in
    each session. ``shared``: every row was timed in the same sessions (one timing stage), so rows are paired."""
    rows: tuple
    logs: tuple  # per row, (S,) log session latencies (a class's: its members' mean per session)
    shared: bool

    def row_of(self, members: tuple) -> Optional[int]:
        return self.rows.index(members) if members in self.rows else None


def session_layout(index: RunIndex, cost: CostReport, classes: dict) -> SessionLayout:
    """The classes of the candidates timed in sessions and their log session latencies."""
    timed = [b.name for b in index.backbones if b.name in cost.backbones and cost.backbones[b.name].latency_sessions]
    rows = tuple(sorted(dict.fromkeys(tuple(sorted(classes.get(name, (name,)))) for name in timed)))
    rows = tuple(r for r in rows if all(m in timed for m in r))
    shared = one_timing_stage(cost.backbones[m] for r in rows for m in r)

    def logs(member: str) -> np.ndarray:
        return np.log(np.asarray(cost.backbones[member].session_medians_ms, dtype=np.float64))
    # A class's members timed in the same sessions: their mean per session; timed apart (not one stage), each
    # member's sessions are replicates of the class's latency.
    return SessionLayout(rows=rows, shared=shared, logs=tuple(
        np.mean([logs(m) for m in r], axis=0) if shared else np.concatenate([logs(m) for m in r]) for r in rows))


def session_draws(layout: SessionLayout, row: int, draws: PairedDraws) -> np.ndarray:
    """(B,) latency draws of one row, se * t(S - 1) around its estimate, paired with the other rows through the
    shared session weights (module docstring). Seeded by the run's seed (and, for rows not timed in shared sessions,
    the row's session latencies): no other candidate, name or battery order changes them."""
    logs = layout.logs[row]
    sessions, point = logs.size, float(logs.mean())
    if sessions < 2 or not np.ptp(logs) > 0:
        return np.full(draws.samples, float(np.exp(point)))
    # Not timed in shared sessions: seeded by the row's own session latencies (not its names: a renamed candidate
    # draws the same).
    rng = np.random.default_rng(stable_seed(draws.seed, "latency sessions", sessions,
                                            *(() if layout.shared else
                                              (hashlib.sha256(np.asarray(logs, dtype=np.float64).tobytes()).hexdigest(),))))
    weights = rng.standard_normal((draws.samples, sessions))
    scale = np.sqrt(rng.chisquare(sessions - 1, draws.samples) / (sessions - 1))
    return np.exp(point + weights @ (logs - point) / np.sqrt(sessions * (sessions - 1)) / scale)


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


def _content(found: Cost) -> str:
    """What seeds a timing's resampling: its passes, not the candidate's name, so renaming a candidate (or listing
    the battery in another order) draws the same latencies (docs/decision.md, "What adding a candidate never
    moves")."""
    return hashlib.sha256(np.asarray(found.latency_ms_samples, dtype=np.float64).tobytes()).hexdigest()


def timed(name: str, cost: CostReport, draws: PairedDraws) -> tuple:
    """A candidate's own median latency and its (B,) resampled medians (NaN: not timed)."""
    found: Optional[Cost] = cost.backbones.get(name)
    if found is None:
        return np.nan, np.full(draws.samples, np.nan)
    if found.latency_ms_samples:
        return float(np.median(found.latency_ms_samples)), draws.resampled_medians(found.latency_ms_samples, "passes",
                                                                                   _content(found))
    return found.latency_ms_median, np.full(draws.samples, found.latency_ms_median)  # an older cost.json


def latency_interval(layout: SessionLayout, members: tuple, level: float) -> Optional[tuple]:
    """The one-way random-effects interval over the class's sessions (None: not timed in sessions)."""
    row = layout.row_of(members)
    if row is None:
        return None
    _, low, high = one_way_interval(layout.logs[row], level)
    return None if low is None else (float(np.exp(low)), float(np.exp(high)))


def class_latency(members: tuple, cost: CostReport, draws: PairedDraws,
                  layout: Optional[SessionLayout] = None) -> tuple:
    """One timing class, one true latency: its members' timings are measurements of it (their spread is the
    machine's drift between measurements), so each member gets their geometric mean, drawn the same way. Timed in
    sessions: the random-effects estimate over the class's session medians and its t draws (:func:`session_draws`);
    an older cost.json: the resampled passes (below)."""
    row = layout.row_of(members) if layout is not None else None
    if row is not None:
        return float(np.exp(layout.logs[row].mean())), session_draws(layout, row, draws)
    # In the order of their passes' content, not of their names or the battery's.
    ordered = sorted(members, key=lambda m: _content(cost.backbones[m]) if m in cost.backbones else "")
    timings = [timed(member, cost, draws) for member in ordered]
    if len(timings) == 1:
        return timings[0]  # its own timing, bit for bit (exp(log(x)) need not give x back)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(np.exp(np.mean([np.log(p) for p, _ in timings])))
        logs = np.log(np.stack([d for _, d in timings]))  # (members, B)
        # The drift between the members' sessions is noise each one's resampled passes do not hold (16.4
        # against 12.9 ms, each within ±3.4 %): each draw also resamples the sessions (the members, with
        # replacement), so the class's interval spans the spread its timings showed instead of narrowing below
        # each one's. Seeded by the class, so every member gets the same draws.
        rng = np.random.default_rng(stable_seed(draws.seed, "timing class", *(_content(cost.backbones[m])
                                                                              for m in ordered)))
        sessions = rng.integers(0, len(members), size=(draws.samples, len(members)))
        logs = logs[sessions, np.arange(draws.samples)[:, None]].T
        drawn = np.exp(np.mean(logs, axis=0))
    return point, drawn


def different_machines(index: RunIndex, cost: CostReport) -> Optional[str]:
    """Why latency cannot be weighed: the candidates were timed on different machines (None: one machine)."""
    names = [b.name for b in index.backbones]
    fingerprints = {c.machine.fingerprint for n, c in cost.backbones.items() if n in names}
    return "measured on different machines, so not comparable" if len(fingerprints) > 1 else None


def timing_notes(index: RunIndex, cost: CostReport, classes: dict, latency: list,
                 layout: Optional[SessionLayout] = None) -> list:
    """Page 1's notes on the timing sessions and each timing class's shared latency (``latency``: each candidate's
    Measure, in the index's order) and on latency without sessions or timed passes. ``layout``: the run's
    :func:`session_layout`, when the caller has it."""
    names = [b.name for b in index.backbones]
    layout = layout if layout is not None else session_layout(index, cost, classes)
    notes = []
    if layout.rows:
        if layout.shared:
            sessions = layout.logs[0].size
            notes.append(f"latency: every candidate timed in {sessions} sessions, interleaved (A B C, B C A, C A B ...); "
                         f"its interval is the random-effects interval of its {sessions} session medians (t with "
                         f"{sessions - 1} df), so it holds the drift between sessions; relative to the fastest, "
                         f"from the differences within the sessions, where the drift they share cancels")
        else:
            notes.append("latency: the candidates were timed in separate sessions (not interleaved): each interval "
                         "spans its own sessions' drift only, and no ratio to the fastest has an interval")
    # Whether or not latency is weighed, page 1's table and the max_latency_ms check show the class's latency.
    for members in dict.fromkeys(classes.values()):
        shown = [index.backbones[names.index(m)].display_name for m in members]
        timings = " and ".join(f"{cost.backbones[m].latency_ms_median:.3g}" for m in members)
        hosts = list(dict.fromkeys(cost.backbones[m].machine.host for m in members))
        # The fingerprint leaves out the host: members may have been timed on identical nodes (Ray) or machines.
        where = ("on one machine" if len(hosts) == 1 else
                 f"on identical machines ({', '.join(host or 'unnamed' for host in hosts)})")
        pooled = latency[names.index(members[0])]
        in_sessions = layout.row_of(tuple(sorted(members))) is not None
        spread = "" if pooled.ci_low is None else (
            f"; its interval [{pooled.ci_low:.3g}, {pooled.ci_high:.3g}] ms pools their sessions" if in_sessions else
            f"; its interval [{pooled.ci_low:.3g}, {pooled.ci_high:.3g}] ms resamples the timings, not only the "
            "passes")
        notes.append(f"{' and '.join(shown)} share one architecture, size and input {where}, so one latency: "
                     f"{pooled.value:.3g} ms, the geometric mean of their timings ({timings} ms; what separates them "
                     f"is the machine's drift between measurements, not the weights){spread}")
    if any(not cost.backbones[n].latency_sessions for n in names if n in cost.backbones):
        notes.append("latency of an older cost.json was timed in one session: the drift between sessions (tens of "
                     "per cent on a shared machine) is not in its interval"
                     + ("" if all(cost.backbones[n].latency_ms_samples for n in names if n in cost.backbones) else
                        ", and one without timed passes has none of its noise in the intervals"))
    return notes


def busy_latency(index: RunIndex, cost: CostReport, threshold: float) -> tuple:
    """(display name, load average per core) of each candidate timed while the load per core was above
    ``threshold``."""
    return tuple((b.display_name, cost.backbones[b.name].load_per_core) for b in index.backbones
                 if b.name in cost.backbones and (cost.backbones[b.name].load_per_core or 0) > threshold)


def latency_ratios(layout: SessionLayout, classes: dict, names: Iterable[str], level: float) -> dict:
    """name -> (latency / the fastest class's, low, high): the interval from the S within-session differences of
    their logs (:func:`one_way_interval`: the drift the sessions share cancels); low and high None when the sessions
    are not shared. Candidates not timed in sessions are absent."""
    if not layout.rows:
        return {}
    points = [float(logs.mean()) for logs in layout.logs]
    fastest = int(np.argmin(points))
    out = {}
    for name in names:
        row = layout.row_of(tuple(sorted(classes.get(name, (name,)))))
        if row is None:
            continue
        if row == fastest:
            out[name] = (1.0, 1.0, 1.0)
        elif layout.shared:
            mean, low, high = one_way_interval(layout.logs[row] - layout.logs[fastest], level)
            out[name] = (float(np.exp(mean)), float(np.exp(low)), float(np.exp(high)))
        else:
            out[name] = (float(np.exp(points[row] - points[fastest])), None, None)
    return out
