"""The near-duplicate threshold (``near_duplicate_cosine``) checked against a perceptual hash: Lite0's pooled
pre-logit features (the ones a run keeps) of the curated photos and of copies made of them (re-saved as JPEG at
several qualities and sizes, centre crops, mirrored), their cosine similarity to the original beside the 64-bit
difference hash's distance (dHash, tests/test_datacheck.py), and the similarity of the photos' distinct pairs.

    python bench/near_duplicate_threshold.py

Loads Lite0 (offline, the lite package); about a minute on two cores. Its figures are in docs/analyses.md."""
import argparse
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    import numpy as np
    import timm.data
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import _lite0
    from test_datacheck import dhash, hamming

    torch.set_num_threads(1)
    model = _lite0()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    def features(image):
        with torch.no_grad():
            x = transform(image.convert("RGB"))[None]
            f = model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy().astype(np.float64)
        return f / np.linalg.norm(f)

    def jpeg(image, quality, scale):
        image = image.convert("RGB").resize((int(image.width * scale), int(image.height * scale)), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer)

    def crop(image, share):
        w, h = image.size
        side = share ** 0.5
        cw, ch = int(w * side), int(h * side)
        return image.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))

    def image_hash(image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
        buffer.seek(0)
        return dhash(buffer)

    paths = sorted((REPO / "images").glob("*.png"))
    images = [Image.open(p).convert("RGB") for p in paths]
    feats = np.array([features(i) for i in images])
    hashes = [image_hash(i) for i in images]
    similarity = feats @ feats.T
    upper = np.triu_indices(len(images), 1)
    print(f"distinct curated pairs: {len(upper[0])}, max cosine {similarity[upper].max():.3f}, "
          f"99th percentile {np.quantile(similarity[upper], 0.99):.3f}")
    for k in np.argsort(-similarity[upper])[:6]:
        i, j = upper[0][k], upper[1][k]
        print(f"   {similarity[i, j]:.3f} dHash {hamming(hashes[i], hashes[j])} {paths[i].name} {paths[j].name}")
    kinds = {"jpeg95 x0.85": lambda i: jpeg(i, 95, 0.85), "jpeg70 x0.85": lambda i: jpeg(i, 70, 0.85),
             "jpeg90 x0.5": lambda i: jpeg(i, 90, 0.5), "crop 90%": lambda i: crop(i, 0.9),
             "crop 75%": lambda i: crop(i, 0.75), "mirror": lambda i: i.transpose(Image.FLIP_LEFT_RIGHT)}
    for name, make in kinds.items():
        cosines, distances = [], []
        for position, image in enumerate(images):
            copy = make(image)
            cosines.append(float(features(copy) @ feats[position]))
            distances.append(hamming(image_hash(copy), hashes[position]))
        cosines = np.array(cosines)
        print(f"{name:14s} cosine min {cosines.min():.3f} median {np.median(cosines):.3f}  dHash max "
              f"{max(distances)} median {int(np.median(distances))}")


if __name__ == "__main__":
    main()
