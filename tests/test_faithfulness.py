"""ROAD (Rong et al. 2022) as section 3.4 runs it: which pixels each order removes, and how the imputation fills
them, for the deep-layer CAM and the two baselines. No pretrained model: a one-layer stand-in, the library's own
removal and the run's reduced imputer (issue 24, points 13 and 14)."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import IMAGES

import reportgen.analysis.faithfulness as faithfulness

SIDE = 112  # model input side of the share test (a 7 x 7 CAM upsampled 16-fold, as 224 is 32-fold)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4))


def one_object_cam() -> np.ndarray:
    """A ReLU'd 7 x 7 CAM of one object: 16 positive cells, 33 (67 %) exactly zero."""
    cam = np.zeros((7, 7), np.float32)
    cam[1:5, 2:6] = np.random.default_rng(3).random((4, 4)) + 0.1
    return cam


class Recorder:
    """Stands in for the run's imputer: notes each call's share of removed pixels (mask 0) and returns the image."""
    shares: list = []

    def __init__(self, side, imputer):
        pass

    def __call__(self, image, mask):
        Recorder.shares.append(float((mask.numpy() < 0.5).mean()))
        return image


@pytest.mark.parametrize("percentile", [10, 30, 50, 70, 90])
def test_each_order_removes_the_stated_share_for_every_map_even_with_ties(monkeypatch, percentile):
    """At percentile p the library keeps p % of the pixels: MoRF removes the (100 - p) % most relevant, LeRF the
    (100 - p) % least relevant. A CAM with 67 % exact zeros once removed 100 % at MoRF 10/30/50 and 59 % instead of
    30 %/10 % at LeRF 70/90; every map (CAM, random, Gaussian) in both orders now removes the share to one pixel."""
    monkeypatch.setattr(faithfulness, "ReducedImputer", Recorder)
    Recorder.shares = []
    image = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    faithfulness.road(tiny_model(), image, [one_object_cam()], [0], ["a" * 64], (percentile,), 0, "cpu", 64, "full")
    assert len(Recorder.shares) == 6  # three maps x two orders
    pixels = SIDE * SIDE
    removed = np.round(np.array(Recorder.shares) * pixels)
    expected = (100 - percentile) / 100 * pixels
    assert np.all(np.abs(removed - expected) <= 1), (removed, expected)


