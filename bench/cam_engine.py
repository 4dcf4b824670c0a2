"""Benchmark: reportgen's one-pass CAM engine vs forward-only and vs pytorch-grad-cam used the usual way.

    python bench/cam_engine.py                      # paper preset, random weights, 8 images, 3 repeats
    python bench/cam_engine.py --images 16 --repeats 5 --skip-end-to-end

For each backbone, in one process and interleaved (forward, naive, engine, forward, naive, ...):
  forward  -- model(batch) under no_grad, eval mode;
  naive    -- one pytorch_grad_cam.GradCAM object per depth layer (3 layers), each run on the batch;
  engine   -- reportgen.analysis.engine.analyse_backbone over the same 3 layers (one forward + one backward).
The maps of naive and engine must agree (Pearson r >= 0.99 per image, or both all-zero).
The last line is exactly: engine_vs_naive=<x.xx> engine_vs_forward=<y.yy>
(sums over backbones of median times: naive / engine and engine / forward).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from reportgen.inputs import registry  # noqa: E402
from reportgen.analysis.engine import analyse_backbone, tokens_to_map  # noqa: E402
from reportgen.inputs.decoding import load_rgb  # noqa: E402
from reportgen.inputs.images import default_image_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def image_batch(backbone, count: int) -> torch.Tensor:
    """``count`` curated images (cycled) through the backbone's own transform."""
    cfg = timm.models.get_pretrained_cfg(backbone.timm_id)
    data_config = timm.data.resolve_data_config(pretrained_cfg=cfg.to_dict())
    transform = timm.data.create_transform(**data_config)
    files = sorted(p for p in default_image_dir().iterdir() if p.suffix == ".png")
    return torch.stack([transform(load_rgb(files[i % len(files)])) for i in range(count)])


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def forward_only(model, batch):
    with torch.no_grad():
        return model(batch)


