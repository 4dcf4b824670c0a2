"""Do the heatmaps show what the model uses? ROAD (Rong et al. 2022, "remove and debias"), from
``pytorch_grad_cam.metrics.road``: the pixels a map ranks most relevant (MoRF) or least relevant (LeRF) are
removed at each percentile and filled by noisy linear imputation (so the shape of the hole carries no information),
and the change of the target class's probability is averaged over the percentiles. A faithful map hurts much more
when its most relevant pixels go than when its least relevant ones do: the score is the gap, (LeRF - MoRF) / 2, as
the library's ``ROADCombined`` defines it, measured for the deep-layer CAM and for two baselines that know nothing
of the model: a uniform-random map drawn on the CAM's own grid and upsampled like the CAM (so its holes are patches
of the CAM's scale, which the imputation fills as it fills the CAM's, not single pixels), and the centred Gaussian.

At percentile p the library keeps the p % of the pixels its threshold puts below (``mask < np.percentile(mask, p)``):
MoRF removes the (100 - p) % most relevant, LeRF the (100 - p) % least relevant. On a map with ties (a ReLU'd CAM
is exactly zero over much of the image, the Gaussian is symmetric) that threshold removes the wrong share, up to
everything, so each map reaches the library as its rank order (``rank_order``), ties broken by a seeded random field
on the CAM's grid (a tied region goes in patches) and then by a seeded permutation: each order removes the stated
share to within one pixel, for every map.

The library's removal and imputation run per image, each seeded by the image's content hash and the run's seed (the
imputation adds noise), so an image gives the same numbers in a single process and in a shard; the forward passes
are batched here. The imputation's equation system is assembled in one vectorised step (``FastNoisyLinearImputer``,
the same matrix as the library's, checked by ``tests/test_beyond_paper.py``): the library builds it entry by entry.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from ..scoring.bootstrap import stable_seed
from ..scoring.measures import centred_gaussian, normalise01, upsample

MAPS = ("cam", "random", "gaussian")
ORDERS = ("morf", "lerf")


class FastNoisyLinearImputer(NoisyLinearImputer):
    """The library's noisy linear imputer with its equation system assembled in one step (a COO matrix instead of
    entry-by-entry LIL assignment): the same system, solved and noised as the library's ``__call__`` does. That
    ``__call__`` is restated because it names ``NoisyLinearImputer.setup_sparse_system`` and so never reaches an
    override (the slow assembly was half of the stage's imputation time)."""

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        img_flat = img.reshape(img.shape[0], -1)
        removed = np.argwhere(mask.reshape(-1).numpy() == 0).flatten()
        matrix, b = self.setup_sparse_system(mask.numpy(), img.numpy(), neighbors_weights)
        solution = torch.tensor(spsolve(matrix, b), dtype=torch.float)
        filled = img_flat.clone()
        filled[:, removed] = solution.t() + self.noise * torch.randn_like(solution.t())
        return filled.reshape_as(img)

    @staticmethod
    def setup_sparse_system(mask, img, neighbors_weights):
        mask_flat = mask.flatten()
        img_flat = img.reshape((img.shape[0], -1))
        indices = np.argwhere(mask_flat == 0).flatten()
        to_variable = np.zeros(len(mask_flat), dtype=int)
        to_variable[indices] = np.arange(len(indices))
        count = len(indices)
        b = np.zeros((count, img.shape[0]))
        sum_neighbors = np.ones(count)
        rows, cols, values = [], [], []
        for offset, weight in neighbors_weights:
            valid, new_coords = NoisyLinearImputer.add_offset_to_indices(indices, offset, mask.shape)
            valid_coords = new_coords[valid]
            valid_ids = np.argwhere(valid == 1).flatten()
            known = mask_flat[valid_coords] > 0.5
            b[valid_ids[known], :] -= weight * img_flat[:, valid_coords[known]].T
            unknown = mask_flat[valid_coords] < 0.5
            rows.append(valid_ids[unknown])
            cols.append(to_variable[valid_coords[unknown]])
            values.append(np.full(int(unknown.sum()), weight))
            sum_neighbors[np.argwhere(valid == 0).flatten()] -= weight
        rows.append(np.arange(count))
        cols.append(np.arange(count))
        values.append(-sum_neighbors)
        # Each (row, column) pair occurs once per offset, never twice: summing duplicates is the LIL assignment.
        matrix = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                            shape=(count, count))
        return matrix.tocsc(), b


