"""The package's layering holds: import-linter's contracts in pyproject.toml (data flows one way; only
analysis imports torch, timm and grad-cam)."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_a_torch_import_in_the_report_would_break_a_contract(tmp_path):
    """The contracts can fail: a copy of the package whose renderer imports torch is refused."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "reportgen", copy / "reportgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    renderer = copy / "reportgen" / "report" / "render.py"
    renderer.write_text("import torch  # noqa\n" + renderer.read_text())
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "BROKEN" in done.stdout.upper()