def naive_gradcam(model, batch, layers, targets):
    modules = dict(model.named_modules())
    reshape = (lambda t: tokens_to_map(model, t)) if hasattr(model, "patch_embed") else None
    maps = {}
    for layer in layers:
        with GradCAM(model=model, target_layers=[modules[layer]], reshape_transform=reshape) as cam:
            maps[layer] = cam(batch, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    model.zero_grad(set_to_none=True)
    return maps


def engine(model, batch, layers, batch_size):
    chunks = [batch[i:i + batch_size] for i in range(0, len(batch), batch_size)]
    return analyse_backbone(model, chunks, layers, [None] * len(batch))


def agreement(ours, reference, layers, size) -> float:
    worst = 1.0
    for layer in layers:
        mine = scale_cam_image(ours.layer(layer).cam, size)
        for a, b in zip(mine, reference[layer]):
            if a.std() == 0 or b.std() == 0:
                worst = min(worst, 1.0 if np.allclose(a, b, atol=1e-6) else 0.0)
                continue
            worst = min(worst, float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
    return worst


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


STREAM_SCRIPT = """
import resource, sys, timm, torch
from reportgen.analysis.engine import analyse_backbone
torch.manual_seed(0)
model = timm.create_model("resnet50", pretrained=False).eval()
batches = (torch.randn(8, 3, 224, 224) for _ in range(int(sys.argv[1])))
analyse_backbone(model, batches, ["layer2", "layer3", "layer4", "layer4.2.conv2", "layer4.2.conv3", "fc"],
                 [None] * 8 * int(sys.argv[1]), cka_layers=("layer4.2.conv2", "layer4.2.conv3", "fc"))
# VmHWM belongs to this process image (ru_maxrss would carry over the parent's peak across exec).
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024)
"""


def memory_growth(small: int = 2, large: int = 8) -> tuple[float, float]:
    """Peak RSS (MiB) of the engine on ResNet50 streaming `small` and `large` batches of 8 images."""
    peaks = []
    for count in (small, large):
        done = subprocess.run([sys.executable, "-c", STREAM_SCRIPT, str(count)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"memory check failed: {done.stderr.strip()[-400:]}")
        peaks.append(float(done.stdout.strip().splitlines()[-1]))
    return peaks[0], peaks[1]


def end_to_end(preset: str, weights: str, device: str) -> dict:
    """Wall time of the CLI run (fresh, HTML + PDF) and of `reportgen render` on its results."""
    out = Path(tempfile.mkdtemp(prefix="reportgen-bench-")) / "out"
    exe = [sys.executable, "-m", "reportgen.cli"]
    timer = ["/usr/bin/time", "-f", "%M", "-o", str(out.parent / "rss.txt")] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    run = subprocess.run(timer + exe + ["run", "--preset", preset, "--weights", weights, "--out", str(out),
                                        "--quiet", "--device", device, "--fresh", "--json"],
                         capture_output=True, text=True)
    run_s = time.perf_counter() - start
    run_rss = int((out.parent / "rss.txt").read_text().split()[-1]) / 1024 if timer else None
    if run.returncode != 0:
        raise SystemExit(f"reportgen run failed ({run.returncode}): {run.stderr.strip()[-400:]}")
    start = time.perf_counter()
    render = subprocess.run(exe + ["render", str(out / "results"), "--out", str(out.parent / "again")],
                            capture_output=True, text=True)
    render_s = time.perf_counter() - start
    if render.returncode != 0:
        raise SystemExit(f"reportgen render failed: {render.stderr.strip()[-400:]}")
    rss = subprocess.run(["/usr/bin/time", "-f", "%M"] + exe + ["render", str(out / "results"), "--out",
                                                                 str(out.parent / "again2")],
                         capture_output=True, text=True) if Path("/usr/bin/time").exists() else None
    return {"run_s": run_s, "render_s": render_s, "summary": json.loads(run.stdout), "run_peak_rss_mib": run_rss,
            "render_peak_rss_mib": int(rss.stderr.strip().splitlines()[-1]) / 1024 if rss and rss.returncode == 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--weights", default="random", choices=["random"],
                        help="random init (the paper's weights need the hub; timing does not depend on them)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-end-to-end", action="store_true", help="only the per-backbone engine comparison")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians of fewer are not worth quoting)")

    print(f"machine: {os.cpu_count()} CPU threads, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"timm {timm.__version__}, device {args.device}")
    # Subprocess measurements first, while this process is small: a child's peak RSS as reported by
    # wait4 starts from its parent's at fork time.
    streaming = memory_growth()
    found = None if args.skip_end_to_end else end_to_end(args.preset, args.weights, args.device)
    rows = []
    for backbone in registry.preset(args.preset):
        torch.manual_seed(0)
        model = timm.create_model(backbone.architecture, pretrained=False).eval().to(args.device)
        batch = image_batch(backbone, args.images).to(args.device)
        layers = list(backbone.depth_layers.values())
        times = {"forward": [], "naive": [], "engine": []}
        # One untimed round warms allocators and caches.
        forward_only(model, batch)
        ours = engine(model, batch, layers, args.batch_size)
        worst = None
        for _ in range(args.repeats):
            t, _ = timed(lambda: forward_only(model, batch))
            times["forward"].append(t)
            t, reference = timed(lambda: naive_gradcam(model, batch, layers, ours.targets))
            times["naive"].append(t)
            t, ours = timed(lambda: engine(model, batch, layers, args.batch_size))
            times["engine"].append(t)
            worst = agreement(ours, reference, layers, tuple(batch.shape[-2:][::-1]))
        if worst < 0.99:
            raise SystemExit(f"{backbone.name}: engine and pytorch-grad-cam maps disagree (worst r={worst:.4f})")
        medians = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: (min(v), max(v)) for k, v in times.items()}
        rows.append((backbone.name, medians, spread, worst))
        del model

    n = args.images
    print(f"\nper image, seconds (median of {args.repeats}; [min, max]); {n} images, batch {args.batch_size}")
    print(f"{'backbone':14} {'forward':>22} {'naive 3 layers':>22} {'engine':>22} {'naive/eng':>9} {'eng/fwd':>8} {'min r':>6}")
    for name, med, spread, worst in rows:
        cells = [f"{med[k] / n:.3f} [{spread[k][0] / n:.3f}, {spread[k][1] / n:.3f}]" for k in ("forward", "naive", "engine")]
        print(f"{name:14} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22} "
              f"{med['naive'] / med['engine']:9.2f} {med['engine'] / med['forward']:8.2f} {worst:6.3f}")
    total = {k: sum(med[k] for _, med, _, _ in rows) for k in ("forward", "naive", "engine")}
    print(f"{'sum':14} {total['forward'] / n:22.3f} {total['naive'] / n:22.3f} {total['engine'] / n:22.3f}")
    print(f"peak RSS of this benchmark process: {peak_rss_mib():.0f} MiB")
    small, large = streaming
    print(f"streaming: ResNet50 engine peak RSS {small:.0f} MiB for 16 images, {large:.0f} MiB for 64 images "
          f"(ratio {large / small:.2f}; 1.00 = memory does not grow with the image count)")

    if found is not None:
        print(f"end to end: reportgen run --preset {args.preset} --weights {args.weights} (fresh, HTML + PDF): "
              f"{found['run_s']:.1f} s (target <= 60); reportgen render: {found['render_s']:.1f} s (target <= 10); "
              f"peak RSS: run {found['run_peak_rss_mib'] or float('nan'):.0f} MiB, "
              f"render {found['render_peak_rss_mib'] or float('nan'):.0f} MiB")
        stages = found["summary"]["timings"]
        print("  stages: " + "; ".join(f"{name} " + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in t.items() if k.endswith("_s"))
                                       for name, t in stages["backbones"].items())
              + f"; scoring {stages.get('scoring_s', 0):.1f}; render " +
              ", ".join(f"{k[:-2]} {v:.1f}" for k, v in stages.get("render", {}).items()))
        measured = {stage: sum(t.get(f"{stage}_s", 0.0) for t in stages["backbones"].values())
                    for stage in ("cost", "slimming")}
        print(f"  decision measurements: latency/throughput/memory {measured['cost']:.1f} s "
              f"({100 * measured['cost'] / found['run_s']:.0f} % of the run), slimming {measured['slimming']:.1f} s "
              f"({100 * measured['slimming'] / found['run_s']:.0f} %)")
    print(f"engine_vs_naive={total['naive'] / total['engine']:.2f} "
          f"engine_vs_forward={total['engine'] / total['forward']:.2f}")


if __name__ == "__main__":
    main()
