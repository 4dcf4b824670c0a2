"""Issue 13: `reportgen run --executor ray` on a local Ray cluster. The merged metrics.json equals the
single-process run's; a killed worker is retried; a shard that keeps failing ends the run with its name and no
report; without Ray installed the flag says how to install it."""
import json
import os
import socket
import sys
import threading
import time

import pytest

from conftest import IMAGES, run_cli

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from reportgen.pipeline.distributed import FAULT_FAIL_SHARD, FAULT_KILL_ONCE, ShardsFailed, ray_session  # noqa: E402
from reportgen.pipeline.request import ExecutorSettings  # noqa: E402

RELATIVE = 1e-9


@pytest.fixture(autouse=True)
def _leave_the_process_as_found():
    """ray.init changes this pytest process (environment variables it exports for its workers); later tests
    start reportgen in subprocesses that would inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def cluster():
    """One Ray cluster of two nodes on this machine for every Ray test, joined through --ray-address. (Ray does not
    keep a cluster on the loopback address: a driver given 127.0.0.1 connects to the machine's interface address,
    so the nodes listen there, as `ray start` would.) Each node offers 2 CPUs, the torch threads a shard asks for."""
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    started.add_node(num_cpus=2)
    os.environ.clear()
    os.environ.update(saved)
    yield started.address
    started.shutdown()


def _numbers_equal(a, b, where="metrics"):
    """Every number within RELATIVE (relative; absolute near zero), everything else identical."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _numbers_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b)):
            _numbers_equal(x, y, f"{where}[{n}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= RELATIVE * max(abs(a), abs(b), 1e-12), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _metrics(out):
    return json.loads((out / "results" / "metrics.json").read_text())


def _json(result) -> dict:
    return json.loads(result.output[result.output.index("{"):])


def test_own_classes_on_two_nodes_equal_one_process_after_a_killed_worker_and_a_failing_shard(cluster, tmp_path,
                                                                                         monkeypatch):
    """Issue 25: an ImageNet backbone on user-named class folders, sharded over two nodes: the probe is fit once on
    all images (its out-of-fold probabilities, k-NN and LogME equal the single process's exactly), the merged task
    scores match, and so do the files skipped. Issue 32: the shards' corruption sample is the single process's, and
    holds none of the explaining head's images. Issue 13, on the same run: a worker killed mid-shard, as on a lost
    node, is retried; a shard that keeps failing ends the run with its name and no report; the next run computes only
    that shard, on the other node than the cached one, and changes nothing."""
    import subprocess

    from conftest import REPO

    battery = tmp_path / "battery.toml"
    battery.write_text('[analysis]\nsanity_check = false\ncorruption_max_images = 6\nfaithfulness_max_images = 0\n'
                       'corruptions = ["brightness"]\nbootstrap_samples = 200\n'
                       'latency_budget_s = 0.2\n')

    images = tmp_path / "val"
    subprocess.run([sys.executable, str(REPO / "tools" / "synthetic_set.py"), str(images), "--count", "16",
                    "--layout", "own", "--classes", "2"], check=True, capture_output=True)
    cats = images / "cats"
    (cats / "empty.png").write_bytes(b"")
    (cats / "text.jpg").write_text("not a JPEG\n" * 20)
    (cats / "truncated.png").write_bytes((IMAGES / "chelsea.png").read_bytes()[:5000])
    common = ("run", "--backbone", "efficientnet_lite0", "--images", str(images), "--batch-size", "2",
              "--config", str(battery), "--json")
    single = run_cli(*common, "--format", "json", "--out", str(tmp_path / "single"))  # its numbers, not its pages
    assert single.exit_code == 0, single.output

    out = tmp_path / "ray"
    # a shard size of 7 rounds up to whole batches of 2: slices of 8 images, so every batch is the single run's
    ray_args = ("--out", str(out), "--executor", "ray", "--ray-address", cluster, "--shard-size", "7")
    marker, failing = tmp_path / "killed-once", tmp_path / "failing-shard"
    monkeypatch.setenv(FAULT_KILL_ONCE, str(marker))
    monkeypatch.setenv(FAULT_FAIL_SHARD, str(failing))
    failing.write_text("efficientnet_lite0-0001")
    # Both runs in one Ray session, joined as --ray-address joins: the second run's tasks reuse the first's workers
    # (each import of torch and timm in a new worker takes seconds); a run that finds Ray connected leaves it so.
    with ray_session(ExecutorSettings("ray", cluster, 8), lambda line: None):
        failed = run_cli(*common, "--format", "html,json", *ray_args)
        written = [p.name for p in (out / "metrics.json", out / "results" / "results.json") if p.exists()]
        failing.unlink()  # (the kill marker is there: no worker is killed again)
        result = run_cli(*common, "--format", "html,json", *ray_args)
    assert failed.exit_code == ShardsFailed.exit_code == 7
    assert marker.read_text() == "efficientnet_lite0-0001"  # that shard's first worker was SIGKILLed ...
    # ... and Ray ran it again: only a second attempt reaches the injected failure
    assert "efficientnet_lite0-0001" in failed.output and "injected failure" in failed.output
    assert "1 of 2 shards failed" in failed.output and "an error in the task is not" in failed.output
    assert "no report written" in failed.output and "Traceback" not in failed.output
    assert not written

    assert result.exit_code == 0, result.output
    shards = _json(result)["shards"]
    assert {s["name"]: s["status"] for s in shards} == {"efficientnet_lite0-0000": "cached",
                                                          "efficientnet_lite0-0001": "computed"}
    assert [s["images"] for s in shards] == [8, 8]  # 7 rounded up to whole batches of 2
    assert len({s["node"] for s in shards}) == 2, shards  # both nodes ran shards

    ours, theirs = _metrics(out), _metrics(tmp_path / "single")
    assert ours["task"]["scores"]["efficientnet_lite0"]["estimand"] == "linear probe"
    assert ours["task"] == theirs["task"]  # identical, not approximately: one probe, the same features
    assert ours["predictions"] == theirs["predictions"]
    _numbers_equal(ours, theirs)
    ray_index = json.loads((out / "results" / "results.json").read_text())
    one_index = json.loads((tmp_path / "single" / "results" / "results.json").read_text())
    assert ray_index["skipped_images"] == one_index["skipped_images"]
    assert {s["file"] for s in ray_index["skipped_images"]} == {"cats/empty.png", "cats/text.jpg",
                                                                "cats/truncated.png"}
    assert [(i["file"], i["class_index"]) for i in ray_index["images"]] == \
        [(i["file"], i["class_index"]) for i in one_index["images"]]
    assert ray_index["label_space"] == one_index["label_space"] and ray_index["label_space"]["names"] == ["cats", "coffee"]
    assert ray_index["backbones"][0]["task"] == one_index["backbones"][0]["task"]
    sampled = one_index["backbones"][0]["corruption"]["images"]
    assert len(sampled) == 6 and ray_index["backbones"][0]["corruption"]["images"] == sampled
    assert not set(sampled) & set(one_index["backbones"][0]["task"]["explained_images"])
    html = (out / "report.html").read_text()
    assert "truncated.png" in html
    # the cost measured on one node (the driver's) after the shards, and the report names it
    costs = json.loads((out / "results" / "cost.json").read_text())["backbones"]
    hosts = {c["machine"]["host"] for c in costs.values()}
    assert set(costs) == {"efficientnet_lite0"} and len(hosts) == 1
    assert "(Ray node " in next(iter(hosts)) and next(iter(hosts)) in html
    assert all(len(c["latency_ms_samples"]) >= 3 for c in costs.values())
    assert {c["latency_budget_s"] for c in costs.values()} == {0.2}  # the battery's budget reaches the Ray timing task


def _small_run(small_image_dir, out, *extra):
    from conftest import FAST

    battery = out.parent / "fast.toml"
    battery.parent.mkdir(parents=True, exist_ok=True)
    battery.write_text(FAST)
    return run_cli("run", "--preset", "lite", "--backbone", "tf_efficientnet_lite0", "--images", str(small_image_dir),
                   "--out", str(out), "--batch-size", "1", "--config", str(battery), "--format", "html", "--json",
                   *extra)


def _serve(reply: bytes):
    """A TCP server on every address of this machine that answers each connection with ``reply`` (not Ray)."""
    server = socket.socket()
    server.bind(("", 0))
    server.listen()

    def answer():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(reply)
    threading.Thread(target=answer, daemon=True).start()
    return server


@pytest.mark.parametrize("kind", ["nothing listening", "not Ray"])
def test_an_unreachable_ray_address_fails_fast_with_one_line(small_image_dir, tmp_path, kind):
    server = _serve(b"SSH-2.0-OpenSSH_9.2\r\n") if kind == "not Ray" else None
    address = f"127.0.0.1:{server.getsockname()[1]}" if server else "127.0.0.1:9"
    try:
        started = time.monotonic()
        result = _small_run(small_image_dir, tmp_path / "out", "--executor", "ray", "--ray-address", address)
        elapsed = time.monotonic() - started
    finally:
        if server:
            server.close()
    assert result.exit_code == 2, result.output
    assert elapsed < 30
    lines = result.output.strip().splitlines()
    error = [line for line in lines if line.startswith("reportgen: error:")]
    assert len(error) == 1 and address in error[0] and "ray start --head" in error[0], result.output
    if kind == "not Ray":
        assert "a server there does not speak Ray's protocol" in error[0] or "a server there closed" in error[0]
    assert not (tmp_path / "out").exists()


def test_without_ray_the_flag_says_how_to_install(small_image_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = _small_run(small_image_dir, tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_executor_table_in_battery_files(tmp_path):
    from reportgen.errors import UsageError
    from reportgen.inputs.battery import load_battery
    from reportgen.pipeline.request import ExecutorSettings

    battery = tmp_path / "b.toml"
    battery.write_text('[executor]\nkind = "ray"\nshard_size = 64\n')
    assert load_battery(battery).executor == {"kind": "ray", "shard_size": 64}
    with pytest.raises(UsageError, match="shard_size = 0"):
        ExecutorSettings("ray", None, 0)
    battery.write_text('[executor]\nkind = "slurm"\n')
    result = run_cli("run", "--config", str(battery), "--preset", "lite", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "choose local or ray" in result.output


def test_submitit_example_from_the_docs(lite0_small, small_image_dir, tmp_path):
    """docs/scaling.md's submitit path, with submitit's local executor (subprocesses instead of Slurm): the slices
    carry the manifest's labels and boxes, and the merged numbers equal one process's."""
    submitit = pytest.importorskip("submitit")
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.pipeline.shards import image_slices, merge_and_score, run_shard

    config = AnalysisConfig(batch_size=1, sanity_check=False, corruption_max_images=0, faithfulness_max_images=0,
                            bootstrap_samples=200)
    slices = image_slices(small_image_dir, 2, config)
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=10)
    jobs = [executor.submit(run_shard, "efficientnet_lite0", s, tmp_path / f"shard{n}", config)
            for n, s in enumerate(slices)]
    merge_and_score([job.result() for job in jobs], tmp_path / "report")
    merged = json.loads((tmp_path / "report" / "results" / "results.json").read_text())
    single = json.loads((lite0_small / "results" / "results.json").read_text())
    assert [(i["file"], i["class_index"], i["box"]) for i in merged["images"]] == \
        [(i["file"], i["class_index"], i["box"]) for i in single["images"]]
    assert merged["image_set"]["labels"] == "manifest" and merged["image_set"]["root_name"] == small_image_dir.name
    assert any(i["class_index"] is not None for i in merged["images"])
    # the same limits, given to the library directly here and by a battery file there: only where they came from differs
    library, command = _metrics(tmp_path / "report"), _metrics(lite0_small)
    for row in library["sample_sizes"]:
        assert row.pop("source") == "config"
    for row in command["sample_sizes"]:
        assert row.pop("source") == "battery file"
    _numbers_equal(library, command)
