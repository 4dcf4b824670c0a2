"""Command-line contract: help, listing, user errors as one line, render without torch, determinism."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import copy_run, message_lines, run_cli


def _every_command():
    from reportgen.cli import main

    return [[]] + [[name] for name in sorted(main.commands)]


@pytest.mark.parametrize("command", _every_command(), ids=lambda c: " ".join(c) or "reportgen")
def test_every_command_has_help_with_an_example(command):
    # test_docs.py checks that each example parses; this checks none is missing
    result = run_cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "reportgen " in result.output.split("Example", 1)[1]


@pytest.mark.parametrize("command", [[], ["run"], ["merge"]])
def test_help_lists_every_exit_code(command):
    text = " ".join(run_cli(*command, "--help").output.split())
    for code in ("0 success", "2 usage", "3 bad input data", "4 weights missing", "5 output folder",
                 "6 out of GPU memory", "130 interrupted"):
        assert code in text, code


def test_backbones_lists_table():
    result = run_cli("backbones", "--preset", "lite", "--offline")
    assert result.exit_code == 0
    for name in ("efficientnet_lite0", "tf_efficientnet_lite1", "blocks.6.0.conv_pwl", "available (lite-package"):
        assert name in result.output


def test_backbones_shows_automatic_choices_for_any_timm_id():
    result = run_cli("backbones", "resnet18", "--offline")
    assert result.exit_code == 0, result.output
    assert "layers (automatic): shallow=layer2, middle=layer3, deep=layer4" in result.output
    assert "deeper (heuristic" in result.output


@pytest.mark.parametrize("args, code, text", [
    (["run", "--backbone", "resnet5"], 2, "Did you mean: resnet50"),
    (["run", "--preset", "papr"], 2, "Did you mean: paper"),
    (["backbones", "--preset", "nope"], 2, "unknown preset"),
    (["render", "/nonexistent/results"], 3, "holds no results.json"),
])
def test_user_errors_are_one_line(args, code, text):
    result = run_cli(*args)
    assert result.exit_code == code
    assert text in result.output and "Traceback" not in result.output
    # (a name that needs timm to check comes after the run's first line, which precedes the heavy imports)
    assert len(message_lines(result.output)) == 1


def test_bad_manifest_is_reported_before_models_load(tmp_path, small_image_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for f in small_image_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    manifest = folder / "annotations.csv"
    manifest.write_text(manifest.read_text().replace("chelsea.png,n02123045,120", "chelsea.png,n02123045,9999"))
    result = run_cli("run", "--preset", "lite", "--images", str(folder), "--out", str(tmp_path / "o"))
    assert result.exit_code == 3 and "annotations.csv:" in result.output and "inverted or outside" in result.output


def _run_small(out, images, *extra, seed="0"):
    return run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(images),
                   "--out", str(out), "--seed", seed, "--quiet", *extra)


def test_run_is_deterministic_and_reuses_unchanged_backbones(tmp_path, small_image_dir):
    first = tmp_path / "a"
    assert _run_small(first, small_image_dir, "--format", "html").exit_code == 0  # the reruns render the PDF
    saved = {name: (first / "results" / name).read_bytes() for name in ("results.json", "metrics.json")}
    index = json.loads((first / "results" / "results.json").read_text())
    from reportgen.results.schema import SCHEMA_VERSION

    assert index["schema_version"] == SCHEMA_VERSION and index["seed"] == 0
    assert index["versions"]["torch"] and index["versions"]["timm"]
    assert all(len(img["sha256"]) == 64 for img in index["images"])
    weights = index["backbones"][0]["weights"]
    assert weights["source"] == "lite-package" and len(weights["file_sha256"]) == 64

    before = (first / "results" / "metrics.json").read_bytes()
    again = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(small_image_dir),
                    "--out", str(first), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["backbones"] == {"efficientnet_lite0": "cached"}
    assert set(summary["timings"]["render"]) == {"figures_s", "html_s", "pdf_s"}
    assert (first / "results" / "metrics.json").read_bytes() == before

    fresh = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(small_image_dir),
                    "--out", str(first), "--json", "--fresh", "--format", "html")
    assert json.loads(fresh.stdout)["backbones"] == {"efficientnet_lite0": "computed"}
    for name, first_bytes in saved.items():  # computed twice, byte for byte the same
        assert (first / "results" / name).read_bytes() == first_bytes, name

    # Size and background annotations only feed scoring: editing them re-scores without running a model.
    relabelled = tmp_path / "relabelled"
    shutil.copytree(small_image_dir, relabelled)
    manifest = relabelled / "annotations.csv"
    manifest.write_text(manifest.read_text().replace(",large,clean,", ",medium,cluttered,", 1))
    edited = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(relabelled),
                     "--out", str(first), "--json", "--format", "html")
    assert json.loads(edited.stdout)["backbones"] == {"efficientnet_lite0": "cached"}
    sizes = {img["file"]: img["size"] for img in json.loads((first / "results" / "results.json").read_text())["images"]}
    assert sizes["chelsea.png"] == "medium"


def test_changed_images_recompute_and_foreign_folders_are_refused(tmp_path, small_image_dir, fast_battery, lite0_small):
    out = copy_run(lite0_small, tmp_path / "out")  # Lite0 with the fast battery on small_image_dir
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    lines = (small_image_dir / "annotations.csv").read_text().splitlines()
    (fewer / "annotations.csv").write_text("\n".join(lines[:2]) + "\n")
    kept = lines[1].split(",")[0]
    (fewer / kept).write_bytes((small_image_dir / kept).read_bytes())
    changed = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(fewer),
                      "--out", str(out), "--json", "--format", "html", "--config", str(fast_battery))
    assert json.loads(changed.stdout)["backbones"] == {"efficientnet_lite0": "computed"}
    assert json.loads((out / "results" / "results.json").read_text())["image_set"]["count"] == 1
    assert len(list((out / "results" / "backbones").glob("*.npz"))) == 1  # the old image set's result pruned

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = _run_small(foreign, small_image_dir)
    assert refused.exit_code == 5 and "--force" in refused.output
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_render_does_not_import_torch(lite0_small, tmp_path):
    code = ("import sys; sys.modules['torch'] = None; sys.modules['timm'] = None\n"
            "from reportgen.cli import main\n"
            f"main(['render', {str(lite0_small / 'results')!r}, '--out', {str(tmp_path)!r}])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").stat().st_size > 100_000
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
