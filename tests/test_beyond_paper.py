"""Section 3.4: calibration, corruptions of the user's own images, faithfulness of the deep-layer CAM."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import IMAGES, run_cli
from reportgen.scoring.calibration import (calibration_measures, expected_calibration_error, fit_temperature,
                                           log_softmax)


def test_ece_of_a_hand_made_table_is_the_textbook_value():
    # bin [0.6, 0.667): conf .60 .62, one right; bin [0.933, 1]: conf .95 .95 .95 .95, three right; 15 bins.
    confidence = np.array([0.60, 0.62, 0.95, 0.95, 0.95, 0.95])
    correct = np.array([1, 0, 1, 1, 1, 0])
    expected = 2 / 6 * abs(0.5 - 0.61) + 4 / 6 * abs(0.75 - 0.95)
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.3, 0.3]), np.array([0.3, 0.3]) * 0 + 1) == pytest.approx(0.7)
    assert expected_calibration_error(np.array([1.0]), np.array([1.0])) == 0.0  # 1.0 falls in the last bin


def test_temperature_scaling_lowers_the_nll_on_the_half_it_was_fitted_on():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=200)
    logits = rng.normal(size=(200, 10))
    logits[np.arange(200), labels] += 1.0
    logits *= 4.0  # overconfident
    nll = lambda t: -log_softmax(logits[:100], t)[np.arange(100), labels[:100]].mean()  # noqa: E731
    fitted = fit_temperature(logits[:100], labels[:100])
    assert fitted > 1.5 and nll(fitted) < nll(1.0)
    measures = calibration_measures(logits, list(labels), [f"{i:064x}" for i in range(200)], seed=0)
    assert len(measures.temperatures) == 2 and all(t > 1.5 for t in measures.temperatures)
    have = np.isfinite(measures.scaled_confidence)
    before = expected_calibration_error(measures.confidence, measures.correct)
    after = np.mean([expected_calibration_error(measures.scaled_confidence[h], measures.correct[h])
                     for h in (measures.first_half & have, ~measures.first_half & have)])
    assert after < before


def test_corruptions_are_the_identity_at_severity_0_and_grow_with_severity():
    from reportgen.analysis.corruptions import CORRUPTIONS, corrupt

    crop = np.asarray(Image.open(IMAGES / "chelsea.png").convert("RGB").resize((96, 96)))
    for name in CORRUPTIONS:
        assert np.array_equal(corrupt(crop, name, 0, 1), crop)
        assert np.array_equal(corrupt(crop, name, 3, 7), corrupt(crop, name, 3, 7))  # seeded per image
        change = [np.abs(corrupt(crop, name, s, 7).astype(float) - crop).mean() for s in range(1, 6)]
        assert all(a <= b + 1e-9 for a, b in zip(change, change[1:])), (name, change)
    noise = [np.std(corrupt(np.full((64, 64, 3), 128, np.uint8), "gaussian_noise", s, 3).astype(float))
             for s in range(1, 6)]
    assert noise == sorted(noise) and noise[0] == pytest.approx(0.08 * 255, rel=0.1)
    import io

    sizes = []
    for s in range(1, 6):  # lower JPEG quality, fewer bytes for the same picture
        buffer = io.BytesIO()
        Image.fromarray(corrupt(crop, "jpeg_compression", s, 3)).save(buffer, format="PNG")
        sizes.append(len(buffer.getvalue()))
    assert sizes[-1] < sizes[0]


def test_the_balanced_design_gives_each_image_every_corruption_once():
    from reportgen.analysis.corruptions import planned_cells

    cells = [planned_cells(f"{i:064x}", 0, 7, 3, "balanced") for i in range(30)]
    assert all(sorted(c for c, _ in image) == list(range(7)) for image in cells)
    counts = np.zeros((7, 3))
    for image in cells:
        for c, v in image:
            counts[c, v] += 1
    assert counts.min() >= 4  # every (corruption, severity) cell gets images
    assert len(planned_cells("x" * 64, 0, 7, 3, "full")) == 21


def test_the_fast_imputer_builds_the_librarys_equation_system():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights

    from reportgen.analysis.faithfulness import FastNoisyLinearImputer

    rng = np.random.default_rng(1)
    image = rng.random((3, 40, 48))
    for share in (0.1, 0.5, 0.9):
        mask = (rng.random((40, 48)) > share).astype(np.float32)
        ours, b_ours = FastNoisyLinearImputer.setup_sparse_system(mask, image, neighbors_weights)
        theirs, b_theirs = NoisyLinearImputer.setup_sparse_system(mask, image, neighbors_weights)
        assert (ours != theirs).nnz == 0 and np.array_equal(b_ours, b_theirs)


def test_an_oracle_map_is_more_faithful_than_a_random_one():
    """ROAD of the true object mask on a controlled image (the object pasted on a flat background, its box exact)
    beats the uniform-random map: removing the object hurts, removing background does not."""
    from reportgen.analysis.faithfulness import road
    from reportgen.analysis.models import load_model, on_device
    from reportgen.analysis.transforms import eval_transform
    from reportgen.analysis.weights import plan_weights
    from reportgen.inputs.registry import lookup

    rows = {r["file"]: r for r in csv.DictReader((IMAGES / "annotations.csv").open())}
    names = ["controlled_cat_large_clean.png", "controlled_espresso_large_clean.png"]
    plan, = plan_weights((lookup("efficientnet_lite0"),), "pretrained", {})
    loaded = load_model(plan, 0)
    model = on_device(loaded.model, "cpu").eval()
    transform = eval_transform(loaded.data_config)
    inputs, oracles, targets = [], [], []
    for name in names:
        image = Image.open(IMAGES / name).convert("RGB")
        x0, y0, x1, y1 = (float(rows[name][k]) for k in ("x0", "y0", "x1", "y1"))
        mask = np.zeros((image.height, image.width), np.float32)
        mask[int(y0):int(y1), int(x0):int(x1)] = 1.0
        inputs.append(transform(image))
        # the mask through the same resize and crop as the pixels
        shaped = transform.transforms[1](transform.transforms[0](Image.fromarray((mask * 255).astype(np.uint8))))
        oracles.append(np.asarray(shaped, np.float32) / 255.0)  # road breaks the mask's ties itself
        with torch.inference_mode():
            targets.append(int(model(inputs[-1][None]).argmax()))
    scores = road(model, torch.stack(inputs), oracles, targets, names, (30, 50, 70), 0, "cpu", 64, "full",
                  cam_shape=(7, 7))  # the random map on the grid of Lite0's deep layer, not per pixel
    gaps = (scores.values[:, :, 1] - scores.values[:, :, 0]) / 2  # images x (oracle, random, gaussian)
    assert np.all(gaps[:, 0] > gaps[:, 1] + 0.05), gaps
    assert np.all(np.abs(gaps[:, 1]) < 0.1)  # a random map removes alike in both orders


def test_every_lite_model_gets_all_three_and_its_heatmaps_beat_the_random_map(lite_report):
    metrics = json.loads((lite_report / "results" / "metrics.json").read_text())
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        calibration, corruption = metrics["calibration"][name], metrics["corruption"][name]
        faithfulness = metrics["faithfulness"][name]
        assert calibration["status"] == "done" and 0 <= calibration["ece"]["mean"] <= 1
        assert calibration["labelled"] == 17 and len(calibration["temperatures"]) == 2
        assert corruption["status"] == "done" and corruption["measure"] == "top-1" and corruption["images"] >= 10
        assert {c["corruption"] for c in corruption["cells"]} >= {"gaussian_noise", "defocus_blur", "motion_blur",
                                                                    "jpeg_compression", "pixelate", "brightness",
                                                                    "contrast"}
        assert faithfulness["status"] == "done" and faithfulness["beats_random"] is True, faithfulness
    decision = json.loads((lite_report / "metrics.json").read_text())["decision"]
    assert {"corruption", "faithfulness"} <= set(decision["weights"])
    assert dict(decision["dropped"])["calibration"].startswith("17 labelled images, fewer than")
    html = (lite_report / "report.html").read_text()
    for anchor in ("tab-calibration", "tab-corruptions", "tab-faithfulness", "fig-reliability", "fig-corruptions",
                   "fig-faithfulness"):
        assert f'id="{anchor}"' in html
    assert "3.4 Beyond the paper" in (lite_report / "report.md").read_text()
    with (lite_report / "per_image.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "road_gap" in rows[0] and "agree_gaussian_noise_s3" in rows[0]
    assert any(row["road_gap"] for row in rows) and any(row["agree_contrast_s3"] in ("True", "False") for row in rows)


def test_forced_on_untrained_weights_they_run_on_any_timm_id_and_say_what_it_means(tmp_path, small_image_dir):
    battery = tmp_path / "b.toml"
    battery.write_text("[analysis]\nbeyond_paper_on_untrained = true\ncorruption_max_images = 2\n"
                       "faithfulness_max_images = 2\nsanity_check = false\nlatency_budget_s = 0.2\n")
    out = tmp_path / "out"
    result = run_cli("run", "--config", str(battery), "--backbone", "resnet18", "--weights", "random",
                     "--images", str(small_image_dir), "--out", str(out), "--quiet", "--format", "html,json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    assert metrics["corruption"]["resnet18"]["status"] == "done"
    assert metrics["faithfulness"]["resnet18"]["status"] == "done"
    index = json.loads((out / "results" / "results.json").read_text())
    assert len(index["backbones"][0]["faithfulness"]["images"]) == 2  # the sample (a flagged CAM has no gap)
    assert len(index["backbones"][0]["corruption"]["images"]) == 2
    html = (out / "report.html").read_text()
    assert "these numbers describe randomly initialised networks: not evidence" in html
    default = tmp_path / "default"
    skipped = run_cli("run", "--backbone", "resnet18", "--weights", "random", "--images", str(small_image_dir),
                      "--out", str(default), "--quiet", "--no-sanity-check", "--format", "json")
    assert skipped.exit_code == 0, skipped.output
    metrics = json.loads((default / "results" / "metrics.json").read_text())
    assert metrics["corruption"]["resnet18"]["status"] == "skipped"
    assert "untrained weights" in metrics["faithfulness"]["resnet18"]["reason"]


def test_the_old_criterion_name_is_an_accepted_alias(tmp_path):
    from reportgen.inputs.battery import load_battery

    battery = tmp_path / "b.toml"
    battery.write_text("[decision]\nweights = { robustness = 2, calibration = 0 }\n")
    settings = load_battery(battery).analysis_config().decision
    assert settings.effective_weights()["clutter"] == 2.0 and settings.effective_weights()["calibration"] == 0.0
    assert settings.aliases_used() == (("robustness", "clutter"),)
