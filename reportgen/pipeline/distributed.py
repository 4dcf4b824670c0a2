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

import contextlib
import hashlib
import os
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import ReportgenError, UsageError
from ..inputs.images import ImageSet
from .request import ExecutorSettings, RunRequest

SHARDS_DIR = "shards"
MAX_RETRIES = 3
# Fault injection for the tests, read by the task itself: with KILL_ONCE (a marker file path), the first shard of
# a second slice (name ending -0001) to start SIGKILLs its own worker, as a lost node would (Ray retries it), and
# writes its name to the marker; while the file FAIL_SHARD names holds a shard's name, that shard raises on every
# attempt. Both are paths, so a test changes the faults between runs without changing the workers' environment
# (workers are reused only within one runtime environment).
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
    images: ImageSet  # the slice: its records with the driver's annotations, the set's root, labels, skipped files
    out_dir: str

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(str(record.path) for record in self.images.records)


@dataclass
class ShardOutcome:
    spec: ShardSpec
    status: str = "pending"  # computed | cached | failed
    seconds: float = 0.0
    error: str = ""
    node: str = ""  # the Ray node that ran it (node id) and its address

    def to_json(self) -> dict:
        return {"name": self.spec.name, "backbone": self.spec.backbone, "images": len(self.spec.images.records),
                "first_image": self.spec.first, "status": self.status, "seconds": round(self.seconds, 2),
                "error": self.error, "folder": self.spec.out_dir, "node": self.node}


@dataclass
class DistributedOutcome:
    shards: list = field(default_factory=list)  # ShardOutcome
    setups: dict = field(default_factory=dict)  # probed backbone -> ProbeSetup (the probe is fit after the merge)


def require_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return ray


def plan_shards(plans: tuple, image_set: ImageSet, shard_size: int, config, root: Path) -> list[ShardSpec]:
    """Slices of the set per backbone; each slice a whole number of batches (except the last), carrying its
    records with the annotations this driver read (absolute paths: workers may run elsewhere) and the whole set's
    hashed samples."""
    from .shards import sample_counts, whole_batches

    size = whole_batches(shard_size, config.batch_size)
    absolute = replace(image_set, root=image_set.root.resolve(),
                       records=tuple(replace(r, path=r.path.resolve()) for r in image_set.records))
    specs = []
    for plan in plans:
        for number, images in enumerate(absolute.slices(size, config.seed, sample_counts(config))):
            digest = hashlib.sha256("\n".join(str(r.path) for r in images.records).encode()).hexdigest()[:12]
            name = f"{plan.backbone.name}-{number:04d}"
            specs.append(ShardSpec(name, plan.backbone.name, number * size, images, str(root / f"{name}-{digest}")))
    return specs


def _inject_fault(spec: ShardSpec) -> None:
    marker = os.environ.get(FAULT_KILL_ONCE)
    if marker and spec.name.endswith("-0001") and not Path(marker).exists():
        Path(marker).write_text(spec.name)
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task, as on a lost node
    failing = os.environ.get(FAULT_FAIL_SHARD)
    if failing and Path(failing).is_file() and Path(failing).read_text().strip() == spec.name:
        raise RuntimeError(f"injected failure of shard {spec.name}")


def shard_task(spec: ShardSpec, plan, config, weights_mode: str, device: str, threads: int,
               fresh: bool = False, space=None, head=None, setup=None) -> dict:
    """One shard on a worker (module-level so Ray can ship it). Returns its status and seconds."""
    from ..analysis.environment import use_threads
    from .shards import run_planned_shard

    import ray

    started = time.perf_counter()
    _inject_fault(spec)
    use_threads(threads)
    # Cost is measured by the driver afterwards, on one node, one backbone at a time: not by the shards.
    _, status = run_planned_shard(plan, spec.images, spec.out_dir, config, weights_mode, device, class_names=space,
                                  with_cost=False, fresh=fresh, head=head, setup=setup)
    return {"status": status, "seconds": time.perf_counter() - started, "node": _node_name(ray)}


