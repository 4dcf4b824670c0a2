""""Your data" (issue 34, points 1, 2, 3 and 5): duplicates, near-duplicates, training and evaluation overlap, likely
label errors and class balance, on hand-made feature matrices and probabilities whose planted problems are known, and
counted by hand; the search's blocks against a brute-force loop; the interval half-width against the Clopper-Pearson
formula."""
from __future__ import annotations

import numpy as np
import pytest

from reportgen.inputs.config import AnalysisConfig
from reportgen.inputs.label_space import NamesSource, own_space
from reportgen.results import arrays as keys
from reportgen.results.csv_files import FLAGGED_HEADER, csv_text
from reportgen.results.schema import (SCHEMA_VERSION, BackboneResult, CamStatus, CheckName, DataCheck, Estimand,
                                      FeatureCka, FlagReason, ImageEntry, ImageSetInfo, Metrics, Prediction,
                                      RankedClass, RunIndex, RunStatus, SanityRun, SlimmingRun, TaskRun, WeightsInfo)
from reportgen.scoring import datacheck
from reportgen.scoring.datacheck import (agreed_pairs, check_data, class_balance, similar_pairs, unit_rows,
                                        widest_half_width)

pytestmark = pytest.mark.unit

NAMES = ("ants", "bees", "wasps")
DIM = 64


def brute_pairs(x: np.ndarray, threshold: float) -> set:
    """Every pair i < j at least ``threshold`` similar, by a loop over pairs (the reference)."""
    return {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if float(x[i] @ x[j]) >= threshold}


def test_blocked_search_finds_what_a_loop_over_pairs_finds(monkeypatch):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(40, DIM))
    # planted: 5 near-copies (small noise) and a group of three
    x = np.concatenate([base, base[[1, 4, 9, 16, 25]] + 0.05 * rng.normal(size=(5, DIM)),
                        base[[30, 30]] + 0.05 * rng.normal(size=(2, DIM))])
    unit = unit_rows(x)
    expected = brute_pairs(unit, 0.95)
    assert len(expected) == 5 + 3  # (1, 40) ... and 30 with both copies plus the copies with each other
    monkeypatch.setattr(datacheck, "BLOCK_ROWS", 7)  # blocks that do not divide the rows
    rows, cols = similar_pairs(unit, 0.95, neighbours=10)
    assert set(zip(rows.tolist(), cols.tolist())) == expected
    # one neighbour per row: every pair whose members' nearest is the other still found
    rows, cols = similar_pairs(unit, 0.95, neighbours=1)
    assert {(1, 40), (4, 41), (9, 42), (16, 43), (25, 44)} <= set(zip(rows.tolist(), cols.tolist()))


def test_a_pair_counts_only_when_every_candidate_agrees():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, DIM))
    b = rng.normal(size=(10, DIM))
    a[3] = a[2] + 0.01 * rng.normal(size=DIM)  # near in space a only
    a[7], b[7] = a[6] + 0.01 * rng.normal(size=DIM), b[6] + 0.01 * rng.normal(size=DIM)  # near in both
    rows, cols, sims = agreed_pairs([unit_rows(a), unit_rows(b)], 0.95, 5)
    assert list(zip(rows.tolist(), cols.tolist())) == [(6, 7)]
    assert sims[0] == pytest.approx(min(float(unit_rows(a)[6] @ unit_rows(a)[7]),
                                        float(unit_rows(b)[6] @ unit_rows(b)[7])))


def test_half_width_is_the_clopper_pearson_interval_at_half_right():
    # n = 10, 5 right: the exact 95 % interval is [0.1871, 0.8129] (beta quantiles, Clopper & Pearson 1934)
    from scipy.stats import beta

    low, high = beta.ppf(0.025, 5, 6), beta.ppf(0.975, 6, 5)
    assert (low, high) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert widest_half_width(10, 0.95) == pytest.approx((high - low) / 2, abs=1e-4)
    assert widest_half_width(100, 0.95) < widest_half_width(25, 0.95) < widest_half_width(10, 0.95)
    assert widest_half_width(0, 0.95) is None


# --- a hand-made run: 3 classes, 30 images, two probe candidates ------------------------------------------------

def _entry(i: int, label, sha: str) -> ImageEntry:
    return ImageEntry(file=f"{NAMES[label] if label is not None else 'x'}/img{i:02d}.jpg", sha256=sha, width=64,
                      height=64, class_index=label, class_name=NAMES[label] if label is not None else None, box=None,
                      box_share=None, size=None, background=None, source="", licence="", notes="", decoding="",
                      size_source="", background_source="", box_source="", display_copy="")


