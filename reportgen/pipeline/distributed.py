"""``reportgen run --executor ray``: the battery as (backbone x image slice) tasks on a Ray cluster, merged exactly
and rendered as usual.

The driver validates the image set and plans the weights (every user mistake stops the run before a task is
submitted), checks that every node sees the images and can write the shard folder, then submits one task per
shard. A task receives paths, never pixels: it runs :func:`run_planned_shard` on its worker, which decodes only
its own images and writes an ordinary shard results folder under ``results/shards/``. Shard boundaries are
multiples of the batch size, so every batch holds the same images as in a single-process run.

Faults: a task whose worker dies is retried (Ray's ``max_retries``); a finished shard is cached in its folder,
so re-running the same command recomputes only what is missing; when a shard still fails, the run stops with
one message naming it and writes no report. Ray is imported only here, and only when this executor is used.
"""
from __future__ import annotations

import hashlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ReportgenError, UsageError
from ..inputs.images import ImageSet
from .request import ExecutorSettings, RunRequest

SHARDS_DIR = "shards"
MAX_RETRIES = 3
# Fault injection for the tests, read by the task itself: with KILL_ONCE (a marker file path), the first attempt
# of each backbone's second shard SIGKILLs its own worker, as a lost node would (Ray retries it); the shard named
# by FAIL_SHARD raises on every attempt.
FAULT_KILL_ONCE = "REPORTGEN_FAULT_KILL_ONCE"
FAULT_FAIL_SHARD = "REPORTGEN_FAULT_FAIL_SHARD"
INSTALL_HINT = "--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')."


class ShardsFailed(ReportgenError):
    """Some shards failed after their retries; no report was written."""
    exit_code = 7


@dataclass(frozen=True)
class ShardSpec:
    name: str  # "<backbone>-<number>"
    backbone: str
    first: int  # position of its first image in the set
    paths: tuple  # image paths (strings), in set order
    out_dir: str


@dataclass
class ShardOutcome:
    spec: ShardSpec
    status: str = "pending"  # computed | cached | failed
    seconds: float = 0.0
    error: str = ""

    def to_json(self) -> dict:
        return {"name": self.spec.name, "backbone": self.spec.backbone, "images": len(self.spec.paths),
                "first_image": self.spec.first, "status": self.status, "seconds": round(self.seconds, 2),
                "error": self.error, "folder": self.spec.out_dir}


@dataclass
class DistributedOutcome:
    shards: list = field(default_factory=list)  # ShardOutcome


def require_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def plan_shards(plans: tuple, image_set: ImageSet, shard_size: int, batch_size: int, root: Path) -> list[ShardSpec]:
    """Slices of the set per backbone; each slice a whole number of batches (except the last)."""
    size = max(batch_size, -(-shard_size // batch_size) * batch_size)
    paths = [str(r.path.resolve()) for r in image_set.records]
    specs = []
    for plan in plans:
        for number, start in enumerate(range(0, len(paths), size)):
            chunk = tuple(paths[start:start + size])
            digest = hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:12]
            name = f"{plan.backbone.name}-{number:04d}"
            specs.append(ShardSpec(name, plan.backbone.name, start, chunk, str(root / f"{name}-{digest}")))
    return specs


def _inject_fault(spec: ShardSpec) -> None:
    marker = os.environ.get(FAULT_KILL_ONCE)
    if marker and spec.name.endswith("-0001") and not Path(marker).exists():
        Path(marker).write_text(spec.name)
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task, as on a lost node
    if os.environ.get(FAULT_FAIL_SHARD) == spec.name:
        raise RuntimeError(f"injected failure of shard {spec.name}")


def shard_task(spec: ShardSpec, plan, config, weights_mode: str, device: str, threads: int,
               fresh: bool = False) -> dict:
    """One shard on a worker (module-level so Ray can ship it). Returns its status and seconds."""
    from ..analysis.environment import use_threads
    from .shards import run_planned_shard

    started = time.perf_counter()
    _inject_fault(spec)
    use_threads(threads)
    # Latency does not depend on the images: the backbone's first shard measures it, the others skip it.
    _, status = run_planned_shard(plan, spec.paths, spec.out_dir, config, weights_mode, device,
                                  with_cost=spec.first == 0, fresh=fresh)
    return {"status": status, "seconds": time.perf_counter() - started}


def access_problem(paths: list, shard_root: str) -> str:
    """"" when this node can read every image and write under ``shard_root``, else what it cannot do."""
    import socket

    host = socket.gethostname()
    for path in paths:
        if not os.access(path, os.R_OK):
            return f"node {host} cannot read {path}; the images must be on a filesystem every worker mounts"
    try:
        Path(shard_root).mkdir(parents=True, exist_ok=True)
        probe = Path(shard_root) / f".probe-{host}-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return (f"node {host} cannot write the shard folder {shard_root} ({exc.strerror}); --out must be on a "
                "filesystem every worker mounts, writable")
    return ""


