"""Transfer measures of frozen features (reportgen.analysis.transfer): LogME against hand-derived and independent
evidence values, the cross-validated linear probe and k-NN against leaks, excluded classes, the explaining probe's
folded weights, and a separate training set."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from reportgen.analysis.transfer import ABSENT_BIAS, checked_logme, logme, logme_evidence, transfer_measures

pytestmark = pytest.mark.unit

CHANCE_SEEDS = (0, 1, 2, 3)


def _gaussian_log_evidence(features, y, alpha, beta):
    """The marginal likelihood of LogME's model written directly: y ~ N(0, beta^-1 I + alpha^-1 F F^T)."""
    n = features.shape[0]
    return float(multivariate_normal(np.zeros(n), np.eye(n) / beta + features @ features.T / alpha).logpdf(y))


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _pipe():
    return Pipeline([("scale", StandardScaler()), ("probe", LogisticRegression(C=1.0, max_iter=1000))])


# --- LogME ----------------------------------------------------------------------------------------------------------

def test_logme_matches_a_hand_derived_optimum():
    # n = 3 images, D = 1 feature f = (1, 2, 2), ||f||^2 = 9. With a = 1/alpha, b = 1/beta the evidence is the
    # density of y under N(0, b I + a f f^T), whose eigenvalues are b + 9a along f and b on the 2-D complement.
    # Split ||y||^2 into p = (f.y)^2 / ||f||^2 along f and q = ||y||^2 - p across it:
    #   log p(y) = -3/2 log 2pi - 1/2 log(b + 9a) - log b - p / (2 (b + 9a)) - q / (2b).
    # Maximising over b + 9a and b separately: b + 9a = p, b = q / 2 (interior when p > q / 2, i.e. a > 0).
    # Class 1, y = (0, 1, 1): f.y = 4, p = 16/9, q = 2/9 -> b = 1/9 (beta = 9), 9a = 16/9 - 1/9 = 15/9
    #   (alpha = 27/5); log p(y) = -3/2 log 2pi - 1/2 log(16/9) + log 9 - 1/2 - 1.
    # Class 0, y = (1, 0, 0): f.y = 1, p = 1/9, q = 8/9 -> p < q / 2: the optimum is on the boundary a -> 0
    #   (alpha -> infinity), b = ||y||^2 / 3 = 1/3; sup log p(y) = -3/2 log(2pi / 3) - 3/2.
    features = np.array([[1.0], [2.0], [2.0]])
    class_1 = -1.5 * math.log(2 * math.pi) - 0.5 * math.log(16 / 9) + math.log(9) - 1.5
    class_0 = -1.5 * math.log(2 * math.pi / 3) - 1.5

    found = logme_evidence(features, np.array([0.0, 1.0, 1.0]))
    assert found.converged
    assert found.alpha == pytest.approx(27 / 5, rel=1e-4)
    assert found.beta == pytest.approx(9.0, rel=1e-4)
    assert found.log_evidence == pytest.approx(class_1, abs=1e-9)

    boundary = logme_evidence(features, np.array([1.0, 0.0, 0.0]))
    assert boundary.alpha > 1e6 and boundary.beta == pytest.approx(3.0, rel=1e-6)
    assert boundary.log_evidence == pytest.approx(class_0, abs=1e-6)

    # LogME: the mean over the classes of the log evidence per image.
    assert logme(features, np.array([0, 1, 1])) == pytest.approx((class_0 + class_1) / 2 / 3, abs=1e-6)


