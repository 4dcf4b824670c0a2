"""Any timm backbone: layers chosen automatically, checked, and CAMs non-constant at three depths."""
import json

import numpy as np
import pytest
import timm
import torch

from reportgen.analysis.autolayers import auto_backbone, family_heuristic
from reportgen.analysis.engine import analyse_backbone
from reportgen.errors import UsageError

from conftest import run_cli


@pytest.mark.parametrize("timm_id, family", [
    ("convnext_atto", "deeper"),
    ("efficientnet_b0", "attention"),
    ("regnetx_002", "deeper"),
    ("swin_tiny_patch4_window7_224", "attention"),
    ("mobilenetv3_small_050", "attention"),
    ("vit_tiny_patch16_224", "attention"),
])
def test_unlisted_models_give_cams_at_three_depths(timm_id, family):
    backbone = auto_backbone(timm_id)
    assert backbone.layer_source == "automatic" and backbone.family == family
    assert backbone.family_source.startswith("heuristic")
    torch.manual_seed(0)
    model = timm.create_model(timm_id, pretrained=False).eval()
    names = dict(model.named_modules())
    assert all(layer in names for layer in backbone.all_layers())
    size = timm.models.get_pretrained_cfg(timm_id).input_size[1:]
    batch = torch.randn(2, 3, *size)
    result = analyse_backbone(model, [batch], backbone.all_layers(), [None, None], layouts=dict(backbone.layouts),
                              cka_layers=backbone.last_three)
    for role, layer in backbone.cam_layers:
        cam = result.layer(layer).cam
        assert cam is not None and cam.shape[-1] * cam.shape[-2] > 1, (timm_id, role)
        assert all(np.ptp(c) > 0 for c in cam), f"{timm_id} {role} {layer}: constant CAM"
    assert len(result.cka) == 3


def test_bad_choices_are_refused():
    with pytest.raises(UsageError, match="Did you mean"):
        auto_backbone("convnext_atoo")
    with pytest.raises(UsageError, match="called 2 times|called"):
        auto_backbone("legacy_seresnet50", layers={"shallow": "layer2", "middle": "layer3", "deep": "layer4.2.relu"})
    with pytest.raises(UsageError, match="no module"):
        auto_backbone("resnet18", layers={"shallow": "layer2", "middle": "layer3", "deep": "layer9"})
    with pytest.raises(UsageError, match="no spatial map"):
        auto_backbone("levit_128s")


def test_family_heuristic_reads_module_types():
    assert family_heuristic(timm.create_model("inception_v3"))[0] == "wider"
    assert family_heuristic(timm.create_model("resnet18"))[0] == "deeper"
    assert family_heuristic(timm.create_model("seresnet18"))[0] == "attention"


def test_unlisted_model_end_to_end(tmp_path, small_image_dir):
    out = tmp_path / "out"
    result = run_cli("run", "--backbone", "convnext_atto", "--backbone", "resnet18", "--weights", "random",
                     "--images", str(small_image_dir), "--out", str(out), "--quiet", "--format", "html,md")
    assert result.exit_code == 0, result.output
    index = json.loads((out / "results" / "results.json").read_text())
    assert [b["name"] for b in index["backbones"]] == ["convnext_atto", "resnet18"]
    assert all(b["layer_source"] == "automatic" for b in index["backbones"])
    html = (out / "report.html").read_text()
    assert "chosen automatically" in html and "stages.3" in html


@pytest.mark.parametrize("timm_id, family, unit", [("resnet18", "deeper", "layer4.1"),
                                                  ("regnety_002", "attention", "s4.b7.conv3")])
def test_automatic_slimming_removes_a_whole_block_never_a_conv_before_its_norm(timm_id, family, unit):
    """The penultimate layer of both is a shape-keeping conv followed by a BatchNorm: removing the conv alone
    would leave the norm normalising its input with statistics of its output. The rule removes the block."""
    import timm

    from reportgen.analysis.autolayers import auto_backbone, dry_forward
    from reportgen.analysis.slimming import choose_unit, feeds_a_batch_norm

    backbone = auto_backbone(timm_id)
    assert backbone.family == family
    model = timm.create_model(timm_id, pretrained=False)
    chosen = choose_unit(model, backbone, (3, 224, 224))
    assert chosen.module == unit and "BatchNorm" in chosen.reason
    dry = dry_forward(model, (3, 224, 224))
    modules = dict(model.named_modules())
    penultimate = backbone.weights_module(backbone.last_three[1])
    assert dry.keeps_shape(penultimate) and feeds_a_batch_norm(dry, modules, penultimate)
    assert dry.keeps_shape(chosen.module) and not feeds_a_batch_norm(dry, modules, chosen.module)
    assert penultimate.startswith(chosen.module + ".")  # the conv goes, with everything around it in its block
