"""Metric unit tests on synthetic maps with known answers, and the crop geometry against timm."""
import numpy as np
import pytest
import timm
from PIL import Image

from reportgen.inputs.geometry import crop_window
from reportgen.results.stats import weight_summary
from reportgen.scoring.measures import (box_mask, centred_gaussian, linear_cka_from_grams, localisation,
                                        uniform_map)


def test_cam_equal_to_box_puts_all_mass_inside():
    box = (10, 20, 30, 50)
    cam = box_mask(64, 64, box).astype(np.float32)
    found = localisation(cam, box)
    assert found.mass_in_box == pytest.approx(1.0)
    assert found.mass_ratio == pytest.approx(1.0 / found.box_share)
    assert found.pointing_hit


def test_uniform_map_has_mass_ratio_one_and_full_spread():
    found = localisation(uniform_map(80, 60), (5, 5, 40, 30))
    assert found.mass_ratio == pytest.approx(1.0)
    assert found.spread == pytest.approx(1.0)
    assert found.entropy == pytest.approx(1.0)


def test_pointing_on_single_peak():
    cam = np.zeros((50, 50), np.float32)
    cam[40, 10] = 1.0
    assert localisation(cam, (5, 35, 15, 45)).pointing_hit
    assert not localisation(cam, (20, 20, 30, 30)).pointing_hit
    assert localisation(cam, (20, 20, 30, 30)).spread == pytest.approx(1 / 2500)


def test_zero_or_nan_cam_gives_no_metrics():
    assert localisation(np.zeros((8, 8)), (0, 0, 4, 4)) is None
    assert localisation(np.full((8, 8), np.nan), (0, 0, 4, 4)) is None


def test_gaussian_baseline_favours_central_boxes():
    gauss = centred_gaussian(100, 100)
    assert localisation(gauss, (40, 40, 60, 60)).mass_ratio > 1 > localisation(gauss, (0, 0, 20, 20)).mass_ratio


def test_cka_self_is_one_and_invariant_to_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 30))
    xc = x - x.mean(0)
    gram = xc @ xc.T
    assert linear_cka_from_grams(gram, gram) == pytest.approx(1.0)
    assert linear_cka_from_grams(gram, 7 * gram) == pytest.approx(1.0)
    y = rng.normal(size=(10, 30))
    yc = y - y.mean(0)
    assert linear_cka_from_grams(gram, yc @ yc.T) < 0.9


def test_weight_summary():
    w = np.random.default_rng(0).normal(0, 2, size=100_000)
    s = weight_summary(w, bins=20, quantiles=11, near_zero_fraction=0.01)
    assert s["std"] == pytest.approx(2, rel=0.02)
    assert abs(s["excess_kurtosis"]) < 0.1
    assert s["hist_counts"].sum() == w.size and len(s["hist_edges"]) == 21


