"""Model-parameter randomisation (Adebayo et al. 2018): the mechanics, and the real-weights outcome."""
import json

import pytest
import timm
import torch

from reportgen.inputs import registry
from reportgen.analysis.sanity import cascading_randomisation, randomise


@pytest.mark.parametrize("backbone", registry.BACKBONES, ids=lambda b: b.name)
def test_randomisation_steps_name_real_modules(backbone, architecture):
    names = set(dict(architecture(backbone.architecture).named_modules()))
    assert [label for label, _ in backbone.randomisation] == ["head", "last stage", "all"]
    for _, modules in backbone.randomisation:
        for module in modules:
            assert module in names, f"{backbone.name}: {module!r} not in named_modules()"


def test_randomise_touches_only_the_named_modules_and_is_seeded():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    touched = randomise(model, ("fc", "layer4"), seed=3)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("fc.", "layer4.")) for k in changed)
    assert "fc.weight" in changed and "layer4.1.conv2.weight" in changed
    assert len(touched) == sum(1 for n, _ in model.named_parameters() if n.startswith(("fc.", "layer4.")))
    twin = timm.create_model("resnet18", pretrained=False)
    twin.load_state_dict(before)
    randomise(twin, ("fc", "layer4"), seed=3)
    assert all(torch.equal(twin.state_dict()[k], after[k]) for k in after)


def test_cascade_leaves_the_trained_model_alone_and_grows():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.randn(2, 3, 64, 64)
    steps = (("head", ("fc",)), ("last stage", ("layer4",)), ("all", ("",)))
    result = cascading_randomisation(model, [batch], ["layer3", "layer4"], [1, 2], steps)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    counts = [step.parameters for step in result.steps]
    assert counts[0] < counts[1] < counts[2] == sum(p.numel() for p in model.parameters())
    assert all(step.cams["layer3"].shape == (2, 4, 4) for step in result.steps)


def test_real_weights_cams_change_when_weights_are_randomised(lite_report):
    metrics = json.loads((lite_report / "results" / "metrics.json").read_text())
    for name, found in metrics["sanity"].items():
        assert found["status"] == "done", name
        for layer, per_layer in found["layers"].items():
            reference, *randomised = per_layer["steps"]
            assert reference["step"] == "none (trained)"
            assert reference["spearman"]["mean"] == pytest.approx(1.0)
            assert reference["ssim"]["mean"] == pytest.approx(1.0)
            full = randomised[-1]
            assert full["step"] == "all" and full["spearman"]["n"] >= 10
            # Trained-vs-random similarity well below trained-vs-trained.
            assert full["spearman"]["mean"] < 0.5, (name, layer, full)
            assert full["ssim"]["mean"] < 0.5, (name, layer, full)
            assert not per_layer["flagged"]


def test_real_weights_deep_cams_beat_the_uniform_baseline(lite_report):
    metrics = json.loads((lite_report / "results" / "metrics.json").read_text())
    rows = {(r["scope"], r["name"], r["role"], r["group"], r["metric"]): r for r in metrics["aggregates"]}
    for name in registry.PRESETS["lite"]:
        deep = rows[("backbone", name, "deep", "all", "mass_ratio")]
        uniform = rows[("backbone", name, "baseline:uniform", "all", "mass_ratio")]
        assert deep["n"] >= 15
        assert deep["mean"] > 1.2 and deep["mean"] > uniform["mean"]
        assert deep["ci_low"] > uniform["mean"]
    predictions = [p for p in metrics["predictions"] if p["image"] == "chelsea.png"]
    assert len(predictions) == 3
    assert all({281, 282, 283, 284, 285} & {t["index"] for t in p["top5"][:3]} for p in predictions)
    assert all(p["correct_top5"] is not None and len(p["top5"]) == 5 for p in predictions)


def test_untrained_runs_skip_the_sanity_check(tmp_path, small_image_dir):
    from conftest import run_cli

    out = tmp_path / "out"
    result = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--weights", "random",
                     "--images", str(small_image_dir), "--out", str(out), "--quiet", "--format", "html")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    assert metrics["sanity"]["efficientnet_lite0"] == {"status": "skipped", "reason": "untrained weights", "layers": {}}
    assert "skipped: untrained weights" in (out / "report.html").read_text()
