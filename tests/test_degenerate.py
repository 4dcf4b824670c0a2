"""A broken model gives a report that says so, never a crash (issue 27): the degenerate checks on numbers where the
truth is known, both sides of each threshold on real Lite0 outputs, the broken checkpoint end to end, and a render
that fails after the analyses."""
from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest

from conftest import IMAGES, LITE0_SMALL, copy_run, run_cli
from reportgen.inputs.config import DecisionSettings
from reportgen.results.schema import CamStatus, Prediction, RankedClass
from reportgen.scoring.degenerate import assess

SETTINGS = DecisionSettings()


def _predictions(predicted, labels=None):
    labels = labels if labels is not None else [None] * len(predicted)
    return [Prediction(label if label is not None else guess, "", "manifest",
                       (RankedClass(guess, f"class {guess}", 0.9),),
                       None if label is None else guess == label, None)
            for guess, label in zip(predicted, labels)]


def _assess(predicted, labels=None, statuses=None, top1_high=None):
    predictions = _predictions(predicted, labels)
    correct = [p.correct_top1 for p in predictions if p.correct_top1 is not None]
    top1 = float(np.mean(correct)) if correct else None
    statuses = statuses if statuses is not None else [CamStatus.OK] * len(predicted)
    return assess("m", "M", predictions, statuses, top1, top1_high if top1_high is not None else top1, SETTINGS)


def test_one_class_for_most_images_is_degenerate_unless_the_labels_are_that_uniform():
    labels = [i % 5 for i in range(20)]
    collapsed = _assess([3] * 17 + [0, 1, 2], labels)  # 85 % one class
    assert collapsed.collapsed and collapsed.flagged and collapsed.top_class == "class 3"
    assert collapsed.top_class_share == pytest.approx(0.85)
    spread = _assess([3] * 15 + [0, 1, 2, 4, 4], labels)  # 75 %: below the 0.8 limit
    assert not spread.collapsed
    uniform = _assess([3] * 18 + [0, 1], [3] * 18 + [0, 1])  # a folder that is mostly one class, predicted right
    assert not uniform.collapsed and not uniform.flagged


def test_a_uniform_folder_excuses_only_a_collapse_onto_its_own_class():
    """20 images of one class (a folder of cats). A model that calls 17 of them (85 %) another class has collapsed:
    the folder being uniform excuses predicting *its* class, not any one class. Its top-1 (3 / 20 = 15 %, interval
    up to about 30 %) is far from chance, so only the one-class check can name it. Before: excused, not flagged.
    Three labelled images among twenty are too few to call the set uniform (the chance check's minimum)."""
    folder = [1] * 20
    other = _assess([3] * 17 + [1] * 3, folder, top1_high=0.30)
    assert other.collapsed and other.flagged and other.top_class == "class 3" and not other.at_chance
    own = _assess([1] * 17 + [3] * 3, folder)  # the folder's class: excused, as before
    assert not own.collapsed and not own.flagged
    few = _assess([1] * 20, [1] * 3 + [None] * 17)  # 3 labels, all the predicted class: no evidence of uniformity
    assert few.collapsed and few.flagged


def test_top1_at_chance_is_degenerate_only_when_its_whole_interval_is():
    labels = list(range(20))
    wrong = _assess([(label + 1) % 1000 for label in labels], labels)
    assert wrong.top1 == 0 and wrong.at_chance and wrong.flagged
    ceiling = 1 / 1000 + SETTINGS.degenerate_chance_margin * (1 - 1 / 1000)  # 5.1 %
    assert _assess([(label + 1) % 1000 for label in labels], labels, top1_high=ceiling - 1e-9).at_chance
    assert not _assess([(label + 1) % 1000 for label in labels], labels, top1_high=ceiling + 1e-3).at_chance


def test_deep_cams_zero_on_most_images_are_degenerate():
    predicted = list(range(20))
    half = [CamStatus.ZERO] * 10 + [CamStatus.OK] * 10
    assert _assess(predicted, statuses=half).cams_broken
    assert not _assess(predicted, statuses=[CamStatus.NAN] * 9 + [CamStatus.OK] * 11).cams_broken


def test_too_few_images_decide_nothing():
    found = _assess([7, 7, 7], [1, 2, 3], statuses=[CamStatus.ZERO] * 3)
    assert not found.flagged  # three images predicted alike are no evidence


def test_the_prediction_is_the_first_of_its_ranking_and_is_not_saved():
    """``Prediction.top1`` names what every reader of ``top5[0]`` meant; results.json keeps only the ranking."""
    ranking = (RankedClass(7, "ladybug", 0.6), RankedClass(3, "tiger shark", 0.3))
    prediction = Prediction(3, "tiger shark", "manifest", ranking, False, True)
    assert prediction.top1 == RankedClass(7, "ladybug", 0.6) and Prediction.top1_of(ranking) is ranking[0]
    assert "top1" not in prediction.to_json() and Prediction.from_json(prediction.to_json()).top1 == ranking[0]


@pytest.fixture(scope="module")
def lite0():
    """Lite0 on its real ImageNet weights (the lite package)."""
    import timm

    from reportgen.analysis.models import load_lite_checkpoint
    from reportgen.analysis.weights import lite_package_file

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_lite_checkpoint(model, str(lite_package_file("0")))
    return model.eval()


