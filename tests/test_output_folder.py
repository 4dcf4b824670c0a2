"""The output folder: recognised as reportgen's only by its results, written by one run at a time, checked for
disk space before decoding; the decode-once cache stores display copies compressed."""
import json
import os
import shutil
import subprocess
import sys
import time
from collections import namedtuple

import numpy as np
from PIL import Image

from conftest import IMAGES, run_cli
from reportgen.results.lock import OWNER_FILE, output_folder_lock
from reportgen.results.store import BACKBONES_DIR, RUN_MARKER, holds_reportgen_results, prune_unreferenced

LITE0_SMALL = ("--preset", "lite", "--backbone", "efficientnet_lite0", "--batch-size", "1", "--no-sanity-check")


def test_a_folder_that_merely_holds_a_results_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    (out / "results" / BACKBONES_DIR).mkdir(parents=True)
    precious = out / "results" / BACKBONES_DIR / "thesis.npz"
    precious.write_bytes(b"months of work")
    for index in (None, "{not json", json.dumps({"schema_version": 6})):
        if index is not None:
            (out / "results" / "results.json").write_text(index)
        result = run_cli("run", "--preset", "lite", "--out", str(out))
        assert result.exit_code == 5, result.output
        assert "holds no reportgen results" in result.output and "--force" in result.output
        assert precious.read_bytes() == b"months of work"


def test_earlier_runs_are_recognised_by_their_results_or_their_start_marker(lite_report, tmp_path):
    assert holds_reportgen_results(lite_report / "results")
    interrupted = tmp_path / "interrupted" / "results"
    interrupted.mkdir(parents=True)
    assert not holds_reportgen_results(interrupted)
    (interrupted / RUN_MARKER).write_text(json.dumps({"reportgen": "0.1.0", "schema_version": 6}))
    assert holds_reportgen_results(interrupted)
    (interrupted / RUN_MARKER).write_text("[]")
    assert not holds_reportgen_results(interrupted)


def test_pruning_removes_only_files_named_like_reportgens(lite_report, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(lite_report / "results", results)
    stale = results / BACKBONES_DIR / "efficientnet_lite9-0123456789abcdef.npz"
    foreign = results / BACKBONES_DIR / "my-notes.txt"
    stale.write_bytes(b"old")
    foreign.write_text("mine")
    assert prune_unreferenced(results) == 1
    assert not stale.exists() and foreign.read_text() == "mine"


def test_a_second_run_into_the_same_folder_stops_at_once_naming_the_first(tmp_path, small_image_dir, fast_battery):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "reportgen.cli", "run", *LITE0_SMALL, "--images", str(small_image_dir),
               "--out", str(out), "--quiet", "--format", "html", "--config", str(fast_battery)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / OWNER_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() else ""
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert time.monotonic() - started < 20  # it does not wait for the first run
        assert second.returncode == 5, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "another reportgen run" in lines[0]
        assert "internal error" not in second.stderr
    finally:
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    index = json.loads((out / "results" / "results.json").read_text())
    assert [b["name"] for b in index["backbones"]] == ["efficientnet_lite0"]
    assert (out / "report.html").stat().st_size > 50_000
    assert not (out / OWNER_FILE).exists()


def test_the_lock_is_held_for_render_and_merge_too(tmp_path, lite_report):
    out = tmp_path / "out"
    with output_folder_lock(out):
        owner = json.loads((out / OWNER_FILE).read_text())
        assert owner["pid"] == os.getpid()
        for args in (("render", str(lite_report / "results"), "--out", str(out), "--format", "html"),
                     ("merge", str(lite_report), "--out", str(out))):
            result = run_cli(*args)
            assert result.exit_code == 5 and f"pid {os.getpid()}" in result.output, result.output
    assert not out.exists()  # made by the lock, nothing written into it: removed again


def test_too_little_disk_stops_before_decoding_with_the_size_needed(tmp_path, small_image_dir, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * 2 ** 30, 10 * 2 ** 30 - 2 ** 20, 2 ** 20))
    out = tmp_path / "out"
    result = run_cli("run", "--preset", "lite", "--images", str(small_image_dir), "--out", str(out))
    assert result.exit_code == 5, result.output
    error = result.output.strip().splitlines()[-1]
    assert "decoding 3 images needs about" in error and "per image" in error and "1.0 MB free" in error
    assert not out.exists()


def test_display_copies_are_cached_as_jpeg_and_model_inputs_exactly(tmp_path):
    from reportgen.inputs.decoded import DISPLAY, DISPLAY_BYTES_ESTIMATE, DecodedInputs, display_geometry

    crop = lambda image: image.resize((224, 224))  # noqa: E731 -- a model geometry
    decoded = DecodedInputs(tmp_path / "cache", {DISPLAY: display_geometry, "model": crop})
    photo = Image.open(IMAGES / "chelsea.png").convert("RGB")
    decoded.add(0, photo)
    jpeg = decoded.stored(DISPLAY, 0)
    shown = display_geometry(photo)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < shown.width * shown.height * 3 / 6
    assert len(jpeg) <= DISPLAY_BYTES_ESTIMATE
    assert decoded.read(DISPLAY, [0])[0].shape == (shown.height, shown.width, 3)
    assert np.array_equal(decoded.read("model", [0])[0], np.asarray(crop(photo)))  # model inputs: exact
    assert decoded.stored("model", 0) == np.asarray(crop(photo)).tobytes()


def test_disk_per_image_of_the_lite_preset():
    from reportgen.analysis.weights import plan_weights
    from reportgen.inputs.decoded import DISPLAY_BYTES_ESTIMATE
    from reportgen.inputs.registry import preset
    from reportgen.pipeline.run import bytes_per_image

    plans = plan_weights(preset("lite"), "random", {})
    assert bytes_per_image(plans) == 3 * (224 ** 2 + 240 ** 2 + 260 ** 2) + 2 * DISPLAY_BYTES_ESTIMATE