def test_logme_optimum_is_the_maximum_of_the_gaussian_evidence():
    # An independent reference: maximise log N(y | 0, beta^-1 I + alpha^-1 F F^T) over (log alpha, log beta) with a
    # general-purpose optimiser, and compare with the fixed point (value, and the identity at the returned alpha, beta).
    rng = np.random.default_rng(3)
    features = rng.normal(size=(8, 2))
    y = (features[:, 0] + 0.5 * rng.normal(size=8) > 0).astype(np.float64)
    found = logme_evidence(features, y)
    assert found.converged
    assert found.log_evidence == pytest.approx(_gaussian_log_evidence(features, y, found.alpha, found.beta), abs=1e-9)
    best = minimize(lambda v: -_gaussian_log_evidence(features, y, math.exp(v[0]), math.exp(v[1])), x0=[0.0, 0.0],
                    method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    assert -best.fun == pytest.approx(found.log_evidence, abs=1e-6)
    assert found.alpha == pytest.approx(math.exp(best.x[0]), rel=1e-3)
    assert found.beta == pytest.approx(math.exp(best.x[1]), rel=1e-3)


@pytest.mark.parametrize("n, d", [(4, 7), (6, 40)])
def test_logme_with_fewer_images_than_features_counts_the_zero_eigenvalues(n, d):
    # n < D: F^T F has D - n zero eigenvalues, each adding log alpha to log|A|; leaving them out (as the official
    # code's fixed-point variant does) shifts the evidence by (D - n)/2 log alpha, which |log alpha| > 0.1 makes
    # visible against the Gaussian density.
    rng = np.random.default_rng(n)
    features = rng.normal(size=(n, d))
    y = np.zeros(n)
    y[: n // 2] = 1.0
    found = logme_evidence(features, y)
    assert abs(math.log(found.alpha)) > 0.1
    assert found.log_evidence == pytest.approx(_gaussian_log_evidence(features, y, found.alpha, found.beta),
                                               abs=1e-6)


def test_logme_ranks_label_carrying_features_above_random_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    noise = rng.normal(size=(150, 32))
    signal = np.zeros((150, 32))
    signal[np.arange(150), labels] = 3.0
    scores = [logme(noise + strength * signal, labels) for strength in (1.0, 0.5, 0.2, 0.0)]
    assert scores == sorted(scores, reverse=True) and scores[0] - scores[-1] > 0.1, scores
    assert logme(rng.normal(size=(150, 32)), labels) < scores[0]


def test_checked_logme_keeps_a_class_the_features_say_nothing_about():
    # The hand example above: class 0's supremum is the limit alpha -> infinity (w = 0), a finite value that does not
    # depend on numerical precision, -n/2 (log(2 pi ||y||^2 / n) + 1); only beta -> infinity (an exact fit) makes
    # LogME unmeasurable. (Before: any class whose alpha/beta did not settle gave None, "the features fit the
    # classes exactly", here with 3 images and 1 feature dimension.)
    features = np.array([[1.0], [2.0], [2.0]])
    class_1 = -1.5 * math.log(2 * math.pi) - 0.5 * math.log(16 / 9) + math.log(9) - 1.5
    class_0 = -1.5 * (math.log(2 * math.pi * 1 / 3) + 1)
    assert logme_evidence(features, np.array([1.0, 0.0, 0.0])).boundary == "noise"
    value, note = checked_logme(features, np.array([0, 1, 1]))
    assert note == "" and value == pytest.approx((class_0 + class_1) / 2 / 3, abs=1e-9)


def test_a_slowly_settling_interior_optimum_is_reached():
    # Weakly informative features (22 images, 7 dimensions): the fixed point needs about 300 updates to settle.
    # (Before: 100 at most, stopped 2e-5 short of the maximum and reported it as a boundary optimum.) Reference: the
    # Gaussian log-density maximised by Nelder-Mead.
    rng = np.random.default_rng(160)
    n, d = int(rng.integers(20, 60)), int(rng.integers(2, 12))
    labels = (rng.random(n) < 0.5).astype(int)
    features = rng.normal(size=(n, d))
    features[:, 0] += rng.uniform(0, 1) * labels
    y = labels.astype(np.float64)
    found = logme_evidence(features, y)
    assert found.converged and found.boundary == "" and found.iterations > 100
    best = minimize(lambda v: -_gaussian_log_evidence(features, y, math.exp(v[0]), math.exp(v[1])), x0=[0.0, 0.0],
                    method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    assert found.log_evidence == pytest.approx(-best.fun, abs=1e-7)
    assert found.alpha == pytest.approx(math.exp(best.x[0]), rel=1e-3)
    value, note = checked_logme(features, labels)
    assert note == "" and value is not None


def test_checked_logme_refuses_an_exact_fit():
    # 6 images in 40 dimensions: every indicator lies in the column space of F, beta runs off to infinity.
    rng = np.random.default_rng(6)
    features = rng.normal(size=(6, 40))
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert logme_evidence(features, (labels == 0).astype(np.float64)).boundary == "exact fit"
    value, note = checked_logme(features, labels)
    assert value is None and "6 images, 40 feature dimensions" in note


# --- linear probe and k-NN: out-of-fold, no leak ------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_label_runs():
    """Gaussian features (120 x 256) with random labels over 3 classes: nothing to learn, chance is 1/3."""
    runs = []
    for seed in CHANCE_SEEDS:
        rng = np.random.default_rng(100 + seed)
        features = rng.normal(size=(120, 256)).astype(np.float32)
        labels = rng.integers(0, 3, size=120)
        runs.append((features, labels, transfer_measures(features, labels, 3, seed=seed)))
    return runs


# Chance 1/3; the mean over 4 x 120 out-of-fold predictions has a standard deviation of about 0.02.
CHANCE_BAND = (1 / 3 - 0.1, 1 / 3 + 0.1)


def test_probe_on_random_labels_stays_at_chance(random_label_runs):
    accuracy = np.mean([(m.probe_probs.argmax(axis=1) == labels).mean() for _, labels, m in random_label_runs])
    assert CHANCE_BAND[0] < accuracy < CHANCE_BAND[1], accuracy
    # A leaking probe (scaler and probe fit on every image, then scored on them) separates 120 points in 256
    # dimensions: it would leave the band. (A scaler-only leak is too small to show in accuracy.)
    leaked = np.mean([(_pipe().fit(features, labels).predict(features) == labels).mean()
                      for features, labels, _ in random_label_runs])
    assert leaked > CHANCE_BAND[1] + 0.3, leaked
    for _, _, m in random_label_runs:
        assert m.protocol == "5-fold stratified cross-validation, 5 repeats" and m.folds == 5 and m.note == ""
        assert np.allclose(m.probe_probs.sum(axis=1), 1.0)


def test_knn_never_uses_the_image_itself(random_label_runs):
    accuracy = np.mean([(m.knn_pred == labels).mean() for _, labels, m in random_label_runs])
    assert CHANCE_BAND[0] < accuracy < CHANCE_BAND[1], accuracy
    # The same neighbour search with each image among its own candidates: exp(1 / 0.07) outvotes everything.
    features, labels, _ = random_label_runs[0]
    as_training = transfer_measures(features, labels, 3, train_features=features, train_labels=labels)
    assert (as_training.knn_pred == labels).mean() == 1.0
    assert as_training.protocol == "fit on 120 training images" and as_training.folds == 0


def test_separable_features_give_near_perfect_probe_and_knn():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 15)
    features = rng.normal(size=(60, 16))
    features[np.arange(60), labels] += 6.0
    m = transfer_measures(features, labels, 4, seed=0)
    assert (m.probe_probs.argmax(axis=1) == labels).mean() >= 0.95
    assert (m.knn_pred == labels).mean() >= 0.95
    assert m.classes_used == (0, 1, 2, 3) and m.excluded == () and m.logme is not None


def test_same_inputs_and_seed_give_identical_outputs():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 12)
    features = rng.normal(size=(36, 24)) + 1.5 * np.eye(24)[labels]
    first, again = (transfer_measures(features, labels, 3, seed=7) for _ in range(2))
    assert np.array_equal(first.probe_probs, again.probe_probs)
    assert np.array_equal(first.knn_pred, again.knn_pred)
    assert first.logme == again.logme
    assert np.array_equal(first.explaining.weight, again.explaining.weight)
    other = transfer_measures(features, labels, 3, seed=8)  # other folds
    assert not np.array_equal(first.probe_probs, other.probe_probs)


# --- excluded classes ---------------------------------------------------------------------------------------------

def test_a_class_with_too_few_images_is_excluded_with_its_reason():
    rng = np.random.default_rng(4)
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2 + [-1] * 3)
    features = rng.normal(size=(25, 8)) + 4.0 * np.eye(8)[np.maximum(labels, 0)]
    m = transfer_measures(features, labels, 4, seed=0)
    assert m.classes_used == (0, 1)
    assert len(m.excluded) == 1
    assert (m.excluded[0].index, m.excluded[0].images) == (2, 2)
    assert m.excluded[0].reason == "2 labelled images, fewer than the 5 folds need"
    not_scored = (labels == 2) | (labels == -1)
    assert np.isnan(m.probe_probs[not_scored]).all() and (m.knn_pred[not_scored] == -1).all()
    assert not np.isnan(m.probe_probs[~not_scored]).any() and (m.knn_pred[~not_scored] >= 0).all()
    assert (m.probe_probs[~not_scored][:, 2:] == 0).all()  # excluded and never-labelled classes get 0
    assert (m.explaining.weight[2:] == 0).all() and (m.explaining.bias[2:] == ABSENT_BIAS).all()
    assert m.logme == pytest.approx(logme(features[~not_scored], labels[~not_scored]))


