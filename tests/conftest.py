import os

# Tests never touch the network: the hub is off before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"


@pytest.fixture(scope="session")
def small_image_dir(tmp_path_factory) -> Path:
    """Three curated images with their manifest rows (a real photo, two controlled)."""
    folder = tmp_path_factory.mktemp("images")
    keep = ("chelsea.png", "controlled_cat_small_clean.png", "controlled_espresso_large_cluttered.png")
    lines = (IMAGES / "annotations.csv").read_text().splitlines()
    rows = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in keep]
    (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    for name in keep:
        shutil.copy(IMAGES / name, folder / name)
    return folder


def run_cli(*args):
    from reportgen.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="session")
def lite_report(tmp_path_factory) -> Path:
    """The README's offline command, once per session: the full lite preset on the curated set."""
    out = tmp_path_factory.mktemp("lite") / "out"
    result = run_cli("run", "--preset", "lite", "--out", str(out), "--quiet", "--format", "html,pdf,md,json")
    assert result.exit_code == 0, result.output
    return out


def aggregate_row(rows, scope, name, role, group, metric):
    """The aggregate row of a metrics JSON document (plain dicts), or None."""
    return next((r for r in rows if (r["scope"], r["name"], r["role"], r["group"], r["metric"])
                 == (scope, name, role, group, metric)), None)
