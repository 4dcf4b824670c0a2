"""Benchmark: the end-to-end run-time target (issue 11), side by side with a baseline commit.

    python bench/run_time.py                          # this tree, 3 repeats
    python bench/run_time.py --baseline f5261f0       # ... interleaved with the code before the decision
    python bench/run_time.py --repeats 5 --preset lite --weights pretrained

Runs `reportgen run --preset paper --weights random --format html,pdf --fresh` in a fresh process per repeat
(imports included, as a user runs it) and prints per variant the median wall time, peak RSS and, for this tree,
the stages from timings.json: the decision's measurements (latency / throughput / memory, slimming) and their
share of the run. With --baseline REF, REF is checked out into a temporary git worktree and run by the same
interpreter, alternating with this tree, so both see the same machine load. The last line is exactly
  run_s=<median> baseline_s=<median> run_vs_baseline=<ratio> cost_share=<fraction> slimming_share=<fraction>
(the baseline fields are absent without --baseline). Target: run_s <= 60 on 2 CPU cores; the machine of the
README figures is slower than that target's, so compare with the baseline measured beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Runs the command and prints the peak RSS of its process tree (KiB): a fresh wrapper per run.
MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(code)")


def checkout(ref: str, work: Path) -> Path:
    """REF as an importable tree: a git worktree with templates/ placed where the installed package has them."""
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    if (tree / "templates").is_dir() and not (tree / "reportgen" / "templates").exists():
        shutil.copytree(tree / "templates", tree / "reportgen" / "templates")
        (tree / "reportgen" / "templates" / "__init__.py").touch()
    return tree


def run_once(tree: Path, out: Path, args) -> dict:
    command = [sys.executable, "-m", "reportgen.cli", "run", "--preset", args.preset, "--weights", args.weights,
               "--out", str(out), "--format", "html,pdf", "--fresh", "--quiet"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if tree != REPO:  # this tree is the installed one; a baseline is put first on the path
        env["PYTHONPATH"] = str(tree)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE] + command, env=env, capture_output=True, text=True,
                          cwd=str(tree))
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rss = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("maxrss_kib"))
    timings_file = out / "results" / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    shutil.rmtree(out, ignore_errors=True)
    return {"s": seconds, "rss_gib": rss / 2 ** 20, "timings": timings}


def stage_sum(timings: dict, stage: str) -> float:
    total = sum(t.get(f"{stage}_s", 0.0) for t in timings.get("backbones", {}).values())
    # since issue 32 latency is timed after the analyses, every backbone in interleaved sessions: one stage
    return total + (timings.get("latency_sessions_s", 0.0) if stage == "cost" else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="a git ref to run side by side (e.g. f5261f0, before the decision)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="reportgen-runtime-"))
    trees = {"this tree": REPO}
    try:
        if args.baseline:
            trees[f"baseline {args.baseline}"] = checkout(args.baseline, work)
        found: dict = {name: [] for name in trees}
        for repeat in range(args.repeats):
            order = list(trees.items()) if repeat % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                found[name].append(run_once(tree, work / "out", args))
                print(f"repeat {repeat + 1}: {name}: {found[name][-1]['s']:.1f} s, "
                      f"peak RSS {found[name][-1]['rss_gib']:.2f} GiB", flush=True)
    finally:
        if args.baseline:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / "baseline")],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nreportgen run --preset {args.preset} --weights {args.weights}, HTML + PDF, {args.repeats} repeats "
          "(medians; [min, max])")
    medians = {}
    for name, runs in found.items():
        seconds = [r["s"] for r in runs]
        medians[name] = statistics.median(seconds)
        print(f"  {name:28} {medians[name]:6.1f} s [{min(seconds):.1f}, {max(seconds):.1f}]  "
              f"peak RSS {statistics.median(r['rss_gib'] for r in runs):.2f} GiB")
    ours = found["this tree"]
    stages = {stage: statistics.median(stage_sum(r["timings"], stage) for r in ours)
              for stage in ("cam_and_features", "cost", "slimming", "flops", "load", "weights", "sanity")}
    render = {key: statistics.median(r["timings"].get("render", {}).get(key, 0.0) for r in ours)
              for key in ("figures_s", "html_s", "pdf_s")}
    print("  this tree, stages (sums over backbones, medians): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items())
          + "; render: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in render.items()))
    run_s = medians["this tree"]
    cost_share, slim_share = stages["cost"] / run_s, stages["slimming"] / run_s
    print(f"  decision measurements: latency/throughput/memory {stages['cost']:.1f} s ({100 * cost_share:.0f} %), "
          f"slimming {stages['slimming']:.1f} s ({100 * slim_share:.0f} %)")
    line = f"run_s={run_s:.1f}"
    if args.baseline:
        base = medians[f"baseline {args.baseline}"]
        line += f" baseline_s={base:.1f} run_vs_baseline={run_s / base:.2f}"
    print(line + f" cost_share={cost_share:.2f} slimming_share={slim_share:.2f}")


if __name__ == "__main__":
    main()
