"""Does a backbone survive the user's camera? The common corruptions of ImageNet-C (Hendrycks & Dietterich 2019),
with its severity parameters 1-5, applied as ImageNet-C applies them: to one common 224 x 224 crop per image (the
shorter side resized to 256, bilinear, then the centre 224 x 224), the same pixels for every backbone, quantised to
8 bits; each backbone then gets its own transform of the corrupted crop (resized to its input size with its own
interpolation, then its to-tensor and normalisation), and the clean crop goes the same way as the clean reference.
Blur radii and noise are tuned for 224-pixel crops, so corrupting each backbone's own (240-380 px) crop would
corrupt high-resolution backbones less and the criterion would not compare candidates.

Each operation is ImageNet-C's formula (``make_imagenet_c.py``): Gaussian noise ``clip(x + N(0, c))``
(``torchvision.transforms.v2.functional.gaussian_noise``); defocus blur, ImageNet-C's disk kernel; motion blur,
ImageMagick's ``MotionBlurImage`` (which ImageNet-C calls): ``2 r + 1`` Gaussian weights along a one-sided line at a
random angle in [-45, 45] degrees, offsets ``ceil(i cos a - 0.5), ceil(i sin a - 0.5)``, edge pixels repeated;
JPEG, Pillow's encoder; pixelate, down and up with Pillow's box filter; brightness, ``c`` added to the HSV value;
contrast, ``(x - m) c + m`` with the per-channel means ``m``. (``imagecorruptions``, ImageNet-C's packaged code, was
left out: it requires the GUI build of OpenCV beside grad-cam's headless one and imports modules that newer
setuptools and SciPy remove; three of its corruptions crash on current scikit-image and NumPy.)
Severity 0 is the identity. Random parts (noise, the motion's angle) are seeded per image by its content hash and
the run's seed, so every backbone sees the same corruption of the same image, shards merge exactly and the numbers
are reproducible.
"""
from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F_nn
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..inputs.config import CORRUPTION_CROP, CORRUPTION_RESIZE
from ..inputs.decoding import load_rgb
from ..scoring.bootstrap import stable_seed

# ImageNet-C's parameters per severity 1..5 (Hendrycks & Dietterich 2019, the imagecorruptions package).
SEVERITY_PARAMETERS = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std, on [0, 1] pixels
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),  # disk radius, aliasing blur
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),  # ImageMagick's radius and sigma
    "jpeg_compression": (25, 18, 15, 10, 7),  # JPEG quality
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # down-scaling factor
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to the HSV value
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # factor on the distance to each channel's mean (0: flat)
}
CORRUPTIONS = tuple(SEVERITY_PARAMETERS)
# ImageNet-C's crop: torchvision Resize(256) (bilinear) then CenterCrop(224), before any corruption.
COMMON_RESIZE, COMMON_CROP = CORRUPTION_RESIZE, CORRUPTION_CROP
_COMMON_GEOMETRY = T.Compose([T.Resize(COMMON_RESIZE, interpolation=InterpolationMode.BILINEAR),
                              T.CenterCrop(COMMON_CROP)])


def common_crop(image: Image.Image) -> np.ndarray:
    """ImageNet-C's (224, 224, 3) uint8 crop of a decoded RGB image: the one every backbone's corruptions start from."""
    return np.asarray(_COMMON_GEOMETRY(image.convert("RGB")), dtype=np.uint8)


@lru_cache(maxsize=128)
def _common_crop_of_file(path: str, sha256: str) -> np.ndarray:
    crop = common_crop(load_rgb(Path(path)))
    crop.flags.writeable = False
    return crop


def common_crop_of(record) -> np.ndarray:
    """The common crop of an image record, decoded once per process for all backbones (keyed by its content hash)."""
    return _common_crop_of_file(str(record.path), record.sha256)


