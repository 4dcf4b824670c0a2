"""The decision: hand-made tables for each outcome, slimming by intervention, and real Lite weights end to end."""
import json
import re

import numpy as np
import pytest
import timm
import torch

from reportgen.inputs.config import AnalysisConfig, DecisionSettings
from reportgen.report.decision import DecisionStatus, decide
from reportgen.results.schema import (SCHEMA_VERSION, BackboneResult, CamStatus, Cost, CostReport, FeatureCka,
                                      ImageEntry, ImageSetInfo, Machine, Metrics, PerImageRow, Prediction, RankedClass,
                                      RunIndex, SanityRun, SlimmingRun, WeightsInfo)

from conftest import run_cli

N = 24
MACHINE = Machine("cpu", "test cpu", "test cpu", 2, "x")


def _image(i):
    return ImageEntry(f"img{i}.png", "", 100, 100, 1, "x", (0.0, 0.0, 50.0, 50.0), 0.25,
                      ("small", "medium", "large")[i % 3], ("clean", "cluttered")[i % 2], "", "", "", "", "", "", "",
                      "")


def _backbone(name, params_m, accuracy):
    correct = [i < round(accuracy * N) for i in range(N)]
    return BackboneResult(
        name=name, timm_id=name, architecture=name, display_name=name.upper(), family="deeper",
        family_source="registry", layer_source="registry", depth_layers={"deep": "x"}, last_three=("a", "b", "c"),
        weight_modules={}, layers=("x",), weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={},
        params=int(params_m * 1e6), macs=params_m * 1e8, cam_status={"x": (CamStatus.OK,) * N}, feature_stats={},
        weight_stats={}, feature_cka=FeatureCka((), (), ""), views=(),
        predictions=tuple(Prediction(1, "x", "manifest", (RankedClass(1 if ok else 2, "x", 0.9),), ok, ok)
                          for ok in correct),
        sanity=SanityRun("skipped", "test", ()), slimming=SlimmingRun("not-possible", None, "registry", "test", 0, 0.0,
                                                                       None), batch_size=1)


def _run(specs, decision=DecisionSettings(), weights_mode="pretrained"):
    """specs: name -> (params M, accuracy, mass_ratio, latency ms)."""
    config = AnalysisConfig(decision=decision)
    backbones = tuple(_backbone(name, p, acc) for name, (p, acc, _, _) in specs.items())
    images = tuple(_image(i) for i in range(N))
    rows = tuple(PerImageRow(img.file, name, "deeper", "x", "deep", img.size, img.background, CamStatus.OK, 0.5,
                             mass + 0.3 * ((i * 7) % 5) / 5, True, 0.1, 0.5)
                 for name, (_, _, mass, _) in specs.items() for i, img in enumerate(images))
    index = RunIndex(SCHEMA_VERSION, {}, config, 0, weights_mode, "cpu", ImageSetInfo("t", "", N), images, (),
                     backbones, "timings.json", {})
    metrics = Metrics(SCHEMA_VERSION, rows, (), (), {}, {}, {})
    cost = CostReport({name: Cost(lat, lat * 0.9, lat * 1.1, 5, 10.0, 8, 100.0, "test", None, MACHINE)
                       for name, (_, _, _, lat) in specs.items()})
    return decide(index, metrics, cost)


def test_a_clear_winner_is_recommended_with_a_margin_above_zero():
    decision = _run({"big": (20.0, 0.9, 3.0, 40.0), "small": (3.0, 0.4, 1.2, 10.0), "mid": (8.0, 0.5, 1.5, 20.0)})
    assert decision.status == DecisionStatus.RECOMMENDED and decision.recommended == "big"
    assert decision.runner_up is not None and decision.margin.ci_low > 0
    assert [c.rank for c in decision.candidates] == [1, 2, 3]
    assert {c.backbone for c in decision.candidates if c.pareto} == {"big", "small", "mid"}


def test_equal_candidates_are_no_clear_winner():
    decision = _run({"a": (5.0, 0.6, 2.0, 10.0), "b": (5.0, 0.6, 2.0, 10.0)})
    assert decision.status == DecisionStatus.NO_CLEAR_WINNER
    assert decision.margin.ci_low <= 0 <= decision.margin.ci_high
    assert decision.recommended is None and {decision.leader, decision.runner_up} == {"a", "b"}


