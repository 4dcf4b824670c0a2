"""Issue 25: the user's own task. A folder of user-named classes is a run on those classes (never a refusal); a
checkpoint with a head for them is scored through that head exactly as timm evaluates it; an ImageNet backbone is
scored through an out-of-fold linear probe; a head whose outputs are in another order than the labels is named on
page 1 with the likely mapping; label mistakes stop the run with one line."""
import csv
import json
import shutil

import numpy as np
import pytest

from conftest import NAMES, PERMUTATION, features_of, message_lines, run_cli


def _metrics(run):
    return json.loads((run / "results" / "metrics.json").read_text())


def _index(run):
    return json.loads((run / "results" / "results.json").read_text())


def test_a_three_way_head_fit_in_the_test_equals_a_direct_timm_evaluation(own_task, own_task_run):
    import timm
    import torch
    from safetensors.torch import load_file

    from reportgen.results.store import load_arrays

    index = _index(own_task_run)
    assert index["label_space"]["kind"] == "own" and tuple(index["label_space"]["names"]) == NAMES
    assert "checkpoint" in index["label_space"]["source"]  # the names stored with the checkpoint
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3)
    model.load_state_dict(load_file(own_task / "tuned.safetensors"), strict=True)
    features, labels = features_of(model.eval(), own_task / "val")
    with torch.no_grad():
        direct = model.get_classifier()(torch.tensor(features)).numpy()
    entry = next(b for b in index["backbones"] if b["name"] == "lite0-tuned")
    assert entry["task"]["estimand"] == "own head" and entry["task"]["head_outputs"] == 3
    saved = load_arrays(own_task_run / "results" / entry["arrays"])["logits"]
    files = [image["file"] for image in index["images"]]
    assert files == sorted(files)  # the folder order _features read them in
    np.testing.assert_allclose(saved, direct, rtol=1e-4, atol=1e-4)
    assert np.array_equal(saved.argmax(axis=1), direct.argmax(axis=1))
    score = _metrics(own_task_run)["task"]["scores"]["lite0-tuned"]
    assert score["accuracy"]["mean"] == pytest.approx(float(np.mean(direct.argmax(axis=1) == labels)), abs=1e-12)
    assert score["accuracy"]["n"] == 36
    confusion = np.zeros((3, 3), int)
    for truth, predicted in zip(labels, direct.argmax(axis=1)):
        confusion[truth, predicted] += 1
    assert score["confusion"] == confusion.tolist()


def test_a_permuted_head_is_flagged_with_the_right_mapping(own_task_run):
    scores = _metrics(own_task_run)["task"]["scores"]
    order = scores["lite0-permuted"]["label_order"]
    assert order["flagged"], order
    assert sorted(tuple(pair) for pair in order["mapping"]) == sorted(
        (j, c) for j, c in enumerate(PERMUTATION) if j != c)
    assert order["accuracy_mapped"] - order["accuracy_as_is"] > 0.5
    assert not scores["lite0-tuned"]["label_order"]["flagged"]
    assert scores["lite0-probe"]["label_order"] is None  # a probe is fit to the labels' order
    page_one = (own_task_run / "report.md").read_text().split("## 1 ")[0]
    assert "lite0-permuted" in page_one.replace("\\", "") or "Lite0" in page_one
    assert "probably numbers the classes in another order" in page_one
    assert "output 0 ('cats') looks like 'coffee'" in page_one.replace("\\", "")


