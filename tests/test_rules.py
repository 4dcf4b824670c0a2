"""Verdict logic on hand-made metric tables covering every verdict: every family sees the same images (the unit
the paired bootstrap resamples)."""

import pytest

from reportgen.inputs.config import AnalysisConfig
from reportgen.results.schema import (SCHEMA_VERSION, AggregateLookup, BackboneResult, CamStatus, FeatureCka,
                                      ImageEntry, ImageSetInfo, Interval, LastThreeSummary, Metrics, PerImageRow,
                                      Prediction, RunIndex, SanityRun, SanitySummary, SlimmingRun, SlimmingScore,
                                      WeightsInfo)
from reportgen.scoring.rules import Verdict, conclude
from reportgen.scoring.score import aggregate

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = (Verdict.SUPPORTED, Verdict.CONTRADICTED, Verdict.INCONCLUSIVE,
                                                     Verdict.NOT_TESTED)
CONFIG = AnalysisConfig(bootstrap_samples=300)


def _rows(values_by_family):
    rows = []
    for family, values in values_by_family.items():
        for i, (mass_ratio, spread, size, background) in enumerate(values):
            rows.append(PerImageRow(image=f"img{i}", backbone=f"{family}-net", family=family, layer="x", role="deep",
                                    size=size, background=background, cam_status=CamStatus.OK, mass_in_box=None,
                                    mass_ratio=mass_ratio, pointing_hit=True, spread=spread, entropy=0.5))
    return rows


def _backbone(family: str) -> BackboneResult:
    return BackboneResult(
        name=f"{family}-net", timm_id=f"{family}-net", architecture=f"{family}-net", display_name=family.title(),
        family=family, family_source="registry", layer_source="registry", depth_layers={"deep": "x"},
        last_three=("a", "b", "c"), weight_modules={}, layers=("x",),
        weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={}, params=1, macs=1.0,
        cam_status={"x": (CamStatus.OK,)}, feature_stats={}, weight_stats={},
        feature_cka=FeatureCka((), (), ""), views=(),
        predictions=(Prediction(0, "x", "manifest", (), True, True),),
        sanity=SanityRun("skipped", "test", ()),
        slimming=SlimmingRun(status="not-possible", unit=None, unit_source="registry", reason="test", params_removed=0,
                             macs_removed=0.0, deep_cam_layer=None), batch_size=1)


def _index(rows, weights_mode="pretrained", families=("deeper", "wider", "attention")):
    shapes = {}
    for row in rows:
        shapes.setdefault(row.image, (row.size, row.background))
    images = tuple(ImageEntry(file=name, sha256="", width=10, height=10, class_index=None, class_name=None,
                              box=(0.0, 0.0, 5.0, 5.0), box_share=0.25, size=size, background=background, source="",
                              licence="", notes="", decoding="", size_source="", background_source="", box_source="",
                              display_copy="") for name, (size, background) in shapes.items())
    return RunIndex(schema_version=SCHEMA_VERSION, versions={}, config=CONFIG, seed=0, weights_mode=weights_mode,
                    device="cpu", image_set=ImageSetInfo("t", "", len(images)), images=images, skipped_images=(),
                    backbones=tuple(_backbone(f) for f in families), timings_file="timings.json", battery_file={})


def _metrics(rows, cka_by_family, ks=0.05, slimming=None):
    index = _index(rows, families=tuple(cka_by_family))
    return Metrics(schema_version=SCHEMA_VERSION, per_image=tuple(rows), predictions=(),
                   aggregates=tuple(aggregate(index, rows, CONFIG)),
                   last_three={f"{f}-net": LastThreeSummary(("a", "b", "c"),
                                                            ((1, c, 0.5), (c, 1, 0.5), (0.5, 0.5, 1)),
                                                            (0.1, 0.2), (ks, 0.2), (None, None, None))
                               for f, c in cka_by_family.items()},
                   sanity={f"{f}-net": SanitySummary("skipped", "test", {}) for f in cka_by_family},
                   slimming=slimming or {})


def _conclude(rows, ckas, weights_mode="pretrained", **kwargs):
    return conclude(_index(rows, weights_mode, tuple(ckas)), _metrics(rows, ckas, **kwargs))


