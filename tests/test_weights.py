"""Weight resolution: HF cache layout offline, checkpoints, fail-fast when nothing is available."""
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from reportgen.inputs import registry
from reportgen.errors import InputDataError
from reportgen.analysis.models import load_model
from reportgen.analysis.weights import plan_weights

from conftest import run_cli


def test_hub_path_reads_prefilled_hf_cache(tmp_path, monkeypatch):
    backbone = registry.lookup("resnet50")
    torch.manual_seed(5)
    model = timm.create_model(backbone.architecture, pretrained=False)
    snapshot = tmp_path / "hub" / "models--timm--resnet50.tv_in1k" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file(model.state_dict(), snapshot / "model.safetensors")
    (tmp_path / "hub" / "models--timm--resnet50.tv_in1k" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--resnet50.tv_in1k" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    plan, = plan_weights((backbone,), "pretrained", {})
    assert plan.source == "hf-cache"
    loaded = load_model(plan, seed=0)
    assert torch.equal(loaded.model.fc.weight, model.fc.weight)
    assert len(loaded.weights_file_sha256) == 64


def test_offline_paper_run_fails_fast_listing_every_backbone(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    started = time.monotonic()
    result = run_cli("run", "--out", str(tmp_path / "out"))
    assert time.monotonic() - started < 30
    assert result.exit_code == 4
    for name in registry.PRESETS["paper"]:
        assert name in result.output
    assert "--preset lite" in result.output and "--checkpoint" in result.output
    assert not (tmp_path / "out" / "report.html").exists()


def test_checkpoint_of_wrong_architecture_names_first_key(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_file(timm.create_model("resnet18").state_dict(), path)
    backbone = registry.lookup("resnet50")
    plan, = plan_weights((backbone,), "pretrained", {"resnet50": path})
    with pytest.raises(InputDataError, match="first offending key"):
        load_model(plan, seed=0)


def test_checkpoint_must_be_safetensors(tmp_path, small_image_dir):
    pickle_file = tmp_path / "w.pth"
    pickle_file.write_bytes(b"not really")
    result = run_cli("run", "--preset", "lite", "--backbone", "efficientnet_lite0", "--images", str(small_image_dir),
                     "--checkpoint", f"efficientnet_lite0={pickle_file}", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "only .safetensors" in result.output
