"""Issue 12: the user's own folder of hundreds of images. Class-folder labels, each image decoded once, grids
that never leave the page, sampled grids with captions, every per-image number in per_image.csv."""
import csv
import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import IMAGES, REPO, run_cli

sys.path.insert(0, str(REPO / "tools"))
import synthetic_set  # noqa: E402

from reportgen.analysis.classes import imagenet_label_space  # noqa: E402
from reportgen.errors import InputDataError  # noqa: E402
from reportgen.inputs.images import LabelSource, hashed_sample, load_image_set  # noqa: E402

LITE0 = ("--preset", "lite", "--backbone", "tf_efficientnet_lite0")
# A4 with the stylesheet's margins (16 mm top/bottom, 13 mm left/right), in PDF points.
MM = 72 / 25.4
PAGE_W, PAGE_H = 210 * MM, 297 * MM
CONTENT_BOX = (13 * MM, 16 * MM, PAGE_W - 13 * MM, PAGE_H - 16 * MM)  # x0, top, x1, bottom


@pytest.mark.parametrize("layout", ["wnid", "index", "name"])
def test_class_folders_give_labels(tmp_path, layout):
    folder = synthetic_set.build(tmp_path / layout, 10, layout)
    image_set = load_image_set(folder, imagenet_label_space())
    assert image_set.labels == LabelSource.CLASS_FOLDERS and not image_set.labels_note
    assert len(image_set.records) == 10
    for record in image_set.records:
        wnid = next(w for w in synthetic_set.CLASSES if synthetic_set.folder_name(w, layout) == record.path.parent.name)
        assert record.class_index == synthetic_set.CLASSES[wnid][0]
        assert record.file == f"{record.path.parent.name}/{record.path.name}"


def test_images_in_sub_folders_take_their_class_folders_class(tmp_path):
    """As torchvision's ImageFolder: DIR/n02123045/sub/b.jpg is a tabby cat, and the set counts such images."""
    folder = synthetic_set.build(tmp_path / "set", 10, "wnid")
    moved = []
    for path in sorted((folder / "n02123045").glob("*.jpg"))[:2]:
        (path.parent / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
        moved.append(path.rename(path.parent / "sub" / "deeper" / path.name))
    image_set = load_image_set(folder, imagenet_label_space())
    by_path = {r.path: r for r in image_set.records}
    assert len(image_set.records) == 10 and image_set.from_subfolders == 2
    for path in moved:
        assert by_path[path].class_index == 281 and by_path[path].in_subfolder
        assert by_path[path].file == f"n02123045/sub/deeper/{path.name}"
    assert not any(r.in_subfolder for r in image_set.records if r.path not in moved)


def test_unknown_class_folder_is_one_clear_error(tmp_path):
    folder = synthetic_set.build(tmp_path / "set", 6, "wnid")
    (folder / "n02123045").rename(folder / "kitties")
    with pytest.raises(InputDataError, match=r"class folder 'kitties' in .* is not an ImageNet class"):
        load_image_set(folder, imagenet_label_space())
    result = run_cli("run", *LITE0, "--images", str(folder), "--out", str(tmp_path / "out"), "--quiet")
    assert result.exit_code == InputDataError.exit_code
    assert "kitties" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_manifest_wins_over_class_folders(tmp_path):
    folder = synthetic_set.build(tmp_path / "set", 5, "wnid")
    first = sorted(folder.rglob("*.jpg"))[0]
    relative = first.relative_to(folder).as_posix()
    (folder / "annotations.csv").write_text(f"file,class\n{relative},n07920052\n")
    image_set = load_image_set(folder, imagenet_label_space())
    assert image_set.labels == LabelSource.MANIFEST and "class folders" in image_set.labels_note
    assert [r.file for r in image_set.records] == [relative]
    assert image_set.records[0].class_index == 967  # the manifest's espresso, not the folder's class


def test_hashed_sample_ignores_order_and_names():
    hashes = [f"{i:064x}" for i in range(40)]
    sample = hashed_sample(hashes, 8, seed=3)
    assert len(sample) == 8 and list(sample) == sorted(sample)
    reversed_sample = hashed_sample(hashes[::-1], 8, seed=3)
    assert {hashes[i] for i in sample} == {hashes[::-1][i] for i in reversed_sample}
    assert hashed_sample(hashes, 8, seed=4) != sample
    assert hashed_sample(hashes[:5], 8, seed=3) == tuple(range(5))


def test_cached_inputs_equal_fresh_decoding(tmp_path):
    """The decoded-input cache gives the models the very tensors the full transform makes from the file."""
    import timm

    from reportgen.analysis.backbone import Batches
    from reportgen.analysis.transforms import eval_transform, input_geometries
    from reportgen.inputs.decoded import DecodedInputs
    from reportgen.inputs.registry import lookup

    backbones = [lookup(name) for name in ("efficientnet_lite2", "resnet50", "inception_v3")]
    decoded = DecodedInputs(tmp_path / "decoded", input_geometries(backbones))
    image_set = load_image_set(IMAGES, imagenet_label_space(), on_image=lambda p, r, image: decoded.add(p, image))
    assert len(decoded) == len(image_set.records)
    for backbone in backbones:
        config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(backbone.timm_id).to_dict())
        transform = eval_transform(config)
        cached = Batches(image_set.records[:5], transform, 2, decoded)
        fresh = Batches(image_set.records[:5], transform, 2)
        assert cached.from_cache and not fresh.from_cache
        for a, b in zip(cached, fresh):
            assert torch_equal(a, b)
        subset = cached.subset([1, 3])
        assert torch_equal(next(iter(subset)), next(iter(Batches([image_set.records[1], image_set.records[3]],
                                                                  transform, 2))))


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def test_each_image_is_decoded_once(tmp_path, small_image_dir, monkeypatch):
    """Validation, display copies, two backbones, the sanity check and slimming: one decode per image. The corruption
    sample (at most corruption_max_images, 16 on a CPU) is decoded once more per process, for every backbone: its
    common crop is kept in memory, not in the run's decoded inputs (its images are known only once the set is read)."""
    import reportgen.inputs.decoding as decoding_module
    from reportgen.analysis.corruptions import _common_crop_of_file

    _common_crop_of_file.cache_clear()  # crops earlier tests of this process decoded would hide the second decode
    calls = []
    original = decoding_module.decode_rgb
    monkeypatch.setattr(decoding_module, "decode_rgb", lambda path: calls.append(Path(path).name) or original(path))
    battery = tmp_path / "battery.toml"
    battery.write_text("[analysis]\nsanity_max_images = 2\nlatency_budget_s = 0.2\n")
    out = tmp_path / "out"
    result = run_cli("run", "--config", str(battery), "--preset", "lite", "--backbone", "tf_efficientnet_lite0",
                     "--backbone", "tf_efficientnet_lite1", "--images", str(small_image_dir), "--out", str(out),
                     "--quiet", "--format", "html")
    assert result.exit_code == 0, result.output
    assert not (out / "results" / ".decoded").exists()  # the scratch cache is removed
    from reportgen.results.store import load_results

    saved = load_results(out / "results")
    sampled = saved.index.backbones[0].corruption.images
    assert sampled and all(entry.corruption.images == sampled for entry in saved.index.backbones)
    assert sorted(calls) == sorted([p.name for p in small_image_dir.glob("*.png")]
                                   + [saved.index.images[position].file for position in sampled])
    for entry in saved.index.backbones:
        assert len(entry.sanity.images) == 2  # sanity_max_images
        assert all(len(step.cam_status[layer]) == 2 for step in entry.sanity.steps for layer in step.cam_status)
    assert saved.metrics.sanity[saved.index.backbones[0].name].layers