def _white_box_seen_by_timm(config: dict, width: int, height: int, box: tuple):
    """The box as timm's eval transform places it: the extent of a white rectangle on black (no normalisation,
    black padding), or None when none of it is in view."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[box[1]:box[3], box[0]:box[2]] = 255
    plain = dict(config, mean=(0, 0, 0), std=(1, 1, 1))
    white = (timm.data.create_transform(**plain)(Image.fromarray(pixels))[0] > 0.5).numpy()
    ys, xs = np.nonzero(white)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if xs.size else None


IMAGE_SIZES = [(451, 300), (300, 451), (320, 320), (120, 90)]  # landscape, portrait, square, smaller than a crop
CROP_MODES = ("center", "squash", "border")  # every mode of timm's eval transform


def _registry_configs():
    from reportgen.inputs.registry import BACKBONES

    for backbone in BACKBONES:
        cfg = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(backbone.timm_id).to_dict())
        yield backbone.name, cfg
    # a non-square input, which the registry lacks and timm resizes with its own ResizeKeepRatio
    yield "non-square", dict(cfg, input_size=(3, 192, 256), crop_pct=0.9)


@pytest.mark.parametrize("name, config", list(_registry_configs()), ids=lambda v: v if isinstance(v, str) else "")
def test_crop_window_matches_timm_transform(name, config):
    for mode in CROP_MODES:
        for width, height in IMAGE_SIZES:
            box = (int(width * 0.4), int(height * 0.3), int(width * 0.7), int(height * 0.8))
            moded = dict(config, crop_mode=mode)
            seen = _white_box_seen_by_timm(moded, width, height, box)
            mapped = crop_window(width, height, moded).map_box(box)
            where = (name, mode, width, height, seen, mapped)
            assert (seen is None) == (mapped is None), where
            if seen is not None:
                assert all(abs(a - b) <= 1.5 for a, b in zip(seen, mapped)), where


def test_crop_window_refuses_what_timm_does_differently():
    config = {"input_size": (3, 224, 224), "crop_pct": 0.875}
    with pytest.raises(ValueError, match="crop_mode 'zoom'"):
        crop_window(100, 100, dict(config, crop_mode="zoom"))
    with pytest.raises(ValueError, match="crop_border_pixels"):
        crop_window(100, 100, dict(config, crop_border_pixels=4))


def test_spearman_known_answers():
    from reportgen.scoring.measures import spearman

    ramp = np.arange(100, dtype=float).reshape(10, 10)
    assert spearman(ramp, ramp) == pytest.approx(1.0)
    assert spearman(ramp, ramp ** 3) == pytest.approx(1.0)  # rank-based: any monotone map agrees
    assert spearman(ramp, -ramp) == pytest.approx(-1.0)
    assert spearman(ramp, np.zeros_like(ramp)) == 0.0  # a constant map ranks nothing
    ties = np.array([1.0, 2.0, 2.0, 3.0])
    assert spearman(ties, np.array([10.0, 20.0, 20.0, 30.0])) == pytest.approx(1.0)


def test_ssim_known_answers():
    from reportgen.scoring.measures import ssim

    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, rng.random((32, 32))) < 0.1  # independent noise shares no structure
    assert 0.5 < ssim(a, np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)) < 1.0


def test_cam_similarity_of_a_map_with_itself_is_one():
    from reportgen.scoring.measures import cam_similarity

    cam = np.outer(np.hanning(7), np.hanning(7))
    assert cam_similarity(cam, cam) == pytest.approx((1.0, 1.0))
    moved = np.roll(cam, 3, axis=1)
    rho, structural = cam_similarity(cam, moved)
    assert rho < 0.5 and structural < 0.9


def test_ks_from_quantiles():
    from reportgen.scoring.measures import ks_from_quantiles

    probs = np.linspace(0, 1, 1001)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(200_000), rng.standard_normal(200_000) + 0.5
    assert ks_from_quantiles(np.quantile(x, probs), np.quantile(x, probs)) == 0.0
    # KS between N(0,1) and N(0.5,1) is 2*Phi(0.25) - 1 = 0.1974
    assert ks_from_quantiles(np.quantile(x, probs), np.quantile(y, probs)) == pytest.approx(0.1974, abs=0.01)
    assert ks_from_quantiles(np.linspace(0, 1, 11), np.linspace(5, 6, 11)) == 1.0


def test_weight_summary_matches_numpy_reference():
    """The one-sort implementation gives numpy's quantiles, histogram and moments."""
    w = (np.random.default_rng(3).standard_t(5, size=300_001) * 0.02).astype(np.float32)
    s = weight_summary(w, bins=60, quantiles=1001, near_zero_fraction=0.01)
    w64 = w.astype(np.float64)
    low, high = np.percentile(w64, [0.5, 99.5])
    counts, edges = np.histogram(np.clip(w64, low, high), bins=60, range=(low, high))
    assert np.array_equal(counts, s["hist_counts"]) and np.allclose(edges, s["hist_edges"])
    assert np.allclose(np.quantile(w64, np.linspace(0, 1, 1001)).astype(np.float32), s["quantiles"])
    assert s["mean"] == pytest.approx(w64.mean()) and s["std"] == pytest.approx(w64.std())
    kurt = ((w64 - w64.mean()) ** 4).mean() / w64.std() ** 4 - 3
    assert s["excess_kurtosis"] == pytest.approx(kurt)
    assert s["near_zero_share"] == pytest.approx((np.abs(w64) < 0.01 * np.abs(w64).max()).mean())


