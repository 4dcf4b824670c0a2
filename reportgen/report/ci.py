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
from ..results.csv_files import write_csv
from ..scoring.differ import PairRole, Side, pair_difference
from ..scoring.gate import GateReport, Regression
from .decision_page import GATE_CONDITIONS, decision_page

SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"
FILES_NAMED = 5  # a failure's message names this many of the images the challenger newly gets wrong
NEWLY_WRONG_COLUMNS = ("challenger", "champion", "file", "label", "champion_prediction", "champion_confidence",
                       "challenger_prediction", "challenger_confidence")


def newly_wrong_file(junit: Path) -> Path:
    """The CSV beside the JUnit file: every image a challenger newly gets wrong (gate.xml -> gate.newly_wrong.csv)."""
    return Path(junit).with_name(Path(junit).stem + ".newly_wrong.csv")


def regression_text(regression: Optional[Regression], champion: str, listed_in: str = "") -> str:
    """How many images the challenger newly gets wrong and the first few by name ("" when none is labelled)."""
    if regression is None or not regression.labelled:
        return ""
    n, who = regression.newly_wrong, regression.display_name
    if not n:
        return (f"{who} gets no image wrong that {champion} gets right ({regression.newly_right} the other way, "
                f"of {regression.labelled} labelled for both)")
    named = ", ".join(regression.files[:FILES_NAMED]) + (f" and {n - FILES_NAMED} more" if n > FILES_NAMED else "")
    return (f"{who} newly gets {n} of the {regression.labelled} images labelled for both wrong that {champion} gets "
            f"right ({regression.newly_right} the other way): {named}"
            + (f" (all in {listed_in})" if listed_in else ""))


def _why_failed(row, settings: GateSettings) -> str:
    """Why a row that is not a plain fail counts as one ("" for a fail)."""
    if row.outcome == Check.NOT_MEASURED:
        return "; not measured counts as failed whatever on_uncertain says"
    if row.outcome == Check.UNCERTAIN:
        return ("; an uncertain constraint counts as failed" if row.condition == "constraints"
                else f"; on_uncertain = {settings.on_uncertain}")
    return ""


def junit_xml(gate: GateReport, listed_in: str = "") -> bytes:
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
            # the evidence to act on: which images the challenger newly gets wrong (issue 33)
            images = regression_text(gate.regression(row.challenger), gate.champion_display_name, listed_in)
            message = row.text + (f"; {images}" if images else "")
            failure = ElementTree.SubElement(case, "failure", type=row.outcome, message=message)
            failure.text = f"{message}\noutcome: {row.outcome}{_why_failed(row, gate.settings)}"
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
    regressions = tuple(line for line in (regression_text(r, gate.champion_display_name)
                                          for r in gate.regressions) if line)
    return markdown_environment().get_template("gate_summary.md.j2").render(page=page, decision=decision,
                                                                            regressions=regressions)


def newly_wrong_rows(results: SavedResults, gate: GateReport) -> tuple:
    """Per challenger, every image it newly gets wrong (:data:`NEWLY_WRONG_COLUMNS`), most confident first."""
    index = results.index
    entries = {b.name: b for b in index.backbones}
    champion = entries[gate.champion]
    rows = []
    for regression in gate.regressions:
        challenger = entries[regression.challenger]
        diff = pair_difference(index.images, Side(champion.name, champion.display_name, champion.predictions),
                               Side(challenger.name, challenger.display_name, challenger.predictions),
                               role=PairRole.GATE, own_task=index.own_task, level=gate.level, errors_shown=0)
        rows += [(challenger.name, champion.name, image.file, image.label, image.first_prediction,
                  image.first_confidence, image.second_prediction, image.second_confidence)
                 for image in diff.newly_wrong()]
    return tuple(rows)


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
        listed = newly_wrong_file(junit)
        atomic_write_bytes(Path(junit), junit_xml(gate, listed.name))
        write_csv(listed, NEWLY_WRONG_COLUMNS, newly_wrong_rows(results, gate))
    summary = os.environ.get(SUMMARY_VARIABLE)
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(step_summary(results, gate, decision) + "\n")
    if not gate.passed:
        failed = gate.failures()
        images = regression_text(gate.regression(failed[0].challenger), gate.champion_display_name)
        raise GateFailed(f"gate failed: {len(failed)} of {len(gate.rows)} conditions against champion "
                         f"{gate.champion} ({failed[0].text})" + (f"; {images}" if images else "")
                         + (f"; the JUnit file is {junit}, the images in {newly_wrong_file(junit)}" if junit else "")
                         + ".")
    say(f"gate passed: champion {gate.champion}, {len(gate.rows)} condition(s), verdict {Check.PASS}")
    return gate
