"""A run killed at any moment leaves no corrupt files; the next run resumes and loses only the backbone
in flight."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from reportgen.results.store import BACKBONES_DIR, COST_SUFFIX

from conftest import run_cli


def _command(out, images, battery):
    return [sys.executable, "-m", "reportgen.cli", "run", "--preset", "lite", "--backbone", "efficientnet_lite0",
            "--backbone", "efficientnet_lite1", "--images", str(images), "--out", str(out), "--quiet", "--json",
            "--config", str(battery), "--format", "html,pdf"]


def _as_a_foreground_command():
    """The child starts as a command typed in a terminal would: SIGINT at its default and not blocked, whatever
    state earlier tests (a local Ray cluster, submitit) left this pytest process in; a child inherits an ignored
    or blocked SIGINT, and would then run to the end."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_stop_mid_second_backbone(out, images, sig, battery):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    process = subprocess.Popen(_command(out, images, battery), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=_as_a_foreground_command)
    folder = out / "results" / BACKBONES_DIR
    deadline = time.time() + 240
    # the entry file marks a backbone finished; its .cost.json is written just before it (waiting for any *.json
    # let a loaded machine kill the run between the two, and Lite0 was then rightly computed again)
    while time.time() < deadline and not [p for p in folder.glob("efficientnet_lite0-*.json")
                                          if not p.name.endswith(COST_SUFFIX)]:
        if process.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def _assert_nothing_corrupt(results):
    # Only complete files carry final names (a temp name may remain; the next run sweeps it).
    for entry in (results / BACKBONES_DIR).glob("*.json"):
        if entry.name.endswith(COST_SUFFIX):  # machine-dependent cost beside the entry, not an entry
            json.loads(entry.read_text())
            continue
        data = json.loads(entry.read_text())
        with np.load(entry.with_suffix(".npz"), allow_pickle=False) as arrays:
            assert arrays.files and data["cache_key"]
    if (results / "results.json").exists():
        json.loads((results / "results.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_run_resumes(tmp_path, small_image_dir, fast_battery, sig):
    out = tmp_path / "out"
    code, stderr = _start_and_stop_mid_second_backbone(out, small_image_dir, sig, fast_battery)
    if sig == signal.SIGINT:
        assert code == 130 and "interrupted" in stderr and "Traceback" not in stderr
    else:
        assert code == -signal.SIGKILL
    results = out / "results"
    _assert_nothing_corrupt(results)
    assert not (out / "report.html").exists()
    # the next run in this process: the same command line, without a second interpreter's imports
    done = run_cli(*_command(out, small_image_dir, fast_battery)[3:])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["backbones"]["efficientnet_lite0"] == "cached"
    assert summary["backbones"]["efficientnet_lite1"] == "computed"  # it was in flight: nothing of it was kept
    assert not [p for p in results.rglob("*") if ".tmp-" in p.name]
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_debris_of_a_killed_render_is_swept_and_live_writers_are_left_alone(lite0_small, tmp_path):
    import shutil

    from reportgen.report.render import render_report

    out = tmp_path / "out"
    shutil.copytree(lite0_small / "results", out / "results")
    dead = out / ".report.pdf.tmp-999999999"  # no such process: a render killed mid-PDF
    dead.write_bytes(b"%PDF-1.7 half")
    live = out / ".metrics.json.tmp-1"  # pid 1 is alive: treat as a writer still at work
    live.write_bytes(b"<html>")
    render_report(out / "results", out, ("html",))
    assert not dead.exists() and live.exists()
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
