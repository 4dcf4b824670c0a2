"""The gate for CI, from saved results (torch-free): the verdict, the JUnit XML file CI systems display, and the
GitHub Actions job summary. The numbers come from :func:`reportgen.scoring.gate.decide_and_gate`, the same
function the report's page 1 uses."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Optional

from ..errors import GateFailed, UsageError
from ..inputs.config import GateSettings
from ..results.store import SavedResults, atomic_write_bytes, load_results
from ..scoring.constraints import Check
from ..scoring.gate import GateReport
from .decision_page import GATE_CONDITIONS, decision_page

SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def _why_failed(row, settings: GateSettings) -> str:
    """Why a row that is not a plain fail counts as one ("" for a fail)."""
    if row.outcome == Check.NOT_MEASURED:
        return "; not measured counts as failed whatever on_uncertain says"
    if row.outcome == Check.UNCERTAIN:
        return ("; an uncertain constraint counts as failed" if row.condition == "constraints"
                else f"; on_uncertain = {settings.on_uncertain}")
    return ""


def junit_xml(gate: GateReport) -> bytes:
    """One ``<testcase>`` per challenger and condition (classname ``reportgen.gate.<challenger>``): a failure carries
    the numbers and their interval; an uncertain outcome counted as a pass is a passing case with its text in
    ``<system-out>``. A "not measured" row is always a failure, its message saying what to measure."""
    failures = len(gate.failures())
    suites = ElementTree.Element("testsuites", name="reportgen gate", tests=str(len(gate.rows)),
                                 failures=str(failures), errors="0")
    suite = ElementTree.SubElement(suites, "testsuite", name=f"reportgen gate: champion {gate.champion}",
                                   tests=str(len(gate.rows)), failures=str(failures), errors="0", skipped="0")
    for row in gate.rows:
        case = ElementTree.SubElement(suite, "testcase", classname=f"reportgen.gate.{row.challenger}",
                                      name=f"{row.condition} ({GATE_CONDITIONS[row.condition]})")
        if row.counts_as == Check.FAIL:
            failure = ElementTree.SubElement(case, "failure", type=row.outcome, message=row.text)
            failure.text = f"{row.text}\noutcome: {row.outcome}{_why_failed(row, gate.settings)}"
        else:
            out = ElementTree.SubElement(case, "system-out")
            out.text = f"{row.outcome}: {row.text}"
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)


def step_summary(results: SavedResults, gate: GateReport, decision) -> str:
    """Page 1 in Markdown (title, verdict, the candidates' table) plus the gate's verdict and table."""
    from .render import markdown_environment

    index = results.index
    page = decision_page(decision, index, str(results.timings.get("started", "")), results.cost,
                         results.metrics.task, gate)
    return markdown_environment().get_template("gate_summary.md.j2").render(page=page, decision=decision)


def evaluate_saved(results_dir: Path, settings: Optional[GateSettings] = None) -> tuple:
    """(results, decision, gate) of a saved run; ``settings`` replace the run's ``[gate]``."""
    from ..scoring.gate import decide_and_gate

    results = load_results(Path(results_dir))
    decision, gate = decide_and_gate(results, settings=settings)
    if gate is None:
        raise UsageError(f"{results_dir}: the run has no [gate] (no champion named); add a [gate] table to the "
                         "battery file, or pass one with --config.")
    return results, decision, gate


def run_gate(results_dir: Path, junit: Optional[Path] = None, settings: Optional[GateSettings] = None,
             say=print) -> GateReport:
    """Evaluate, print the table, write the JUnit file and the job summary; raises GateFailed (exit 8) on a fail."""
    results, decision, gate = evaluate_saved(results_dir, settings)
    for row in gate.rows:
        say(f"{row.counts_as.upper():4} {row.condition:17} {row.outcome:12} {row.text}")
    if junit is not None:
        atomic_write_bytes(Path(junit), junit_xml(gate))
    summary = os.environ.get(SUMMARY_VARIABLE)
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(step_summary(results, gate, decision) + "\n")
    if not gate.passed:
        failed = gate.failures()
        raise GateFailed(f"gate failed: {len(failed)} of {len(gate.rows)} conditions against champion "
                         f"{gate.champion} ({failed[0].text})" + (f"; the JUnit file is {junit}" if junit else "")
                         + ".")
    say(f"gate passed: champion {gate.champion}, {len(gate.rows)} condition(s), verdict {Check.PASS}")
    return gate