def test_an_imagenet_backbone_is_scored_by_an_out_of_fold_probe_and_page_one_names_the_task(own_task_run):
    metrics, index = _metrics(own_task_run), _index(own_task_run)
    probe = metrics["task"]["scores"]["lite0-probe"]
    assert probe["estimand"] == "linear probe" and probe["protocol"] == "5-fold stratified cross-validation, 5 repeats"
    assert probe["accuracy"]["mean"] > 0.6 and probe["knn_accuracy"]["mean"] > 0.6  # chance is 1/3
    # 36 images, 1280 features that separate the classes: LogME's evidence has no interior maximum, and says so
    assert probe["logme"] is not None or "36 images, 1280 feature dimensions" in probe["logme_note"], probe
    entry = next(b for b in index["backbones"] if b["name"] == "lite0-probe")
    assert entry["task"]["head_outputs"] == 1000 and entry["task"]["feature_dim"] == 1280
    # Every CAM explains one of the user's classes, and every prediction names one.
    for backbone in index["backbones"]:
        assert {p["target_name"] for p in backbone["predictions"]} <= set(NAMES)
        assert all(len(p["top5"]) == 3 for p in backbone["predictions"])  # top-k with k = min(5, classes)
    assert [c["images"] for c in metrics["task"]["classes"]] == [12, 12, 12]
    markdown = (own_task_run / "report.md").read_text().replace("\\", "")
    title = next(line for line in markdown.splitlines() if line.startswith("## Backbone decision"))
    assert "for your 3 classes (cats, coffee, rockets), 36 labelled images" in title
    assert "task accuracy" in markdown and "(linear probe)" in markdown and "(own head)" in markdown
    with (own_task_run / "per_image.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row.get("class_name") for row in rows} <= set(NAMES) | {None, ""}


def test_the_probe_candidates_heatmaps_explain_the_users_class(own_task_run):
    index = _index(own_task_run)
    entry = next(b for b in index["backbones"] if b["name"] == "lite0-probe")
    images = index["images"]
    assert [p["target"] for p in entry["predictions"]] == [image["class_index"] for image in images]
    deep = entry["depth_layers"]["deep"]
    assert sum(status == "ok" for status in entry["cam_status"][deep]) >= 30


# --- one-line errors ---------------------------------------------------------------------------------------------

def _labels(tmp_path, text, name="labels.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, expected", [
    ("cats\ncats\nrockets\n", "appears 2 times"),
    ("cats\n\nrockets\n", "blank name"),
    ("cats\ncoffee\n", "not in the labels: rockets"),
])
def test_label_list_mistakes_stop_with_one_line(tmp_path, own_task, text, expected):
    result = run_cli("run", "--preset", "lite", "--images", str(own_task / "val"), "--labels",
                     str(_labels(tmp_path, text)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_a_head_that_does_not_match_the_labels_stops_with_both_numbers(tmp_path, own_task):
    labels = _labels(tmp_path, "cats\ncoffee\nrockets\nshuttles\n")  # a listed class without images is allowed
    result = run_cli("run", "--backbone", "efficientnet_lite0", "--checkpoint",
                     f"efficientnet_lite0={own_task / 'tuned.safetensors'}", "--images", str(own_task / "val"),
                     "--labels", str(labels), "--out", str(tmp_path / "out"))
    assert result.exit_code == 3, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and "3 outputs" in lines[0] and "4 classes" in lines[0], result.output


def test_a_custom_head_on_imagenet_folders_asks_for_its_labels(tmp_path, own_task, class_folder_set):
    result = run_cli("run", "--backbone", "efficientnet_lite0", "--checkpoint",
                     f"efficientnet_lite0={own_task / 'tuned.safetensors'}", "--images", str(class_folder_set),
                     "--out", str(tmp_path / "out"))
    # The checkpoint stores its names, so they are the run's classes, and the WordNet-id folders are not among them.
    assert result.exit_code == 3, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and "not in the labels" in lines[0], result.output


def test_a_single_logit_sigmoid_head_is_scored_as_two_classes(tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file

    from reportgen.analysis.autolayers import resolve_backbones
    from reportgen.analysis.heads import plan_head
    from reportgen.analysis.models import load_model
    from reportgen.analysis.weights import plan_weights
    from reportgen.inputs.labels import NamesSource, own_space

    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "binary.safetensors")
    backbone, = resolve_backbones("lite", ("efficientnet_lite0",))
    plan, = plan_weights((backbone,), "pretrained", {backbone.name: tmp_path / "binary.safetensors"})
    head = plan_head(plan, own_space(("ok", "defect"), NamesSource.LABELS_FILE))
    assert head.estimand == "own head" and head.outputs == 1
    loaded = load_model(plan, 0, head).model
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        z = model(x)[:, 0]
        two = loaded(x)
    assert two.shape == (3, 2)
    torch.testing.assert_close(torch.softmax(two, dim=1)[:, 1], torch.sigmoid(z), rtol=1e-5, atol=1e-6)


def test_compare_shows_the_classes_and_the_task_numbers(own_task_run, lite0_small, tmp_path):
    result = run_cli("compare", str(lite0_small), str(own_task_run), "--out", str(tmp_path / "cmp"),
                     "--format", "html")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert "ImageNet-1k" in html and "your 3 classes (cats, coffee, rockets)" in html
    assert "task accuracy (linear probe)" in html and "LogME" in html


def test_a_probe_fit_on_training_images_scores_the_validation_folder(own_task, fast_battery, tmp_path):
    # Issue 32 (defect 10): two training images planted in the validation folder are flagged, and the run goes on.
    val = tmp_path / "val"
    shutil.copytree(own_task / "val", val)
    planted = sorted((own_task / "train" / "cats").glob("*.jpg"))[:2]
    for number, path in enumerate(planted):
        shutil.copyfile(path, val / "cats" / f"zz-planted{number}.jpg")
    out = tmp_path / "out"
    result = run_cli("run", "--backbone", "efficientnet_lite0", "--images", str(val), "--train-images",
                     str(own_task / "train"), "--config", str(fast_battery), "--out", str(out), "--quiet",
                     "--format", "json,md")
    assert result.exit_code == 0, result.output
    index, metrics = _index(out), _metrics(out)
    run = index["backbones"][0]["task"]
    assert run["protocol"] == "fit on 45 training images" and run["folds"] == 0 and run["explained_by"] == 45
    assert run["explained_images"] == []  # fit on none of the run's images
    score = metrics["task"]["scores"]["efficientnet_lite0"]
    assert score["accuracy"]["n"] == 38 and score["accuracy"]["mean"] > 0.6
    # The training images are not scored: the validation folder's images are the run's.
    assert len(index["images"]) == 38
    copies = ["cats/zz-planted0.jpg", "cats/zz-planted1.jpg"]
    assert index["train_copies"] == copies and metrics["train_copies"] == copies
    page_one = (out / "report.md").read_text().replace("\\", "").split("## 1 ")[0]
    # Issue 34: page 1 counts the near-copies of training images too (pooled features, scoring/datacheck.py); the
    # synthetic folders are crops of a few photos, so some validation crops nearly copy a training crop.
    near = [f["image"] for f in metrics["data"]["flags"] if f["reason"] == "train_eval_near_copy"]
    assert f"{2 + len(near)} of the 38 images are also in the training images" in page_one
    assert not set(near) & set(copies)
    assert "cats/zz-planted0.jpg and cats/zz-planted1.jpg" in page_one and "inflated" in page_one


def test_corruptions_and_faithfulness_score_a_probe_only_on_images_its_head_did_not_see(own_task, tmp_path):
    """Issue 32 (defect 1): the explaining head is fit on half of each class (6 of 12), and the corruption,
    faithfulness and sanity samples hold none of those images (by position and by content)."""
    battery = tmp_path / "battery.toml"
    battery.write_text('[[backbone]]\nid = "efficientnet_lite0"\nname = "lite0-probe"\n\n[analysis]\n'
                       "sanity_max_images = 2\ncorruption_max_images = 16\nfaithfulness_max_images = 4\n"
                       'corruptions = ["gaussian_noise", "brightness"]\nbootstrap_samples = 200\n'
                       'latency_budget_s = 0.2\n')
    out = tmp_path / "out"
    result = run_cli("run", "--config", str(battery), "--images", str(own_task / "val"), "--out", str(out),
                     "--quiet", "--format", "json")
    assert result.exit_code == 0, result.output
    index = _index(out)
    entry, = index["backbones"]
    explained = set(entry["task"]["explained_images"])
    assert entry["task"]["explained_by"] == len(explained) == 18
    labels = [image["class_index"] for image in index["images"]]
    assert sorted(labels[i] for i in explained) == [0] * 6 + [1] * 6 + [2] * 6
    seen = {index["images"][i]["sha256"] for i in explained}
    samples = {"corruption": entry["corruption"]["images"], "faithfulness": entry["faithfulness"]["images"],
               "sanity": entry["sanity"]["images"]}
    assert entry["corruption"]["status"] == "done" and len(samples["corruption"]) == 16
    assert entry["faithfulness"]["status"] == "done" and len(samples["faithfulness"]) == 4
    for name, sample in samples.items():
        assert sample and not set(sample) & explained, name
        assert not {index["images"][i]["sha256"] for i in sample} & seen, name


def test_training_images_need_the_users_classes(own_task, class_folder_set, tmp_path):
    result = run_cli("run", "--backbone", "efficientnet_lite0", "--images", str(class_folder_set), "--train-images",
                     str(own_task / "train"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    lines = message_lines(result.output)
    assert len(lines) == 1 and "--train-images" in lines[0], result.output