def test_one_usable_class_gives_a_note_and_no_probe():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(12, 4))
    single = transfer_measures(features, np.array([1] * 8 + [-1] * 4), 3, class_names=["bees", "ants", "wasps"])
    assert single.note == "one class (ants) has labelled images: a probe needs two"
    assert single.explaining is None and single.logme is None
    assert np.isnan(single.probe_probs).all() and (single.knn_pred == -1).all()

    mostly = transfer_measures(features, np.array([1] * 8 + [0] * 3 + [-1]), 3, class_names=["bees", "ants", "wasps"])
    assert mostly.note == "only one class (ants) has at least 5 labelled images: a probe needs two"
    assert [(e.index, e.images) for e in mostly.excluded] == [(0, 3)]
    from reportgen.results.schema import ExcludedClass  # one record: the results' own, named from class_names

    assert mostly.excluded == (ExcludedClass(0, "bees", 3, "3 labelled images, fewer than the 5 folds need"),)
    assert mostly.explaining is None and np.isnan(mostly.probe_probs).all()

    assert transfer_measures(features, np.full(12, -1), 3).note == "no class has labelled images: a probe needs two"


# --- the explaining probe -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes_present", [(0, 2), (0, 1, 3)])
def test_folded_explaining_probe_reproduces_the_pipeline(classes_present):
    rng = np.random.default_rng(len(classes_present))
    labels = np.repeat(np.array(classes_present), 12)
    n = labels.size
    # Features far from standardised (offsets, scales 0.1..10) so that folding the scaler matters.
    features = (rng.normal(size=(n, 10)) + 1.5 * np.eye(10)[labels]) * np.geomspace(0.1, 10, 10) + 5.0
    m = transfer_measures(features, labels, 4, seed=0)
    pipe = _pipe().fit(features, labels)  # the same head fit independently on every scored image
    logits = features @ m.explaining.weight.T.astype(np.float64) + m.explaining.bias
    used = list(classes_present)
    decision = pipe.decision_function(features)
    if len(used) == 2:  # binary: one coefficient row, expanded into two
        assert decision.ndim == 1
        assert np.allclose(logits[:, used[1]] - logits[:, used[0]], decision, rtol=1e-4, atol=1e-3)
    else:
        assert np.allclose(logits[:, used], decision, rtol=1e-4, atol=1e-3)
    probs = _softmax(logits)
    assert np.allclose(probs[:, used], pipe.predict_proba(features), atol=1e-4)
    absent = [k for k in range(4) if k not in used]
    assert (probs[:, absent] < 1e-30).all() and (m.explaining.weight[absent] == 0).all()
    assert m.explaining.weight.dtype == np.float32 and m.explaining.weight.shape == (4, 10)


