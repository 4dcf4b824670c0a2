"""Battery files: the example round-trips, mistakes are one line with a hint, flags override the file, the
file used is saved with the results."""
import json

import pytest

from reportgen.inputs.battery import EXAMPLE, load_battery
from reportgen.inputs.config import DEFAULT_DECISION_WEIGHTS, AnalysisConfig

from conftest import run_cli


def test_init_writes_an_example_that_loads(tmp_path):
    path = tmp_path / "battery.toml"
    assert run_cli("init", str(path)).exit_code == 0
    assert path.read_text() == EXAMPLE
    battery = load_battery(path)
    config = battery.analysis_config()
    assert isinstance(config, AnalysisConfig) and config.cam_method == "gradcam" and config.rules.slim_cka == 0.8
    assert [s.id for s in battery.backbones] == ["efficientnet_lite0", "efficientnet_lite2"]
    assert battery.backbones[1].family == "deeper"
    assert battery.settings["formats"] == ["html", "pdf", "md", "json"]
    assert battery.images_dir == (tmp_path / "images").resolve()
    # the example's weights table is every criterion at its default (it said "the defaults" over 5 of the 8)
    assert battery.analysis_config().decision.weights == DEFAULT_DECISION_WEIGHTS
    again = run_cli("init", str(path))
    assert again.exit_code == 5 and "--force" in again.output


@pytest.mark.parametrize("text, message", [
    ('presett = "lite"\n', "unknown key 'presett' (did you mean 'preset'?)"),
    ('[analysis]\nbatch_sise = 4\n', "unknown key 'batch_sise' (did you mean 'batch_size'?)"),
    ('[analysis]\nbatch_size = "four"\n', "analysis].batch_size: expected an integer"),
    ('[rules]\nslim_cka = "high"\n', "rules].slim_cka: expected a number"),
    ('[[backbone]]\nfamily = "deeper"\n', "needs id ="),
    ('[[backbone]]\nid = "resnet18"\nlayers = { shallow = "layer2" }\n', "give all of shallow, middle, deep"),
    ('[[backbone]]\nid = "resnet18"\nfamilly = "wider"\n', "did you mean 'family'?"),
    ('weights = [1, 2\n', "not valid TOML"),
])
def test_mistakes_are_one_line_with_a_hint(tmp_path, text, message):
    path = tmp_path / "b.toml"
    path.write_text(text)
    result = run_cli("run", "--config", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_flags_override_the_file_and_the_file_is_saved(tmp_path, small_image_dir):
    path = tmp_path / "b.toml"
    path.write_text(f'weights = "random"\nout = "{tmp_path / "from-file"}"\nformats = ["html"]\n'
                    f'[images]\ndir = "{small_image_dir}"\n[analysis]\nseed = 3\nsanity_check = false\nlatency_budget_s = 0.2\n'
                    '[rules]\nslim_cka = 0.7\n[[backbone]]\nid = "efficientnet_lite0"\nfamily = "attention"\n')
    out = tmp_path / "from-flag"
    result = run_cli("run", "--config", str(path), "--seed", "5", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "from-file").exists() and (out / "report.html").exists() and not (out / "report.pdf").exists()
    index = json.loads((out / "results" / "results.json").read_text())
    assert index["seed"] == 5 and index["config"]["rules"]["slim_cka"] == 0.7 and index["weights_mode"] == "random"
    assert index["backbones"][0]["family"] == "attention" and index["backbones"][0]["family_source"] == "config"
    assert index["battery_file"]["analysis"]["seed"] == 3  # the file as given, beside what was used


def test_scoring_only_changes_reuse_the_models_work(tmp_path, small_image_dir):
    out = tmp_path / "out"

    def run(spread_level, seed=0):
        path = tmp_path / "b.toml"
        path.write_text(f'preset = "lite"\nformats = ["json"]\n[images]\ndir = "{small_image_dir}"\n'
                        f'[analysis]\nsanity_check = false\nspread_level = {spread_level}\nseed = {seed}\n'
                        'corruption_max_images = 0\nfaithfulness_max_images = 0\nlatency_budget_s = 0.2\n'
                        '[[backbone]]\nid = "efficientnet_lite0"\n')
        result = run_cli("run", "--config", str(path), "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["backbones"]["efficientnet_lite0"], json.loads(
            (out / "results" / "metrics.json").read_text())

    status, first = run(0.5)
    assert status == "computed"
    status, second = run(0.3)  # a scoring threshold: no model runs again, the numbers change
    assert status == "cached"
    spreads = [[r["spread"] for r in m["per_image"] if r["role"] == "deep"] for m in (first, second)]
    assert all(b >= a for a, b in zip(*spreads)) and spreads[0] != spreads[1]
    status, _ = run(0.3, seed=1)  # the seed is model-side: recomputed
    assert status == "computed"


def test_backbone_flag_replaces_the_files_backbones_and_their_checkpoints(tmp_path, small_image_dir):
    """--backbone replaces the file's [[backbone]] list; a checkpoint the file gives for a backbone that is no
    longer in the run is ignored with a note, not an error."""
    from reportgen.inputs.battery import load_battery
    from reportgen.pipeline.execute import prepare
    from reportgen.pipeline.request import resolve_request

    path = tmp_path / "b.toml"
    path.write_text(f'[images]\ndir = "{small_image_dir}"\n[[backbone]]\nid = "resnet50"\n'
                    'checkpoint = "weights/resnet50.safetensors"\n')
    flags = {"preset": "paper", "backbones": ("efficientnet_lite1",), "images_dir": None, "weights": "pretrained",
             "checkpoints": (), "trust_pickle": False, "out_dir": tmp_path / "o", "device": "cpu", "batch_size": 8,
             "seed": 0, "offline": True, "fresh": False, "no_sanity": False, "formats": "html"}
    request = resolve_request(load_battery(path), flags, {"backbones"})
    notes = []
    prepared = prepare(request, notes.append)
    assert [p.backbone.name for p in prepared.plans] == ["efficientnet_lite1"]
    ignored = [note for note in notes if note.startswith("note:")]  # (the others: the device, the decoding)
    assert len(ignored) == 1 and "resnet50" in ignored[0] and "ignored" in ignored[0]
