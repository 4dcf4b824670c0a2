"""Benchmark: the overhead of `--executor ray` on this machine (a local Ray instance, no extra hardware).

    python bench/ray_overhead.py                 # lite preset, curated set, 3 interleaved repeats
    python bench/ray_overhead.py --repeats 1

Runs `reportgen run --preset lite --fresh --format html,pdf` in a fresh process, interleaved: single-process,
`--executor ray` with the default shard size (one task per backbone here), and `--executor ray --shard-size 8`
(three tasks per backbone); Ray start-up and shut-down included. Prints the medians; the last line is exactly
  ray_vs_single=<x.xx> ray_small_shards_vs_single=<y.yy>
(target for the first <= 1.5 on a 2-core machine: with no more cores than one process uses, Ray can only add
overhead; each extra shard of a backbone repeats its model load, weight statistics and FLOP count. On several
nodes the shards run in parallel and the time falls with the number of workers).
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
    args = parser.parse_args()
    single, ray, small = [], [], []
    with tempfile.TemporaryDirectory(prefix="reportgen-ray-bench-") as tmp:
        for repeat in range(args.repeats):
            single.append(timed_run(Path(tmp) / "single", []))
            ray.append(timed_run(Path(tmp) / "ray", ["--executor", "ray"]))
            small.append(timed_run(Path(tmp) / "small", ["--executor", "ray", "--shard-size", "8"]))
            print(f"repeat {repeat + 1}: single {single[-1]:.1f} s, ray {ray[-1]:.1f} s, ray with 8-image shards "
                  f"{small[-1]:.1f} s", flush=True)
    base = statistics.median(single)
    print(f"median: single {base:.1f} s, ray {statistics.median(ray):.1f} s, ray with 8-image shards "
          f"{statistics.median(small):.1f} s")
    print(f"ray_vs_single={statistics.median(ray) / base:.2f} "
          f"ray_small_shards_vs_single={statistics.median(small) / base:.2f}")


if __name__ == "__main__":
    main()