def _node_name(ray) -> str:
    """This worker's node: its Ray node id (short) and address."""
    context = ray.get_runtime_context()
    return f"{context.get_node_id()[:12]}@{ray.util.get_node_ip_address()}"


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


PROBE_TIMEOUT_S = 5.0
# HPACK's static table: an indexed ":status" header is one byte (RFC 7541, appendix A).
HTTP_STATUS_BYTES = {0x88: 200, 0x89: 204, 0x8A: 206, 0x8B: 304, 0x8C: 400, 0x8D: 404, 0x8E: 500}


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _literal(name_index: int, value: str) -> bytes:
    """An HPACK header "literal without indexing" whose name is in the static table."""
    prefix = bytes([name_index]) if name_index < 15 else bytes([0x0F, name_index - 15])
    return prefix + bytes([len(value)]) + value.encode()


def _gcs_request(authority: str) -> bytes:
    """HTTP/2 connection preface and one gRPC call to Ray's GCS (GetClusterId, empty message)."""
    headers = (b"\x83\x86" + _literal(4, "/ray.rpc.NodeInfoGcsService/GetClusterId") + _literal(1, authority)
               + _literal(31, "application/grpc") + b"\x00\x02te\x08trailers")  # POST, http, path, authority, ...
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0, b"") + _frame(1, 0x4, 1, headers)
            + _frame(0, 0x1, 1, b"\x00\x00\x00\x00\x00"))


