"""Benchmark: the overhead of `--executor ray` on this machine (a local Ray instance, no extra hardware).

    python bench/ray_overhead.py                 # lite preset, curated set, 3 interleaved repeats
    python bench/ray_overhead.py --repeats 1 --shard-size 8

Runs `reportgen run --preset lite --fresh --format html,pdf` in a fresh process, alternately single-process and
with `--executor ray` (Ray start-up and shut-down included), and prints the medians. The last line is exactly
  ray_vs_single=<x.xx>
(target <= 1.5 on a 2-core machine: with no more cores than one process uses, Ray can only add overhead; on
several nodes the shards run in parallel and the ratio falls with the number of workers).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(out: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "reportgen.cli", "run", "--preset", "lite", "--out", str(out), "--fresh",
               "--quiet", "--format", "html,pdf", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=8, help="images per Ray task (default: 3 per backbone)")
    args = parser.parse_args()
    single, ray = [], []
    with tempfile.TemporaryDirectory(prefix="reportgen-ray-bench-") as tmp:
        for repeat in range(args.repeats):
            single.append(timed_run(Path(tmp) / "single", []))
            ray.append(timed_run(Path(tmp) / "ray", ["--executor", "ray", "--shard-size", str(args.shard_size)]))
            print(f"repeat {repeat + 1}: single {single[-1]:.1f} s, ray {ray[-1]:.1f} s", flush=True)
    print(f"median: single {statistics.median(single):.1f} s, ray {statistics.median(ray):.1f} s "
          f"(shard size {args.shard_size})")
    print(f"ray_vs_single={statistics.median(ray) / statistics.median(single):.2f}")


if __name__ == "__main__":
    main()