def _backbone(name: str, labels, estimand=Estimand.LINEAR_PROBE) -> BackboneResult:
    n = len(labels)
    preds = tuple(Prediction(0 if t is None else t, "", "manifest", (RankedClass(i % 3, NAMES[i % 3], 0.6),),
                             None if t is None else (i % 3 == t), None) for i, t in enumerate(labels))
    return BackboneResult(
        name=name, timm_id=name, architecture=name, display_name=name, family="deeper", family_source="registry",
        layer_source="registry", depth_layers={"deep": "x"}, last_three=(), weight_modules={}, layers=("x",),
        weights=WeightsInfo("pretrained", "checkpoint", "", "", ""), data_config={}, params=1, macs=1.0,
        cam_status={"x": (CamStatus.OK,) * n}, feature_stats={}, weight_stats={}, feature_cka=FeatureCka((), (), ""),
        views=(), predictions=preds, sanity=SanityRun("skipped", "test", ()),
        slimming=SlimmingRun(status="not-possible", unit=None, unit_source="registry", reason="test",
                             params_removed=0, macs_removed=0.0, deep_cam_layer=None), batch_size=1,
        task=TaskRun(estimand=estimand, head_outputs=3, classes_used=(0, 1, 2)))


class Planted:
    """30 images, 10 per class. Planted (by position): 21 a byte copy of 1 (same sha), 22 a near-copy of 2 (features
    plus small noise), 25 and 26 labelled 'wasps' though the held-out probabilities say 'ants' and 'bees' (images of
    those classes put in the wrong folder), 27 byte-identical to a training image, 28 a near-copy of training image 2."""

    def __init__(self, seed: int = 0, unlabelled: bool = False, estimand=Estimand.LINEAR_PROBE, train: bool = True):
        rng = np.random.default_rng(seed)
        true = [i % 3 for i in range(30)]
        given = list(true)
        given[25], given[26] = 2, 2
        true[25], true[26] = 0, 1
        self.given = given
        shas = [f"{i:064x}" for i in range(30)]
        shas[21] = shas[1]
        labels = [None] * 30 if unlabelled else given
        images = tuple(_entry(i, labels[i], shas[i]) for i in range(30))
        feats = {}
        train_feats = {}
        self.arrays = {}
        for name in ("a", "b"):
            x = rng.normal(size=(30, DIM))
            x[21] = x[1]
            x[22] = x[2] + 0.02 * rng.normal(size=DIM)
            t = rng.normal(size=(6, DIM))
            x[28] = t[2] + 0.02 * rng.normal(size=DIM)
            feats[name], train_feats[name] = x, t
            probs = np.full((30, 3), 0.05)
            probs[np.arange(30), true] = 0.9
            self.arrays[name] = {keys.PRELOGITS: x.astype(np.float32),
                                 keys.LOGITS: np.log(probs).astype(np.float32)}
            if train:
                self.arrays[name][keys.TRAIN_PRELOGITS] = t.astype(np.float32)
        space = own_space(NAMES, NamesSource.FOLDERS)
        self.config = AnalysisConfig(bootstrap_samples=20)
        self.index = RunIndex(
            schema_version=SCHEMA_VERSION, versions={}, config=self.config, seed=0, weights_mode="pretrained",
            device="cpu", image_set=ImageSetInfo("t", "", 30), images=images, skipped_images=(),
            backbones=tuple(_backbone(n, labels, estimand) for n in ("a", "b")), timings_file="timings.json",
            battery_file={}, label_space=space,
            train_copies=(images[27].file,) if train else (),
            train_files=tuple(f"train/{NAMES[k % 3]}/t{k}.jpg" for k in range(6)) if train else ())

    def check(self) -> DataCheck:
        return check_data(self.index, lambda name: self.arrays[name], self.config)


def _found(data: DataCheck, reason: FlagReason) -> list:
    return [(f.image.rsplit("/", 1)[-1], f.other.rsplit("/", 1)[-1]) for f in data.flagged(reason)]


