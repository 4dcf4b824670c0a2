"""The one-pass engine matches pytorch-grad-cam's own GradCAM per layer and leaves the model as it was."""
import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from reportgen.inputs import registry
from reportgen.analysis.engine import analyse_backbone, tokens_to_map


@pytest.mark.parametrize("name", ["resnet50", "deit_small", "hrnet_w18"])
def test_parity_with_library_gradcam(name, architecture):
    backbone = registry.lookup(name)
    model = architecture(backbone.architecture)
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
    from reportgen.analysis.engine import LayerCallError

    with pytest.raises(LayerCallError, match="more than once"):
        analyse_backbone(model, [torch.randn(1, 3, 64, 64)], ["layer4.2.relu"], [None])
    assert all(not m._forward_hooks for m in model.modules())


def test_streamed_statistics_match_all_at_once():
    """Unit variance merged batch by batch equals the all-at-once number; the CKA is the same whether computed
    in image space (fewer images than units) or unit space, and equals the Gram-matrix formula."""
    from reportgen.results.stats import RunningMoments, linear_cka
    from reportgen.scoring.measures import linear_cka_from_grams

    rng = np.random.default_rng(0)
    x = rng.standard_normal((23, 40)) * 3 + 5
    y = x[:, :30] @ rng.standard_normal((30, 12)) + 0.1 * rng.standard_normal((23, 12))
    moments = RunningMoments()
    for start in (0, 8, 16):
        part_x = x[start:start + 8]
        moments.add(len(part_x), part_x.mean(axis=0), ((part_x - part_x.mean(axis=0)) ** 2).sum(axis=0))
    assert moments.mean_variance() == pytest.approx(x.var(axis=0).mean())
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    expected = linear_cka_from_grams(xc @ xc.T, yc @ yc.T)
    image_space = linear_cka([x, y])  # 23 images < 40 units
    unit_space = linear_cka([x[:, :10], y])  # 23 images > 12 units
    assert image_space[0][1] == pytest.approx(expected) and image_space[1][0] == pytest.approx(expected)
    assert image_space[0][0] == 1.0 and image_space[1][1] == 1.0
    xs = x[:, :10] - x[:, :10].mean(axis=0)
    assert unit_space[0][1] == pytest.approx(linear_cka_from_grams(xs @ xs.T, yc @ yc.T))
    assert linear_cka([np.ones((5, 3)), y[:5]])[0][1] is None  # a constant representation has no CKA


def test_batches_are_consumed_lazily():
    """analyse_backbone takes any iterable and holds one batch at a time (a generator works)."""
    model = timm.create_model("resnet18", pretrained=False)
    made = []

    def batches():
        for i in range(3):
            made.append(i)
            yield torch.randn(2, 3, 64, 64)

    seen = []
    result = analyse_backbone(model, batches(), ["layer3", "layer4", "fc"], [None] * 6,
                              cka_layers=("layer3", "layer4", "fc"), on_batch=lambda n: seen.append(len(made)))
    assert seen == [1, 2, 3]  # batch k is made only after batch k-1 was processed
    assert result.layer("layer4").cam.shape == (6, 2, 2)
    assert result.layer("fc").feature_vector.shape == (6, 256)
    assert len(result.cka) == 3 and result.cka[0][0] == pytest.approx(1.0)


def test_one_host_copy_packs_and_unpacks_every_tensor():
    """The GPU path gathers all per-batch results into one buffer and one copy; the split must give each
    tensor back with its shape and values (checked here on CPU tensors with packing forced)."""
    from reportgen.analysis.engine import _to_host

    tensors = {"a": torch.arange(24.0).reshape(2, 3, 4), "b": torch.tensor([7, 8, 9]), "c": torch.ones(1, 5) * 0.5}
    host = _to_host(tensors, pack=True)
    for key, value in tensors.items():
        assert host[key].shape == tuple(value.shape) and np.allclose(host[key], value.float().numpy())


def test_channels_last_gives_the_same_cams_and_weight_statistics():
    """The run converts models and inputs to channels-last: CAMs, features and predictions match NCHW up to float32
    summation order, and the weight statistics (read in storage order, then sorted) are identical."""
    from reportgen.analysis.backbone import weight_stats
    from reportgen.analysis.models import input_batch, on_device
    from reportgen.inputs.config import AnalysisConfig

    backbone = registry.lookup("resnet50")
    torch.manual_seed(1)
    model = timm.create_model(backbone.architecture, pretrained=False).eval()
    torch.manual_seed(2)
    batch = torch.randn(2, 3, 160, 160)
    layers = backbone.all_layers()
    reference = analyse_backbone(model, [batch], layers, [3, None])
    reference_weights = weight_stats(model, backbone, AnalysisConfig())
    model = on_device(model, "cpu")
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    converted = input_batch(batch)
    assert converted.is_contiguous(memory_format=torch.channels_last) and not converted.is_contiguous()
    fast = analyse_backbone(model, [converted], layers, [3, None])
    assert list(fast.targets) == list(reference.targets)
    for layer in layers:
        for field in ("cam", "feature_map"):
            a, b = getattr(reference.layer(layer), field), getattr(fast.layer(layer), field)
            if a is not None:
                np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4 * float(np.abs(a).max()))
    np.testing.assert_allclose(fast.probs, reference.probs, rtol=1e-4, atol=1e-7)
    for layer, summary in weight_stats(model, backbone, AnalysisConfig()).items():
        for key, value in summary.items():
            assert np.array_equal(value, reference_weights[layer][key]), (layer, key)
