"""Your images: Pascal VOC boxes beside the images, size and clutter estimated when not given, and no box
means 'not available', never zero."""
import json

import pytest

from reportgen.inputs.config import AnalysisConfig
from reportgen.errors import InputDataError
from reportgen.inputs.images import load_image_set
from reportgen.analysis.classes import imagenet_label_space

from conftest import IMAGES, run_cli

VOC = """<annotation><filename>{file}</filename><size><width>{w}</width><height>{h}</height></size>
{objects}</annotation>"""
OBJECT = "<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"


def _voc_folder(tmp_path):
    folder = tmp_path / "voc"
    folder.mkdir()
    for name in ("chelsea.png", "coffee.png", "controlled_cat_small_clean.png"):
        (folder / name).write_bytes((IMAGES / name).read_bytes())
    # chelsea: a small unknown object and the cat face (an ImageNet class name): the cat is the target.
    (folder / "chelsea.xml").write_text(VOC.format(file="chelsea.png", w=451, h=300, objects=OBJECT.format(
        name="whisker", x0=10, y0=10, x1=40, y1=30) + OBJECT.format(name="tabby", x0=120, y0=55, x1=365, y1=290)))
    # coffee: VOC names that are not ImageNet classes: the largest box, CAM explains the top-1 class.
    (folder / "coffee.xml").write_text(VOC.format(file="coffee.png", w=400, h=400, objects=OBJECT.format(
        name="mug", x0=50, y0=30, x1=350, y1=280) + OBJECT.format(name="spoon", x0=300, y0=300, x1=390, y1=390)))
    return folder


def test_voc_boxes_and_estimates(tmp_path):
    folder = _voc_folder(tmp_path)
    found = {r.file: r for r in load_image_set(folder, imagenet_label_space(), AnalysisConfig()).records}
    chelsea, coffee, plain = found["chelsea.png"], found["coffee.png"], found["controlled_cat_small_clean.png"]
    assert chelsea.class_index == 281 and chelsea.box == (120, 55, 365, 290) and "tabby" in chelsea.box_source
    assert chelsea.size_class == "large" and chelsea.size_source == "estimated"
    assert chelsea.background == "clean" and chelsea.background_source == "estimated"
    assert coffee.class_index is None and coffee.box == (50, 30, 350, 280) and "largest of 2" in coffee.box_source
    assert coffee.background == "cluttered"  # the table and saucer around the cup
    assert plain.box is None and plain.size_class is None and plain.background == "clean"


def test_an_object_of_no_class_is_named_against_the_runs_own_label_space(tmp_path):
    """On the user's classes a VOC object that names none of them is 'not one of your 3 classes (...)', not 'not an
    ImageNet class' (which it still is on an ImageNet run); an object that names one of them is the target."""
    from reportgen.inputs.label_space import NamesSource, own_space
    from reportgen.inputs.voc import voc_listing

    folder = _voc_folder(tmp_path)
    files = [folder / "coffee.png", folder / "chelsea.png"]
    own = own_space(("cats", "coffee", "rockets"), NamesSource.LABELS_FILE, "labels.txt")
    coffee, chelsea = voc_listing(folder, files, own)
    assert coffee.class_index is None and coffee.box == (50, 30, 350, 280)
    assert coffee.box_source == "voc: largest of 2 objects ('mug', not one of your 3 classes (cats, coffee, rockets))"
    assert chelsea.box_source == ("voc: largest of 2 objects ('tabby', not one of your 3 classes (cats, coffee, "
                                  "rockets))")
    on_imagenet, _ = voc_listing(folder, files, imagenet_label_space())
    assert on_imagenet.box_source == "voc: largest of 2 objects ('mug', not an ImageNet class)"
    spoon = own_space(("mug", "spoon"), NamesSource.LABELS_FILE, "labels.txt")
    coffee, _ = voc_listing(folder, files, spoon)
    assert coffee.class_index == 0 and coffee.box_source == "voc: object 'mug' (largest of its class)"


def test_broken_voc_is_one_message(tmp_path):
    folder = _voc_folder(tmp_path)
    (folder / "coffee.xml").write_text("<annotation><object><name>mug</name><bndbox><xmin>5</xmin>")
    with pytest.raises(InputDataError, match=r"coffee.xml:\d+: not valid XML"):
        load_image_set(folder, imagenet_label_space())
    (folder / "coffee.xml").write_text(VOC.format(file="coffee.png", w=400, h=400, objects=OBJECT.format(
        name="mug", x0=350, y0=30, x1=50, y1=280)))
    with pytest.raises(InputDataError, match="object 1 .mug.: box .* is inverted"):
        load_image_set(folder, imagenet_label_space())


def test_images_without_boxes_are_not_available_not_zero(tmp_path):
    folder = _voc_folder(tmp_path)
    out = tmp_path / "out"
    result = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(folder),
                     "--out", str(out), "--quiet", "--no-sanity-check", "--format", "html,json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    rows = [r for r in metrics["per_image"] if r["image"] == "controlled_cat_small_clean.png" and r["role"] == "deep"]
    assert rows and rows[0]["mass_ratio"] is None and rows[0]["pointing_hit"] is None
    assert rows[0]["spread"] is not None  # spread needs no box
    deep = next(a for a in metrics["aggregates"] if (a["scope"], a["name"], a["role"], a["group"], a["metric"]) ==
                ("backbone", "efficientnet_lite0", "deep", "all", "mass_ratio"))
    assert deep["n"] == 2  # the image without a box does not count as a zero
    html = (out / "report.html").read_text()
    assert "(estimated)" in html and "box voc: object" in html
