"""The cost of "Your data" (scoring/datacheck.py) alone, on synthetic feature matrices: N images x 1,280 features
(Lite0's pooled width) for each of C candidates, with 1 % of the images planted as near-copies, plus held-out
probabilities over 10 classes for cleanlab. No model runs.

    python bench/datacheck.py --images 1000 10000 --candidates 3 --repeats 3

Prints the median seconds of ``check_data`` per size (and of the near-duplicate search alone) and the peak extra
memory of the similarity blocks."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def synthetic_run(n: int, candidates: int, dim: int = 1280, classes: int = 10, seed: int = 0):
    from test_datacheck import _backbone, _entry  # noqa: E402 -- the unit tests' hand-made records

    from reportgen.inputs.config import AnalysisConfig
    from reportgen.inputs.label_space import NamesSource, own_space
    from reportgen.results import arrays as keys
    from reportgen.results.schema import SCHEMA_VERSION, ImageSetInfo, RunIndex
    import test_datacheck

    rng = np.random.default_rng(seed)
    names = tuple(f"class{k}" for k in range(classes))
    test_datacheck.NAMES = names  # the hand-made records name classes from this tuple
    labels = [i % classes for i in range(n)]
    images = tuple(_entry(i, labels[i], f"{i:064x}") for i in range(n))
    arrays = {}
    copies = rng.choice(n, size=max(1, n // 100), replace=False)  # 1 %: near-copies of the next image
    moved = rng.choice(n, size=max(1, n // 100), replace=False)  # 1 %: labels moved to the next class
    for c in range(candidates):
        x = rng.normal(size=(n, dim)).astype(np.float32)
        x[copies] = x[(copies + 1) % n] + 0.02 * rng.normal(size=(copies.size, dim)).astype(np.float32)
        probs = rng.dirichlet(np.ones(classes), size=n)
        shown = np.array(labels)
        shown[moved] = (shown[moved] + 1) % classes  # what the images show; the labels say i % classes
        probs[np.arange(n), shown] += 1.0
        probs /= probs.sum(axis=1, keepdims=True)
        arrays[f"c{c}"] = {keys.PRELOGITS: x, keys.LOGITS: np.log(probs).astype(np.float32)}
    config = AnalysisConfig(bootstrap_samples=20)
    index = RunIndex(schema_version=SCHEMA_VERSION, versions={}, config=config, seed=0, weights_mode="pretrained",
                     device="cpu", image_set=ImageSetInfo("t", "", n), images=images, skipped_images=(),
                     backbones=tuple(_backbone(f"c{c}", labels) for c in range(candidates)),
                     timings_file="timings.json", battery_file={},
                     label_space=own_space(names, NamesSource.FOLDERS))
    return index, arrays, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from reportgen.scoring.datacheck import check_data, near_duplicates, _features
    from reportgen.results import arrays as keys

    import cleanlab.filter  # noqa: F401 -- its import (pandas, scikit-learn) timed apart
    for n in args.images:
        index, arrays, config = synthetic_run(n, args.candidates)
        whole, near, cpu = [], [], []
        for _ in range(args.repeats):
            mark, clock = time.perf_counter(), time.process_time()
            data = check_data(index, lambda name: arrays[name], config)
            whole.append(time.perf_counter() - mark)
            cpu.append(time.process_time() - clock)
            features = _features(index, lambda name: arrays[name], keys.PRELOGITS, n)
            mark = time.perf_counter()
            near_duplicates(index, features, config)
            near.append(time.perf_counter() - mark)
        print(f"images={n} candidates={args.candidates} check_data_s={statistics.median(whole):.2f} "
              f"check_data_cpu_s={statistics.median(cpu):.2f} "
              f"near_duplicates_s={statistics.median(near):.2f} flags={len(data.flags)} "
              f"near={sum(f.reason.value == 'near_duplicate' for f in data.flags)} "
              f"labels={sum(f.reason.value == 'label_issue' for f in data.flags)} planted={n // 100} each")


if __name__ == "__main__":
    main()
