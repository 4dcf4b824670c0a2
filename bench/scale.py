"""Benchmark: how reportgen scales with the user's image set (offline, real Lite weights).

    python bench/scale.py                       # 50, 200 and 1000 images, lite preset (three backbones)
    python bench/scale.py --sizes 50 200 --backbone tf_efficientnet_lite0

Builds class-folder image sets with tools/synthetic_set.py (crops, flips, colour changes of the curated photos;
no downloads), runs `reportgen run --preset lite --images SET --format html,pdf` on each in a fresh process and
prints per size: seconds per image, peak RSS of the run, HTML MB, PDF pages. The last line is exactly
  s_per_image_1000_vs_50=<x> html_mb_1000=<y> pdf_pages_1000=<n> rss_gb_1000=<z>
(with the largest and smallest sizes given, when they are not 1000 and 50). Targets (issue 12): seconds per image
at 1000 <= 1.1 x at 50; at 1000 images and three backbones HTML <= 15 MB, PDF <= 40 pages, peak RSS <= 2.5 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import synthetic_set  # noqa: E402

# Runs the command and prints the peak RSS of its process tree (KiB): a fresh wrapper per run, so the
# maximum is this run's alone.
MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print('maxrss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(code)")


def pdf_pages(path: Path) -> int:
    from pypdf import PdfReader  # weasyprint depends on pydyf, not pypdf: fall back to counting page objects

    return len(PdfReader(str(path)).pages)


def count_pages(path: Path) -> int:
    try:
        return pdf_pages(path)
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


def run_size(count: int, work: Path, backbones: list[str]) -> dict:
    images = synthetic_set.build(work / f"set{count}", count, "wnid", seed=count)
    out = work / f"out{count}"
    command = [sys.executable, "-m", "reportgen.cli", "run", "--preset", "lite", "--images", str(images),
               "--out", str(out), "--quiet", "--format", "html,pdf", "--fresh"]
    for backbone in backbones:
        command += ["--backbone", backbone]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE] + command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"run on {count} images failed:\n{done.stderr[-2000:]}")
    rss_kib = int(re.search(r"maxrss_kib (\d+)", done.stderr).group(1))
    timings = json.loads((out / "results" / "timings.json").read_text())
    return {"images": count, "seconds": seconds, "s_per_image": seconds / count, "rss_gb": rss_kib / 2 ** 20,
            "html_mb": (out / "report.html").stat().st_size / 2 ** 20, "pdf_pages": count_pages(out / "report.pdf"),
            "render_s": sum(timings.get("render", {}).values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--backbone", action="append", default=[], help="replace the lite preset's three backbones")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    with tempfile.TemporaryDirectory(prefix="reportgen-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for count in sizes:
            row = run_size(count, work, args.backbone)
            rows.append(row)
            print(f"{count:5d} images: {row['seconds']:7.1f} s, {row['s_per_image']:.3f} s/image, peak RSS "
                  f"{row['rss_gb']:.2f} GB, HTML {row['html_mb']:.2f} MB, PDF {row['pdf_pages']} pages "
                  f"(render {row['render_s']:.1f} s)", flush=True)
    small, large = rows[0], rows[-1]
    n_small, n_large = small["images"], large["images"]
    print(f"s_per_image_{n_large}_vs_{n_small}={large['s_per_image'] / small['s_per_image']:.2f} "
          f"html_mb_{n_large}={large['html_mb']:.2f} pdf_pages_{n_large}={large['pdf_pages']} "
          f"rss_gb_{n_large}={large['rss_gb']:.2f}")


if __name__ == "__main__":
    main()