def natural_crop(name: str, side: int = 224) -> torch.Tensor:
    image = Image.open(IMAGES / name).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    pixels = np.asarray(image.crop((left, top, left + side, top + side)), np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def imputation_errors(monkeypatch, names, percentiles, full_resolution=False) -> np.ndarray:
    """Mean absolute error on the removed pixels (image in [0, 1]) of the run's imputer (a 64-pixel grid) and, with
    ``full_resolution``, of the library's imputer on the whole 224-pixel input, as (2, maps, orders, percentiles)
    averaged over the photos ``names``; a one-object CAM with 67 % exact zeros."""
    real = faithfulness.ReducedImputer
    errors = []

    class Measured(real):
        def __call__(self, image, mask):
            removed = mask.numpy() < 0.5
            filled = super().__call__(image, mask)
            full = faithfulness.FastNoisyLinearImputer()(image, mask) if full_resolution else filled
            errors.append([float((found - image).abs().numpy()[:, removed].mean()) for found in (filled, full)])
            return filled

    monkeypatch.setattr(faithfulness, "ReducedImputer", Measured)
    inputs = torch.stack([natural_crop(name) for name in names])
    count = len(names)
    faithfulness.road(tiny_model(), inputs, [one_object_cam()] * count, [0] * count,
                      [f"{n:064d}" for n in range(count)], percentiles, 0, "cpu", 64, "full")
    # calls per image: maps (cam, random, gaussian) x orders (morf, lerf) x percentiles, in that nesting
    found = np.array(errors).reshape(count, 3, 2, len(percentiles), 2).mean(axis=0)
    return np.moveaxis(found, -1, 0)


def test_the_imputation_fills_the_baselines_holes_as_it_fills_the_cams(monkeypatch):
    """The run's imputer must treat the baselines' holes like the CAM's, or the CAM is compared with a baseline that
    removes something else: a salt-and-pepper random map at full resolution lost its known pixels on the 64-pixel
    grid at high removal (error 3x the CAM's) and kept them, blurred, at low removal (a third of it). Tolerance: in
    each order at each percentile, the random map's and the Gaussian's error on the removed pixels (mean over three
    photos) is within a factor 2 of the CAM's (holes in different places of a photo fill differently: the
    Gaussian's is the centre, where the subject is)."""
    reduced = imputation_errors(monkeypatch, ["chelsea.png", "coffee.png", "astronaut_shuttle.png"], (10, 50, 90))[0]
    ratio = reduced[1:] / reduced[0]
    assert np.all((ratio > 1 / 2) & (ratio < 2)), np.round(reduced, 3)


def test_the_reduced_grid_fills_each_maps_holes_as_the_full_resolution_does(monkeypatch):
    """The 64-pixel grid is a shortcut for the library's imputation on the whole input: for every map, in each
    order, at 90 % and 10 % removed, its error on the removed pixels is within a factor 1.25 of the full-resolution
    one (a salt-and-pepper random map once gave 0.35 against 0.01)."""
    reduced, full = imputation_errors(monkeypatch, ["chelsea.png"], (10, 90), full_resolution=True)
    ratio = reduced / full
    assert np.all((ratio > 1 / 1.25) & (ratio < 1.25)), (np.round(reduced, 3), np.round(full, 3))


def test_the_fast_imputer_is_the_one_that_runs(monkeypatch):
    """The library's ``__call__`` named ``NoisyLinearImputer.setup_sparse_system``, so the vectorised assembly was
    never used; ours fills the same pixels with the same values (same matrix, same noise draw) without the
    library's entry-by-entry assembly."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    rng = np.random.default_rng(2)
    image = torch.from_numpy(rng.random((3, 40, 48)).astype(np.float32))
    mask = torch.from_numpy((rng.random((40, 48)) > 0.4).astype(np.float32))
    torch.manual_seed(7)
    with warnings.catch_warnings():  # the library hands a tensor to np.argwhere
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = NoisyLinearImputer()(image, mask)

    def slow(*args):
        raise AssertionError("the library's entry-by-entry assembly ran")

    monkeypatch.setattr(NoisyLinearImputer, "setup_sparse_system", staticmethod(slow))
    torch.manual_seed(7)
    assert torch.equal(faithfulness.FastNoisyLinearImputer()(image, mask), expected)


def test_the_reduced_grid_fills_a_hole_from_the_kept_pixels_only(monkeypatch):
    """ROAD removes pixels: their values must not reach the fill. Two images equal on the kept pixels and different
    on the removed ones (the photo, and the photo with its holes blanked) must be filled alike. The 64-pixel grid
    resized the whole image down (bilinear), so the cells next to a hole that count as known averaged removed pixels
    into the fill: blanking them moved the fill of the removed pixels by 0.075 on average (MoRF 50 %, one-object
    CAM; 0 at full resolution). Noise off, so the two fills are comparable pixel for pixel."""
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst

    image = natural_crop("chelsea.png")
    cam = faithfulness.road_maps(one_object_cam(), 224, 224, 1, (7, 7))["cam"]
    ranks = torch.from_numpy(faithfulness.rank_order(cam, faithfulness.tie_order(224, 224, 2, (7, 7))))
    masks = []
    RemoveMostRelevantFirst(50, lambda img, mask: masks.append(mask) or img)(image, ranks)
    mask = masks[0]
    removed = mask.numpy() < 0.5
    assert 0.45 < removed.mean() < 0.55
    blanked = torch.where(mask[None] > 0.5, image, torch.zeros_like(image))
    imputer = faithfulness.ReducedImputer(64, faithfulness.FastNoisyLinearImputer(noise=0.0))
    first, second = imputer(image, mask), imputer(blanked, mask)
    assert float((first - second).abs().numpy()[:, removed].max()) < 1e-5
    assert torch.equal(first[:, ~torch.from_numpy(removed)], image[:, ~torch.from_numpy(removed)])