def _worker_env() -> dict:
    """Environment the tasks need from the driver (hub offline mode and caches; the tests' fault injection)."""
    return {key: os.environ[key] for key in (FAULT_KILL_ONCE, FAULT_FAIL_SHARD, "HF_HUB_OFFLINE", "HF_HOME",
                                            "HF_HUB_CACHE", "TORCH_HOME") if key in os.environ}


def _init_ray(ray, settings: ExecutorSettings, note: Callable[[str], None]) -> bool:
    """Connect (or start a local instance); True when this process started it."""
    if ray.is_initialized():
        return False
    if settings.address:
        note(f"joining the Ray cluster at {settings.address}")
        try:
            ray.init(address=settings.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"--ray-address {settings.address}: cannot join that Ray cluster ({exc}); start it with "
                             "`ray start --head` or drop --ray-address to run locally.") from None
    else:
        cpus = os.cpu_count() or 1
        note(f"starting a local Ray instance with {cpus} CPUs")
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return True


def _check_nodes(ray, paths: list, shard_root: str) -> None:
    """Run :func:`access_problem` once on every alive node before any shard starts."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(access_problem)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
        paths, shard_root) for node in nodes]
    problems = [p for p in ray.get(refs) if p]
    if problems:
        raise UsageError(problems[0] + ".")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "cause", None) or exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def run_shards(prepared, settings: ExecutorSettings, progress: Callable[[str], None]) -> DistributedOutcome:
    """Every shard of the run on Ray; raises ShardsFailed naming the shards that failed after retries."""
    ray = require_ray()
    request: RunRequest = prepared.request
    root = request.out_dir / "results" / SHARDS_DIR
    specs = plan_shards(prepared.plans, prepared.image_set, settings.shard_size, request.config.batch_size, root)
    outcome = DistributedOutcome([ShardOutcome(spec) for spec in specs])
    from ..analysis.environment import thread_count

    threads = settings.cpus_per_task or thread_count()
    started_here = _init_ray(ray, settings, progress)
    try:
        _check_nodes(ray, [p for spec in specs for p in spec.paths], str(root))
        resources = {"num_gpus": 1} if prepared.device == "cuda" else {"num_cpus": threads}
        env = _worker_env()
        task = ray.remote(max_retries=MAX_RETRIES, **resources)(shard_task).options(
            **({"runtime_env": {"env_vars": env}} if env else {}))
        plans = {plan.backbone.name: plan for plan in prepared.plans}
        pending = {task.remote(spec, plans[spec.backbone], request.config, request.weights, prepared.device,
                               threads, request.fresh): shard for spec, shard in zip(specs, outcome.shards)}
        progress(f"{len(specs)} shards ({len(prepared.plans)} backbone(s) x {len(specs) // len(prepared.plans)} "
                 f"slices) submitted")
        began, done = time.perf_counter(), 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready[0])
            try:
                found = ray.get(ready[0])
                shard.status, shard.seconds = found["status"], found["seconds"]
            except Exception as exc:  # RayTaskError, WorkerCrashedError after retries, ...
                shard.status, shard.error = "failed", _first_line(exc)
            done += 1
            elapsed = time.perf_counter() - began
            eta = elapsed / done * (len(specs) - done)
            progress(f"shards {done}/{len(specs)} done ({shard.spec.name}: {shard.status}), "
                     f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s")
    finally:
        if started_here:
            ray.shutdown()
    failed = [s for s in outcome.shards if s.status == "failed"]
    if failed:
        names = ", ".join(s.spec.name for s in failed)
        raise ShardsFailed(f"{len(failed)} of {len(specs)} shards failed after {MAX_RETRIES} retries: {names} "
                           f"({failed[0].error}); no report written. Finished shards are kept in {root}: run the "
                           "same command again to compute only the missing ones.")
    return outcome