def test_sampling_picks_best_median_worst_and_misclassified():
    from reportgen.report.sampling import caption_note, choose

    scores = {p: float(p) for p in range(100)}
    wrong = {5: 2, 50: 1, 98: 1}
    sample = choose(range(100), scores.get, lambda p: wrong.get(p, 0), max_images=24, each=3, ranked_by="score")
    reasons = {s.position: s.reason for s in sample.shown}
    assert [p for p, r in reasons.items() if r == "best"] == [99, 98, 97]
    assert [p for p, r in reasons.items() if r == "worst"] == [0, 1, 2]
    assert sorted(p for p, r in reasons.items() if r == "median") == [48, 49, 50]
    assert [p for p, r in reasons.items() if r == "misclassified"] == [5]  # 50 and 98 were already shown
    assert caption_note(sample, 3).startswith("Showing 10 of 100 — 3 best, 3 median, 3 worst, 1 misclassified")
    whole = choose(range(10), scores.get, lambda p: 0, max_images=24, each=3, ranked_by="score")
    assert not whole.sampled and caption_note(whole, 3) == ""


def test_long_grids_are_split_into_pages():
    from reportgen.report.figures import (CELL_PX, CONTENT_WIDTH_IN, CSS_PX_PER_IN, GAP_PX, GRID_PAGE_HEIGHT_IN,
                                          TITLE_PX, grid_layout)

    for backbones in (1, 3, 6, 9):
        across, rows = grid_layout(200, backbones)
        width = across * (150 + backbones * (CELL_PX + GAP_PX)) + 70
        height = TITLE_PX + rows * (CELL_PX + GAP_PX)
        shown_height_in = height * min(width / CSS_PX_PER_IN, CONTENT_WIDTH_IN) / width
        assert shown_height_in <= GRID_PAGE_HEIGHT_IN + 1e-9 and rows >= 1