def input_view(transform) -> Callable[[Image.Image], torch.Tensor]:
    """A backbone's own transform of a common crop: resized to the backbone's input size with the interpolation of
    its eval transform (nothing to do at 224 x 224), then its to-tensor and normalisation."""
    from .transforms import split

    _, pil_part, tensor_part = split(transform)
    width, height = pil_part(Image.new("RGB", (2 * COMMON_CROP, 2 * COMMON_CROP))).size  # the input size
    if (height, width) == (COMMON_CROP, COMMON_CROP):
        return tensor_part
    found = next((step.interpolation for step in transform.transforms if hasattr(step, "interpolation")),
                 InterpolationMode.BILINEAR)
    resize = T.Resize((height, width), interpolation=InterpolationMode(found) if isinstance(found, str) else found)
    return lambda image: tensor_part(resize(image))


def _seeded(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed % (2 ** 63))
    return generator


def _gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a disk of the radius, normalised, then blurred by a small Gaussian as
    ``cv2.GaussianBlur`` blurs it (borders reflected without repeating the edge, OpenCV's default) and not normalised
    again: where the disk touches the grid's edge (radius 8 and 10, severities 4 and 5) the reflection adds mass, so
    ImageNet-C's kernel sums to 1.013 and 1.011 (its defocus brightens by that much)."""
    size = np.arange(-max(8, int(radius)), max(8, int(radius)) + 1)
    ksize = 3 if radius <= 8 else 5
    x, y = np.meshgrid(size, size)
    disk = (x ** 2 + y ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    taps = _gaussian_kernel1d(alias_blur, ksize // 2)

    def blur(row):
        return np.convolve(np.pad(row, ksize // 2, mode="reflect"), taps, mode="valid")
    blurred = np.apply_along_axis(blur, 1, np.apply_along_axis(blur, 0, disk))
    return torch.tensor(blurred, dtype=torch.float32)


def motion_offsets(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, list]:
    """ImageMagick's ``MotionBlurImage`` (ImageNet-C's motion blur): ``2 ceil(radius) + 1`` Gaussian weights
    ``exp(-i^2 / (2 sigma^2))``, i = 0, 1, ..., normalised, and for each the (dx, dy) pixel offset along the line at
    ``angle`` degrees: ``ceil(i cos a - 0.5)``, ``ceil(i sin a - 0.5)`` (ImageMagick's arithmetic, y pointing down)."""
    width = int(2 * math.ceil(radius) + 1)
    steps = np.arange(width, dtype=np.float64)
    weights = np.exp(-steps ** 2 / (2.0 * sigma * sigma))
    point_x, point_y = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    length = math.hypot(point_x, point_y)
    offsets = [(math.ceil(i * point_y / length - 0.5), math.ceil(i * point_x / length - 0.5)) for i in range(width)]
    return weights / weights.sum(), offsets


def motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """(H, W, C) float image blurred as ImageMagick's ``MotionBlurImage``: each output pixel (x, y) is the weighted sum
    of the input at (x + dx_i, y + dy_i), pixels beyond the border repeating the edge (its default virtual pixels)."""
    weights, offsets = motion_offsets(radius, sigma, angle)
    height, width = image.shape[:2]
    pad = len(weights)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = np.zeros(image.shape, dtype=np.float64)
    for weight, (dx, dy) in zip(weights, offsets):
        out += weight * padded[pad + dy:pad + dy + height, pad + dx:pad + dx + width]
    return out


def adjust_brightness(image: np.ndarray, shift: float) -> np.ndarray:
    """ImageNet-C's brightness: ``shift`` added to the HSV value (clipped to [0, 1]), hue and saturation kept. With
    hue and saturation fixed the RGB channels are proportional to the value, so this is the HSV round trip in
    closed form: each pixel scaled by V' / V (a black pixel, of no hue, becomes grey V')."""
    value = image.max(axis=-1, keepdims=True)
    shifted = np.clip(value + shift, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(value > 0, image * (shifted / np.where(value > 0, value, 1.0)), shifted)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """ImageNet-C's contrast: ``(x - m) factor + m`` with ``m`` the mean of each channel over the image."""
    means = image.mean(axis=(0, 1), keepdims=True)
    return np.clip((image - means) * factor + means, 0.0, 1.0)


def _convolve(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of (3, H, W) convolved with a 2-D kernel, borders reflected."""
    pad = kernel.shape[-1] // 2
    padded = F_nn.pad(image[None], (pad, pad, pad, pad), mode="reflect" if pad < min(image.shape[-2:]) else "replicate")
    weight = kernel[None, None].expand(3, 1, *kernel.shape)
    return F_nn.conv2d(padded, weight, groups=3)[0]


def _quantised(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 (rounded)."""
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def corrupt(pixels: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """One (H, W, 3) uint8 crop corrupted at ``severity`` (0: unchanged), as uint8. ``seed``: this image's."""
    if severity == 0:
        return pixels
    parameter = SEVERITY_PARAMETERS[corruption][severity - 1]
    if corruption == "jpeg_compression":  # Pillow's encoder, as ImageNet-C's (torchvision's is deprecated)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=parameter)
        with Image.open(buffer) as compressed:
            return np.asarray(compressed.convert("RGB"), dtype=np.uint8)
    if corruption == "pixelate":  # ImageNet-C's: down and up with Pillow's box filter
        height, width = pixels.shape[:2]
        small = TF.resize(Image.fromarray(pixels), [max(1, int(height * parameter)), max(1, int(width * parameter))],
                          interpolation=InterpolationMode.BOX)
        back = TF.resize(small, [height, width], interpolation=InterpolationMode.BOX)
        return np.asarray(back, dtype=np.uint8)
    if corruption in ("gaussian_noise", "defocus_blur"):
        image = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        if corruption == "gaussian_noise":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed % (2 ** 63))
                out = TF.gaussian_noise(image, mean=0.0, sigma=parameter, clip=True)
        else:
            out = _convolve(image, disk_kernel(*parameter))
        return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = np.asarray(pixels, dtype=np.float64) / 255.0
    if corruption == "motion_blur":
        angle = float(torch.empty(1).uniform_(-45, 45, generator=_seeded(seed)))
        out = motion_blur(image, parameter[0], parameter[1], angle)
    elif corruption == "brightness":
        out = adjust_brightness(image, parameter)
    elif corruption == "contrast":
        out = adjust_contrast(image, parameter)
    else:
        raise KeyError(corruption)
    return _quantised(out)


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
                          to_input: Callable[[Image.Image], torch.Tensor], corruptions: Sequence[str],
                          severities: Sequence[int], seed: int, device: str, batch_size: int, design: str = "balanced",
                          on_batch: Callable[[int], None] = lambda n: None) -> tuple[np.ndarray, np.ndarray]:
    """(clean, corrupted) top-1 classes of the model (forward passes only): on each clean common crop, (images,),
    the retention's reference; and on each corrupted crop of the design, (images, corruptions, severities), -1
    where the design does not corrupt that image at that cell. ``to_input``: the backbone's own transform
    (:func:`input_view`), applied alike to the clean and the corrupted crops."""
    from .models import input_batch

    clean = np.full(len(crops), -1, dtype=np.int64)
    out = np.full((len(crops), len(corruptions), len(severities)), -1, dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            # One image's clean crop and corruptions per batch (in chunks of batch_size): its predictions never
            # depend on which other images share the run (float32 results vary with the batch), so shards merge
            # exactly.
            chunks = []
            for i in range(len(crops)):
                cells = [(i, None, None)] + [(i, c, v) for c, v in planned_cells(
                    content_hashes[i], seed, len(corruptions), len(severities), design)]
                chunks += [cells[start:start + batch_size] for start in range(0, len(cells), batch_size)]
            for chunk in chunks:
                tensors = [to_input(Image.fromarray(np.asarray(crops[i]) if c is None else corrupt(
                    crops[i], corruptions[c], severities[v],
                    image_seed(seed, content_hashes[i], corruptions[c], severities[v])), mode="RGB"))
                    for i, c, v in chunk]
                top1 = model(input_batch(torch.stack(tensors)).to(device)).argmax(dim=1).cpu().numpy()
                for (i, c, v), label in zip(chunk, top1):
                    if c is None:
                        clean[i] = label
                    else:
                        out[i, c, v] = label
                on_batch(len(chunk))
    finally:
        model.train(was_training)
    return clean, out
