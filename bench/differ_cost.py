"""Benchmark: what "Where they differ" (issue 33) adds to `reportgen render`.

    python bench/differ_cost.py RESULTS_DIR                 # html,pdf; 5 renders each way, interleaved
    python bench/differ_cost.py RESULTS_DIR --repeats 7 --formats html

Renders the saved results into a scratch folder with the section and without it (the pairs left empty, so
nothing of the section is computed, drawn or laid out), alternating, and prints the median wall and CPU time
(the process's, which a busy machine disturbs less than wall time) of each and their ratios. The last line is
exactly: with=<s> without=<s> ratio=<x.xxx> cpu_with=<s> cpu_without=<s> cpu_ratio=<x.xxx>
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a run's results folder (results.json and backbones/)")
    parser.add_argument("--repeats", type=int, default=5, help="renders each way (default 5)")
    parser.add_argument("--formats", default="html,pdf", help="formats rendered (default html,pdf)")
    args = parser.parse_args()

    from reportgen.report import context
    from reportgen.report.render import render_report
    from reportgen.scoring.differ import Differences

    with_section = context.run_differences

    def without_section(*_args, **_kwargs):
        return Differences(())

    times = {"with": [], "without": []}
    cpu = {"with": [], "without": []}
    formats = tuple(args.formats.split(","))
    with tempfile.TemporaryDirectory() as scratch:
        render_report(args.results, Path(scratch) / "warm", formats)  # imports, fonts, caches
        for repeat in range(args.repeats):
            for label in (("with", "without") if repeat % 2 == 0 else ("without", "with")):
                context.run_differences = with_section if label == "with" else without_section
                start, start_cpu = time.perf_counter(), time.process_time()
                render_report(args.results, Path(scratch) / label, formats)
                times[label].append(time.perf_counter() - start)
                cpu[label].append(time.process_time() - start_cpu)
        context.run_differences = with_section
    with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
    cpu_with, cpu_without = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    for name, found in (("wall", times), ("cpu", cpu)):
        print(f"{name} " + " ".join(f"{label}: " + ", ".join(f"{t:.2f}" for t in values)
                                    for label, values in found.items()))
    print(f"with={with_s:.2f} without={without_s:.2f} ratio={with_s / without_s:.3f} cpu_with={cpu_with:.2f} "
          f"cpu_without={cpu_without:.2f} cpu_ratio={cpu_with / cpu_without:.3f}")


if __name__ == "__main__":
    main()
