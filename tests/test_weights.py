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

from conftest import message_lines, run_cli


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
    lines = message_lines(result.output)
    # a summary line, one line per backbone (name, where its weights would come from, the remedy), the way out
    assert lines[0].startswith("reportgen: error: no pretrained weights on this machine for 6 of 6 backbone(s)")
    paper = registry.PRESETS["paper"]
    assert len(lines) == 1 + len(paper) + 1
    for line, name in zip(lines[1:], paper):
        assert line.split()[0] == name and " from " in line and f"--checkpoint {name}=" in line
    assert lines[-1] == "To see a real report offline now: reportgen run --preset lite"
    assert max(len(line) for line in lines) < 250  # was one 1,800-character line
    assert not (tmp_path / "out").exists()


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


def test_a_hub_download_and_its_cached_file_share_one_cache_key(tmp_path, monkeypatch):
    """The first run downloads (plan: hf-hub), the next finds the file in the HF cache (plan: hf-cache); both
    must key the backbone on the file's content, or the second run recomputes and deletes the first result."""
    from reportgen.analysis import weights as weights_module
    from reportgen.results.schema import WeightsSource

    backbone = registry.lookup("resnet50")
    cached = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(3)}, str(cached))
    downloads = []

    def download(repo_id):
        downloads.append(repo_id)
        return str(cached)
    monkeypatch.setattr(weights_module, "_download_hf", download)
    hub = weights_module.WeightsPlan(backbone, WeightsSource.HF_HUB, "timm/resnet50.tv_in1k")
    cache = weights_module.WeightsPlan(backbone, WeightsSource.HF_CACHE, str(cached))
    identity = weights_module.weights_identity(hub, 0)
    assert identity == weights_module.weights_identity(cache, 0)
    assert identity.startswith("file:") and downloads == ["timm/resnet50.tv_in1k"]
    assert weights_module.weights_identity(weights_module.WeightsPlan(backbone, WeightsSource.RANDOM, ""), 3) \
        == "random:seed=3"


def test_every_weights_source_builds_the_model_from_the_timm_id(tmp_path, monkeypatch):
    """One rule: the model comes from the backbone's timm id (architecture and tag), whatever the source."""
    from reportgen.analysis import models as models_module
    from reportgen.analysis.autolayers import auto_backbone
    from reportgen.analysis.weights import WeightsPlan
    from reportgen.results.schema import WeightsSource

    backbone = auto_backbone("resnet18.a1_in1k")
    path = tmp_path / "r18.safetensors"
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(path))
    built = []
    real = models_module.timm.create_model

    def recording(name, *args, **kwargs):
        built.append(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(models_module.timm, "create_model", recording)
    for plan in (WeightsPlan(backbone, WeightsSource.RANDOM, ""), WeightsPlan(backbone, WeightsSource.CHECKPOINT, str(path)),
                 WeightsPlan(backbone, WeightsSource.HF_CACHE, str(path))):
        loaded = load_model(plan, 0)
        assert loaded.data_config["input_size"][1:] == (224, 224) or loaded.data_config["input_size"][1] > 0
    assert built == ["resnet18.a1_in1k"] * 3
