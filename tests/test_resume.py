"""A run killed at any moment leaves no corrupt files; the next run resumes and loses only the backbone
in flight."""
import json
import os
import signal
import subprocess
import sys
import threading
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


def _start(command):
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"), preexec_fn=_as_a_foreground_command)


def _stop_once_lite0_is_saved(out, images, sig, battery):
    """The run, stopped by ``sig`` as soon as Lite0's entry is saved: Lite1 is then in flight."""
    process = _start(_command(out, images, battery))
    folder = out / "results" / BACKBONES_DIR
    deadline = time.time() + 240
    # the entry file marks a backbone finished (waiting for any *.json would also match a cost file)
    while time.time() < deadline and not [p for p in folder.glob("efficientnet_lite0-*.json")
                                          if not p.name.endswith(COST_SUFFIX)]:
        if process.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def _stop_once_lite1_loads(out, images, sig, battery):
    """The same command again (Lite0 reused), stopped by ``sig`` as soon as it says it loads Lite1."""
    # without --quiet and --json: its stage lines on stderr tell when
    command = [part for part in _command(out, images, battery) if part not in ("--quiet", "--json")]
    process = _start(command)
    seen = []
    deadline = threading.Timer(240, process.kill)  # a run that hangs without a word still ends
    deadline.start()
    try:
        for line in process.stderr:
            seen.append(line)
            if "efficientnet_lite1: loading weights" in line:
                process.send_signal(sig)
                break
        else:
            pytest.fail(f"the run never said it loads Lite1: {''.join(seen)}")
    finally:
        deadline.cancel()
    _, stderr = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + stderr


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


def test_a_run_interrupted_by_ctrl_c_then_killed_resumes(tmp_path, small_image_dir, fast_battery):
    """Ctrl-C while Lite1 is in flight, then the same command killed (SIGKILL) while Lite1 is in flight again: each
    leaves no corrupt file and no report, and loses only Lite1; the third run finishes."""
    out = tmp_path / "out"
    results = out / "results"
    code, stderr = _stop_once_lite0_is_saved(out, small_image_dir, signal.SIGINT, fast_battery)
    assert code == 130 and "interrupted" in stderr and "Traceback" not in stderr
    _assert_nothing_corrupt(results)
    assert not (out / "report.html").exists()
    saved = sorted(p.name for p in (results / BACKBONES_DIR).glob("efficientnet_lite*"))
    assert saved and all(name.startswith("efficientnet_lite0-") for name in saved)

    code, stderr = _stop_once_lite1_loads(out, small_image_dir, signal.SIGKILL, fast_battery)
    assert code == -signal.SIGKILL and "efficientnet_lite0: unchanged since the last run" in stderr
    _assert_nothing_corrupt(results)
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in (results / BACKBONES_DIR).glob("efficientnet_lite*")) == saved
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
