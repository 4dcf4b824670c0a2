"""Benchmark: what the user's own task adds to a run (issue 25): the pooled-feature pass, the linear probe's
cross-validation, the k-NN and LogME, against the rest of the same run.

    python bench/own_task.py                    # 1000 images in 5 user-named class folders, EfficientNet-Lite0
    python bench/own_task.py --count 200 --repeats 3 --backbone efficientnet_lite0

Builds the set with tools/synthetic_set.py (layout ``own``: folders named by a user, no ImageNet name), runs
`reportgen run --backbone B --images SET --format json --fresh` in a fresh process, and reads the run's
results/timings.json: ``task_head_s`` (the explaining head's features and fit) plus ``probe_s`` (the cross-validated
probe, k-NN and LogME on the features the CAM pass kept) against the rest of the run's wall time, measured in the
same run (side by side, whatever the machine's speed). ``--against-imagenet`` also runs the same images as ImageNet
class folders (no probe), interleaved, and prints the wall-time ratio (noisier: two runs). With --repeats it runs again and quotes the median. The last line is exactly
  own_task_share_of_run=<x> task_head_s=<s> run_s=<t> images=<n>
Target (issue 25): own_task_share_of_run <= 0.10 at 1000 images.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import synthetic_set  # noqa: E402


def _as_imagenet(images: Path, target: Path) -> Path:
    """The same files, their folders renamed to the ImageNet classes they hold (WordNet ids): a run whose only
    difference is the label space."""
    import shutil

    wnid_of = {own: wnid for wnid, own in synthetic_set.OWN_NAMES.items()}
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        shutil.copytree(folder, target / wnid_of[folder.name])
    return target


def one_run(images: Path, out: Path, backbone: str) -> dict:
    command = [sys.executable, "-m", "reportgen.cli", "run", "--backbone", backbone, "--images", str(images),
               "--out", str(out), "--quiet", "--format", "json", "--fresh"]
    started = time.perf_counter()
    done = subprocess.run(command, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run failed: {done.stderr[-2000:]}")
    timings = json.loads((out / "results" / "timings.json").read_text())
    stages = timings["backbones"][backbone]
    stages = {**stages, "scoring_s": timings.get("scoring_s", 0.0),
              "render_s": sum(v for v in timings.get("render", {}).values() if isinstance(v, float))}
    return {"wall_s": wall, "task_head_s": stages.get("task_head_s", 0.0) + stages.get("probe_s", 0.0),
            "stages": {k: round(v, 2) for k, v in stages.items() if isinstance(v, float)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--against-imagenet", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        images = synthetic_set.build(Path(work) / "val", args.count, "own", seed=args.count)
        imagenet = _as_imagenet(images, Path(work) / "imagenet") if args.against_imagenet else None
        runs, ratios = [], []
        for number in range(args.repeats):
            if imagenet is not None:
                plain = one_run(imagenet, Path(work) / f"in{number}", args.backbone)
            found = one_run(images, Path(work) / f"out{number}", args.backbone)
            if imagenet is not None:
                ratios.append(found["wall_s"] / plain["wall_s"])
                print(f"run {number + 1}: ImageNet folders {plain['wall_s']:.1f} s, own classes {found['wall_s']:.1f} s "
                      f"({ratios[-1]:.3f}x); ImageNet stages {plain['stages']}")
            share = found["task_head_s"] / (found["wall_s"] - found["task_head_s"])
            print(f"run {number + 1}: {args.count} images, wall {found['wall_s']:.1f} s, task head "
                  f"{found['task_head_s']:.1f} s (+{100 * share:.1f} % of the rest), stages {found['stages']}")
            runs.append((share, found))
    share = statistics.median(s for s, _ in runs)
    task = statistics.median(f["task_head_s"] for _, f in runs)
    wall = statistics.median(f["wall_s"] for _, f in runs)
    if ratios:
        print(f"median wall ratio, own classes / ImageNet folders: {statistics.median(ratios):.3f}")
    print(f"own_task_share_of_run={share:.3f} task_head_s={task:.1f} run_s={wall:.1f} images={args.count}")


if __name__ == "__main__":
    main()
