"""The one-pass engine matches pytorch-grad-cam's own GradCAM per layer and leaves the model as it was."""
import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from reportgen import registry
from reportgen.engine import analyse_backbone, tokens_to_map


@pytest.mark.parametrize("name", ["resnet50", "deit_small", "hrnet_w18"])
def test_parity_with_library_gradcam(name):
    backbone = registry.lookup(name)
    torch.manual_seed(1)
    model = timm.create_model(backbone.architecture, pretrained=False).eval()
    torch.manual_seed(2)
    batch = torch.randn(3, 3, 224, 224)
    targets = [3, None, 7]
    ours = analyse_backbone(model, [batch[:2], batch[2:]], backbone.all_layers(), targets)
    modules = dict(model.named_modules())
    for layer in backbone.depth_layers.values():
        reshape = (lambda t: tokens_to_map(model, t)) if name == "deit_small" else None
        with GradCAM(model=model, target_layers=[modules[layer]], reshape_transform=reshape) as cam:
            reference = cam(batch, targets=[ClassifierOutputTarget(int(t)) for t in ours.targets])
        mine = scale_cam_image(ours.layer(layer).cam, (224, 224))
        for a, b in zip(mine, reference):
            if a.std() == 0 or b.std() == 0:  # an all-zero CAM: both sides must agree on it
                assert a.std() == b.std() == 0 and np.allclose(a, b)
                continue
            r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
            assert r >= 0.99, f"{name}/{layer}: r={r:.4f}"
    assert ours.targets[0] == 3 and ours.targets[2] == 7


def test_model_state_restored_and_no_parameter_grads():
    model = timm.create_model("resnet18", pretrained=False)
    model.train()
    model.fc.weight.requires_grad_(True)
    analyse_backbone(model, [torch.randn(2, 3, 64, 64)], ["layer3", "layer4"], [None, None])
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_shared_module_is_refused():
    model = timm.create_model("legacy_seresnet50", pretrained=False).eval()
    from reportgen.engine import LayerCallError

    with pytest.raises(LayerCallError, match="more than once"):
        analyse_backbone(model, [torch.randn(1, 3, 64, 64)], ["layer4.2.relu"], [None])
    assert all(not m._forward_hooks for m in model.modules())
