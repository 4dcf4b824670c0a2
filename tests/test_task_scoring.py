"""Task scores of a classifier head (reportgen/scoring/task.py): confusion matrix, macro-F1 and recall against values
worked out by hand from the formulas, their per-draw values against a PairedDraws written by hand, and the label-order
check's flag rates by simulation where the truth is known."""
from fractions import Fraction

import numpy as np
import pytest

from reportgen.scoring.bootstrap import PairedDraws, interval, paired_draws
from reportgen.scoring.task import (MACRO_F1_MIN_COMPLETE, LabelOrderCheck, best_assignment, confusion_matrix, label_order_check, macro_f1,
                                    macro_f1_draws, per_class_recall_draws)

pytestmark = pytest.mark.unit

# Ten labelled images of three classes and one unlabelled one (position 10, which counts nowhere):
#                 predicted 0  1  2
#   true 0 (4 images)        3  1  0
#   true 1 (3 images)        1  2  0
#   true 2 (3 images)        0  1  2
TRUTH = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, -1])
PRED = np.array([0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 2])
MATRIX = [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
# By hand: TP = 3, 2, 2; FP (column sum - TP) = 1, 2, 0; FN (row sum - TP) = 1, 1, 1.
F1 = [Fraction(2 * 3, 2 * 3 + 1 + 1), Fraction(2 * 2, 2 * 2 + 2 + 1), Fraction(2 * 2, 2 * 2 + 0 + 1)]  # 3/4, 4/7, 4/5
MACRO_F1 = sum(F1) / 3  # 297/420
RECALL = [Fraction(3, 4), Fraction(2, 3), Fraction(2, 3)]


def hand_draws(rows) -> PairedDraws:
    """A PairedDraws written out: one pool holding every image, the given image positions per draw."""
    indices = np.array(rows, dtype=np.int32)
    n = indices.shape[1]
    return PairedDraws(indices, ((),), np.array([0, n]), np.zeros(n, dtype=np.int32), 0)


# Draw 0: every image once. Draw 1: images 0 (four times), 3 (twice), 4, 5 (twice) and the unlabelled 10 (twice):
#   class 0: support 6, TP 4, predicted 0 by images 0 (x4) and 4 -> 5: F1 = 8 / (6 + 5) = 8/11, recall 4/6
#   class 1: support 3, TP 2, predicted 1 by images 3 (x2) and 5 (x2) -> 4: F1 = 4 / (3 + 4) = 4/7, recall 2/3
#   class 2: absent from the draw's truth (recall NaN). Macro-F1 of these images = (8/11 + 4/7) / 2 = 50/77, but
#   the draw lacks a class of the sample, so macro-F1's draws leave it out (NaN).
# Draw 2: only the unlabelled image: nothing scored.
DRAWS = hand_draws([list(range(11)), [0, 3, 3, 4, 5, 5, 10, 10, 0, 0, 0], [10] * 11])


def test_confusion_matrix_by_hand():
    matrix = confusion_matrix(TRUTH, PRED, 3)
    assert matrix.dtype == np.int64 and matrix.tolist() == MATRIX
    # no prediction: not in the matrix (nor is the unlabelled image)
    assert confusion_matrix(np.append(TRUTH, 2), np.append(PRED, -1), 3).tolist() == MATRIX


def test_macro_f1_by_hand():
    assert MACRO_F1 == Fraction(297, 420)
    assert macro_f1(TRUTH, PRED, 3) == pytest.approx(float(MACRO_F1), abs=1e-12)
    # a labelled image without a prediction is a miss: a false negative of its class (F1_2 = 4 / (4 + 0 + 2))
    missed = (F1[0] + F1[1] + Fraction(4, 6)) / 3
    assert macro_f1(np.append(TRUTH, 2), np.append(PRED, -1), 3) == pytest.approx(float(missed), abs=1e-12)
    # a class only predicted, never true, is left out of the mean; its false positives cost the true class its TP
    assert macro_f1([0, 0, 1, 1], [0, 2, 1, 1], 3) == pytest.approx((2 / 3 + 1.0) / 2)
    assert macro_f1([-1, -1], [0, 1], 2) is None
    assert macro_f1([], [], 2) is None


def test_draws_match_the_hand_values():
    f1 = macro_f1_draws(TRUTH, PRED, 3, DRAWS)
    assert f1.shape == (3,)
    assert f1[0] == pytest.approx(float(MACRO_F1), abs=1e-12)
    # Draw 1 lacks class 2: it averages over two classes where the point averages over three (50/77). Such draws are
    # left out only while they are few (issue 32, #9: MACRO_F1_MIN_COMPLETE); here only 1 of the 3 draws holds
    # every class, so every draw is kept.
    assert macro_f1(TRUTH[DRAWS.indices[1]], PRED[DRAWS.indices[1]], 3) == pytest.approx(50 / 77, abs=1e-12)
    assert f1[1] == pytest.approx(50 / 77, abs=1e-12)
    assert np.isnan(f1[2])
    recall = per_class_recall_draws(TRUTH, PRED, 3, DRAWS)
    assert recall.shape == (3, 3)
    assert np.allclose(recall[0], [float(r) for r in RECALL])
    assert np.allclose(recall[1, :2], [4 / 6, 2 / 3]) and np.isnan(recall[1, 2])
    assert np.isnan(recall[2]).all()


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_draws_equal_one_draw_at_a_time(seed):
    """Property: each draw's value is the plain function applied to that draw's images (ten classes, unlabelled
    images and missing predictions mixed in, stratified draws from the run's sampler)."""
    rng = np.random.default_rng(seed)
    n, classes = 80, 10
    truth = np.where(rng.random(n) < 0.15, -1, rng.integers(0, classes, n))
    pred = np.where(rng.random(n) < 0.1, -1, np.where(rng.random(n) < 0.5, truth, rng.integers(0, classes, n)))
    draws = paired_draws([t >= 0 for t in truth], 60, seed)
    f1 = macro_f1_draws(truth, pred, classes, draws)
    recall = per_class_recall_draws(truth, pred, classes, draws)
    sample = set(truth[truth >= 0])
    complete = np.array([sample <= set(truth[row]) for row in draws.indices])
    for b, row in enumerate(draws.indices):
        # a draw lacking a class is left out while such draws are few (it averages over fewer classes)
        kept = complete[b] or complete.mean() < MACRO_F1_MIN_COMPLETE
        expected = macro_f1(truth[row], pred[row], classes) if kept else np.nan
        assert np.isclose(f1[b], expected, equal_nan=True, atol=1e-12)
        t, p = truth[row], pred[row]
        for c in range(classes):
            members = t == c
            expected = (p[members] == c).mean() if members.any() else np.nan
            assert np.isclose(recall[b, c], expected, equal_nan=True)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="only 3 classes"):
        macro_f1([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="images"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="resample"):
        macro_f1_draws(TRUTH[:5], PRED[:5], 3, DRAWS)


# --- label order ------------------------------------------------------------------------------------------------------

def test_assignment_prefers_the_identity_among_ties():
    assert best_assignment(np.zeros((4, 4), dtype=np.int64)).tolist() == [0, 1, 2, 3]
    assert best_assignment(np.array([[1, 1], [1, 1]])).tolist() == [0, 1]
    assert best_assignment(np.array([[0, 5], [4, 0]])).tolist() == [1, 0]  # output 0 means label 1, 1 means 0
    # classes that never occur keep their index; only the ones that do are solved for
    matrix = np.zeros((1000, 1000), dtype=np.int64)
    matrix[7, 500], matrix[500, 7] = 3, 3
    label = best_assignment(matrix)
    assert label[7] == 500 and label[500] == 7
    assert (np.delete(label, [7, 500]) == np.delete(np.arange(1000), [7, 500])).all()


def test_cycled_head_by_hand():
    """Every output one label on: as-is accuracy 0, mapped 1, every image gains 1 in every draw."""
    truth = np.repeat([0, 1, 2], 10)
    check = label_order_check(truth, (truth + 1) % 3, 3, paired_draws([0] * 30, 200, 1))
    assert isinstance(check, LabelOrderCheck)
    assert check.mapping == ((0, 2), (1, 0), (2, 1))
    assert (check.accuracy_as_is, check.accuracy_mapped) == (0.0, 1.0)
    assert (check.gain_low, check.gain_high) == (1.0, 1.0) and check.heldout_gain_low == 1.0
    assert check.flagged


def test_the_gain_interval_comes_from_the_given_draws():
    """The interval is the given draws' percentile interval of the per-image gain, the mapping fixed; other draws
    (another seed) give another interval."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 60)
    pred = np.where(rng.random(60) < 0.7, (truth + 1) % 3, rng.integers(0, 3, 60))
    draws = paired_draws([0] * 60, 500, 11)
    check = label_order_check(truth, pred, 3, draws)
    label = np.arange(3)
    for head, meant in check.mapping:
        label[head] = meant
    gain = (label[pred] == truth).astype(float) - (pred == truth)
    assert (check.gain_low, check.gain_high) == interval(draws.means(gain))
    assert check.accuracy_mapped - check.accuracy_as_is == pytest.approx(gain.mean())
    other = label_order_check(truth, pred, 3, paired_draws([0] * 60, 500, 12))
    assert other.mapping == check.mapping and (other.gain_low, other.gain_high) != (check.gain_low, check.gain_high)


def test_correct_head_and_no_labels():
    truth = np.repeat([0, 1, 2], 10)
    check = label_order_check(truth, truth, 3, paired_draws([0] * 30, 100, 0))
    assert check.mapping == () and check.accuracy_as_is == check.accuracy_mapped == 1.0 and not check.flagged
    assert check.gain_low == check.gain_high == 0.0
    assert label_order_check([-1, -1], [0, 1], 2, paired_draws([0, 0], 100, 0)) is None


def test_a_constant_head_is_not_a_label_order_finding():
    """A head that answers 0 for every image, 70 % of them labelled 1: "output 0 means label 1" gains 40 points,
    in every half, but is no better than answering the most common label; that is a degenerate head, not another
    order."""
    truth = np.array([1] * 70 + [0] * 30)
    pred = np.zeros(100, dtype=np.int64)
    check = label_order_check(truth, pred, 2, paired_draws([0] * 100, 500, 0))
    assert check.mapping == ((0, 1), (1, 0)) and check.gain_low >= 0.10 and check.heldout_gain_low >= 0.10
    assert check.beyond_chance_low == 0.0 and not check.flagged


# --- flag rates by simulation -----------------------------------------------------------------------------------------

SETS = 200
SAMPLES = 1000  # the run's default bootstrap_samples


def simulated_head(kind: str, rng, classes: int, n: int, accuracy: float = 0.85):
    """``correct``: right with probability ``accuracy`` (drawn from 40-70 %, and above chance + 5 points: a 2-class
    head below 50 % is a swapped head), otherwise another class at random; ``random``: a guess; ``cycled``: a head
    right with probability ``accuracy`` whose outputs are then shifted one label on."""
    truth = rng.integers(0, classes, n)
    if kind == "random":
        return truth, rng.integers(0, classes, n)
    if kind == "correct":
        accuracy = rng.uniform(max(0.4, 1 / classes + 0.05), 0.7)
    right = rng.random(n) < accuracy
    pred = np.where(right, truth, (truth + rng.integers(1, classes, n)) % classes)
    return truth, (pred + 1) % classes if kind == "cycled" else pred


def flag_rates(kind: str, seed: int, classes=None, n=None, accuracy: float = 0.85) -> dict:
    """Over SETS simulated image sets: the share flagged, the share the plain rule alone would flag, and the share
    whose mapping is the true one (the identity, or the cycle's inverse)."""
    rng = np.random.default_rng(seed)
    flagged = plain = right = 0
    for s in range(SETS):
        c = classes or int(rng.integers(2, 11))
        size = n or int(rng.integers(40, 301))
        truth, pred = simulated_head(kind, rng, c, size, accuracy)
        check = label_order_check(truth, pred, c, paired_draws([0] * size, SAMPLES, seed * SETS + s))
        flagged += check.flagged
        plain += bool(check.mapping) and check.gain_low >= 0.10
        expected = tuple((j, (j - 1) % c) for j in range(c)) if kind == "cycled" else ()
        right += check.mapping == expected
    return {"flagged": flagged / SETS, "plain": plain / SETS, "true mapping": right / SETS}


def test_correct_heads_are_not_flagged():
    """(a) correct heads, 40-70 % accurate, 2-10 classes, 40-300 images: flagged in well under 5 % of sets
    (measured: 0 of 200)."""
    rates = flag_rates("correct", 1)
    assert rates["flagged"] <= 0.01, rates


def test_guessing_heads_are_not_flagged():
    """(b) guessing heads over the same range: under 5 % (measured: 0 of 200; the plain rule alone: 3)."""
    rates = flag_rates("random", 2)
    assert rates["flagged"] < 0.05, rates


def test_guessing_heads_with_many_classes_and_few_images_are_not_flagged():
    """(b) at its hardest, 10 classes and 40 images: the plain rule (fixed-mapping gain's lower bound >= 0.10) flags
    about half the guessing heads (measured: 101 of 200), selection bias alone; the full rule none (measured: 0)."""
    rates = flag_rates("random", 3, classes=10, n=40)
    assert rates["plain"] > 0.2, rates  # the simulation has teeth: the bias it guards against is there
    assert rates["flagged"] < 0.05, rates


def test_cycled_heads_are_flagged_with_the_true_mapping():
    """(c) 3 classes cycled, 85 % accurate under the right mapping, 60 images: flagged in >= 95 % of sets, the
    mapping the true one (measured: 200 of 200, both)."""
    rates = flag_rates("cycled", 4, classes=3, n=60)
    assert rates["flagged"] >= 0.95 and rates["true mapping"] >= 0.95, rates


# --- the task table's numbers from the saved arrays (reportgen/scoring/task_report.py) -----------------------------

def _task_score(logits, truth, knn_pred=None, run=None, estimand=None):
    from types import SimpleNamespace

    from reportgen.inputs.config import AnalysisConfig
    from reportgen.results import arrays as keys
    from reportgen.results.schema import Estimand
    from reportgen.scoring.task_report import task_score
    arrays = {keys.LOGITS: np.asarray(logits, dtype=np.float32)}
    if knn_pred is not None:
        arrays[keys.KNN_PRED] = np.asarray(knn_pred, dtype=np.int64)
    entry = SimpleNamespace(task=run, estimand=estimand or Estimand.OWN_HEAD)
    n = len(truth)
    draws = hand_draws([list(range(n))] * 2)  # every image once, twice: each interval is the point itself
    return task_score(entry, arrays, np.asarray(truth), 3, draws, AnalysisConfig())


def test_a_labelled_image_without_a_prediction_is_a_miss_in_every_score():
    """TRUTH/PRED plus one more image of class 2 whose outputs are NaN (no prediction). As in task.py it is a miss:
    accuracy 7 / 11 (not 7 / 10), recall of class 2 2 / 4, macro-F1 with F1_2 = 4 / 6, each over n = 11 labelled
    images, and each point equal to its interval from draws that hold every image once. (Before: accuracy and the
    recall points left the image out, while the recall's and macro-F1's draws counted it: 2/3 [1/2, 1/2].)"""
    truth = np.append(TRUTH, 2)
    logits = np.log(np.maximum(np.eye(3)[PRED], 1e-30))
    logits = np.vstack([logits, np.full(3, np.nan)])
    score = _task_score(logits, truth)
    assert score.accuracy.n == 11 and score.accuracy.mean == pytest.approx(7 / 11)
    # The shown accuracy interval is the exact binomial one for 7 of 11 (Clopper-Pearson: beta quantiles), not the
    # draws' point (issue 32: a resample cannot hold a miss the sample lacks).
    from scipy.stats import beta
    assert score.accuracy.ci_low == pytest.approx(beta.ppf(0.025, 7, 5))
    assert score.accuracy.ci_high == pytest.approx(beta.ppf(0.975, 8, 4))
    missed = float((F1[0] + F1[1] + Fraction(4, 6)) / 3)
    assert score.macro_f1.n == 11 and score.macro_f1.mean == pytest.approx(missed)
    assert score.macro_f1.ci_low == pytest.approx(missed) and score.macro_f1.ci_high == pytest.approx(missed)
    recall = score.per_class_recall[2]
    assert recall.n == 4 and recall.mean == pytest.approx(2 / 4)
    assert recall.ci_low == pytest.approx(2 / 4) and recall.ci_high == pytest.approx(2 / 4)
    assert [r.mean for r in score.per_class_recall[:2]] == pytest.approx([float(r) for r in RECALL[:2]])
    assert [list(row) for row in score.confusion] == MATRIX


def test_no_probe_measures_no_probe_or_knn_accuracy():
    """A probe candidate whose probe was not fit (one usable class: TaskRun.note says so) has only a placeholder
    head's outputs (here uniform, argmax class 0) and no k-NN prediction (-1 everywhere): nothing is measured.
    (Before: probe accuracy = the share of class 0, k-NN accuracy 0 %, both ranked.)"""
    from reportgen.results.schema import Estimand, TaskRun
    truth = np.array([1] * 8 + [0] * 3 + [-1])
    run = TaskRun(estimand=Estimand.LINEAR_PROBE, head_outputs=1000,
                  note="only one class (1) has at least 5 labelled images: a probe needs two")
    score = _task_score(np.full((12, 3), np.log(1 / 3)), truth, knn_pred=np.full(12, -1), run=run,
                        estimand=Estimand.LINEAR_PROBE)
    assert score.accuracy.mean is None and score.accuracy.n == 0
    assert score.knn_accuracy.mean is None and score.knn_accuracy.n == 0
    assert score.macro_f1.mean is None and all(r.mean is None for r in score.per_class_recall)


def test_knn_counts_a_left_out_class_as_an_error():
    """k-NN predictions -1 for the labelled images of a class left out of the probe: errors, by hand 3 right of 5."""
    from reportgen.results.schema import Estimand, TaskRun
    truth = np.array([0, 0, 1, 1, 2, -1])
    knn = np.array([0, 1, 1, 1, -1, -1])
    run = TaskRun(estimand=Estimand.LINEAR_PROBE, head_outputs=1000, classes_used=(0, 1))
    score = _task_score(np.log(np.full((6, 3), 1 / 3)), truth, knn_pred=knn, run=run, estimand=Estimand.LINEAR_PROBE)
    assert score.knn_accuracy.n == 5 and score.knn_accuracy.mean == pytest.approx(3 / 5)


def test_a_tie_for_first_place_is_no_agreement_and_no_disagreement():
    """Three probes that all score 100 %: no measure has a first place, so the rankings neither agree nor disagree
    (page 1 warns only on a disagreement)."""
    from reportgen.results.schema import Estimand, Interval, TaskScore
    from reportgen.scoring.task_report import _rankings

    def score(accuracy, knn, logme):
        return TaskScore(estimand=Estimand.LINEAR_PROBE, accuracy=Interval(accuracy, accuracy, accuracy, 20),
                         macro_f1=Interval(1.0, 1, 1, 20), per_class_recall=(), confusion=(),
                         knn_accuracy=Interval(knn, knn, knn, 20), logme=logme)

    rankings, agree, _ = _rankings({"a": score(1.0, 1.0, None), "b": score(1.0, 1.0, None)})
    assert agree is None and [r.tied for r in rankings] == [("a", "b"), ("a", "b")]
    rankings, agree, _ = _rankings({"a": score(0.9, 0.8, None), "b": score(0.8, 0.9, None)})
    assert agree is False and not any(r.tied for r in rankings)
    rankings, agree, _ = _rankings({"a": score(0.9, 0.9, 1.0), "b": score(0.8, 0.8, 0.5)})
    assert agree is True
