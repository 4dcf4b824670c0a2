"""Verdict logic on hand-made metric tables covering every verdict."""

from reportgen.config import AnalysisConfig
from reportgen.rules import CONTRADICTED, INCONCLUSIVE, NOT_TESTED, SUPPORTED, conclude


def _rows(values_by_family):
    rows = []
    for family, values in values_by_family.items():
        for i, (mass_ratio, spread, size, background) in enumerate(values):
            rows.append({"image": f"{family}{i}", "backbone": f"{family}-net", "family": family, "layer": "x",
                         "role": "deep", "size": size, "background": background, "cam_status": "ok",
                         "mass_in_box": None, "pointing_hit": True, "entropy": 0.5,
                         "mass_ratio": mass_ratio, "spread": spread})
    return rows


def _index(weights_mode="pretrained", families=("deeper", "wider", "attention")):
    backbones = []
    for family in families:
        backbones.append({"name": f"{family}-net", "display_name": family.title(), "family": family,
                          "depth_layers": {"deep": "x"}, "cam_status": {"x": ["ok"]},
                          "predictions": [{"correct_top1": True, "correct_top5": True}]})
    return {"config": AnalysisConfig().to_dict(), "weights_mode": weights_mode, "backbones": backbones}


def _metrics(rows, cka_by_family, ks=0.05):
    from reportgen.scoring import aggregate

    return {"per_image": rows, "aggregates": aggregate(rows, AnalysisConfig()),
            "last_three": {f"{f}-net": {"layers": ["a", "b", "c"], "cka": [[1, c, 0.5], [c, 1, 0.5], [0.5, 0.5, 1]],
                                        "weight_w1_consecutive": [0.1, 0.2], "weight_ks_consecutive": [ks, 0.2]}
                           for f, c in cka_by_family.items()},
            "sanity": {f"{f}-net": {"status": "skipped", "reason": "test", "layers": {}} for f in cka_by_family}}


def _spread_values(mass, spread, n=12, jitter=0.02):
    return [(mass + jitter * (i % 3), spread + jitter * (i % 2), ("small", "large")[i % 2],
             ("clean", "cluttered")[(i // 2) % 2]) for i in range(n)]


def test_supported_and_contradicted():
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    result = conclude(_index(), _metrics(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9}))
    verdicts = {c.key: c.verdict for c in result.claims}
    assert verdicts["focus"] == SUPPORTED
    assert verdicts["wider-spread"] == SUPPORTED
    assert verdicts["slimming"] == SUPPORTED
    rows = _rows({"deeper": _spread_values(1.5, 0.6), "wider": _spread_values(3.0, 0.2),
                  "attention": _spread_values(2.0, 0.4)})
    result = conclude(_index(), _metrics(rows, {"deeper": 0.3, "wider": 0.95, "attention": 0.2}))
    verdicts = {c.key: c.verdict for c in result.claims}
    assert verdicts["focus"] == CONTRADICTED
    assert verdicts["wider-spread"] == CONTRADICTED
    assert verdicts["slimming"] == CONTRADICTED


def test_inconclusive_on_overlap_and_small_groups():
    rows = _rows({"deeper": _spread_values(2.0, 0.4, jitter=0.5), "wider": _spread_values(2.01, 0.4, jitter=0.5),
                  "attention": _spread_values(2.0, 0.4)})
    result = conclude(_index(), _metrics(rows, {"deeper": 0.9, "wider": 0.3, "attention": 0.9}))
    focus = next(c for c in result.claims if c.key == "focus")
    assert focus.verdict == INCONCLUSIVE and focus.reason == "overlap"
    rows = _rows({"deeper": _spread_values(3.0, 0.2, n=1), "wider": _spread_values(1.0, 0.6, n=1),
                  "attention": _spread_values(2.0, 0.4, n=1)})
    result = conclude(_index(), _metrics(rows, {"deeper": 0.9, "wider": 0.3, "attention": 0.9}))
    focus = next(c for c in result.claims if c.key == "focus")
    assert focus.verdict == INCONCLUSIVE and focus.reason == "small-group"


def test_missing_family_and_untrained_are_not_tested():
    rows = _rows({"deeper": _spread_values(3.0, 0.2)})
    result = conclude(_index(families=("deeper",)), _metrics(rows, {"deeper": 0.9}))
    assert all(c.verdict == NOT_TESTED for c in result.claims)
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    result = conclude(_index("random"), _metrics(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9}))
    assert result.untrained and all(c.reason == "untrained" for c in result.claims)


def test_slimming_needs_similar_features_and_similar_weight_distributions():
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    ckas = {"deeper": 0.95, "wider": 0.3, "attention": 0.9}
    close = next(c for c in conclude(_index(), _metrics(rows, ckas, ks=0.05)).claims if c.key == "slimming")
    assert close.verdict == SUPPORTED
    assert [r.evidence.removable for r in close.slimming] == [True, False, True]
    # Same features, but the weight distributions differ: the rule no longer calls the layer removable.
    far = next(c for c in conclude(_index(), _metrics(rows, ckas, ks=0.4)).claims if c.key == "slimming")
    assert [r.evidence.removable for r in far.slimming] == [False, False, False]
    assert far.verdict == INCONCLUSIVE and far.reason == "mixed"


def test_family_numbers_quote_the_family_table():
    rows = _rows({"deeper": _spread_values(3.0, 0.2), "wider": _spread_values(1.5, 0.6),
                  "attention": _spread_values(2.0, 0.4)})
    metrics = _metrics(rows, {"deeper": 0.95, "wider": 0.3, "attention": 0.9})
    focus = next(c for c in conclude(_index(), metrics).claims if c.key == "focus")
    from reportgen.scoring import find

    for label, number in focus.numbers:
        metric = label.split(",")[0]
        row = find(metrics["aggregates"], "family", number.family, "deep", "all", metric)
        assert (number.mean, number.ci_low, number.ci_high, number.n) == (row["mean"], row["ci_low"], row["ci_high"], row["n"])
