"""Every layer named in the registry exists, is hooked once per forward and yields a usable CAM."""
import numpy as np
import pytest
import timm
import torch

from reportgen.inputs import registry
from reportgen.analysis.engine import analyse_backbone, tokens_to_map
from reportgen.inputs.decoding import load_rgb

from conftest import IMAGES


@pytest.fixture(scope="module")
def photo():
    return load_rgb(IMAGES / "chelsea.png")


@pytest.mark.parametrize("backbone", registry.BACKBONES, ids=lambda b: b.name)
def test_layers_exist_and_give_nonconstant_cams(backbone, photo, architecture):
    model = architecture(backbone.architecture)
    names = dict(model.named_modules())
    for layer in backbone.all_layers():
        assert layer in names, f"{backbone.name}: {layer} not in named_modules()"
    config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(backbone.timm_id).to_dict())
    batch = torch.stack([timm.data.create_transform(**config)(photo)] * 2)
    batch[1] = batch[1].flip(-1)
    expected = {}
    hooks = [names[l].register_forward_hook(lambda m, i, o, l=l: expected.__setitem__(l, tokens_to_map(model, o)))
             for l in backbone.depth_layers.values()]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    result = analyse_backbone(model, [batch], backbone.all_layers(), [None, None])
    for role, layer in backbone.cam_layers:
        cam = result.layer(layer).cam
        assert cam is not None, f"{backbone.name}/{role}: no spatial map"
        assert cam.shape == (2,) + tuple(expected[layer].shape[-2:])
        assert np.all(np.isfinite(cam))
        assert cam.std() > 0, f"{backbone.name}/{role} ({layer}): constant CAM"
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def test_presets_and_lookup():
    assert [b.name for b in registry.preset("paper")] == list(registry.PRESETS["paper"])
    assert {b.family for b in registry.preset("paper")} == set(registry.FAMILIES)
    assert registry.lookup("resnet50.tv_in1k").name == "resnet50"
    assert registry.lookup("legacy_seresnet50").name == "seresnet50"
    with pytest.raises(registry.UnknownName, match="Did you mean: resnet50"):
        registry.lookup("resnet5")


def test_deit_reshape_uses_prefix_tokens_and_grid():
    model = timm.create_model("deit_small_distilled_patch16_224", pretrained=False)
    assert model.num_prefix_tokens == 2
    tokens = torch.arange(2 * 198 * 3, dtype=torch.float32).reshape(2, 198, 3)
    grid = tokens_to_map(model, tokens)
    assert grid.shape == (2, 3, 14, 14)
    assert torch.equal(grid[:, :, 0, 0], tokens[:, 2, :])


@pytest.mark.parametrize("backbone", registry.BACKBONES, ids=lambda b: b.name)
def test_weight_modules_name_weight_layers_behind_last_three_taps(backbone, architecture):
    model = architecture(backbone.architecture)
    modules = dict(model.named_modules())
    for tap, owner in backbone.weight_modules:
        assert tap in backbone.last_three, f"{backbone.name}: {tap} is not a last-three layer"
        assert any(p.dim() >= 2 for p in modules[owner].parameters()), f"{backbone.name}: {owner} has no weight matrix"
    for layer in backbone.last_three:
        assert any(p.dim() >= 2 for p in modules[backbone.weights_module(layer)].parameters())


def test_lite_registry_taps_match_the_automatic_rule():
    """The automatic rule reads a conv after the norm that consumes it; for EfficientNet-Lite it arrives at
    the registry's hand-checked choice."""
    from reportgen.analysis.autolayers import auto_backbone

    for i in range(3):
        chosen = auto_backbone(f"tf_efficientnet_lite{i}")
        listed = registry.lookup(f"efficientnet_lite{i}")
        assert chosen.last_three == listed.last_three
        assert dict(chosen.weight_modules) == dict(listed.weight_modules)


@pytest.mark.parametrize("backbone", registry.BACKBONES, ids=lambda b: b.name)
def test_registry_slimming_units_follow_the_rule(backbone, architecture):
    """Each registry backbone names the unit slimming removes, with the reason; the rule (the penultimate layer when
    it keeps its shape and feeds no BatchNorm, else the smallest block holding it that does, else the last such
    block before the head) arrives at the same unit."""
    from reportgen.analysis.slimming import choose_unit

    model = architecture(backbone.architecture)
    cfg = timm.models.get_pretrained_cfg(backbone.timm_id)
    assert backbone.slim_unit and backbone.slim_reason
    assert choose_unit(model, backbone, cfg.input_size).module == backbone.slim_unit
