"""The package's layering holds: import-linter's contracts in pyproject.toml (data flows one way; only
analysis imports torch, timm and grad-cam; no import circle inside any package; layers inside report, analysis,
results and pipeline)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def _copy_with(tmp_path: Path, module: str, added: str, *, at_end: bool = False) -> Path:
    """A copy of the package and its contracts in which ``module`` (a path under reportgen/) has ``added`` at its
    top, or at its end."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "reportgen", copy / "reportgen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    source = copy / "reportgen" / module
    source.write_text(source.read_text() + added if at_end else added + source.read_text())
    return copy


def _isolated(copy: Path) -> dict:
    return {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"}


def test_import_contracts_are_kept():
    done = subprocess.run([str(LINT)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 kept, 0 broken" in done.stdout


def test_a_torch_import_in_the_report_would_break_a_contract(tmp_path):
    """The contracts can fail: a copy of the package whose renderer imports torch is refused."""
    copy = _copy_with(tmp_path, "report/render.py", "import torch  # noqa\n")
    done = subprocess.run([str(LINT), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env=_isolated(copy))
    assert done.returncode != 0 and "BROKEN" in done.stdout.upper()


# A circle hidden by an import inside a function, as both circles of issue 31 were: the module at the bottom of the
# package imports, in a function body, one that imports it.
HIDDEN_CIRCLES = [
    pytest.param("analysis/classifier.py", "heads", "plan_head", "analysis", id="analysis: classifier -> heads"),
    pytest.param("report/figure_numbers.py", "context", "build_context", "report", id="report: figures -> context"),
    pytest.param("scoring/bootstrap.py", "vectors", "run_draws", "scoring", id="scoring: bootstrap -> vectors"),
]


@pytest.mark.parametrize("module, imported, name, package", HIDDEN_CIRCLES)
def test_a_circle_hidden_in_a_function_breaks_a_contract(tmp_path, module, imported, name, package):
    """The acyclic contract names the package and the two modules of the circle; in report and analysis the
    layers contract also names the import and its line (grimp reads imports inside functions)."""
    added = f"\n\ndef _circle():\n    from .{imported} import {name}\n    return {name}\n"
    copy = _copy_with(tmp_path, module, added, at_end=True)
    line = len((copy / "reportgen" / module).read_text().splitlines()) - 1
    done = subprocess.run([str(LINT), "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                          env=_isolated(copy))
    out = " ".join(done.stdout.split())  # the report wraps long lines
    assert done.returncode != 0, out
    assert f"No cycles are allowed in reportgen.{package}." in out, out
    importer = Path(module).stem
    assert f".{importer} -> .{imported}" in out or f".{imported} -> .{importer}" in out, out
    if package in ("analysis", "report"):
        assert (f"reportgen.{package}.{importer} is not allowed to import reportgen.{package}.{imported}: "
                f"- reportgen.{package}.{importer} -> reportgen.{package}.{imported} (l.{line})") in out, out
    else:  # no layers there: the acyclic contract alone
        assert "Contracts: 7 kept, 1 broken." in out, out
