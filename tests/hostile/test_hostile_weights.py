"""Checkpoints: safetensors only by default, pickles only with --trust-pickle and never executed, damaged or
mismatched files named with their first offending key; torch older than 2.10 refused."""
import os
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import message_lines, run_cli
from helpers import copy_good, good_rows, manifest
from reportgen.errors import WeightsUnavailable
from reportgen.analysis.models import require_safe_torch


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt-images")
    copy_good(folder)
    manifest(folder, good_rows())
    return folder


def _run(images, out, *extra):
    return run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(images),
                   "--out", str(out), "--quiet", "--no-sanity-check", "--format", "html", *extra)


class Payload:
    """Unpickling this would create a file: the test checks it never does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_needs_the_flag_and_code_never_runs(tmp_path, images):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": {"conv_stem.weight": Payload(marker)}}, handle)
    refused = _run(images, tmp_path / "a", "--checkpoint", f"efficientnet_lite0={evil}")
    assert refused.exit_code == 2 and "--trust-pickle" in refused.output
    trusted = _run(images, tmp_path / "b", "--checkpoint", f"efficientnet_lite0={evil}", "--trust-pickle")
    assert trusted.exit_code == 3 and "refused by torch.load(weights_only=True)" in trusted.output
    assert len(message_lines(trusted.output)) == 1
    assert not marker.exists()


def test_trusted_plain_pickle_loads(tmp_path, images):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    good = tmp_path / "lite0.pth"
    torch.save({"state_dict": model.state_dict()}, good)
    result = _run(images, tmp_path / "out", "--checkpoint", f"efficientnet_lite0={good}", "--trust-pickle",
                  "--json")
    assert result.exit_code == 0, result.output
    assert '"efficientnet_lite0": "computed"' in result.stdout


def test_damaged_and_mismatched_safetensors(tmp_path, images):
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    good = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(good))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:100_000])
    result = _run(images, tmp_path / "t", "--checkpoint", f"efficientnet_lite0={truncated}")
    assert result.exit_code == 3 and "could not be read" in result.output and "truncated.safetensors" in result.output
    assert not (tmp_path / "t").exists()  # refused before any model loaded or anything was written

    other = timm.create_model("resnet18", pretrained=False)
    wrong = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(wrong))
    result = _run(images, tmp_path / "w", "--checkpoint", f"efficientnet_lite0={wrong}")
    assert result.exit_code == 3 and "first offending key" in result.output
    assert len(message_lines(result.output)) == 1

    shapes = {k: v.contiguous() for k, v in model.state_dict().items()}
    shapes["classifier.weight"] = torch.zeros(10, shapes["classifier.weight"].shape[1])
    bad_shape = tmp_path / "shape.safetensors"
    save_file(shapes, str(bad_shape))
    result = _run(images, tmp_path / "s", "--checkpoint", f"efficientnet_lite0={bad_shape}")
    assert result.exit_code == 3 and "'classifier.weight'" in result.output


def test_old_torch_is_refused():
    with pytest.raises(WeightsUnavailable, match="CVE-2025-32434"):
        require_safe_torch("2.9.1+cpu")
    require_safe_torch("2.10.0")
    require_safe_torch("2.14.1+cu130")