def _lite0_predictions(model, mean, std):
    """Lite0's predictions on the curated images through the given normalisation, as the run records them."""
    import timm
    import torch

    from reportgen.analysis.classes import imagenet_label_space
    from reportgen.inputs.decoding import load_rgb
    from reportgen.inputs.images import load_image_set

    config = dict(timm.data.resolve_data_config(model=model), mean=mean, std=std)
    transform = timm.data.create_transform(**config)
    records = load_image_set(IMAGES, imagenet_label_space()).records
    with torch.inference_mode():
        logits = model(torch.stack([transform(load_rgb(r.path)) for r in records]))
    top = logits.argmax(1).tolist()
    return [Prediction(r.class_index if r.class_index is not None else guess, "", "manifest",
                       (RankedClass(guess, str(guess), 1.0),),
                       None if r.class_index is None else guess == r.class_index, None)
            for guess, r in zip(top, records)]


def _top1_with_interval(predictions):
    from reportgen.scoring.bootstrap import interval, paired_draws

    correct = np.array([p.correct_top1 for p in predictions if p.correct_top1 is not None], dtype=float)
    draws = paired_draws([0] * len(correct), 1000, seed=0)
    return float(correct.mean()), interval(draws.means(correct))[1]


@pytest.mark.parametrize("mean, std, flagged", [
    ((0.5,) * 3, (0.5,) * 3, False),  # Lite0's own normalisation
    ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),  # ImageNet's: the common mistake, mild for Lite0
    ((0.0,) * 3, (1 / 255,) * 3, True),  # pixels fed as 0..255: the model sees noise
], ids=["own", "imagenet-mean-std", "unscaled-0-255"])
def test_wrong_normalisation_is_flagged_by_its_numbers(mean, std, flagged, lite0):
    predictions = _lite0_predictions(lite0, mean, std)
    top1, high = _top1_with_interval(predictions)
    found = assess("lite0", "Lite0", predictions, [CamStatus.OK] * len(predictions), top1, high, SETTINGS)
    assert found.flagged == flagged, (top1, high, found)


def _page_one(markdown: str) -> str:
    return markdown.split("\n## 1 ")[0]


def _decision(out):
    return json.loads((out / "metrics.json").read_text())["decision"]


def test_a_zeroed_stage_beside_the_intact_weights_is_ranked_last_with_a_warning(broken_pair_run):
    _ranked_last_with_a_warning(broken_pair_run)


def test_on_a_class_folder_set_too(broken_pair_folder_run):
    _ranked_last_with_a_warning(broken_pair_folder_run)


def _ranked_last_with_a_warning(out):
    decision = _decision(out)
    assert [c["backbone"] for c in decision["candidates"]] == ["lite0-stock", "lite0-new"]
    assert decision["leader"] == "lite0-stock" and decision["recommended"] in (None, "lite0-stock")
    assert [d["backbone"] for d in decision["degenerate"]] == ["lite0-new"]
    page = _page_one((out / "report.md").read_text())
    warning = re.search(r"lite0-new looks broken: predicts class '[^']+' for (\d+) % of (\d+) images; its top-1 is "
                        r"([\d.]+) %", page.replace("\\", ""))
    assert warning, page
    assert int(warning.group(1)) >= 80 and float(warning.group(3)) < 5
    assert "normalisation \\(mean/std\\)" in page and "class order" in page
    # the decision's text reasons about the intact model only
    headline = page.split("\n\n")[1]
    assert "lite0-new" not in headline.replace("1 fails them", "")


def test_the_broken_pair_renders_every_format_with_the_warning_on_page_one_of_the_pdf(broken_pair_run):
    import pypdf

    first = pypdf.PdfReader(str(broken_pair_run / "report.pdf")).pages[0].extract_text()
    assert "lite0-new looks broken" in " ".join(first.split())
    assert "lite0-new looks broken" in (broken_pair_run / "report.html").read_text()


def test_a_render_that_fails_after_the_analyses_says_how_to_retry(lite0_small, tmp_path, fast_battery,
                                                                 small_image_dir, monkeypatch):
    out = copy_run(lite0_small, tmp_path / "out")
    (out / "report.html").unlink()
    import reportgen.pipeline.execute as execute

    def broken_render(*args, **kwargs):
        raise ZeroDivisionError("a bug in a figure")
    monkeypatch.setattr(execute, "render_report", broken_render)
    from click.testing import CliRunner

    from reportgen.cli import main

    result = CliRunner().invoke(main, [*LITE0_SMALL, "--config", str(fast_battery), "--images", str(small_image_dir),
                                       "--quiet", "--format", "html,md", "--out", str(out)])
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()[-1]
    assert "rendering failed" in message and "ZeroDivisionError" in message
    assert f"saved in {out / 'results'}" in message
    retry = re.search(r"`(reportgen render [^`]+)`", message).group(1)
    assert (out / "results" / "results.json").is_file() and not (out / "report.html").exists()
    monkeypatch.undo()
    again = run_cli(*shlex.split(retry)[1:])
    assert again.exit_code == 0, again.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_a_constant_cam_counts_as_pointing_nowhere():
    from reportgen.analysis.engine import _cam_status

    assert _cam_status(np.full((7, 7), 0.3)) == CamStatus.ZERO  # constant: no spatial information
    assert _cam_status(np.zeros((7, 7))) == CamStatus.ZERO
    assert _cam_status(np.arange(49.0).reshape(7, 7)) == CamStatus.OK
    assert _cam_status(np.full((7, 7), np.nan)) == CamStatus.NAN
