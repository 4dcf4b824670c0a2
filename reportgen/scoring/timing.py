"""Latency as the decision reads it: timing classes (candidates whose timed difference is noise by construction),
one class's latency from its members' timings, and the notes page 1 gives about them.

Every candidate is timed in the same interleaved sessions (A B C ... A B C ...; :mod:`reportgen.analysis.cost`).
On the log scale each timing class's session medians (a class's: its members' mean in each session) form a
class x session table, and the latency is estimated as in a two-way random-effects layout (class fixed, session
random; Searle, Casella & McCulloch 1992, ch. 4; Montgomery, *Design and Analysis of Experiments*, 13.3):

    y[r, s] = mu[r] + d[s] + e[r, s],   d ~ N(0, var_d) shared by every class in session s,  e ~ N(0, var_e)

The point is the row mean (the geometric mean of the session medians). Its variance (var_d + var_e) / S is
estimated from the mean squares MS_S (sessions, S - 1 df) and MS_E (residual, (R - 1)(S - 1) df) as
max(MS_S - MS_E, 0) / (R S) + MS_E / S, with Satterthwaite's degrees of freedom, and the interval is
exp(mean +- t * se) -- pooled across the run's classes, so a class of one gets the drift the others show. With one
class (R = 1) it is the one-way interval of its S session medians (t with S - 1 df). A ratio of two classes timed
in the same sessions loses d: its log is the difference of row means, variance 2 MS_E / S with (R - 1)(S - 1) df.
The draws carry the same noise: a shared session part and each class's own part, over a shared chi-square, so
every class's draws are t-distributed at its interval and a difference of two classes holds only MS_E.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
from scipy import stats

from ..results.schema import Cost, CostReport, RunIndex
from .bootstrap import PairedDraws, stable_seed

SESSIONS = "sessions"  # CriterionInputs.by_class's key of the run's SessionLayout


@dataclass(frozen=True, kw_only=True)
class RandomEffects:
    """The random-effects estimate of an (R classes x S sessions) table of log latencies (:func:`random_effects`)."""
    point: np.ndarray  # (R,) each class's mean log latency over the sessions
    common: float  # the shared session part of a class mean's variance, max(MS_S - MS_E, 0) / (R S)
    residual: float  # each class's own part, MS_E / S (0 with one class)
    df: float  # Satterthwaite's degrees of freedom of common + residual
    residual_df: int  # (R - 1)(S - 1): those of MS_E, for ratios of classes

    @property
    def se(self) -> float:
        return float(np.sqrt(self.common + self.residual))

    def interval(self, row: int, level: float) -> tuple:
        """exp(mean +- t se): the class's latency interval (None, None) without degrees of freedom."""
        if not self.df > 0:
            return None, None
        half = stats.t.ppf((1 + level) / 2, self.df) * self.se
        return float(np.exp(self.point[row] - half)), float(np.exp(self.point[row] + half))

    def ratio(self, row: int, base: int, level: float) -> tuple:
        """(ratio, low, high) of row's latency to base's: the session part cancels (same sessions), so the log
        ratio's variance is 2 MS_E / S with (R - 1)(S - 1) df (low, high None without them)."""
        value = float(np.exp(self.point[row] - self.point[base]))
        if row == base:
            return 1.0, 1.0, 1.0
        if self.residual_df < 1:
            return value, None, None
        half = stats.t.ppf((1 + level) / 2, self.residual_df) * np.sqrt(2 * self.residual)
        return value, float(value * np.exp(-half)), float(value * np.exp(half))


def random_effects(logs: np.ndarray) -> RandomEffects:
    """``logs``: (R, S) log session medians, every class timed in every session."""
    logs = np.asarray(logs, dtype=np.float64)
    rows, sessions = logs.shape
    point = logs.mean(axis=1)
    if sessions < 2:
        return RandomEffects(point=point, common=0.0, residual=0.0, df=0.0, residual_df=0)
    session_means, grand = logs.mean(axis=0), logs.mean()
    ms_s = rows * np.sum((session_means - grand) ** 2) / (sessions - 1)
    residual_df = (rows - 1) * (sessions - 1)
    if residual_df == 0:  # one class: the one-way variance of its session medians
        return RandomEffects(point=point, common=float(ms_s / sessions), residual=0.0, df=float(sessions - 1),
                             residual_df=0)
    ms_e = np.sum((logs - point[:, None] - session_means[None, :] + grand) ** 2) / residual_df
    if ms_s > ms_e:  # Satterthwaite (1946) for (MS_S + (R - 1) MS_E) / (R S)
        total = ms_s + (rows - 1) * ms_e
        df = total ** 2 / (ms_s ** 2 / (sessions - 1) + ((rows - 1) * ms_e) ** 2 / residual_df)
        common = (ms_s - ms_e) / (rows * sessions)
    else:  # no session variance beyond the residual's: MS_E / S alone
        df, common = float(residual_df), 0.0
    return RandomEffects(point=point, common=float(common), residual=float(ms_e / sessions), df=float(df),
                         residual_df=int(residual_df))


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
    """The run's latency table: which class is which row, and its random-effects estimate. ``shared``: every timed
    candidate came from one timing stage (else each class is its own table over its members' sessions, and no
    ratio has an interval)."""
    rows: tuple  # per row, the class's members (sorted names)
    estimates: tuple  # per row its RandomEffects (one shared estimate when shared)
    shared: bool
    sessions: int

    def row_of(self, members: tuple) -> Optional[int]:
        return self.rows.index(members) if members in self.rows else None

    def estimate(self, row: int) -> RandomEffects:
        return self.estimates[0] if self.shared else self.estimates[row]

    def place(self, row: int) -> int:
        """The row's position in its estimate's table."""
        return row if self.shared else 0