class ReducedImputer:
    """The library's noisy linear imputation solved on a grid of ``side`` x ``side`` pixels (0: the input's own):
    the image and the removal mask are resized down, the library's imputer fills the removed pixels there, and the
    filled values, resized back, replace only the removed pixels (the kept ones stay exact). The sparse solve costs
    about N^1.5 in the N removed pixels, so half the side is about eight times faster; the imputation, a smooth
    interpolation from the kept neighbours, changes little. The small image averages only the kept pixels of each
    cell (a cell more than half kept is known): a plain resize would carry the removed pixels' values into the
    known cells next to a hole and so into its fill, which ROAD's removal must never see."""

    def __init__(self, side: int, imputer: NoisyLinearImputer):
        self.side, self.imputer = side, imputer

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if not self.side or self.side >= max(height, width):
            return self.imputer(image, mask)
        size = (self.side, max(1, round(self.side * width / height)))
        keep = (mask > 0.5).to(image.dtype)
        share = torch.nn.functional.interpolate(keep[None, None], size=size, mode="area")[0]
        total = torch.nn.functional.interpolate((image * keep)[None], size=size, mode="area")[0]
        kept = share[0] > 0.5
        small = torch.where(kept, total / share.clamp_min(1e-12), torch.zeros_like(total))
        filled = self.imputer(small, kept.float())
        back = torch.nn.functional.interpolate(filled[None], size=(height, width), mode="bilinear",
                                               align_corners=False)[0]
        return torch.where(mask[None] > 0.5, image, back)


@dataclass(frozen=True)
class RoadScores:
    values: np.ndarray  # (images, maps, orders): mean change of the target probability over the percentiles


def road_maps(cam: Optional[np.ndarray], width: int, height: int, seed: int, cam_shape: tuple) -> dict:
    """The three maps at input resolution, each scaled to [0, 1]: the CAM (None when flagged), a uniform-random
    map seeded per image on the CAM's grid ``cam_shape`` (h, w) and upsampled like the CAM, the centred Gaussian."""
    rng = np.random.default_rng(seed)
    return {"cam": normalise01(upsample(cam, width, height)) if cam is not None else None,
            "random": normalise01(upsample(rng.random(tuple(cam_shape)).astype(np.float32), width, height)),
            "gaussian": normalise01(centred_gaussian(width, height))}


def tie_order(width: int, height: int, seed: int, cam_shape: tuple) -> np.ndarray:
    """The pixels (flat indices) in the order that decides a map's ties: by a uniform-random field on the CAM's grid
    upsampled like the CAM (a tied region is removed in patches, as the random baseline removes), the field's own
    ties (where the upsampling holds a value near the borders) by a random permutation."""
    rng = np.random.default_rng(seed)
    field = upsample(rng.random(tuple(cam_shape)).astype(np.float32), width, height).ravel()
    shuffled = rng.permutation(width * height)
    return shuffled[np.argsort(field[shuffled], kind="stable")]


def rank_order(values: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """The map's pixels replaced by their rank, 0 (least relevant) to N - 1, equal values in the order ``ties`` (flat
    pixel indices, as ``tie_order`` gives): every value distinct, so the library's percentile threshold keeps exactly
    its share of the pixels (to within one)."""
    order = ties[np.argsort(np.ravel(values)[ties], kind="stable")]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size)
    return ranks.reshape(values.shape)


