"""Issue 24, "Also" and "Device-aware sample sizes": the run's first line comes before the heavy imports, every
stage that can take seconds says so, and the corruption and faithfulness sample sizes follow the device unless the
battery file sets them (stated on page 1 and in metrics.json)."""
import json
import os
import re
import subprocess
import sys

import pytest

# Runs `reportgen run ...` with a meta-path hook that writes a marker on stderr the moment torch starts to import, so
# the order of the lines shows whether the first line came before it, whatever the machine's load.
WATCHED = r"""
import os, sys

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.write(2, b"<<torch import starts>>\n")
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, Watch())
from reportgen.cli import main
main(sys.argv[1:], prog_name="reportgen")
"""


def test_sample_sizes_follow_the_device_unless_the_battery_file_sets_them(tmp_path):
    from reportgen.inputs.battery import load_battery
    from reportgen.inputs.config import (DEVICE_SAMPLE_SIZES, AnalysisConfig, sample_size_source,
                                         with_device_sample_sizes)

    assert DEVICE_SAMPLE_SIZES == {"cpu": {"corruption_max_images": 16, "faithfulness_max_images": 16},
                                   "cuda": {"corruption_max_images": 64, "faithfulness_max_images": 32}}
    on_cuda = with_device_sample_sizes(AnalysisConfig(), "cuda")
    assert (on_cuda.corruption_max_images, on_cuda.faithfulness_max_images) == (64, 32)
    assert with_device_sample_sizes(AnalysisConfig(), "cuda:1").corruption_max_images == 64
    on_cpu = with_device_sample_sizes(AnalysisConfig(), "cpu")
    assert (on_cpu.corruption_max_images, on_cpu.faithfulness_max_images) == (16, 16)
    # a battery file's value always wins, on either device, even where it equals another device's default
    path = tmp_path / "battery.toml"
    path.write_text("[analysis]\ncorruption_max_images = 16\n")
    battery = load_battery(path)
    mixed = with_device_sample_sizes(battery.analysis_config(), "cuda", battery.analysis)
    assert (mixed.corruption_max_images, mixed.faithfulness_max_images) == (16, 32)
    assert sample_size_source("corruption_max_images", 16, "cuda", battery.analysis) == "battery file"
    assert sample_size_source("faithfulness_max_images", 32, "cuda", battery.analysis) == "cuda default"
    assert sample_size_source("faithfulness_max_images", 16, "cpu") == "cpu default"
    assert sample_size_source("faithfulness_max_images", 5, "cpu") == "config"
    # the other settings are untouched
    assert mixed == AnalysisConfig(corruption_max_images=16, faithfulness_max_images=32)


def test_the_first_line_comes_before_torch_and_every_stage_says_so(tmp_path, small_image_dir):
    """A pretrained Lite0 on three images with every section-3.4 check on (the battery sets the corruption sample,
    the CPU default the faithfulness one): stderr, read off a pipe (plain lines, no bars)."""
    battery = tmp_path / "battery.toml"
    battery.write_text("[analysis]\nsanity_check = false\ncorruption_max_images = 2\nbootstrap_samples = 200\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", WATCHED, "run", "--backbone", "efficientnet_lite0", "--images", str(small_image_dir),
         "--config", str(battery), "--out", str(out), "--format", "md,json", "--device", "cpu", "--offline"],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    marker = lines.index("<<torch import starts>>")
    assert lines[0].startswith("reportgen: starting") and marker > 0, lines[:3]
    loading = next(i for i, line in enumerate(lines) if "loading weights" in line)
    assert 0 < marker < loading
    said = "\n".join(lines)
    for stage in (r"efficientnet_lite0: Grad-CAM and features on 3 images",
                  r"efficientnet_lite0: slimming, 3 images",
                  r"efficientnet_lite0: corruptions, \d+ forward passes",
                  r"efficientnet_lite0: faithfulness \(ROAD\), 3 images",
                  # issue 32: after the analyses, every candidate in interleaved sessions
                  r"latency and memory: every candidate timed in 3 interleaved sessions \(A B C, B C A, C A B ...\), "
                  r"each until its median's 95 % interval lies within ±2 % of it, or for 0.333 s",
                  r"latency session 1 of 3",
                  r"efficientnet_lite0: latency [\d.e+]+ ms \(session medians [\d.e+]+, [\d.e+]+, [\d.e+]+ ms\), \d+ "
                  r"passes "
                  r"\(((precision reached|time budget|maximum passes)(, )?)+\)",
                  r"scoring: .*calibration"):
        assert re.search(stage, said), f"no line for {stage!r}:\n{said}"

    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["device"] == "cpu"
    sizes = {row["check"]: row for row in metrics["sample_sizes"]}
    assert sizes["corruptions"] == {"check": "corruptions", "key": "corruption_max_images", "limit": 2,
                                    "source": "battery file", "images": 2, "ran": True}
    assert sizes["faithfulness"] == {"check": "faithfulness", "key": "faithfulness_max_images", "limit": 16,
                                     "source": "cpu default", "images": 3, "ran": True}
    markdown = re.sub(r"\\(.)", r"\1", (out / "report.md").read_text())  # Markdown escapes
    page = re.sub(r"\s+", " ", markdown.split("## 1 Introduction")[0])  # page 1
    assert "Sampled checks on this run's device (cpu): corruptions on 2 of 3 images (at most 2, set in the battery " \
           "file) and faithfulness on 3 of 3 images (at most 16, the cpu default); the defaults are 16 and 16 on a " \
           "CPU, 64 and 32 on CUDA" in page
    cost = json.loads((out / "results" / "cost.json").read_text())["backbones"]["efficientnet_lite0"]
    assert cost["latency_target_precision"] == pytest.approx(0.02) and set(cost["stopped_because"].split(", ")) <= {
        "precision reached", "time budget", "maximum passes"}
    assert len(cost["latency_sessions"]) == 3
    assert re.search(r"In each of 3 interleaved sessions, each latency was timed until its median's 95 % interval "
                     r"\(order statistics, no distribution assumed\) lay within ±2 % of it, or for 0.333 s of passes: "
                     r"(reached|not) for EfficientNet-Lite0 \(±[\d.]+ %", page)
