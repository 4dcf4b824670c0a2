"""Issue 32, defect 7: the timing stage runs after every analysis, on this machine, and times every candidate in
``latency_sessions`` sessions interleaved across the candidates, each session starting one candidate later (A B C,
B C A, C A B ...: a drift within a session does not favour one candidate in every session); cost.json keeps each
session's passes with its session and its place in the timing order."""
import json

from conftest import run_cli

PAIR = ("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--backbone", "efficientnet_lite1",
        "--batch-size", "1", "--format", "json")


def test_latency_is_timed_after_the_analyses_in_interleaved_sessions(tmp_path, small_image_dir, fast_battery):
    out = tmp_path / "out"
    result = run_cli(*PAIR, "--config", str(fast_battery), "--images", str(small_image_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first_session = next(i for i, line in enumerate(lines) if "latency session 1 of" in line)
    analysed = [i for i, line in enumerate(lines) if ": done in " in line]
    assert len(analysed) == 2 and max(analysed) < first_session  # both analyses finished before any timing
    cost = json.loads((out / "results" / "cost.json").read_text())["backbones"]
    order = sorted((s["position"], name, s["session"]) for name, c in cost.items() for s in c["latency_sessions"])
    assert [p for p, _, _ in order] == list(range(6))
    assert [(name, session) for _, name, session in order] == [
        ("efficientnet_lite0", 0), ("efficientnet_lite1", 0), ("efficientnet_lite1", 1), ("efficientnet_lite0", 1),
        ("efficientnet_lite0", 2), ("efficientnet_lite1", 2)]
    for c in cost.values():
        passes = [v for s in c["latency_sessions"] for v in s["samples_ms"]]
        assert c["latency_ms_samples"] == passes and all(len(s["samples_ms"]) >= 2 for s in c["latency_sessions"])
    decision = json.loads((out / "metrics.json").read_text())["decision"]
    ratios = {c["backbone"]: c["latency_vs_fastest"] for c in decision["candidates"]}
    assert sorted(r["value"] for r in ratios.values())[0] == 1.0
    slower = max(ratios.values(), key=lambda r: r["value"])
    assert slower["ci_low"] <= slower["value"] <= slower["ci_high"]

    # an unchanged battery reuses the analyses and the sessions timed with exactly these candidates
    again = run_cli(*PAIR, "--config", str(fast_battery), "--images", str(small_image_dir), "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "reusing the 3 sessions" in again.output and "latency session 1 of" not in again.output
    assert json.loads((out / "results" / "cost.json").read_text())["backbones"] == cost
    assert {c["latency_budget_s"] for c in cost.values()} == {0.2}  # the fast battery's budget, not the default 1 s

    # another timing budget times every candidate again (the analyses are still reused)
    longer = tmp_path / "longer.toml"
    longer.write_text(fast_battery.read_text().replace("latency_budget_s = 0.2", "latency_budget_s = 0.3"))
    retimed = run_cli(*PAIR, "--config", str(longer), "--images", str(small_image_dir), "--out", str(out))
    assert retimed.exit_code == 0, retimed.output
    assert "latency session 1 of 3" in retimed.output and "reusing the 3 sessions" not in retimed.output
    assert retimed.output.count("unchanged since the last run, reusing") == 2
    assert "or for 0.1 s" in retimed.output  # 0.3 s split over 3 sessions
    assert {c["latency_budget_s"] for c in json.loads((out / "results" / "cost.json").read_text())[
        "backbones"].values()} == {0.3}