def test_adding_a_backbone_leaves_every_other_interval_unchanged():
    """The draws depend on the run's seed and the images' groups only, so a new backbone (here one that sorts first)
    cannot shift the others' intervals, and `compare` shows no seed artefacts."""
    from reportgen.inputs.config import AnalysisConfig
    from reportgen.results.schema import CamStatus, PerImageRow
    from reportgen.scoring.score import aggregate

    def rows(name, family, shift):
        return [PerImageRow(image=f"img{i}", backbone=name, family=family, layer="x", role="deep",
                            size=("small", "large")[i % 2], background="clean", cam_status=CamStatus.OK,
                            mass_in_box=0.5, mass_ratio=1.0 + shift + 0.37 * ((i * 7) % 5), pointing_hit=i % 3 == 0,
                            spread=0.1 + 0.01 * i, entropy=0.8)
                for i in range(10)]
    config = AnalysisConfig(bootstrap_samples=200)
    index = _index_of(10, ["zebra"], config)
    before = {(a.scope, a.name, a.role, a.group, a.metric): a
              for a in aggregate(index, rows("zebra", "deeper", 0.0), config)}
    both = _index_of(10, ["aardvark", "zebra"], config)
    after = {(a.scope, a.name, a.role, a.group, a.metric): a
             for a in aggregate(both, rows("aardvark", "wider", 0.5) + rows("zebra", "deeper", 0.0), config)}
    assert before and all(after[key] == row for key, row in before.items() if key[0] == "backbone")
    assert any(a.ci_low is not None for a in before.values())


def _index_of(count, names, config):
    from reportgen.results.schema import (SCHEMA_VERSION, ImageEntry, ImageSetInfo, RunIndex)

    images = tuple(ImageEntry(file=f"img{i}", sha256="", width=10, height=10, class_index=None, class_name=None,
                              box=(0.0, 0.0, 5.0, 5.0), box_share=0.25, size=("small", "large")[i % 2],
                              background="clean", source="", licence="", notes="", decoding="", size_source="",
                              background_source="", box_source="", display_copy="") for i in range(count))
    entries = tuple(_entry(name) for name in names)
    return RunIndex(schema_version=SCHEMA_VERSION, versions={}, config=config, seed=0, weights_mode="pretrained",
                    device="cpu", image_set=ImageSetInfo("t", "", count), images=images, skipped_images=(),
                    backbones=entries, timings_file="timings.json", battery_file={})


def _entry(name):
    from reportgen.results.schema import (BackboneResult, FeatureCka, SanityRun, SlimmingRun, WeightsInfo)

    return BackboneResult(name=name, timm_id=name, architecture=name, display_name=name, family="deeper",
                          family_source="registry", layer_source="registry", depth_layers={"deep": "x"},
                          last_three=("a", "b", "c"), weight_modules={}, layers=("x",),
                          weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={}, params=1,
                          macs=1.0, cam_status={}, feature_stats={}, weight_stats={},
                          feature_cka=FeatureCka((), (), ""), views=(), predictions=(),
                          sanity=SanityRun("skipped", "", ()),
                          slimming=SlimmingRun(status="not-possible", unit=None, unit_source="registry", reason="",
                                               params_removed=0, macs_removed=0.0, deep_cam_layer=None), batch_size=1)