def test_constraints_filter_and_nothing_passing_names_the_least_violating():
    specs = {"big": (20.0, 0.9, 3.0, 40.0), "small": (3.0, 0.4, 1.2, 10.0)}
    limited = _run(specs, DecisionSettings(max_params_m=5.0))
    assert limited.recommended == "small" and limited.status == DecisionStatus.RECOMMENDED
    big = limited.candidate("big")
    assert big.rank is None and big.failed[0][0] == "max_params_m" and "20 M > 5 M" in big.failed[0][1]
    nothing = _run(specs, DecisionSettings(max_params_m=2.0, min_top1=0.95))
    assert nothing.status == DecisionStatus.NONE_PASS and nothing.recommended is None
    # small: params 50 % over and top-1 58 % short; big: params 900 % over: small violates least.
    assert nothing.least_violating == "small"


def test_untrained_decisions_are_illustrative():
    assert _run({"a": (5.0, 0.6, 2.0, 10.0)}, weights_mode="random").illustrative


def test_slimming_removes_exactly_the_units_parameters():
    from reportgen.analysis.autolayers import auto_backbone
    from reportgen.analysis.slimming import choose_unit, kl_divergence, without

    backbone = auto_backbone("resnet18")
    model = timm.create_model("resnet18", pretrained=False).eval()
    unit = choose_unit(model, backbone, (3, 224, 224))
    # The penultimate of the automatic last three (layer4.1.conv2) feeds a BatchNorm: its whole block goes.
    assert unit.module == "layer4.1" and "feeds a BatchNorm" in unit.reason
    slim, removed = without(model, unit.module)
    assert removed == 2 * (512 * 512 * 9 + 2 * 512) == sum(p.numel() for p in model.get_submodule(unit.module).parameters())
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in slim.parameters()) == removed
    assert isinstance(slim.get_submodule(unit.module), torch.nn.Identity)
    assert slim(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    probs = torch.softmax(torch.randn(4, 10), dim=1).numpy()
    assert np.allclose(kl_divergence(probs, probs), 0.0)


def test_macs_removed_from_one_pass_equal_a_recount_of_the_slimmed_model():
    from reportgen.analysis.backbone import count_macs
    from reportgen.analysis.slimming import without

    model = timm.create_model("resnet18", pretrained=False).eval()
    total, by_module = count_macs(model, (3, 224, 224), "cpu")
    for unit in ("layer4.1.conv2", "layer4.1", "layer3.1"):
        slim, _ = without(model, unit)
        recounted, _ = count_macs(slim, (3, 224, 224), "cpu")
        assert by_module[unit] > 0 and by_module[unit] == total - recounted


def test_a_backbone_without_a_replaceable_unit_gets_the_reason():
    from reportgen.analysis.slimming import choose_unit
    from reportgen.inputs.registry import Backbone

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 16, 3), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(16, 4))
    backbone = Backbone("tiny", "tiny", "deeper", "Tiny", (("shallow", "0"), ("middle", "0"), ("deep", "1")),
                        ("0", "1", "4"))
    unit = choose_unit(model, backbone, (3, 16, 16))
    assert unit.module is None and "changes its shape" in unit.reason and "1 (8x14x14 -> 16x12x12)" in unit.reason


def test_agreement_of_a_model_with_itself_is_one():
    from reportgen.results import arrays as keys
    from reportgen.scoring.score import slimming_score

    entry = _backbone("a", 5.0, 0.5)
    entry = type(entry)(**{**entry.__dict__, "slimming": SlimmingRun("done", "u", "registry", "test", 10, 1.0, None)})
    full = np.array([p.top5[0].index for p in entry.predictions])
    score = slimming_score(entry, [1] * N, {keys.SLIM_TOP1: full, keys.SLIM_KL: np.zeros(N)}, AnalysisConfig())
    assert score.agreement.mean == 1.0 and score.top1_change.mean == 0.0 and score.kl.mean == 0.0


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory, small_image_dir):
    folder = tmp_path_factory.mktemp("budget")
    config = folder / "budget.toml"
    config.write_text("[decision]\nmax_params_m = 5.0\n")
    out = folder / "out"
    result = run_cli("run", "--preset", "lite", "--config", str(config), "--images", str(small_image_dir),
                     "--out", str(out), "--quiet", "--no-sanity-check", "--format", "html,pdf,md,json")
    assert result.exit_code == 0, result.output
    return out


