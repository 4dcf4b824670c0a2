"""Rebuild the curated image set in images/ (needs scikit-image; run once, output is committed).

Real photos come from packages that ship them (scikit-image's data module, matplotlib's sample
data). The controlled set pastes object crops at three scales onto flat and real cluttered
backgrounds, so boxes are exact. Deterministic: same packages -> same files.
"""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parent.parent / "images"
FRAME = 320
SCALES = {"small": 0.05, "medium": 0.20, "large": 0.60}
SKIMAGE = "scikit-image skimage.data"
MPL_HOPPER = "matplotlib sample_data/grace_hopper.jpg (US Navy photo)"

# file, class, box, size, background, source, licence, notes
REAL = [
    ("chelsea.png", "n02123045", (120, 55, 365, 290), "large", "clean", f"{SKIMAGE}.chelsea (Stefan van der Walt)",
     "CC0", "box: the cat's face; class tabby (n02123045)"),
    ("coffee.png", "n07920052", (168, 12, 428, 312), "medium", "cluttered", f"{SKIMAGE}.coffee (Rachel Michetti)",
     "CC0", "box: cup with espresso; class espresso (n07920052)"),
    ("rocket.png", "n03773504", (298, 122, 342, 410), "small", "cluttered", f"{SKIMAGE}.rocket (SpaceX)",
     "CC0", "box: Falcon 9 on the pad; class missile (n03773504)"),
    ("astronaut_shuttle.png", "n04266014", (352, 0, 478, 290), "medium", "cluttered",
     f"{SKIMAGE}.astronaut (NASA)", "public domain", "box: the space shuttle model behind the astronaut"),
    ("motorcycle.png", "", (92, 92, 688, 452), "large", "cluttered",
     f"{SKIMAGE}.stereo_motorcycle left view (Middlebury 2014 stereo, Scharstein et al.)", "research use",
     "ImageNet has no motorcycle class: the target is the model's top-1 prediction"),
    ("grace_hopper.png", "n03763968", (15, 320, 512, 600), "large", "cluttered", MPL_HOPPER,
     "public domain", "box: the uniform (torso); class military uniform (n03763968)"),
]

OBJECTS = {
    # name: (source image, crop box, class)
    "cat": ("chelsea", (105, 30, 385, 300), "n02123045"),
    "espresso": ("coffee", (160, 5, 435, 315), "n07920052"),
}


def _real_images():
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {
        "chelsea.png": data.chelsea(),
        "coffee.png": data.coffee(),
        "rocket.png": data.rocket(),
        "astronaut_shuttle.png": data.astronaut(),
        "motorcycle.png": data.stereo_motorcycle()[0],
        "grace_hopper.png": np.asarray(Image.open(hopper).convert("RGB")),
    }


def _backgrounds():
    garage = Image.fromarray(data.stereo_motorcycle()[1]).crop((330, 0, 741, 300)).resize((FRAME, FRAME), Image.BICUBIC)
    gravel = Image.fromarray(data.gravel()).convert("RGB").resize((FRAME, FRAME), Image.BICUBIC)
    return {
        "clean": [Image.new("RGB", (FRAME, FRAME), (128, 128, 128)), Image.new("RGB", (FRAME, FRAME), (200, 200, 196))],
        "cluttered": [garage, gravel],
    }


def _paste(background: Image.Image, obj: Image.Image, share: float, rng: np.random.Generator):
    area = share * FRAME * FRAME
    aspect = obj.width / obj.height
    height = int(round((area / aspect) ** 0.5))
    width = int(round(height * aspect))
    scaled = obj.resize((width, height), Image.BICUBIC)
    # Keep the object inside the central 85 % that timm's centre crop keeps, off-centre when there is room.
    margin = int(FRAME * 0.075)
    x0 = int(rng.integers(margin, max(margin + 1, FRAME - margin - width + 1)))
    y0 = int(rng.integers(margin, max(margin + 1, FRAME - margin - height + 1)))
    frame = background.copy()
    frame.paste(scaled, (x0, y0))
    return frame, (x0, y0, x0 + width, y0 + height)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = []
    for (name, cls, box, size, background, source, licence, notes), (_, pixels) in zip(REAL, _real_images().items()):
        Image.fromarray(pixels).save(OUT / name, optimize=True)
        rows.append([name, cls, *box, size, background, source, licence, notes])
    rng = np.random.default_rng(20240611)
    backgrounds = _backgrounds()
    sources = {"chelsea": data.chelsea(), "coffee": data.coffee()}
    for size, share in SCALES.items():
        for background, frames in backgrounds.items():
            for (obj_name, (src, crop, cls)), frame in zip(OBJECTS.items(), frames):
                obj = Image.fromarray(sources[src]).crop(crop)
                image, box = _paste(frame, obj, share, rng)
                name = f"controlled_{obj_name}_{size}_{background}.png"
                image.save(OUT / name, optimize=True)
                bg_note = "flat grey" if background == "clean" else ("garage scene" if frame is frames[0] else "gravel texture")
                rows.append([name, cls, *box, size, background,
                             f"controlled: {src} crop pasted on {bg_note}", "CC0 (derived)",
                             f"box share {share:.0%} of the frame, exact"])
    with (OUT / "annotations.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "class", "x0", "y0", "x1", "y1", "size", "background", "source", "licence", "notes"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} images to {OUT}")


if __name__ == "__main__":
    main()
