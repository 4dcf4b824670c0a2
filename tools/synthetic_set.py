"""Image sets that look like a user's validation folder, built offline from the curated photos: random crops,
flips, small rotations, colour and brightness changes, JPEG re-encoding. Deterministic for a seed.

    python tools/synthetic_set.py OUT_DIR --count 200 [--layout wnid|index|name|own|flat] [--classes 3] [--seed 0]

``wnid``/``index``/``name``: ``OUT_DIR/<class>/*.jpg`` (torchvision ImageFolder), the class folder named by
WordNet id, ImageNet index or exact ImageNet name; ``own``: the folders named by a user for their own task
(``cats/``, ``coffee/``, ``rockets/``, ...: no ImageNet name), the first ``--classes`` of them; ``flat``: every
image in ``OUT_DIR``, unlabelled.
Used by ``bench/scale.py`` and the tests.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

CURATED = Path(__file__).resolve().parent.parent / "images"
# WordNet id -> (ImageNet index, exact ImageNet name) of the curated set's classes.
CLASSES = {
    "n02123045": (281, "tabby, tabby cat"),
    "n07920052": (967, "espresso"),
    "n03773504": (657, "missile"),
    "n04266014": (812, "space shuttle"),
    "n03763968": (652, "military uniform"),
}
# The names a user gives the same classes in their own task (layout "own"): none is an ImageNet class name.
OWN_NAMES = {"n02123045": "cats", "n07920052": "coffee", "n03773504": "rockets", "n04266014": "shuttles",
             "n03763968": "uniforms"}
LAYOUTS = ("wnid", "index", "name", "own", "flat")


def labelled_sources() -> list[tuple[Path, str]]:
    """(curated photo, WordNet id) for every curated image with a class."""
    with (CURATED / "annotations.csv").open(newline="", encoding="utf-8") as handle:
        return [(CURATED / row["file"], row["class"]) for row in csv.DictReader(handle) if row["class"] in CLASSES]


def folder_name(wnid: str, layout: str) -> str:
    index, name = CLASSES[wnid]
    return {"wnid": wnid, "index": str(index), "name": name, "own": OWN_NAMES[wnid]}[layout]


def variant(image: Image.Image, rng: random.Random) -> Image.Image:
    """One random crop / flip / rotation / colour change of ``image``, at most 480 px on its longer side."""
    width, height = image.size
    share = rng.uniform(0.55, 1.0)
    w, h = int(width * share ** 0.5), int(height * share ** 0.5)
    x0, y0 = rng.randint(0, width - w), rng.randint(0, height - h)
    out = image.crop((x0, y0, x0 + w, y0 + h))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    if rng.random() < 0.3:
        out = out.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, expand=False, fillcolor=(128, 128, 128))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))
    out.thumbnail((480, 480))
    return out


def build(out_dir: Path | str, count: int, layout: str = "wnid", seed: int = 0, classes: int = 0) -> Path:
    """Write ``count`` JPEGs under ``out_dir`` (created) in the given layout; returns ``out_dir``. ``classes``: only
    the first this many classes (0: all five)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kept = list(CLASSES)[:classes] if classes else list(CLASSES)
    sources = [(Image.open(path).convert("RGB"), wnid) for path, wnid in labelled_sources() if wnid in kept]
    if layout == "own":  # a user's task: the classes take turns (as balanced as count allows)
        by_class = [[source for source in sources if source[1] == wnid] for wnid in kept]
        sources = [by_class[n % len(kept)][(n // len(kept)) % len(by_class[n % len(kept)])]
                   for n in range(len(kept) * max(len(group) for group in by_class))]
    for number in range(count):
        image, wnid = sources[number % len(sources)]
        folder = out_dir if layout == "flat" else out_dir / folder_name(wnid, layout)
        folder.mkdir(exist_ok=True)
        variant(image, rng).save(folder / f"img{number:05d}.jpg", quality=rng.choice((80, 88, 95)))
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--layout", choices=LAYOUTS, default="wnid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=0, help="only the first this many classes (0: all five)")
    args = parser.parse_args()
    print(build(args.out_dir, args.count, args.layout, args.seed, args.classes))


if __name__ == "__main__":
    main()
