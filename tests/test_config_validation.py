"""Bad config values stop the run at once with one line naming the key, the value and what is allowed
(exit 2), before any model loads: from a battery file, from flags, and in code."""
import pytest

from reportgen.errors import UsageError
from reportgen.inputs.config import AnalysisConfig, RuleThresholds

from conftest import run_cli


@pytest.fixture
def no_model_loads(monkeypatch):
    import reportgen.analysis.backbone as backbone  # imported first: importing it under the patch would bind it
    import reportgen.analysis.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")
    monkeypatch.setattr(models, "load_model", refuse)
    monkeypatch.setattr(backbone, "load_model", refuse)


@pytest.mark.parametrize("table, text, key", [
    ("analysis", 'cam_method = "gradcam+"', "cam_method = 'gradcam+'"),
    ("analysis", "batch_size = 0", "batch_size = 0"),
    ("analysis", "bootstrap_samples = 0", "bootstrap_samples = 0"),
    ("analysis", "sanity_resolution = 8", "sanity_resolution = 8"),
    ("analysis", "size_small_below = 0.5", "size_small_below = 0.5"),
    ("analysis", "spread_level = -0.2", "spread_level = -0.2"),
    ("analysis", "seed = -3", "seed = -3"),
    ("analysis", "latency_budget_s = 0", "latency_budget_s = 0"),
    ("rules", "slim_cka = -0.1", "slim_cka = -0.1"),
    ("rules", "min_group_size = 0", "min_group_size = 0"),
    ("rules", "min_relative_difference = -1", "min_relative_difference = -1"),
])
def test_bad_values_in_a_battery_file(tmp_path, no_model_loads, table, text, key):
    path = tmp_path / "b.toml"
    path.write_text(f'preset = "lite"\n[{table}]\n{text}\n')
    result = run_cli("run", "--config", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert key in result.output and "not allowed" in result.output and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_bad_flag_values_fail_the_same_way(tmp_path, no_model_loads):
    result = run_cli("run", "--preset", "lite", "--seed", "-1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "seed = -1 is not allowed" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_every_value_is_checked_in_code_too():
    with pytest.raises(UsageError, match="cam_method = 'nope'.*gradcam, gradcam\\+\\+"):
        AnalysisConfig(cam_method="nope")
    with pytest.raises(UsageError, match="must be below size_large_from"):
        AnalysisConfig(size_small_below=0.4, size_large_from=0.3)
    with pytest.raises(UsageError, match="batch_size = True"):
        AnalysisConfig(batch_size=True)
    with pytest.raises(UsageError, match="sanity_max_ssim = 2"):
        RuleThresholds(sanity_max_ssim=2)
    assert AnalysisConfig.from_dict(AnalysisConfig().to_dict()) == AnalysisConfig()


def test_every_config_field_is_classified_and_model_side_fields_reach_the_cache_key():
    """A field the model-side code reads must change each backbone's cache key (sanity_resolution feeds slimming's
    CAM Spearman); a new field without a side fails here and at import."""
    from dataclasses import fields, replace

    from reportgen.inputs import config
    from reportgen.inputs.registry import lookup
    from reportgen.results.keys import analysis_key

    sides = config.MODEL_SIDE_FIELDS + config.SCORING_SIDE_FIELDS + config.EXECUTION_FIELDS
    assert sorted(sides) == sorted(f.name for f in fields(AnalysisConfig)) and len(set(sides)) == len(sides)
    assert "sanity_resolution" in config.MODEL_SIDE_FIELDS
    base = AnalysisConfig()
    key = analysis_key(lookup("efficientnet_lite0"), "w", "images", base, VERSIONS)
    changed = {"sanity_resolution": 32, "sanity_max_images": 8, "slimming_cams": False, "cam_method": "layercam"}
    for name, value in changed.items():
        assert analysis_key(lookup("efficientnet_lite0"), "w", "images", replace(base, **{name: value}), VERSIONS) != key
    for name, value in {"bootstrap_samples": 50, "spread_level": 0.3, "batch_size": 2}.items():
        assert analysis_key(lookup("efficientnet_lite0"), "w", "images", replace(base, **{name: value}), VERSIONS) == key


VERSIONS = {"reportgen": "x", "torch": "x", "timm": "x", "grad-cam": "x"}


def test_device_defaults_to_auto_and_says_what_it_chose():
    from reportgen.analysis.environment import device_note, resolve_device
    from reportgen.inputs.battery import EMPTY
    from reportgen.pipeline.request import resolve_request

    assert "[default: auto]" in " ".join(run_cli("run", "--help").output.split())
    flags = {"weights": "pretrained", "device": "auto", "formats": "html", "batch_size": 8, "seed": 0,
             "no_sanity": False, "executor": "local", "ray_address": None, "shard_size": 256, "backbones": (),
             "images_dir": None, "checkpoints": (), "trust_pickle": False, "out_dir": "o", "offline": False,
             "fresh": False, "preset": "lite"}
    assert resolve_request(EMPTY, flags, set()).device == "auto"
    chosen = resolve_device("auto")
    import torch

    assert chosen == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    note = device_note("auto", chosen)
    assert note.startswith(f"device: {chosen} (") and "auto" in note
    assert "auto" not in device_note("cpu", "cpu")
