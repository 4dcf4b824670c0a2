"""Issue 13: `reportgen run --executor ray` on a local Ray cluster. The merged metrics.json equals the
single-process run's; a killed worker is retried; a shard that keeps failing ends the run with its name and no
report; without Ray installed the flag says how to install it."""
import json
import sys

import pytest

from conftest import run_cli

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from reportgen.pipeline.distributed import FAULT_FAIL_SHARD, FAULT_KILL_ONCE, ShardsFailed  # noqa: E402

RELATIVE = 1e-9


@pytest.fixture(autouse=True)
def _leave_the_process_as_found():
    """ray.init changes this pytest process (environment variables it exports for its workers); later tests
    start reportgen in subprocesses that would inherit them."""
    import os

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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


def test_ray_run_equals_single_process(lite_report, tmp_path):
    out = tmp_path / "ray"
    result = run_cli("run", "--preset", "lite", "--executor", "ray", "--shard-size", "8", "--out", str(out),
                     "--format", "html,json", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    shards = summary["shards"]
    assert len(shards) == 9 and {s["status"] for s in shards} == {"computed"}  # 3 backbones x 3 slices
    assert sorted(s["images"] for s in shards if s["backbone"] == "efficientnet_lite0") == [2, 8, 8]
    ours, single = _metrics(out), _metrics(lite_report)
    assert ours["predictions"] == single["predictions"]  # identical, not approximately
    _numbers_equal(ours, single)
    assert (out / "report.html").stat().st_size > 100_000

    again = run_cli("run", "--preset", "lite", "--executor", "ray", "--shard-size", "8", "--out", str(out),
                    "--format", "html", "--json")
    assert again.exit_code == 0, again.output
    assert {s["status"] for s in json.loads(again.output[again.output.index("{"):])["shards"]} == {"cached"}
    # --fresh reaches the shards: the cached ones are computed again
    fresh = run_cli("run", "--preset", "lite", "--backbone", "tf_efficientnet_lite0", "--executor", "ray",
                    "--shard-size", "8", "--out", str(out), "--format", "html", "--json", "--fresh")
    assert fresh.exit_code == 0, fresh.output
    assert {s["status"] for s in json.loads(fresh.output[fresh.output.index("{"):])["shards"]} == {"computed"}


def _small_run(small_image_dir, out, *extra):
    return run_cli("run", "--preset", "lite", "--backbone", "tf_efficientnet_lite0", "--images", str(small_image_dir),
                   "--out", str(out), "--batch-size", "1", "--no-sanity-check", "--format", "html", "--json",
                   *extra)


def test_killed_worker_is_retried_and_still_matches(small_image_dir, tmp_path, monkeypatch):
    single = _small_run(small_image_dir, tmp_path / "single")
    assert single.exit_code == 0, single.output
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(FAULT_KILL_ONCE, str(marker))
    result = _small_run(small_image_dir, tmp_path / "ray", "--executor", "ray", "--shard-size", "1")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "efficientnet_lite0-0001"  # that shard's first worker was SIGKILLed
    shards = json.loads(result.output[result.output.index("{"):])["shards"]
    assert len(shards) == 3 and all(s["status"] == "computed" for s in shards)
    _numbers_equal(_metrics(tmp_path / "ray"), _metrics(tmp_path / "single"))


def test_a_shard_that_always_fails_ends_the_run_without_a_report(small_image_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_FAIL_SHARD, "efficientnet_lite0-0002")
    out = tmp_path / "ray"
    result = _small_run(small_image_dir, out, "--executor", "ray", "--shard-size", "1")
    assert result.exit_code == ShardsFailed.exit_code == 7
    assert "efficientnet_lite0-0002" in result.output and "no report written" in result.output
    assert "Traceback" not in result.output
    assert not (out / "report.html").exists() and not (out / "results" / "results.json").exists()
    # the other shards finished and are kept: the next run computes only the missing one
    monkeypatch.delenv(FAULT_FAIL_SHARD)
    again = _small_run(small_image_dir, out, "--executor", "ray", "--shard-size", "1")
    assert again.exit_code == 0, again.output
    statuses = {s["name"]: s["status"] for s in json.loads(again.output[again.output.index("{"):])["shards"]}
    assert statuses == {"efficientnet_lite0-0000": "cached", "efficientnet_lite0-0001": "cached",
                        "efficientnet_lite0-0002": "computed"}


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


def test_submitit_example_from_the_docs(small_image_dir, tmp_path):
    """docs/scaling.md's submitit path, with submitit's local executor (subprocesses instead of Slurm)."""
    submitit = pytest.importorskip("submitit")
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.pipeline.shards import merge_and_score, run_shard
    from reportgen.results.store import load_results

    images = sorted(small_image_dir.glob("*.png"))
    slices = [images[:2], images[2:]]
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=10)
    config = AnalysisConfig(batch_size=1, sanity_check=False)
    jobs = [executor.submit(run_shard, "efficientnet_lite0", s, tmp_path / f"shard{n}", config) for n, s in
            enumerate(slices)]
    merged = merge_and_score([job.result() for job in jobs], tmp_path / "report")
    saved = load_results(merged)
    assert len(saved.index.images) == 3 and saved.index.backbones[0].name == "efficientnet_lite0"
    assert len(saved.metrics.predictions) == 3
