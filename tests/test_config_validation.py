"""Bad config values stop the run at once with one line naming the key, the value and what is allowed
(exit 2), before any model loads: from a battery file, from flags, and in code."""
import pytest

from reportgen.errors import UsageError
from reportgen.inputs.config import AnalysisConfig, RuleThresholds

from conftest import run_cli


@pytest.fixture
def no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")
    monkeypatch.setattr("reportgen.analysis.models.load_model", refuse)
    monkeypatch.setattr("reportgen.analysis.backbone.load_model", refuse)


@pytest.mark.parametrize("table, text, key", [
    ("analysis", 'cam_method = "gradcam+"', "cam_method = 'gradcam+'"),
    ("analysis", "batch_size = 0", "batch_size = 0"),
    ("analysis", "bootstrap_samples = 0", "bootstrap_samples = 0"),
    ("analysis", "sanity_resolution = 8", "sanity_resolution = 8"),
    ("analysis", "size_small_below = 0.5", "size_small_below = 0.5"),
    ("analysis", "spread_level = -0.2", "spread_level = -0.2"),
    ("analysis", "seed = -3", "seed = -3"),
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
