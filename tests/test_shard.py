"""Shards merge into exactly what one process computes."""

import numpy as np
import pytest

from reportgen.inputs.config import AnalysisConfig
from reportgen.pipeline.shards import image_slices, merge_and_score as merge_shards, run_shard
from reportgen.results import arrays as keys
from reportgen.results.store import load_results

from conftest import run_cli


def _numbers(record) -> list:
    """Every number in a record, depth first (a merge that changes one changes this list)."""
    import dataclasses

    if dataclasses.is_dataclass(record):
        return _numbers([getattr(record, f.name) for f in dataclasses.fields(record)])
    if isinstance(record, dict):
        return _numbers([record[k] for k in sorted(record)])
    if isinstance(record, (list, tuple)):
        return [n for item in record for n in _numbers(item)]
    if isinstance(record, bool) or record is None or isinstance(record, str):
        return []
    if isinstance(record, (int, float)):
        return [float(record)]
    return []


def test_two_image_shards_merge_to_the_single_run(tmp_path, small_image_dir):
    """Everything on: the sanity check, corruptions and faithfulness sample images by hash, so each shard measures
    exactly its share of the samples and the merge equals the single run."""
    config = AnalysisConfig(batch_size=2, bootstrap_samples=200, latency_budget_s=0.2)
    everything, = image_slices(small_image_dir, 100, config)
    halves = image_slices(small_image_dir, 2, config)
    assert [len(s.records) for s in halves] == [2, 1]
    whole = load_results(run_shard("efficientnet_lite0", everything, tmp_path / "whole", config))
    first = run_shard("efficientnet_lite0", halves[0], tmp_path / "s0", config)
    second = run_shard("efficientnet_lite0", halves[1], tmp_path / "s1", config)
    merged = load_results(merge_shards([second.parent, first], tmp_path / "merged"))  # any order

    # Images come in first-appearance order; compare by file name.
    order = [img.file for img in merged.index.images]
    assert sorted(order) == sorted(img.file for img in whole.index.images)
    back = [order.index(img.file) for img in whole.index.images]
    a, b = whole.arrays("efficientnet_lite0"), merged.arrays("efficientnet_lite0")
    for key in a:
        if keys.is_per_image(key):
            np.testing.assert_allclose(b[key][back], a[key], rtol=1e-4, atol=1e-5, err_msg=key)
    ea, eb = whole.index.backbones[0], merged.index.backbones[0]
    for layer, stats in ea.feature_stats.items():
        assert eb.feature_stats[layer].variance == pytest.approx(stats.variance, rel=1e-4)
    np.testing.assert_allclose(np.array(eb.feature_cka.matrix), np.array(ea.feature_cka.matrix), rtol=1e-4)
    assert [eb.predictions[i].top5[0].index for i in back] == [p.top5[0].index for p in ea.predictions]
    def sample_files(results, entry, key):  # the image of each row of a per-sample array
        run = getattr(entry, keys.sample_of(key))
        return [results.index.images[p].file for p in run.images]

    for key in a:
        if keys.is_per_sample(key):
            files_a, files_b = sample_files(whole, ea, key), sample_files(merged, eb, key)
            assert sorted(files_a) == sorted(files_b) and len(files_a) == a[key].shape[0] > 0, key
            rows = [files_b.index(f) for f in files_a]
            np.testing.assert_allclose(b[key][rows], a[key], rtol=1e-4, atol=1e-5, err_msg=key)
    for table in ("calibration", "corruption", "faithfulness", "sanity"):
        ours, theirs = getattr(merged.metrics, table), getattr(whole.metrics, table)
        assert ours.keys() == theirs.keys() == {"efficientnet_lite0"}, table
        assert ours["efficientnet_lite0"].status == theirs["efficientnet_lite0"].status
        np.testing.assert_allclose(_numbers(ours), _numbers(theirs), rtol=1e-4, atol=1e-6, err_msg=table)
    assert whole.metrics.corruption["efficientnet_lite0"].images == 3
    assert whole.metrics.faithfulness["efficientnet_lite0"].images == 3
    in_order = load_results(merge_shards([first, second], tmp_path / "in-order"))
    assert in_order.index.image_set.sha256 == whole.index.image_set.sha256
    rows_a = {(r.image, r.layer): r.mass_ratio for r in whole.metrics.per_image}
    rows_b = {(r.image, r.layer): r.mass_ratio for r in merged.metrics.per_image}
    assert rows_a.keys() == rows_b.keys()
    for key, value in rows_a.items():
        assert (value is None and rows_b[key] is None) or rows_b[key] == pytest.approx(value, rel=1e-3, abs=1e-4)

    result = run_cli("merge", str(first.parent), str(second.parent), "--out", str(tmp_path / "cli"), "--format", "html")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "report.html").stat().st_size > 50_000

    overlap = run_cli("merge", str(first.parent), str(tmp_path / "whole"), "--out", str(tmp_path / "bad"))
    assert overlap.exit_code == 3 and "appears in two shards" in overlap.output


def test_merge_when_a_shard_skipped_cka_for_a_too_wide_layer(tmp_path, small_image_dir, monkeypatch):
    """A last-three layer too wide for its co-moments: the shards keep no CKA state, the merge says "not
    available" instead of failing with a KeyError."""
    import reportgen.analysis.engine as engine

    monkeypatch.setattr(engine, "MAX_CKA_UNITS", 1)
    config = AnalysisConfig(batch_size=2, sanity_check=False, corruption_max_images=0, faithfulness_max_images=0,
                            latency_budget_s=0.2)
    halves = image_slices(small_image_dir, 2, config)
    first = run_shard("efficientnet_lite0", halves[0], tmp_path / "s0", config)
    second = run_shard("efficientnet_lite0", halves[1], tmp_path / "s1", config)
    merged = load_results(merge_shards([first, second], tmp_path / "merged"))
    entry = merged.index.backbones[0]
    assert entry.feature_cka.layers and entry.feature_cka.matrix == ()
    assert merged.metrics.last_three["efficientnet_lite0"].cka[0][1] is None
    result = run_cli("render", str(tmp_path / "merged" / "results"), "--out", str(tmp_path / "r"), "--format", "html")
    assert result.exit_code == 0, result.output
