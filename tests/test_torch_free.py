"""`render`, `merge` and `compare` in an environment without torch: the package installed with --no-deps into
a fresh venv, beside only the render-side dependencies (taken from this environment, offline)."""
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import REPO

# cleanlab: scoring's label-issue check (merge re-scores) reads it; it needs no torch
RENDER_SIDE = ("jinja2", "matplotlib", "numpy", "pillow", "click", "weasyprint", "filelock", "scipy", "cleanlab")


def _closure(names) -> list:
    """The distributions these need, transitively (markers evaluated here, extras left out)."""
    seen, todo = {}, list(names)
    environment = default_environment()
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def _link_distributions(dists, folder: Path) -> None:
    """Each distribution's top-level files and its metadata, linked into ``folder``."""
    folder.mkdir()
    for dist in dists:
        for entry in {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            source = Path(dist.locate_file(entry))
            if source.exists() and not (folder / entry).exists() and entry not in ("bin", "__pycache__"):
                (folder / entry).symlink_to(source)


@pytest.fixture(scope="module")
def torch_free_python(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch-free")
    dists = _closure(RENDER_SIDE)
    assert not {d.metadata["Name"].lower() for d in dists} & {"torch", "timm", "grad-cam"}
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(wheels), str(REPO)], check=True, timeout=300, cwd=root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    *map(str, wheels.glob("reportgen-*.whl"))], check=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    _link_distributions(dists, root / "render-deps")
    (Path(site) / "render_deps.pth").write_text(str(root / "render-deps") + "\n")
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    return venv


def _reportgen(venv, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([str(venv / "bin" / "reportgen"), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=venv)


def test_render_merge_and_compare_without_torch(torch_free_python, lite0_small, small_image_dir, tmp_path):
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.pipeline.shards import image_slices, run_shard

    # every format of a small run (the full lite run's PDF takes several times longer and tests nothing more here)
    rendered = _reportgen(torch_free_python, "render", lite0_small / "results", "--out", tmp_path / "render",
                          "--format", "html,pdf,md,json")
    assert rendered.returncode == 0, rendered.stderr
    assert (tmp_path / "render" / "report.pdf").read_bytes().startswith(b"%PDF")

    config = AnalysisConfig(batch_size=2, sanity_check=False, corruption_max_images=0, faithfulness_max_images=0)
    shards = [run_shard("efficientnet_lite0", part, tmp_path / f"s{n}", config).parent
              for n, part in enumerate(image_slices(small_image_dir, 2, config))]
    merged = _reportgen(torch_free_python, "merge", *shards, "--out", tmp_path / "merged", "--format", "html")
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged" / "results" / "metrics.json").is_file()

    compared = _reportgen(torch_free_python, "compare", lite0_small, tmp_path / "merged", "--out", tmp_path / "cmp",
                          "--format", "html")
    assert compared.returncode == 0, compared.stderr
    assert "EfficientNet-Lite0" in (tmp_path / "cmp" / "compare.html").read_text()


def test_the_gate_without_torch_gives_the_run_s_verdict(torch_free_python, gate_run, tmp_path):
    """`reportgen gate` on saved results needs no torch and reaches the verdict `run --gate` reaches (the same
    function on the same numbers): exit 8 for the damaged challenger, the same rows."""
    import json

    junit = tmp_path / "gate.xml"
    judged = _reportgen(torch_free_python, "gate", gate_run / "results", "--junit", junit)
    assert judged.returncode == 8, judged.stderr
    assert "gate failed" in judged.stderr and junit.is_file()
    saved = json.loads((gate_run / "metrics.json").read_text())["gate"]["rows"]
    for row in saved:
        assert f"{row['counts_as'].upper():4} {row['condition']:17} {row['outcome']:12} {row['text']}" in judged.stdout



def test_a_failed_gate_names_the_newly_wrong_images_beside_the_junit_file(torch_free_python, gate_run, tmp_path):
    """Issue 33: without torch, `reportgen gate --junit` writes every image the challenger newly gets wrong to a CSV
    beside the JUnit file; the list is counted by hand from per_image.csv (the source of truth), and the JUnit
    failure message and the exit message give its count and first names."""
    import csv
    import json
    import xml.etree.ElementTree as ElementTree

    junit = tmp_path / "gate.xml"
    judged = _reportgen(torch_free_python, "gate", gate_run / "results", "--junit", junit)
    assert judged.returncode == 8, judged.stderr
    gate = json.loads((gate_run / "metrics.json").read_text())["gate"]
    champion = gate["champion"]
    outcome: dict = {}
    with open(gate_run / "per_image.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["correct_top1"] in ("True", "False"):
                outcome[(row["backbone"], row["image"])] = row["correct_top1"] == "True"
    listed = list(csv.DictReader((tmp_path / "gate.newly_wrong.csv").open(newline="", encoding="utf-8")))
    for regression in gate["regressions"]:
        challenger = regression["challenger"]
        by_hand = {image for (name, image), right in outcome.items() if name == champion and right
                   and outcome.get((challenger, image)) is False}
        assert {row["file"] for row in listed if row["challenger"] == challenger} == by_hand
        assert regression["newly_wrong"] == len(by_hand)
    failing = [f.get("message") for f in ElementTree.parse(junit).iter("failure")]
    damaged = max(gate["regressions"], key=lambda r: r["newly_wrong"])
    assert damaged["newly_wrong"] > 0  # the damaged checkpoint gets images wrong that the champion gets right
    assert any(f"newly gets {damaged['newly_wrong']} of the" in m and damaged["files"][0] in m for m in failing)
    assert "gate.newly_wrong.csv" in judged.stderr