def image_percentiles(content_hash: str, run_seed: int, percentiles: Sequence[int], design: str) -> tuple:
    """The percentiles an image is measured at: all of them ("full"), or one drawn from its content hash
    ("balanced": across images the percentiles are evenly used, for 1 / len(percentiles) of the work, and an image
    gets the same percentile in one process or in a shard)."""
    if design == "full":
        return tuple(percentiles)
    return (percentiles[stable_seed(run_seed, "road-percentile", content_hash) % len(percentiles)],)


def road(model: torch.nn.Module, inputs: torch.Tensor, cams: Sequence, targets: Sequence[int], content_hashes,
         percentiles: Sequence[int], seed: int, device: str, imputation_side: int = 0,
         design: str = "balanced", on_image: Callable[[int], None] = lambda n: None,
         cam_shape: Optional[tuple] = None) -> RoadScores:
    """ROAD of each image's maps: ``inputs`` (N, C, H, W) model inputs; ``cams`` (N, h, w) deep-layer CAMs (None for a
    flagged one: its values are NaN); ``targets`` the class each CAM explains; ``cam_shape`` the layer's grid (h, w)
    the random map and the tie-break are drawn on (None: the CAMs' own shape)."""
    from .models import input_batch

    imputer = ReducedImputer(imputation_side, FastNoisyLinearImputer())
    count, height, width = inputs.shape[0], inputs.shape[-2], inputs.shape[-1]
    if cam_shape is None and count:
        shapes = {np.shape(cam) for cam in cams if cam is not None}
        if len(shapes) != 1:
            raise ValueError(f"road needs cam_shape: the CAMs give the grid shapes {sorted(shapes)}")
        cam_shape, = shapes
    values = np.full((count, len(MAPS), len(ORDERS)), np.nan)
    was_training = model.training
    model.eval()

    def probabilities(batch: list, classes: list) -> np.ndarray:
        # One forward pass for one image's clean input and all its perturbations (1 + 6 per percentile), whatever
        # the batch size: float32 results depend on the batch, and this keeps them independent of it and of shards.
        tensor = input_batch(torch.stack(batch)).to(device)
        probs = torch.softmax(model(tensor).float(), dim=1).cpu()
        return probs[torch.arange(probs.shape[0]), torch.tensor(classes)].numpy()

    if count == 0:
        return RoadScores(values)
    try:
        with torch.inference_mode():
            for i in range(count):
                image = inputs[i].detach().cpu().float().contiguous()
                maps = road_maps(cams[i], width, height, stable_seed(seed, "road-random", content_hashes[i]),
                                 cam_shape)
                ties = tie_order(width, height, stable_seed(seed, "road-ties", content_hashes[i]), cam_shape)
                perturbed, jobs = [], []
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(stable_seed(seed, "road", content_hashes[i]) % (2 ** 63))
                    for m, name in enumerate(MAPS):
                        if maps[name] is None:
                            continue
                        mask = torch.from_numpy(rank_order(maps[name], ties))
                        for o, removal in enumerate((RemoveMostRelevantFirst, RemoveLeastRelevantFirst)):
                            for percentile in image_percentiles(content_hashes[i], seed, percentiles, design):
                                with warnings.catch_warnings():  # the library converts a tensor with np.float32
                                    warnings.simplefilter("ignore", DeprecationWarning)
                                    perturbed.append(removal(percentile, imputer)(image, mask))
                                jobs.append((m, o))
                # The clean input in the same batch as its perturbations: an image's numbers never depend on which
                # other images share the run (float32 results vary with the batch), so shards merge exactly.
                found = probabilities([image] + perturbed, [int(targets[i])] * (len(perturbed) + 1))
                after = found[1:] - found[0]
                for (m, o) in set(jobs):
                    values[i, m, o] = float(np.mean([a for a, job in zip(after, jobs) if job == (m, o)]))
                on_image(1)
    finally:
        model.train(was_training)
    return RoadScores(values)
