"""Issue 25: where a run's class names come from (a label file, names stored with a checkpoint, the folders), in that
order, and the one-line errors for a label list that cannot be right."""
import json

import numpy as np
import pytest

from reportgen.errors import InputDataError
from reportgen.inputs.labels import (FOLDER_ORDER_NOTE, HeadNames, NamesSource, checkpoint_label_names,
                                     choose_label_space, label_names_metadata, read_labels_file)

pytestmark = pytest.mark.unit


class FakeImageNet:
    """Two ImageNet classes by WordNet id, enough to tell ImageNet folders from a user's."""
    names = {"n02123045": 281, "n07920052": 967}

    def resolve(self, value):
        if value in self.names:
            return self.names[value]
        raise ValueError(f"unknown ImageNet class {value!r}")

    def name(self, index):
        return {v: k for k, v in self.names.items()}[index]


def _folders(root, *names):
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_bytes(b"not decoded here")
    return root


@pytest.mark.parametrize("text, suffix", [
    ("ants\nbees\n", ".txt"),
    ('["ants", "bees"]', ".json"),
    ('{"1": "bees", "0": "ants"}', ".json"),
    ('{"id2label": {"0": "ants", "1": "bees"}, "label2id": {}}', ".json"),
])
def test_a_label_file_in_every_accepted_form(tmp_path, text, suffix):
    path = tmp_path / f"labels{suffix}"
    path.write_text(text)
    space = read_labels_file(path)
    assert space.names == ("ants", "bees") and space.source == NamesSource.LABELS_FILE
    assert space.resolve("bees") == 1 and space.name(0) == "ants"


@pytest.mark.parametrize("text, expected", [
    ("ants\nants\n", "'ants' appears 2 times (classes 0, 1)"),
    ("ants\n \nbees\n", "class 1 has a blank name"),
    ("ants\n", "at least two classes"),
    ('{"0": "ants", "2": "bees"}', "lacks class 1"),
    ('["ants", 3]', "class 1 is 3, not a name"),
])
def test_a_label_file_that_cannot_be_right_is_one_message(tmp_path, text, expected):
    path = tmp_path / ("labels.json" if text.startswith(("[", "{")) else "labels.txt")
    path.write_text(text)
    with pytest.raises(InputDataError) as caught:
        read_labels_file(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 3


def test_names_stored_with_a_checkpoint_config_json_then_safetensors_metadata(tmp_path):
    from safetensors.numpy import save_file

    weights = tmp_path / "tuned.safetensors"
    save_file({"classifier.weight": np.zeros((2, 4), np.float32)}, str(weights),
              metadata=label_names_metadata(["ok", "defect"]))
    names, how = checkpoint_label_names(weights)
    assert names == ("ok", "defect") and "label_names" in how
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "good", "1": "scratch"}}))
    names, how = checkpoint_label_names(weights)  # config.json beside it wins, as on the Hugging Face hub
    assert names == ("good", "scratch") and "config.json" in how
    plain = tmp_path / "other" / "plain.safetensors"
    plain.parent.mkdir()
    save_file({"w": np.zeros(1, np.float32)}, str(plain))
    assert checkpoint_label_names(plain) is None


def test_imagenet_folders_keep_imagenets_meaning_and_user_folders_become_the_classes(tmp_path):
    imagenet = choose_label_space(_folders(tmp_path / "a", "n02123045", "n07920052"), FakeImageNet())
    assert imagenet.is_imagenet and imagenet.size == 1000
    own = choose_label_space(_folders(tmp_path / "b", "bees", "Ants", "ants"), FakeImageNet())
    # torchvision's ImageFolder order: sorted(), case-sensitive (capitals first)
    assert own.names == ("Ants", "ants", "bees") and own.source == NamesSource.FOLDERS
    assert own.note == FOLDER_ORDER_NOTE
    mixed = choose_label_space(_folders(tmp_path / "c", "n02123045", "bees"), FakeImageNet())
    assert mixed.names == ("bees", "n02123045")  # half the folders name no ImageNet class: the user's space
    typo = choose_label_space(_folders(tmp_path / "d", "n02123045", "n07920052", "n0792005"), FakeImageNet())
    assert typo.is_imagenet  # most are ImageNet's: the odd one is a typo, which loading the set reports


