"""Issue 26: champion against challengers as a CI gate. The run's [gate] is judged on the decision's paired draws: a
copy of the champion never passes min_p_better and is uncertain (not failed) on an accuracy drop of zero; a damaged
copy fails as the challenger, and with the roles swapped the intact models pass; a failing constraint fails the gate;
exit 0 / 8; JUnit XML that junitparser reads back with the right counts; the GitHub job summary."""
import json

import pytest

from conftest import message_lines, run_cli


def _rows(out):
    return {(row["challenger"], row["condition"]): row
            for row in json.loads((out / "metrics.json").read_text())["gate"]["rows"]}


def test_a_copy_of_the_champion_never_passes_and_is_uncertain_on_an_accuracy_drop_of_zero(gate_run):
    rows = _rows(gate_run)
    twin_p = rows[("lite0-twin", "min_p_better")]
    assert twin_p["outcome"] != "pass" and twin_p["value"] < 0.9
    drop = rows[("lite0-twin", "max_accuracy_drop")]
    assert drop["outcome"] == "uncertain"  # exactly 0 in every draw: on the limit, neither above nor below it
    assert drop["value"] == 0.0 and drop["ci_low"] == drop["ci_high"] == 0.0
    assert rows[("lite0-twin", "constraints")]["outcome"] == "pass"


def test_a_damaged_challenger_fails_every_condition(gate_run):
    rows = _rows(gate_run)
    for condition in ("min_p_better", "max_accuracy_drop", "constraints"):
        assert rows[("lite0-new", condition)]["outcome"] == "fail", rows[("lite0-new", condition)]
    assert rows[("lite0-new", "min_p_better")]["value"] < 0.1
    assert rows[("lite0-new", "max_accuracy_drop")]["ci_high"] < 0
    assert "degenerate" in rows[("lite0-new", "constraints")]["text"]
    document = json.loads((gate_run / "metrics.json").read_text())["gate"]
    assert document["verdict"] == "fail" and document["champion"] == "lite0-stock"
    assert document["conditions"]["on_uncertain"] == "fail"
    page_one = (gate_run / "report.md").read_text().split("## 1 ")[0]
    assert "Gate FAILS" in page_one and "| challenger | condition |" in page_one


def test_the_gate_command_exits_8_and_writes_junit_that_ci_reads(gate_run, tmp_path, monkeypatch):
    from junitparser import Failure, JUnitXml

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit = tmp_path / "gate.xml"
    result = run_cli("gate", str(gate_run / "results"), "--junit", str(junit))
    assert result.exit_code == 8, result.output
    assert message_lines(result.output)[-1].startswith("reportgen: error: gate failed")
    rows = _rows(gate_run)
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    cases = list(suite)
    assert suite.tests == len(cases) == len(rows) == 6
    failed = [case for case in cases if any(isinstance(r, Failure) for r in case.result)]
    assert suite.failures == len(failed) == sum(1 for row in rows.values() if row["counts_as"] == "fail")
    damaged = [case for case in failed if case.classname == "reportgen.gate.lite0-new"]
    assert len(damaged) == 3
    message = next(r.message for case in damaged if case.name.startswith("max_accuracy_drop") for r in case.result)
    assert "points against" in message and "[" in message  # the numbers and their interval
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "Backbone decision" in text and "| challenger | condition |" in text


def test_with_the_roles_swapped_the_intact_models_pass(gate_run, tmp_path):
    swapped = tmp_path / "swapped.toml"
    swapped.write_text('[gate]\nchampion = "lite0-new"\nmin_p_better = 0.9\nmax_accuracy_drop = 0.0\n'
                       'constraints = "pass"\n')
    result = run_cli("gate", str(gate_run), "--config", str(swapped), "--junit", str(tmp_path / "ok.xml"))
    assert result.exit_code == 0, result.output
    assert "gate passed: champion lite0-new" in result.output
    from junitparser import JUnitXml

    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "ok.xml"))))
    assert suite.tests == 6 and suite.failures == 0


def test_a_failing_constraint_fails_the_gate(gate_run, tmp_path):
    only_constraints = tmp_path / "constraints.toml"
    only_constraints.write_text('[gate]\nchampion = "lite0-stock"\nconstraints = "pass"\n')
    result = run_cli("gate", str(gate_run), "--config", str(only_constraints))
    assert result.exit_code == 8, result.output  # lite0-new fails min_top1 (and is degenerate)
    assert "lite0-new" in message_lines(result.output)[-1]
    twin_only = tmp_path / "twin.toml"
    twin_only.write_text('[gate]\nchampion = "lite0-stock"\nconstraints = "pass"\nmax_accuracy_drop = 0.01\n')
    # the twin passes both; the damaged one still fails: one failing challenger fails the gate
    assert run_cli("gate", str(gate_run), "--config", str(twin_only)).exit_code == 8


def test_run_with_gate_exits_8_after_writing_the_report(gate_battery, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", "--config", str(gate_battery), "--quiet", "--format", "md", "--out", str(out), "--gate",
                     "--junit", str(tmp_path / "run.xml"))
    assert result.exit_code == 8, result.output
    assert (out / "report.md").is_file() and (tmp_path / "run.xml").is_file()


@pytest.mark.parametrize("table, expected", [
    ('champion = "x"\n', "give at least one condition"),
    ('champion = "x"\nmin_p_better = 0.3\n', "min_p_better"),
    ('champion = "x"\nconstraints = "maybe"\n', "choose pass or ignore"),
    ('champion = "x"\nconstraints = "pass"\non_uncertain = "ask"\n', "choose fail or pass"),
    ('champoin = "x"\n', "did you mean 'champion'"),
])
def test_a_gate_table_that_cannot_be_right_is_one_line(tmp_path, table, expected):
    path = tmp_path / "bad.toml"
    path.write_text("[gate]\n" + table)
    result = run_cli("run", "--config", str(path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and expected in lines[0], result.output


def test_a_champion_that_is_not_a_candidate_is_one_line(gate_run, tmp_path):
    path = tmp_path / "unknown.toml"
    path.write_text('[gate]\nchampion = "resnet50-prod"\nconstraints = "pass"\n')
    result = run_cli("gate", str(gate_run), "--config", str(path))
    assert result.exit_code == 2 and "lite0-stock" in message_lines(result.output)[0], result.output