def test_a_budget_file_with_the_lite_preset_recommends_lite0(budget_run):
    document = json.loads((budget_run / "metrics.json").read_text())
    decision = document["decision"]
    assert decision["recommended"] == "efficientnet_lite0" and decision["constraints"] == {"max_params_m": 5.0}
    by_name = {c["backbone"]: c for c in decision["candidates"]}
    assert by_name["efficientnet_lite1"]["failed"] and by_name["efficientnet_lite2"]["failed"]
    gmacs = [by_name[f"efficientnet_lite{i}"]["gmacs"] for i in range(3)]
    assert gmacs[0] < gmacs[1] < gmacs[2]
    cost = json.loads((budget_run / "results" / "cost.json").read_text())["backbones"]
    assert all(c["latency_ms_median"] > 0 and c["images_per_s"] > 0 and c["memory_mb"] > 0 for c in cost.values())
    assert all(c["machine"]["threads"] >= 1 for c in cost.values())
    slimming = json.loads((budget_run / "results" / "metrics.json").read_text())["slimming"]
    assert all(s["status"] == "done" and s["params_removed"] > 0 for s in slimming.values())


def test_the_decision_is_page_one_of_the_pdf_and_in_every_format(budget_run):
    from pypdf import PdfReader

    first = re.sub(r"\s+", " ", PdfReader(str(budget_run / "report.pdf")).pages[0].extract_text())
    assert "Decision summary" in first and "EfficientNet-Lite0" in first and "params 5.42 M > 5 M" in first
    html = (budget_run / "report.html").read_text()
    assert html.index('id="decision"') < html.index('id="introduction"')
    md = (budget_run / "report.md").read_text()
    assert md.index("Decision summary") < md.index("1 Introduction") and "Pick: EfficientNet-Lite0" in md


def test_an_untrained_decision_is_marked_illustrative_on_every_page_it_appears(tmp_path, small_image_dir):
    from pypdf import PdfReader

    out = tmp_path / "out"
    result = run_cli("run", "--preset", "lite", "--weights", "random", "--images", str(small_image_dir),
                     "--out", str(out), "--quiet", "--format", "html,pdf,md,json")
    assert result.exit_code == 0, result.output
    pages = [re.sub(r"\s+", " ", page.extract_text()) for page in PdfReader(str(out / "report.pdf")).pages]
    showing = [text for text in pages if "Decision summary" in text or "weighted score" in text]
    assert showing and all("ILLUSTRATIVE" in text for text in showing)
    assert all("UNTRAINED WEIGHTS" in text for text in pages)
    assert "ILLUSTRATIVE" in (out / "report.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["decision"]["illustrative"] is True


def test_the_slimmed_latency_leaves_out_the_time_spent_inside_the_unit():
    """The unit sleeps: every pass spends at least that long inside it (twice when it is called twice), so the
    slimmed latency is shorter by at least as much, whatever the machine's speed."""
    import time

    from reportgen.analysis.cost import latency_ms

    class Sleeps(torch.nn.Module):
        def forward(self, x):
            time.sleep(0.02)
            return x

    class TwoCalls(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.unit, self.head = torch.nn.Conv2d(3, 4, 3), Sleeps(), torch.nn.Linear(4, 2)

        def forward(self, x):
            x = self.unit(self.unit(self.stem(x)))
            return self.head(x.mean(dim=(2, 3)))

    model = TwoCalls().eval()
    paired = latency_ms(model, (3, 16, 16), "cpu", unit="unit")
    assert paired.repeats >= 3 and paired.median_ms >= 40.0
    assert 0 < paired.without_unit_ms <= paired.median_ms - 40.0
    assert latency_ms(model, (3, 16, 16), "cpu").without_unit_ms is None
    assert not model.unit._forward_hooks and not model.unit._forward_pre_hooks