def session_layout(index: RunIndex, cost: CostReport, classes: dict) -> SessionLayout:
    """The classes of the candidates timed in sessions, and their random-effects estimate."""
    timed = [b.name for b in index.backbones if b.name in cost.backbones and cost.backbones[b.name].latency_sessions]
    rows = tuple(sorted(dict.fromkeys(tuple(sorted(classes.get(name, (name,)))) for name in timed)))
    rows = tuple(r for r in rows if all(m in timed for m in r))
    if not rows:
        return SessionLayout(rows=(), estimates=(), shared=False, sessions=0)
    shared = one_timing_stage(cost.backbones[m] for r in rows for m in r)

    def logs(member: str) -> np.ndarray:
        return np.log(np.asarray(cost.backbones[member].session_medians_ms, dtype=np.float64))
    if shared:  # a class's cell: its members' mean in that session
        table = np.stack([np.mean([logs(m) for m in r], axis=0) for r in rows])
        return SessionLayout(rows=rows, estimates=(random_effects(table),), shared=True, sessions=table.shape[1])
    # Sessions not shared (separate stages, e.g. shards timed apart): each class alone, its members' sessions
    # pooled as one-way replicates.
    return SessionLayout(rows=rows, estimates=tuple(random_effects(np.concatenate([logs(m) for m in r])[None, :])
                                                    for r in rows), shared=False, sessions=0)


def session_draws(layout: SessionLayout, row: int, draws: PairedDraws) -> np.ndarray:
    """(B,) latency draws of one row, t-distributed at its interval: exp(mean + (sqrt(common) z_shared +
    sqrt(residual) z_row) / sqrt(w)), w ~ chi2(df) / df shared by the rows of one layout (seeded by the run's seed,
    the row by its members' names: the battery's order changes no draw)."""
    estimate, place = layout.estimate(row), layout.place(row)
    point = estimate.point[place]
    if not estimate.df > 0 or estimate.se == 0:
        return np.full(draws.samples, float(np.exp(point)))
    # Shared by every row of a shared layout (the session part cancels between them); a row's own otherwise.
    shared = np.random.default_rng(stable_seed(draws.seed, "latency sessions",
                                               *(() if layout.shared else layout.rows[row])))
    common, scale = shared.standard_normal(draws.samples), np.sqrt(shared.chisquare(estimate.df, draws.samples)
                                                                     / estimate.df)
    own = np.random.default_rng(stable_seed(draws.seed, "latency", *layout.rows[row])).standard_normal(draws.samples)
    noise = (np.sqrt(estimate.common) * common + np.sqrt(estimate.residual) * own) / scale
    return np.exp(point + noise)


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


def latency_interval(layout: SessionLayout, members: tuple, level: float) -> Optional[tuple]:
    """The random-effects interval of a class timed in sessions (None: not timed in sessions, or no df)."""
    row = layout.row_of(members)
    if row is None:
        return None
    low, high = layout.estimate(row).interval(layout.place(row), level)
    return None if low is None else (low, high)


def class_latency(members: tuple, cost: CostReport, draws: PairedDraws,
                  layout: Optional[SessionLayout] = None) -> tuple:
    """One timing class, one true latency: its members' timings are measurements of it (their spread is the
    machine's drift between measurements), so each member gets their geometric mean, drawn the same way. Timed in
    sessions: the random-effects estimate over the class's session medians and its t draws (:func:`session_draws`);
    an older cost.json: the resampled passes (below)."""
    row = layout.row_of(members) if layout is not None else None
    if row is not None:
        return float(np.exp(layout.estimate(row).point[layout.place(row)])), session_draws(layout, row, draws)
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
    """Page 1's notes on the timing sessions and each timing class's shared latency (``latency``: each candidate's
    Measure, in the index's order) and on latency without sessions or timed passes."""
    names = [b.name for b in index.backbones]
    layout = session_layout(index, cost, classes)
    notes = []
    if layout.rows:
        estimate = layout.estimates[0]
        if layout.shared:
            ratio = (f"; each latency relative to the fastest has an interval from the differences within the "
                     f"sessions (the drift they share cancels; t with {estimate.residual_df} df)"
                     if estimate.residual_df else "")
            notes.append(f"latency: every candidate timed in {layout.sessions} sessions, interleaved (A B C ... A B "
                         f"C ...); its interval is a random-effects interval over the session medians, the drift "
                         f"between sessions pooled across the candidates (t with {estimate.df:.3g} df){ratio}")
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
    """name -> (latency / the fastest class's, low, high): the ratio's interval from the within-session differences
    (:meth:`RandomEffects.ratio`; low and high None when the sessions are not shared or leave no residual df).
    Candidates not timed in sessions are absent."""
    if not layout.rows:
        return {}
    points = [layout.estimate(r).point[layout.place(r)] for r in range(len(layout.rows))]
    fastest = int(np.argmin(points))
    out = {}
    for name in names:
        row = layout.row_of(tuple(sorted(classes.get(name, (name,)))))
        if row is None:
            continue
        if layout.shared:
            out[name] = layout.estimates[0].ratio(row, fastest, level)
        else:
            out[name] = (float(np.exp(points[row] - points[fastest])), None, None) if row != fastest else (1.0,) * 3
    return out