def test_a_manifest_with_the_users_class_names(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    (tmp_path / "annotations.csv").write_text("file,class\nx.jpg,scratch\ny.jpg,dent\nz.jpg,scratch\n")
    space = choose_label_space(tmp_path, FakeImageNet())
    assert space.names == ("dent", "scratch") and space.source == NamesSource.ANNOTATIONS


def test_the_label_file_wins_and_must_cover_every_folder(tmp_path):
    root = _folders(tmp_path / "val", "ants", "bees")
    labels = tmp_path / "labels.txt"
    labels.write_text("bees\nants\nwasps\n")  # the training order; a class without images is allowed
    space = choose_label_space(root, FakeImageNet(), labels)
    assert space.names == ("bees", "ants", "wasps") and space.resolve("ants") == 1
    labels.write_text("bees\nwasps\n")
    with pytest.raises(InputDataError) as caught:
        choose_label_space(root, FakeImageNet(), labels)
    assert "not in the labels: ants" in str(caught.value) and "without images: wasps" in str(caught.value)


def test_checkpoints_that_store_different_names_need_a_label_file(tmp_path):
    root = _folders(tmp_path / "val", "ants", "bees")
    one = HeadNames("a", ("ants", "bees"), "a.safetensors")
    other = HeadNames("b", ("bees", "ants"), "b.safetensors")
    assert choose_label_space(root, FakeImageNet(), None, (one,)).source == NamesSource.CHECKPOINT
    with pytest.raises(InputDataError) as caught:
        choose_label_space(root, FakeImageNet(), None, (one, other))
    assert "store different class names" in str(caught.value) and "--labels" in str(caught.value)


def test_the_one_label_space_is_stored_as_it_is_without_its_imagenet_names():
    """results.json's ``label_space`` is the LabelSpace itself: the same keys in the same order as the record it
    replaced (kind, source, source_detail, names, note), then how numbered names were read (issue 34; null without
    any), enums as their values, the ImageNet names provider left out; read back, it equals the space and its kind
    is the enum again."""
    from reportgen.inputs.label_space import (LabelSpaceKind, NumberedNames, NumbersReason, imagenet_space,
                                              own_space)
    from reportgen.results.schema import RunIndex, TaskReport

    own = own_space(("cats", "coffee", "rockets"), NamesSource.FOLDERS, "", FOLDER_ORDER_NOTE)
    report = TaskReport(own, (), 0, {})
    data = report.to_json()["label_space"]
    assert list(data) == ["kind", "source", "source_detail", "names", "note", "numbered"]
    assert json.dumps(data) == json.dumps({"kind": "own", "source": "class folders", "source_detail": "",
                                           "names": ["cats", "coffee", "rockets"], "note": FOLDER_ORDER_NOTE,
                                           "numbered": None})
    back = TaskReport.from_json(json.loads(json.dumps(report.to_json()))).label_space
    assert back == own and back.kind is LabelSpaceKind.OWN and back.source is NamesSource.FOLDERS
    imagenet = imagenet_space(FakeImageNet())
    assert TaskReport(imagenet, (), 0, {}).to_json()["label_space"] == {
        "kind": "imagenet", "source": "ImageNet-1k", "source_detail": "", "names": [], "note": "", "numbered": None}
    assert imagenet == RunIndex.__dataclass_fields__["label_space"].default  # the provider is not compared
    numbered = imagenet_space(FakeImageNet(), NumberedNames((1, 151), NamesSource.FOLDERS, LabelSpaceKind.IMAGENET,
                                                            NumbersReason.NOT_A_COUNT))
    data = TaskReport(numbered, (), 0, {}).to_json()["label_space"]
    assert data["numbered"] == {"numbers": [1, 151], "source": "class folders", "read_as": "imagenet",
                                "reason": "not a count from 0 or 1"}
    back = TaskReport.from_json(json.loads(json.dumps(TaskReport(numbered, (), 0, {}).to_json()))).label_space
    assert back == numbered and back.numbered.read_as is LabelSpaceKind.IMAGENET
    # a schema-12 record (no "numbered") still reads
    old = {"kind": "own", "source": "class folders", "source_detail": "", "names": ["a", "b"], "note": ""}
    assert TaskReport.from_json({**TaskReport(own, (), 0, {}).to_json(), "label_space": old}).label_space.numbered is None


def test_an_imagenet_space_read_back_from_results_has_no_names_and_says_so():
    from reportgen.inputs.label_space import imagenet_space

    space = imagenet_space()
    assert space.described() == "ImageNet-1k" and space.size == 1000
    with pytest.raises(RuntimeError, match="carries no class names"):  # not ValueError: never "not a class"
        space.resolve("n02123045")
    assert imagenet_space(FakeImageNet()).resolve("n02123045") == 281


def test_a_class_folder_that_names_no_class_is_phrased_by_the_space_it_was_resolved_in(tmp_path):
    from reportgen.inputs.class_folders import folder_class
    from reportgen.inputs.label_space import imagenet_space, own_space

    folder = _folders(tmp_path, "wasps") / "wasps"
    with pytest.raises(InputDataError, match="is not an ImageNet class"):
        folder_class(folder, tmp_path, imagenet_space(FakeImageNet()))
    with pytest.raises(InputDataError, match="names no class of this run") as caught:
        folder_class(folder, tmp_path, own_space(("ants", "bees"), NamesSource.LABELS_FILE, "labels.txt"))
    assert "not one of the 2 classes of labels file labels.txt (ants, bees)" in str(caught.value)
    assert folder_class(folder, tmp_path, own_space(("bees", "wasps"), NamesSource.FOLDERS)) == 1
