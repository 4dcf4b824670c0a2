"""Does a backbone survive the user's camera? The common corruptions of ImageNet-C (Hendrycks & Dietterich 2019),
with its severity parameters 1-5, applied to each backbone's model-input crop (after resize and crop, before
normalisation, as ImageNet-C corrupts 224 x 224 crops) of the user's own images, then quantised to 8 bits as
ImageNet-C's images are.

The operations come from ``torchvision.transforms.v2.functional`` (maintained, already installed with timm, tensor
ops): ``gaussian_noise``, ``resize`` (pixelate: down and up with a box filter), ``adjust_contrast``; JPEG from
Pillow's encoder, as in ImageNet-C;
brightness adds ImageNet-C's shift to every channel (ImageNet-C adds it to the HSV value); defocus and motion blur,
which torchvision lacks, are convolutions with ImageNet-C's disk and line kernels. (``imagecorruptions``, ImageNet-C's
own code, was left out: it requires the GUI build of OpenCV beside grad-cam's headless one and imports modules
that newer setuptools and SciPy remove; three of its corruptions crash on current scikit-image and NumPy.)
Severity 0 is the identity. Random parts (noise, the motion's angle) are seeded per image by its content hash and
the run's seed, so every backbone sees the same corruption of the same image and the numbers are reproducible.
"""
from __future__ import annotations

import io
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F_nn
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..scoring.bootstrap import stable_seed

# ImageNet-C's parameters per severity 1..5 (Hendrycks & Dietterich 2019, the imagecorruptions package).
SEVERITY_PARAMETERS = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std, on [0, 1] pixels
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # disk radius, aliasing blur
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # radius, sigma along the line
    "jpeg_compression": (25, 18, 15, 10, 7),  # JPEG quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # down-scaling factor
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to the pixel values
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # contrast factor (0: flat grey)
}
CORRUPTIONS = tuple(SEVERITY_PARAMETERS)


def _seeded(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed % (2 ** 63))
    return generator


def _gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a disk of the radius, normalised, then blurred by a small Gaussian."""
    size = np.arange(-max(8, int(radius)), max(8, int(radius)) + 1)
    ksize = 3 if radius <= 8 else 5
    x, y = np.meshgrid(size, size)
    disk = (x ** 2 + y ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = _gaussian_kernel1d(alias_blur, ksize // 2)
    blurred = np.apply_along_axis(lambda row: np.convolve(row, taps, mode="same"), 0, disk)
    blurred = np.apply_along_axis(lambda row: np.convolve(row, taps, mode="same"), 1, blurred)
    return torch.tensor(blurred / blurred.sum(), dtype=torch.float32)


def motion_kernel(radius: int, sigma: float, angle: float) -> torch.Tensor:
    """ImageNet-C's motion kernel: Gaussian weights along a line from the centre, at ``angle`` degrees."""
    weights = np.exp(-0.5 * (np.arange(radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    size = 2 * radius + 1
    kernel = np.zeros((size, size))
    dx, dy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    for step, weight in enumerate(weights):
        kernel[int(round(radius + step * dy)), int(round(radius + step * dx))] += weight
    return torch.tensor(kernel / kernel.sum(), dtype=torch.float32)


def _convolve(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of (3, H, W) convolved with a 2-D kernel, borders reflected."""
    pad = kernel.shape[-1] // 2
    padded = F_nn.pad(image[None], (pad, pad, pad, pad), mode="reflect" if pad < min(image.shape[-2:]) else "replicate")
    weight = kernel[None, None].expand(3, 1, *kernel.shape)
    return F_nn.conv2d(padded, weight, groups=3)[0]


def corrupt(pixels: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """One (H, W, 3) uint8 crop corrupted at ``severity`` (0: unchanged), as uint8. ``seed``: this image's."""
    if severity == 0:
        return pixels
    parameter = SEVERITY_PARAMETERS[corruption][severity - 1]
    image = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    if corruption == "gaussian_noise":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % (2 ** 63))
            out = TF.gaussian_noise(image, mean=0.0, sigma=parameter, clip=True)
    elif corruption == "defocus_blur":
        out = _convolve(image, disk_kernel(*parameter))
    elif corruption == "motion_blur":
        angle = float(torch.empty(1).uniform_(-45, 45, generator=_seeded(seed)))
        out = _convolve(image, motion_kernel(parameter[0], parameter[1], angle))
    elif corruption == "jpeg_compression":  # Pillow's encoder, as ImageNet-C's (torchvision's is deprecated)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=parameter)
        with Image.open(buffer) as compressed:
            return np.asarray(compressed.convert("RGB"), dtype=np.uint8)
    elif corruption == "pixelate":
        height, width = pixels.shape[:2]
        small = TF.resize(Image.fromarray(pixels), [max(1, int(height * parameter)), max(1, int(width * parameter))],
                          interpolation=InterpolationMode.BOX)
        back = TF.resize(small, [height, width], interpolation=InterpolationMode.BOX)
        return np.asarray(back, dtype=np.uint8)
    elif corruption == "brightness":
        out = (image + parameter).clamp(0, 1)
    elif corruption == "contrast":
        out = TF.adjust_contrast(image, parameter)
    else:
        raise KeyError(corruption)
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def image_seed(run_seed: int, content_hash: str, corruption: str, severity: int) -> int:
    return stable_seed(run_seed, "corruption", content_hash, corruption, severity)


def planned_cells(content_hash: str, run_seed: int, corruptions: int, severities: int, design: str) -> list:
    """(corruption, severity) indices an image is corrupted at. "full": every severity of every corruption;
    "balanced": every corruption once, at a severity that rotates with the corruption from a start drawn from the
    image's content hash (a Latin square: each severity of each corruption gets about 1 / severities of the images,
    for a third of the forward passes at three severities, and the same cells in one process or in shards)."""
    if design == "full":
        return [(c, v) for c in range(corruptions) for v in range(severities)]
    start = stable_seed(run_seed, "severity", content_hash) % severities
    return [(c, (start + c) % severities) for c in range(corruptions)]


def corrupted_predictions(model: torch.nn.Module, crops: Sequence[np.ndarray], content_hashes: Sequence[str],
                          tensor_part: Callable, corruptions: Sequence[str], severities: Sequence[int], seed: int,
                          device: str, batch_size: int, design: str = "balanced",
                          on_batch: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """(images, corruptions, severities) top-1 class of the model on each corrupted crop of the design (forward
    passes only); -1 where the design does not corrupt that image at that cell."""
    from .models import input_batch

    out = np.full((len(crops), len(corruptions), len(severities)), -1, dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # One image's corruptions per batch (in chunks of batch_size): its predictions never depend on which
            # other images share the run (float32 results vary with the batch), so shards merge exactly.
            chunks = []
            for i in range(len(crops)):
                cells = [(i, c, v) for c, v in planned_cells(content_hashes[i], seed, len(corruptions),
                                                            len(severities), design)]
                chunks += [cells[start:start + batch_size] for start in range(0, len(cells), batch_size)]
            for chunk in chunks:
                tensors = [tensor_part(Image.fromarray(corrupt(crops[i], corruptions[c], severities[v],
                                                               image_seed(seed, content_hashes[i], corruptions[c],
                                                                          severities[v])), mode="RGB"))
                           for i, c, v in chunk]
                top1 = model(input_batch(torch.stack(tensors)).to(device)).argmax(dim=1).cpu().numpy()
                for (i, c, v), label in zip(chunk, top1):
                    out[i, c, v] = label
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return out