# --- a separate training set --------------------------------------------------------------------------------------

def test_a_training_set_is_fit_once_and_scores_every_labelled_image():
    rng = np.random.default_rng(6)
    train_labels = np.repeat(np.arange(3), 10)  # classes 0..2 in training; class 3 only in the evaluation set
    train = rng.normal(size=(30, 6)) + 2.0 * np.eye(6)[train_labels]
    labels = np.array([0, 1, 2, 3, 3, -1, 2, 1, 0, 0])
    features = rng.normal(size=(10, 6)) + 2.0 * np.eye(6)[np.maximum(labels, 0)]
    m = transfer_measures(features, labels, 5, knn_k=7, train_features=train, train_labels=train_labels)
    assert m.protocol == "fit on 30 training images" and m.folds == 0
    assert m.classes_used == (0, 1, 2)
    assert [(e.index, e.images, e.reason) for e in m.excluded] == [
        (3, 0, "not in the training set (2 labelled images not scored)")]
    scored = np.isin(labels, [0, 1, 2])
    pipe = _pipe().fit(train, train_labels)
    assert np.allclose(m.probe_probs[scored][:, :3], pipe.predict_proba(features[scored]), atol=1e-12)
    assert (m.probe_probs[scored][:, 3:] == 0).all() and np.isnan(m.probe_probs[~scored]).all()
    # k-NN reference, written out: the 7 most cosine-similar training images vote exp(sim / 0.07).
    unit_train = train / np.linalg.norm(train, axis=1, keepdims=True)
    expected = []
    for row in features[scored]:
        sims = unit_train @ (row / np.linalg.norm(row))
        votes = np.zeros(5)
        for j in sorted(range(30), key=lambda j: -sims[j])[:7]:
            votes[train_labels[j]] += math.exp(sims[j] / 0.07)
        expected.append(int(np.argmax(votes)))
    assert m.knn_pred[scored].tolist() == expected and (m.knn_pred[~scored] == -1).all()
    assert m.logme == pytest.approx(logme(features[scored], labels[scored]))
    # The explaining probe is the training fit itself.
    logits = features @ m.explaining.weight.T.astype(np.float64) + m.explaining.bias
    assert np.allclose(logits[:, :3], pipe.decision_function(features), rtol=1e-4, atol=1e-3)