def test_every_planted_problem_is_flagged_and_nothing_else():
    data = Planted().check()
    assert _found(data, FlagReason.EXACT_DUPLICATE) == [("img21.jpg", "img01.jpg")]
    assert _found(data, FlagReason.NEAR_DUPLICATE) == [("img22.jpg", "img02.jpg")]
    assert _found(data, FlagReason.TRAIN_EVAL_COPY) == [("img27.jpg", "")]
    assert _found(data, FlagReason.TRAIN_EVAL_NEAR_COPY) == [("img28.jpg", "t2.jpg")]
    issues = data.flagged(FlagReason.LABEL_ISSUE)
    assert sorted((f.image.rsplit("/", 1)[-1], f.given, f.suggested) for f in issues) == [
        ("img25.jpg", "wasps", "ants"), ("img26.jpg", "wasps", "bees")]
    assert [f.rank for f in issues] == [1, 2]
    # the probability of the given label, renormalised over the three classes: 0.05 / 1.0
    assert all(f.score == pytest.approx(0.05) for f in issues)
    assert data.leaked == ("ants/img27.jpg", "bees/img28.jpg")
    runs = {c.check: c for c in data.checks}
    assert all(c.status == RunStatus.DONE for c in data.checks)
    assert [runs[c].flagged for c in (CheckName.EXACT_DUPLICATES, CheckName.NEAR_DUPLICATES, CheckName.TRAIN_EVAL,
                                      CheckName.LABEL_ISSUES)] == [1, 1, 2, 2]
    # leaked images are not held out for the probe: left out of the label check (28 of 30 images scored)
    assert "28 labelled images of 3 classes" in runs[CheckName.LABEL_ISSUES].basis
    assert data.features_from == ("a", "b") and data.probabilities_from == ("a", "b")


def test_class_balance_by_hand():
    data = Planted().check()
    # given labels: i % 3 (10 each), with 25 moved from bees to wasps (26 is a wasp by i % 3): ants 10, bees 9,
    # wasps 11
    assert [(c.name, c.images) for c in data.classes] == [("ants", 10), ("bees", 9), ("wasps", 11)]
    assert [c.share for c in data.classes] == [pytest.approx(10 / 30, abs=1e-4), 0.3, pytest.approx(11 / 30, abs=1e-4)]
    assert data.imbalance == pytest.approx(11 / 9, abs=1e-3)
    assert data.classes[1].half_width == widest_half_width(9, 0.95)
    assert not any(c.smallest for c in data.classes)  # three classes: all would be "the smallest three"


def test_unlabelled_images_get_only_the_duplicate_checks():
    data = Planted(unlabelled=True, train=False).check()
    runs = {c.check: c for c in data.checks}
    assert runs[CheckName.EXACT_DUPLICATES].status == RunStatus.DONE
    assert runs[CheckName.NEAR_DUPLICATES].status == RunStatus.DONE
    assert runs[CheckName.LABEL_ISSUES].status == RunStatus.SKIPPED
    assert "no labels" in runs[CheckName.LABEL_ISSUES].basis
    assert runs[CheckName.CLASS_BALANCE].status == RunStatus.SKIPPED
    assert not data.flagged(FlagReason.LABEL_ISSUE) and data.classes == ()
    assert len(data.flagged(FlagReason.EXACT_DUPLICATE)) == 1 and len(data.flagged(FlagReason.NEAR_DUPLICATE)) == 1


def test_an_own_head_is_never_read_for_label_errors():
    data = Planted(estimand=Estimand.OWN_HEAD, train=False).check()
    run = data.run_of(CheckName.LABEL_ISSUES)
    assert run.status == RunStatus.SKIPPED and "not held out" in run.basis
    assert not data.flagged(FlagReason.LABEL_ISSUE)


def test_untrained_weights_skip_the_feature_checks():
    from dataclasses import replace

    planted = Planted(train=False)
    planted.index = replace(planted.index, weights_mode="random")
    data = planted.check()
    assert data.run_of(CheckName.NEAR_DUPLICATES).status == RunStatus.SKIPPED
    assert data.run_of(CheckName.LABEL_ISSUES).status == RunStatus.SKIPPED
    assert len(data.flagged(FlagReason.EXACT_DUPLICATE)) == 1  # the bytes still say it


def test_no_false_alarms_on_distinct_images():
    """A clean set: 30 distinct images (independent features), correct labels: nothing flagged."""
    planted = Planted(train=False)
    rng = np.random.default_rng(9)
    for name in ("a", "b"):
        planted.arrays[name][keys.PRELOGITS] = rng.normal(size=(30, DIM)).astype(np.float32)
    data = check_data(planted.index, lambda n: planted.arrays[n], planted.config)
    assert not data.flagged(FlagReason.NEAR_DUPLICATE)


def test_the_record_round_trips_and_the_csv_lists_every_flag():
    data = Planted().check()
    assert DataCheck.from_json(data.to_json()) == data
    metrics = Metrics(schema_version=SCHEMA_VERSION, per_image=(), predictions=(), aggregates=(), last_three={},
                      sanity={}, slimming={}, data=data)
    assert Metrics.from_json(metrics.to_json()).data == data
    rows = csv_text(FLAGGED_HEADER, ((f.image, f.reason.value) for f in data.flags)).splitlines()
    assert len(rows) == 1 + 6


def test_class_balance_of_an_unlabelled_run_is_empty():
    planted = Planted(unlabelled=True, train=False)
    assert class_balance(planted.index, planted.config) == ((), None)