def _spread_values(mass, spread, n=12, jitter=0.02):
    return [(mass + jitter * (i % 3), spread + jitter * (i % 2), ("small", "large")[i % 2],
             ("clean", "cluttered")[(i // 2) % 2]) for i in range(n)]


def test_supported_and_contradicted():
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    result = _conclude(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9})
    verdicts = {c.key: c.verdict for c in result.claims}
    assert verdicts["focus"] == SUPPORTED
    assert verdicts["wider-spread"] == SUPPORTED
    assert verdicts["slimming"] == SUPPORTED
    rows = _rows({"deeper": _spread_values(1.5, 0.6), "wider": _spread_values(3.0, 0.2),
                  "attention": _spread_values(2.0, 0.4)})
    result = _conclude(rows, {"deeper": 0.3, "wider": 0.95, "attention": 0.2})
    verdicts = {c.key: c.verdict for c in result.claims}
    assert verdicts["focus"] == CONTRADICTED
    assert verdicts["wider-spread"] == CONTRADICTED
    assert verdicts["slimming"] == CONTRADICTED


def test_inconclusive_on_overlap_and_small_groups():
    rows = _rows({"deeper": _spread_values(2.0, 0.4, jitter=0.5), "wider": _spread_values(2.01, 0.4, jitter=0.5),
                  "attention": _spread_values(2.0, 0.4)})
    result = _conclude(rows, {"deeper": 0.9, "wider": 0.3, "attention": 0.9})
    focus = next(c for c in result.claims if c.key == "focus")
    assert focus.verdict == INCONCLUSIVE and focus.reason == "overlap"
    rows = _rows({"deeper": _spread_values(3.0, 0.2, n=1), "wider": _spread_values(1.0, 0.6, n=1),
                  "attention": _spread_values(2.0, 0.4, n=1)})
    result = _conclude(rows, {"deeper": 0.9, "wider": 0.3, "attention": 0.9})
    focus = next(c for c in result.claims if c.key == "focus")
    assert focus.verdict == INCONCLUSIVE and focus.reason == "small-group"


def test_claims_are_judged_on_the_families_present_and_untrained_runs_are_not_tested():
    rows = _rows({"deeper": _spread_values(3.0, 0.2)})
    result = _conclude(rows, {"deeper": 0.9})
    comparisons = [c for c in result.claims if c.key != "slimming"]
    assert all(c.verdict == NOT_TESTED and c.reason == "family-missing" for c in comparisons)
    slimming = next(c for c in result.claims if c.key == "slimming")
    # the proxy calls deeper's penultimate layer removable, as the paper says: supported, for deeper only
    assert slimming.verdict == SUPPORTED and slimming.partial and slimming.absent == ("wider", "attention")
    assert [(f.family, f.verdict) for f in slimming.by_family] == [("deeper", SUPPORTED)]
    two = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6)})
    focus = next(c for c in _conclude(two, {"deeper": 0.9, "wider": 0.3}).claims if c.key == "focus")
    assert focus.verdict == SUPPORTED and not focus.partial  # deeper vs wider: both present
    small = next(c for c in _conclude(two, {"deeper": 0.9, "wider": 0.3}).claims if c.key == "small-deeper")
    assert small.partial and small.absent == ("attention",) and [c.other for c in small.comparisons] == ["wider"]
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    result = _conclude(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9}, weights_mode="random")
    assert result.untrained and all(c.reason == "untrained" for c in result.claims)


def test_slimming_by_intervention_inside_the_noise_is_no_verdict():
    rows = _rows({"deeper": _spread_values(3.0, 0.2)})

    def score(mean, low, high):
        return SlimmingScore(status="done", unit="u", reason="", params_removed=1, macs_removed=1.0,
                             agreement=Interval(mean, low, high, 40), top1_full=None, top1_slim=None, top1_change=None,
                             kl=None, deep_cam_spearman=None)
    cases = {(0.97, 0.93, 0.99): SUPPORTED, (0.93, 0.85, 0.98): INCONCLUSIVE, (0.6, 0.5, 0.7): CONTRADICTED}
    for interval, verdict in cases.items():
        metrics = _metrics(rows, {"deeper": 0.2}, slimming={"deeper-net": score(*interval)})
        claim = next(c for c in conclude(_index(rows, families=("deeper",)), metrics).claims if c.key == "slimming")
        assert claim.verdict == verdict, interval


def test_slimming_needs_similar_features_and_similar_weight_distributions():
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    ckas = {"deeper": 0.95, "wider": 0.3, "attention": 0.9}
    close = next(c for c in _conclude(rows, ckas, ks=0.05).claims if c.key == "slimming")
    assert close.verdict == SUPPORTED
    assert [r.evidence.removable for r in close.slimming] == [True, False, True]
    # Same features, but the weight distributions differ: the rule no longer calls the layer removable.
    far = next(c for c in _conclude(rows, ckas, ks=0.4).claims if c.key == "slimming")
    assert [r.evidence.removable for r in far.slimming] == [False, False, False]
    assert far.verdict == INCONCLUSIVE and far.reason == "mixed"


def test_family_numbers_quote_the_family_table():
    """Claim 1's numbers are the family table's rows (the same paired draws), and those rows are the families' own
    means over the images, computed here by hand."""
    values = {"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
              "attention": _spread_values(2.0, 0.4)}
    rows = _rows(values)
    metrics = _metrics(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9})
    focus = next(c for c in conclude(_index(rows), metrics).claims if c.key == "focus")
    lookup = AggregateLookup(metrics.aggregates)
    assert [(label, n.family) for label, n in focus.numbers] == [
        ("mass_ratio, all images", "deeper"), ("mass_ratio, all images", "wider"),
        ("spread, all images", "deeper"), ("spread, all images", "wider")]
    for label, number in focus.numbers:
        metric = label.split(",")[0]
        by_hand = sum(v[0 if metric == "mass_ratio" else 1] for v in values[number.family]) / 12
        assert number.mean == pytest.approx(by_hand) and number.n == 12
        assert number.ci_low <= number.mean <= number.ci_high
        row = lookup("family", number.family, "deep", "all", metric)
        assert (number.mean, number.ci_low, number.ci_high, number.n) == (row.mean, row.ci_low, row.ci_high, row.n)
