"""The common corruptions as ImageNet-C makes them (Hendrycks & Dietterich 2019, ``make_imagenet_c.py``): each
operation against its formula on a tiny array, the expected values worked out by hand (never the code's own
output), and ImageNet-C's protocol: one common 224 x 224 crop per image, the same pixels for every backbone."""
import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES


def _pixels(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def test_contrast_scales_each_channel_around_its_own_mean():
    """ImageNet-C: ``(x - m_c) c + m_c``, m_c the mean of channel c over the image. A green image whose pixels are
    (10, 180, 40) and (50, 220, 80) has the means (30, 200, 60); severity 5 (c = 0.05) moves every pixel to 5 % of its
    distance from them: (30 -+ 1, 200 -+ 1, 60 -+ 1). Blending towards one grey (torchvision's adjust_contrast) gave
    about (128, 137, 130)."""
    from reportgen.analysis.corruptions import corrupt

    green = np.zeros((4, 4, 3), np.uint8)
    green[::2] = (10, 180, 40)
    green[1::2] = (50, 220, 80)
    out = corrupt(green, "contrast", 5, seed=0)
    assert np.array_equal(out[::2], np.broadcast_to(_pixels((29, 199, 59)), (2, 4, 3)))
    assert np.array_equal(out[1::2], np.broadcast_to(_pixels((31, 201, 61)), (2, 4, 3)))
    # severity 1 (c = 0.4), clipped at 0 and 255: means (100, 100, 100); 100 -+ 0.4 x 250 -> 0 and 200, clipped
    # channels stay at the bound
    wide = np.zeros((2, 2, 3), np.uint8)
    wide[0] = (0, 0, 0)
    wide[1] = (200, 200, 200)
    out = corrupt(wide, "contrast", 1, seed=0)
    assert np.array_equal(out[0], np.full((2, 3), 60, np.uint8)) and np.array_equal(out[1], np.full((2, 3), 140))


def test_brightness_adds_to_the_hsv_value():
    """ImageNet-C: rgb2hsv, V + c clipped to [0, 1], hsv2rgb. Hue and saturation kept, so the channels scale by
    V'/V: (30, 60, 90) at severity 2 (c = 0.2, +51) has V = 90 -> 141, x 141/90 = (47, 94, 141); adding to every
    channel gave (81, 111, 141). (200, 120, 40) at severity 5 (c = 0.5): V clipped to 255, x 1.275 = (255, 153, 51).
    Black has no hue: it becomes grey (51, 51, 51)."""
    from reportgen.analysis.corruptions import corrupt

    image = _pixels([(30, 60, 90), (0, 0, 0)], [(200, 120, 40), (255, 255, 255)])
    out = corrupt(image, "brightness", 2, seed=0)
    assert out[0, 0].tolist() == [47, 94, 141] and out[0, 1].tolist() == [51, 51, 51]
    assert out[1, 1].tolist() == [255, 255, 255]
    assert corrupt(image, "brightness", 5, seed=0)[1, 0].tolist() == [255, 153, 51]


def _motion_weights(radius: int, sigma: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage weights: width 2 r + 1, exp(-i^2 / 2 sigma^2) for i = 0 ... 2r, normalised."""
    taps = np.array([math.exp(-i * i / (2.0 * sigma * sigma)) for i in range(2 * radius + 1)])
    return taps / taps.sum()


def test_motion_blur_spreads_over_imagemagicks_2r_plus_1_taps():
    """At severity 4 (r 15, sigma 12) a lit pixel's centroid moves sum(i w_i) = 8.99 pixels over the 31 taps
    (r + 1 taps: 6.47); at angle 0 it lands on the 2 r + 1 pixels (x - i, y) with weights exp(-i^2 / 2 sigma^2)
    normalised (ImageMagick's MotionBlurImage, which ImageNet-C calls)."""
    from reportgen.analysis import corruptions

    image = np.zeros((121, 121, 3), np.uint8)
    image[60, 60] = 255
    weights = _motion_weights(15, 12.0)
    shift = float((np.arange(31) * weights).sum())
    assert shift == pytest.approx(8.99, abs=0.01)
    for seed in (1, 2, 3):  # a random angle in [-45, 45] degrees per image
        out = corruptions.corrupt(image, "motion_blur", 4, seed)[..., 0].astype(float)
        rows, cols = np.nonzero(out)
        centroid = np.array([(rows * out[rows, cols]).sum(), (cols * out[rows, cols]).sum()]) / out.sum()
        assert np.hypot(*(centroid - 60)) == pytest.approx(shift, abs=0.3)
        assert len(rows) >= 25  # 31 taps, a few merged where the rounded line steps diagonally

    impulse = np.zeros((9, 20, 1))
    impulse[4, 15] = 1.0
    out = corruptions.motion_blur(impulse, 3, 2.0, 0.0)[..., 0]
    weights = _motion_weights(3, 2.0)  # 7 taps: 1, e^-1/8, e^-1/2, e^-9/8, e^-2, e^-25/8, e^-9/2 over their sum
    assert weights[0] == pytest.approx(1 / 3.00405, rel=1e-4)
    expected = np.zeros((9, 20))
    expected[4, 15 - np.arange(7)] = weights
    assert np.allclose(out, expected, atol=1e-12)


def test_each_corruption_is_imagenet_cs_formula_on_a_tiny_array():
    """All seven against ImageNet-C's formulas, values by hand."""
    from reportgen.analysis.corruptions import CORRUPTIONS, corrupt

    assert set(CORRUPTIONS) == {"gaussian_noise", "defocus_blur", "motion_blur", "jpeg_compression", "pixelate",
                                "brightness", "contrast"}
    grey = np.full((64, 64, 3), 128, np.uint8)
    # Gaussian noise: clip(x + N(0, 0.08)) at severity 1, std 0.08 x 255 = 20.4 on mid-grey
    noisy = corrupt(grey, "gaussian_noise", 1, seed=3).astype(float)
    assert noisy.std() == pytest.approx(20.4, rel=0.05) and noisy.mean() == pytest.approx(128, abs=1)
    # Defocus at severity 1: a disk of radius 3 (29 pixels: x^2 + y^2 <= 9), a lit pixel spreads 255/29 = 8.8 -> 9
    # over them (the anti-aliasing blur, sigma 0.1, is negligible)
    impulse = np.zeros((21, 21, 3), np.uint8)
    impulse[10, 10] = 255
    out = corrupt(impulse, "defocus_blur", 1, seed=0)[..., 0]
    y, x = np.mgrid[-10:11, -10:11]
    assert np.array_equal(out, np.where(x ** 2 + y ** 2 <= 9, 9, 0))
    # Motion blur: the mass of a lit pixel is kept (weights sum to 1), spread along a line
    image = np.zeros((41, 41, 3), np.uint8)
    image[20, 20] = 255
    assert corrupt(image, "motion_blur", 1, seed=5).astype(float).sum() == pytest.approx(3 * 255, rel=0.03)
    # JPEG: Pillow's encoder at ImageNet-C's quality (25 at severity 1)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(texture).save(buffer, format="JPEG", quality=25)
    assert np.array_equal(corrupt(texture, "jpeg_compression", 1, seed=0), np.asarray(Image.open(buffer)))
    # Pixelate at severity 2 (factor 0.5): box down 8 -> 4 averages each 2 x 2 block, box up repeats it
    blocks = np.array([[10, 50, 90, 130], [170, 210, 30, 70], [110, 150, 190, 230], [20, 60, 100, 140]])
    jitter = np.tile([[-8, 8], [4, -4]], (4, 4))
    image = np.repeat((np.kron(blocks, np.ones((2, 2))) + jitter).astype(np.uint8)[..., None], 3, axis=2)
    assert np.array_equal(corrupt(image, "pixelate", 2, seed=0)[..., 0], np.kron(blocks, np.ones((2, 2))))
    # Brightness and contrast: see their tests; severity 0 is the identity for all
    green = np.zeros((2, 2, 3), np.uint8)
    green[0], green[1] = (10, 180, 40), (50, 220, 80)
    assert corrupt(green, "contrast", 5, seed=0)[0, 0].tolist() == [29, 199, 59]
    assert corrupt(_pixels([(30, 60, 90)]), "brightness", 2, seed=0)[0, 0].tolist() == [47, 94, 141]
    for name in CORRUPTIONS:
        assert np.array_equal(corrupt(green, name, 0, seed=0), green)


def test_defocus_keeps_the_mass_imagenet_cs_kernel_gains_at_its_border():
    """ImageNet-C's ``disk``: the normalised disk blurred by ``cv2.GaussianBlur`` (OpenCV's default border reflects
    without repeating the edge) and not normalised again. At severity 4 (radius 8 on the grid -8..8, sigma 0.5, 3
    taps: t = e^-2 / (1 + 2 e^-2) = 0.10651 either side) the disk touches the grid's edge: per side and axis the
    reflection gains t x (the 7 disk pixels of column 7 - the 1 of column 8) / 197 (the disk's pixels), 24 t / 197 =
    1.30 % in all. A flat grey 128 comes out 128 x 1.01298 = 129.66 -> 130 (renormalised to 1: 128). Severities 1-5
    against ImageNet-C's own kernel code (cv2.GaussianBlur) where OpenCV is installed."""
    from reportgen.analysis.corruptions import SEVERITY_PARAMETERS, corrupt, disk_kernel

    t = math.exp(-2) / (1 + 2 * math.exp(-2))
    gain = 1 + 24 * t / 197
    assert gain == pytest.approx(1.012975, abs=1e-6)
    assert float(disk_kernel(8, 0.5).sum()) == pytest.approx(gain, abs=1e-6)
    grey = np.full((32, 32, 3), 128, np.uint8)
    assert np.all(corrupt(grey, "defocus_blur", 4, seed=0) == round(128 * gain))  # 130
    cv2 = pytest.importorskip("cv2")
    for radius, alias_blur in SEVERITY_PARAMETERS["defocus_blur"]:
        grid = np.arange(-max(8, radius), max(8, radius) + 1)
        x, y = np.meshgrid(grid, grid)
        disk = (x ** 2 + y ** 2 <= radius ** 2).astype(np.float32)
        reference = cv2.GaussianBlur(disk / disk.sum(), ksize=(3, 3) if radius <= 8 else (5, 5), sigmaX=alias_blur)
        assert np.allclose(disk_kernel(radius, alias_blur).numpy(), reference, atol=1e-7)


def test_the_common_crop_is_imagenet_cs_resize_256_and_centre_224():
    """torchvision Resize(256) then CenterCrop(224): a 512 x 256 image keeps its size (shorter side already 256),
    and the crop is rows 16..239, columns 144..367."""
    from reportgen.analysis.corruptions import common_crop

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)
    assert np.array_equal(common_crop(Image.fromarray(pixels)), pixels[16:240, 144:368])
    tall = common_crop(Image.new("RGB", (300, 600), (10, 20, 30)))
    assert tall.shape == (224, 224, 3) and (tall == (10, 20, 30)).all()


def test_two_backbones_with_different_input_sizes_see_the_same_corrupted_224_crop(monkeypatch):
    """A 224-pixel and a 260-pixel backbone: every corruption starts from the same 224 x 224 pixels, each model gets
    its own input size, and the clean reference is the clean common crop through the same transform."""
    import torch

    from reportgen.analysis import corruptions
    from reportgen.analysis.backbone import BackboneJob, Batches, Loaded, RunSettings, _corruption
    from reportgen.analysis.models import LoadedModel
    from reportgen.analysis.transforms import eval_transform
    from reportgen.analysis.weights import WeightsPlan
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.inputs.decoding import file_sha256
    from reportgen.inputs.images import ImageRecord, ImageSet
    from reportgen.inputs.registry import lookup
    from reportgen.results import arrays as keys
    from reportgen.results.schema import WeightsSource

    records = []
    for name in ("chelsea.png", "coffee.png"):
        with Image.open(IMAGES / name) as image:
            width, height = image.size
        records.append(ImageRecord(file=name, path=IMAGES / name, width=width, height=height,
                                   sha256=file_sha256(IMAGES / name), class_index=None, box=None, size_class=None,
                                   background=None))
    image_set = ImageSet(root=IMAGES, records=tuple(records))
    config = AnalysisConfig(corruption_max_images=2, corruption_design="balanced")
    seen, real_corrupt = {}, corruptions.corrupt

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inputs = []

        def forward(self, x):
            self.inputs.append(x.clone())
            return x.mean(dim=(2, 3)) @ torch.eye(3, 5)

    results = {}
    for side, interpolation in ((224, "bicubic"), (260, "bilinear")):
        data_config = {"input_size": (3, side, side), "interpolation": interpolation, "mean": (0.5, 0.5, 0.5),
                       "std": (0.25, 0.25, 0.25), "crop_pct": 0.875, "crop_mode": "center"}
        transform = eval_transform(data_config)
        calls = seen.setdefault(side, [])
        monkeypatch.setattr(corruptions, "corrupt", lambda pixels, *args: calls.append(
            (np.array(pixels), args)) or real_corrupt(pixels, *args))
        model = Recorder()
        job = BackboneJob(plan=WeightsPlan(lookup("resnet50"), WeightsSource.RANDOM, ""),
                          run=RunSettings(image_set=image_set, class_names=None, config=config))
        loaded = Loaded(model, LoadedModel(model, data_config, WeightsSource.RANDOM, "", "", ""),
                        Batches(records, transform, 2))
        run, arrays = _corruption(job, loaded)
        assert run.status == "done"
        assert len(model.inputs) == 2 and {tuple(x.shape[1:]) for x in model.inputs} == {(3, side, side)}
        results[side] = (model, arrays, transform)

    assert len(seen[224]) == len(seen[260]) == 2 * 7
    for (pixels_a, args_a), (pixels_b, args_b) in zip(seen[224], seen[260]):
        assert args_a == args_b  # the same corruption, severity and per-image seed
        assert pixels_a.shape == pixels_b.shape == (224, 224, 3) and np.array_equal(pixels_a, pixels_b)
    for side, (model, arrays, transform) in results.items():
        view = corruptions.input_view(transform)
        for row in range(2):  # one batch per image, its clean common crop first, through this backbone's transform
            clean = view(Image.fromarray(seen[side][7 * row][0]))  # the uncorrupted crop, as handed to corrupt
            assert torch.allclose(model.inputs[row][0], clean)
            assert arrays[keys.CORRUPT_CLEAN][row] == int((clean.mean(dim=(1, 2)) @ torch.eye(3, 5)).argmax())
        assert arrays[keys.CORRUPT_TOP1].shape == (2, 7, 3)


def test_retention_is_measured_against_the_clean_common_crop():
    """The clean outcome is the prediction on the uncorrupted common crop (``corruptclean``), not the one on the
    backbone's own crop: here the own crop is right and the common crop wrong, so the clean top-1 is 0."""
    from reportgen.results import arrays as keys
    from reportgen.scoring.beyond_paper import corruption_vectors

    index = SimpleNamespace(images=[SimpleNamespace(class_index=3), SimpleNamespace(class_index=4)])
    own = [SimpleNamespace(top5=[SimpleNamespace(index=3)]), SimpleNamespace(top5=[SimpleNamespace(index=4)])]
    entry = SimpleNamespace(corruption=SimpleNamespace(images=(0, 1)), predictions=own)
    arrays = {keys.CORRUPT_TOP1: np.array([[[3]], [[4]]]), keys.CORRUPT_CLEAN: np.array([5, 4])}
    measure, clean, corrupted = corruption_vectors(index, entry, arrays)
    assert measure == "top-1" and clean.tolist() == [0.0, 1.0] and corrupted[:, 0, 0].tolist() == [1.0, 1.0]