@pytest.fixture(scope="module")
def report_200(tmp_path_factory, fast_battery):
    """A 200-image class-folder set, the way a user points reportgen at a validation folder."""
    fast = fast_battery
    work = tmp_path_factory.mktemp("set200")
    folder = synthetic_set.build(work / "images", 200, "wnid", seed=7)
    # One folder of loose, unlabelled images beside the class folders, and a few images in a sub-folder of one.
    for n, path in enumerate(sorted(folder.rglob("*.jpg"))[:4]):
        shutil.copy(path, folder / f"loose{n}.jpg")
    for path in sorted((folder / "n07920052").glob("*.jpg"))[:3]:
        (path.parent / "sub").mkdir(exist_ok=True)
        path.rename(path.parent / "sub" / path.name)
    out = work / "out"
    result = run_cli("run", *LITE0, "--config", str(fast), "--images", str(folder), "--out", str(out), "--quiet",
                     "--format", "html,pdf,md,json")
    assert result.exit_code == 0, result.output
    return out


def test_200_images_stay_on_their_pages(report_200):
    import pdfplumber

    x0, top, x1, bottom = CONTENT_BOX
    placed = 0
    with pdfplumber.open(report_200 / "report.pdf") as pdf:
        assert len(pdf.pages) <= 20
        for number, page in enumerate(pdf.pages, start=1):
            assert (round(page.width), round(page.height)) == (round(PAGE_W), round(PAGE_H))
            for image in page.images:
                placed += 1
                assert image["x0"] >= x0 - 0.5 and image["x1"] <= x1 + 0.5, (number, image["x0"], image["x1"])
                assert image["top"] >= top - 0.5 and image["bottom"] <= bottom + 0.5, (number, image["top"],
                                                                                       image["bottom"])
    assert placed >= 4  # decision chart, the grids, distributions, last-three figure


def test_200_images_are_sampled_and_summarised(report_200):
    html = (report_200 / "report.html").read_text()
    captions = re.findall(r"Showing (\d+) of 204 — 3 best, 3 median, 3 worst(?:, (\d) misclassified)? by "
                          r"([^;<]+); all images in per_image\.csv\.", html)
    assert captions, "the all-images grid of 204 must say it is sampled"
    for shown, missed, ranked_by in captions:
        assert int(shown) == 9 + int(missed or 0) and int(missed or 0) <= 3
        assert ranked_by.strip()
    assert "fig-distributions" in html and 'id="tab-classes"' in html and 'id="tab-confused"' in html
    assert '<details class="full-table">' in html
    assert (report_200 / "report.html").stat().st_size < 3 * 2 ** 20
    assert "4 images outside the class folders have no label" in html
    assert "3 images came from sub-folders of their class folder and carry its class" in html


def test_per_image_csv_has_every_image(report_200):
    with (report_200 / "per_image.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = {row["image"] for row in rows}
    assert len(files) == 204
    from reportgen.results.store import load_results

    saved = load_results(report_200 / "results")
    entry = saved.index.backbones[0]
    from reportgen.results.schema import CamStatus

    # every layer with a spatial map (the vector classifier has no CAM), plus the uniform/Gaussian baselines
    with_maps = [layer for layer in entry.layers if any(s != CamStatus.NOT_SPATIAL for s in entry.cam_status[layer])]
    assert len(rows) == 204 * (len(with_maps) + 2)
    deep = [row for row in rows if row["role"] == "deep"]
    assert len(deep) == 204
    labelled = [row for row in deep if row["class_index"]]
    assert len(labelled) == 200
    assert all(row["correct_top1"] in ("True", "False") for row in labelled)
    assert all(0 < float(row["top1_prob"]) <= 1 for row in deep)
    metrics = {(r.image, r.layer): r for r in saved.metrics.per_image if r.backbone == entry.name}
    for row in deep[:20]:
        stored = metrics[(row["image"], row["layer"])]
        assert (row["spread"] == "" and stored.spread is None) or float(row["spread"]) == stored.spread


def test_a_set_without_boxes_says_why_instead_of_empty_tables(report_200):
    """The usual validation folder has labels and no boxes: no table is a bare header, and the findings say that
    localisation was not measured (not that the CAMs were unusable)."""
    import re

    html = (report_200 / "report.html").read_text()
    for table in re.findall(r"<table[^>]*>.*?</table>", html, flags=re.S):
        assert "<td" in table, table[:200]
    assert html.count("No boxed images: localisation not measured") == 2  # Tables 1 and 2
    conclusions = html[html.index('id="conclusions"'):html.index('id="claims"')]
    assert "no boxed images: localisation not measured." in conclusions
    assert "no usable" not in conclusions and "n/a [n/a, n/a]" not in conclusions
    assert not re.search(r"\.[A-Z]", re.sub(r"<[^>]+>", " ", conclusions).replace("e.g.", ""))  # a space after each sentence