def _gcs_problem(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str:
    """"" when Ray's GCS answers at host:port, else what went wrong: a TCP connection with a timeout and one gRPC
    call, because Ray itself retries an address that never answers (or answers as something else) for minutes."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(_gcs_request(f"{host}:{port}"))
            received = b""
            while len(received) < 9 and (chunk := connection.recv(9 - len(received))):
                received += chunk
            if len(received) < 9 or received[3] != 0x04:  # an HTTP/2 server opens with its SETTINGS frame
                return "a server there does not speak Ray's protocol (gRPC)"
            while True:
                while len(received) < 9 or len(received) < 9 + int.from_bytes(received[:3], "big"):
                    chunk = connection.recv(65536)
                    if not chunk:
                        return "a server there closed the connection"
                    received += chunk
                length, kind = int.from_bytes(received[:3], "big"), received[3]
                stream = int.from_bytes(received[5:9], "big") & 0x7FFFFFFF
                payload, received = received[9:9 + length], received[9 + length:]
                if kind == 1 and stream == 1:  # the response's headers
                    status = HTTP_STATUS_BYTES.get(payload[0]) if payload else None
                    if status not in (None, 200):
                        return f"a server there answered HTTP {status} to a Ray request"
                    return ""
                if kind == 7:  # GOAWAY
                    return "a server there refused a Ray request"
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()


def check_ray_address(address: str) -> None:
    """Stop in seconds, with one line, when no Ray cluster answers at ``address`` as Ray would connect to it
    (Ray replaces 127.0.0.1 and localhost by this machine's interface address)."""
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise UsageError(f"--ray-address {address!r}: give HOST:PORT (e.g. 10.0.0.5:6379), or leave it out to run a "
                         "local Ray instance.")
    port = int(port_text)
    try:
        from ray._private.services import canonicalize_bootstrap_address

        connects_to = canonicalize_bootstrap_address(address) or address
    except Exception:  # a private Ray helper: without it, probe the address as given
        connects_to = address
    ray_host = connects_to.rpartition(":")[0].strip("[]")
    problem = _gcs_problem(ray_host, port)
    if not problem:
        return
    rewritten = ""
    if ray_host != host.strip("[]"):
        rewritten = (f"; Ray connects to it as {ray_host}:{port}, this machine's interface address"
                     + (", and the cluster answers only on the loopback address: start it without "
                        "--node-ip-address=127.0.0.1" if not _gcs_problem(host.strip("[]"), port) else ""))
    raise UsageError(f"--ray-address {address}: no Ray cluster answers there ({problem}{rewritten}); check that "
                     f"`ray start --head --port={port}` runs on that machine and that the port is open to this one, "
                     "or leave out --ray-address to run a local Ray instance.")


def _init_ray(ray, settings: ExecutorSettings, note: Callable[[str], None]) -> bool:
    """Connect (or start a local instance); True when this process started it."""
    if ray.is_initialized():
        return False
    if settings.address:
        check_ray_address(settings.address)
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


@contextlib.contextmanager
def ray_session(settings: ExecutorSettings, progress: Callable[[str], None]):
    """Ray, joined (or started locally) for the duration; a local instance started here is stopped after."""
    ray = require_ray()
    started_here = _init_ray(ray, settings, progress)
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def _threads(settings: ExecutorSettings) -> int:
    from ..analysis.environment import thread_count

    return settings.cpus_per_task or thread_count()


def _resources(prepared, settings: ExecutorSettings) -> dict:
    return {"num_gpus": 1} if prepared.device == "cuda" else {"num_cpus": _threads(settings)}


def run_shards(ray, prepared, settings: ExecutorSettings, progress: Callable[[str], None]) -> DistributedOutcome:
    """Every shard of the run on Ray; raises ShardsFailed naming the shards that failed after retries."""
    request: RunRequest = prepared.request
    root = request.out_dir / "results" / SHARDS_DIR
    specs = plan_shards(prepared.plans, prepared.image_set, settings.shard_size, request.config, root)
    outcome = DistributedOutcome([ShardOutcome(spec) for spec in specs])
    threads = _threads(settings)
    _check_nodes(ray, list(dict.fromkeys(p for spec in specs for p in spec.paths)), str(root))
    env = _worker_env()
    # SPREAD: shards go to every node with room, not first to fill the driver's node.
    task = ray.remote(max_retries=MAX_RETRIES, scheduling_strategy="SPREAD", **_resources(prepared, settings))(
        shard_task).options(**({"runtime_env": {"env_vars": env}} if env else {}))
    plans = {plan.backbone.name: plan for plan in prepared.plans}
    setups = fit_probes(ray, prepared, settings, threads, env, progress)
    outcome.setups = setups
    heads = prepared.heads
    pending = {task.remote(spec, plans[spec.backbone], request.config, request.weights_mode, prepared.device,
                           threads, request.fresh, prepared.class_names, heads.get(spec.backbone),
                           setups.get(spec.backbone)): shard
               for spec, shard in zip(specs, outcome.shards)}
    progress(f"{len(specs)} shards ({len(prepared.plans)} backbone(s) x {len(specs) // len(prepared.plans)} "
             f"slices) submitted")
    began, done = time.perf_counter(), 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        shard = pending.pop(ready[0])
        try:
            found = ray.get(ready[0])
            shard.status, shard.seconds, shard.node = found["status"], found["seconds"], found["node"]
        except Exception as exc:  # RayTaskError, WorkerCrashedError after retries, ...
            shard.status, shard.error = "failed", _first_line(exc)
        done += 1
        elapsed = time.perf_counter() - began
        eta = elapsed / done * (len(specs) - done)
        progress(f"shards {done}/{len(specs)} done ({shard.spec.name}: {shard.status}), "
                 f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s")
    failed = [s for s in outcome.shards if s.status == "failed"]
    if failed:
        names = ", ".join(s.spec.name for s in failed)
        # Ray retries a task whose worker died (a lost node), not one whose code raised: that error is final.
        raise ShardsFailed(f"{len(failed)} of {len(specs)} shards failed (a worker that dies is retried up to "
                           f"{MAX_RETRIES} times; an error in the task is not): {names} "
                           f"({failed[0].error}); no report written. Finished shards are kept in {root}: run the "
                           "same command again to compute only the missing ones.")
    return outcome


def fit_task(plan, image_set: ImageSet, space, head, config, device: str, threads: int, scratch: str, train=None):
    """One probe candidate's explaining head, fit on the whole set's per-class sample (or the training images), on a
    worker (module-level so Ray can ship it): every shard attaches the same head. ``space``: the run's label space.
    Decodes through the same cache as a shard, so the features equal a single process's."""
    import shutil

    from ..analysis.backbone import BackboneJob, RunSettings, fit_probe_setup
    from ..analysis.environment import use_threads
    from ..inputs.images import decode_records
    from .run import decode_inputs

    use_threads(threads)
    folder = Path(scratch)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        image_set, decoded = decode_inputs((plan,), folder, lambda on_image, on_listed: decode_records(
            image_set, on_image, on_listed))
        try:
            settings = RunSettings(image_set=image_set, class_names=space, config=config, device=device,
                                   decoded=decoded, train_set=train)
            return fit_probe_setup(BackboneJob(plan=plan, run=settings, head=head))
        finally:
            decoded.remove()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fit_probes(ray, prepared, settings: ExecutorSettings, threads: int, env: dict,
               progress: Callable[[str], None]) -> dict:
    """Backbone name -> its probe's explaining head (ProbeSetup), fit once per probed backbone (one task each)."""
    from ..results.schema import Estimand

    probed = [plan for plan in prepared.plans
              if getattr(prepared.heads.get(plan.backbone.name), "estimand", None) == Estimand.LINEAR_PROBE]
    if not probed:
        return {}
    task = ray.remote(max_retries=MAX_RETRIES, **_resources(prepared, settings))(fit_task).options(
        **({"runtime_env": {"env_vars": env}} if env else {}))
    image_set = replace(prepared.image_set, root=prepared.image_set.root.resolve(),
                        records=tuple(replace(r, path=r.path.resolve()) for r in prepared.image_set.records))
    scratch = prepared.request.out_dir.resolve() / "results" / SHARDS_DIR / ".probe"
    progress(f"the heads the heatmaps of {len(probed)} probed backbone(s) explain, fit once for every shard")
    refs = {plan.backbone.name: task.remote(plan, image_set, prepared.class_names, prepared.heads[plan.backbone.name],
                                            prepared.request.config, prepared.device, threads,
                                            str(scratch / plan.backbone.name), prepared.train_set)
            for plan in probed}
    return {name: ray.get(ref) for name, ref in refs.items()}


def timing_task(plans, config, device: str, threads: int, units: dict, batch_sizes: dict, heads: dict):
    """The timing stage on the node it was sent to (module-level so Ray can ship it): every backbone's latency in
    interleaved sessions, name -> Cost."""
    import socket

    import ray

    from ..analysis.backbone import session_costs
    from ..analysis.environment import use_threads

    use_threads(threads)
    node = ray.get_runtime_context().get_node_id()[:12]
    return session_costs(plans, config, device, units, batch_sizes, heads,
                         host=f"{socket.gethostname()} (Ray node {node})")


def measure_costs(ray, prepared, settings: ExecutorSettings, index, progress: Callable[[str], None]) -> dict:
    """Every backbone's cost on ONE node (the driver's), after the shards, in one task: the timing stage times every
    backbone in ``latency_sessions`` sessions interleaved across them (A B C, B C A, C A B ...), as one process does;
    latencies are ranked against each other, so they come from the same machine with nothing else running on it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    task = ray.remote(max_retries=MAX_RETRIES, **_resources(prepared, settings))(timing_task).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
    config = prepared.request.config
    progress(f"latency, throughput and memory on node {node[:12]}: every backbone in {config.latency_sessions} "
             "sessions, in turn")
    return ray.get(task.remote(prepared.plans, config, prepared.device, _threads(settings),
                               {b.name: b.slimming.unit for b in index.backbones},
                               {b.name: b.batch_size for b in index.backbones}, dict(prepared.heads)))
