"""Tests for unlearnkit.metrics against independent oracles (scikit-learn, SciPy) and for every bad input.

Run: PYTHONPATH=src .venv/bin/python -m pytest tests/test_metrics.py -q
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics import (
    METRICS,
    MetricInfo,
    accuracy,
    js_divergence,
    js_divergence_per_sample,
    kl_divergence,
    kl_divergence_per_sample,
    mia_auc,
    mia_efficacy,
    roc_curve_points,
    softmax,
    tpr_at_fpr,
)

METRICS_DIR = Path(__file__).resolve().parents[1] / "src" / "unlearnkit" / "metrics"


# ---------------------------------------------------------------- layer contract and metadata


# forget_quality.py computes on torch tensors so that the NeurIPS forgetting quality runs where the models'
# outputs are (CPU or CUDA); every other metric module is numpy/scipy/scikit-learn only.
TORCH_METRIC_MODULES = {"forget_quality.py"}


def test_metric_modules_import_no_torch_and_only_errors_from_unlearnkit():
    files = sorted(METRICS_DIR.glob("*.py"))
    expected = {"__init__.py", "accuracy.py", "mia.py", "lira.py", "divergence.py", "forget_quality.py"}
    assert {f.name for f in files} >= expected
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if path.name not in TORCH_METRIC_MODULES:
                    assert name.split(".")[0] != "torch", f"{path.name} imports {name}"
                if name.startswith("unlearnkit"):
                    assert name == "unlearnkit.errors" or name.startswith("unlearnkit.metrics"), (
                        f"{path.name} imports {name}"
                    )


def test_metrics_table_has_the_expected_directions_and_references():
    expected = {
        "forget_accuracy": (None, False),
        "retain_accuracy": (True, False),
        "test_accuracy": (True, False),
        "mia_auc": (None, False),
        "mia_efficacy": (None, False),
        "mia_population": (None, False),
        "zrf": (None, False),
        "js_divergence": (False, True),
        "kl_divergence": (False, True),
        "activation_distance": (False, True),
        "weight_distance": (False, True),
        "weight_distance_original": (None, False),
        "relearn_steps": (None, False),
        "gap.average": (False, True),
        "neurips.forget_quality": (True, True),
        "neurips.score": (True, True),
        "speedup": (True, True),
    }
    assert set(METRICS) == set(expected)
    for key, (higher, needs_reference) in expected.items():
        info = METRICS[key]
        assert isinstance(info, MetricInfo)
        assert info.name == key
        assert info.higher_is_better is higher, key
        assert info.needs_reference is needs_reference, key
        assert info.unit and info.description
    assert METRICS["forget_accuracy"].unit == "fraction"
    assert METRICS["js_divergence"].unit == "bits"
    assert {k for k, info in METRICS.items() if info.needs_original} == {"weight_distance_original", "relearn_steps"}


def test_metric_info_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        METRICS["mia_auc"].higher_is_better = True  # type: ignore[misc]


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accuracy_of_labels_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 4, size=200)
    predictions = np.where(rng.random(200) < 0.6, targets, rng.integers(0, 4, size=200))
    assert accuracy(predictions, targets) == pytest.approx(accuracy_score(targets, predictions), abs=1e-15)


def test_accuracy_of_scores_uses_argmax_and_matches_sklearn():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(150, 5))
    targets = rng.integers(0, 5, size=150)
    oracle = accuracy_score(targets, logits.argmax(axis=1))
    assert accuracy(logits, targets) == pytest.approx(oracle, abs=1e-15)
    probabilities = scipy.special.softmax(logits, axis=1).astype(np.float32)
    assert accuracy(probabilities, targets) == pytest.approx(oracle)


def test_accuracy_hand_example_and_range():
    assert accuracy([[2.0, 0.1], [0.3, 0.9]], [0, 0]) == 0.5
    assert accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert accuracy([0, 0], [1, 1]) == 0.0
    assert type(accuracy([1], [1])) is float  # a plain float for JSON, not np.float64 (which isinstance accepts)


@pytest.mark.parametrize(
    ("predictions", "targets", "message"),
    [
        ([], [], "predictions are empty"),
        ([0, 1, 2], [0, 1], "3 predictions but 2 targets"),
        ([[0.1, np.nan], [0.3, 0.2]], [0, 1], "NaN or infinite"),
        ([0.0, 1.0], [0, 1], r"must be integer class labels.*astype\(int\)"),
        ([0, 1], [0.0, 1.0], r"targets must be integer class labels"),
        (np.zeros((2, 2, 2)), [0, 1], r"got shape \(2, 2, 2\)"),
        ([0, 1], [[1, 0], [0, 1]], "not one-hot"),
    ],
)
def test_accuracy_rejects_bad_input(predictions, targets, message):
    with pytest.raises(DataError, match=message):
        accuracy(predictions, targets)


# ---------------------------------------------------------------- divergence


def _dirichlet_rows(rng: np.random.Generator, n: int, k: int, alpha: float) -> np.ndarray:
    return rng.dirichlet(np.full(k, alpha), size=n)


def _with_zeros(rng: np.random.Generator, rows: np.ndarray) -> np.ndarray:
    """Zero about a third of the entries (never a whole row) and renormalise."""
    rows = np.where(rng.random(rows.shape) < 0.33, 0.0, rows)
    rows[:, 0] += (rows.sum(axis=1) == 0)  # keep every row a distribution
    return rows / rows.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_js_per_sample_matches_scipy_on_dirichlet_rows(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    p, q = _dirichlet_rows(rng, 64, 7, alpha), _dirichlet_rows(rng, 64, 7, alpha)
    oracle = np.array([jensenshannon(pi, qi, base=2) ** 2 for pi, qi in zip(p, q, strict=True)])
    got = js_divergence_per_sample(p, q)
    assert got.dtype == np.float64 and got.shape == (64,)
    np.testing.assert_allclose(got, oracle, rtol=1e-9, atol=1e-12)
    assert js_divergence(p, q) == pytest.approx(oracle.mean(), rel=1e-9)


def test_js_with_zeros_in_rows_matches_scipy_and_is_finite():
    rng = np.random.default_rng(11)
    p = _with_zeros(rng, _dirichlet_rows(rng, 50, 6, 1.0))
    q = _with_zeros(rng, _dirichlet_rows(rng, 50, 6, 1.0))
    assert (p == 0).any() and (q == 0).any()
    got = js_divergence_per_sample(p, q)
    oracle = np.array([jensenshannon(pi, qi, base=2) ** 2 for pi, qi in zip(p, q, strict=True)])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, oracle, rtol=1e-9, atol=1e-12)
    assert np.all((got >= 0) & (got <= 1))


def test_js_in_natural_log_matches_scipy():
    rng = np.random.default_rng(5)
    p, q = _dirichlet_rows(rng, 20, 4, 1.0), _dirichlet_rows(rng, 20, 4, 1.0)
    oracle = np.array([jensenshannon(pi, qi, base=np.e) ** 2 for pi, qi in zip(p, q, strict=True)])
    np.testing.assert_allclose(js_divergence_per_sample(p, q, base=np.e), oracle, rtol=1e-9, atol=1e-12)


def test_js_edge_cases_identical_disjoint_symmetric_and_single_row():
    rng = np.random.default_rng(6)
    p = _with_zeros(rng, _dirichlet_rows(rng, 10, 5, 1.0))
    np.testing.assert_array_equal(js_divergence_per_sample(p, p), np.zeros(10))
    eye = np.eye(4)
    np.testing.assert_allclose(js_divergence_per_sample(eye, np.roll(eye, 1, axis=0)), np.ones(4), rtol=1e-12)
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0, rel=1e-12)
    q = _dirichlet_rows(rng, 10, 5, 1.0)
    np.testing.assert_allclose(js_divergence_per_sample(p, q), js_divergence_per_sample(q, p), rtol=1e-12)
    assert js_divergence_per_sample([0.5, 0.5], [0.5, 0.5]).shape == (1,)


def test_js_accepts_float32_softmax_rounding():
    rng = np.random.default_rng(7)
    p = scipy.special.softmax(rng.normal(size=(8, 1000)), axis=1).astype(np.float32)
    q = scipy.special.softmax(rng.normal(size=(8, 1000)), axis=1).astype(np.float32)
    assert 0.0 < js_divergence(p, q) < 1.0


def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(8)
    p = _with_zeros(rng, _dirichlet_rows(rng, 40, 6, 0.5))  # zeros in p are exact: 0 * log 0 = 0
    q = _dirichlet_rows(rng, 40, 6, 2.0)
    oracle = np.array([scipy.stats.entropy(pi, qi) for pi, qi in zip(p, q, strict=True)])
    got = kl_divergence_per_sample(p, q)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, oracle, rtol=1e-9, atol=1e-12)
    assert kl_divergence(p, q) == pytest.approx(oracle.mean(), rel=1e-9)
    assert kl_divergence(q, q) == pytest.approx(0.0, abs=1e-12)


def test_kl_clips_zero_q_to_eps_and_stays_finite():
    p, q = np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]])
    assert np.isinf(scipy.stats.entropy(p[0], q[0]))
    expected = 0.5 * np.log(0.5 / 1.0) + 0.5 * np.log(0.5 / 1e-12)
    assert kl_divergence(p, q) == pytest.approx(expected, rel=1e-9)


def test_softmax_matches_scipy_and_is_stable():
    rng = np.random.default_rng(9)
    logits = rng.normal(scale=5, size=(30, 10))
    got = softmax(logits)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, scipy.special.softmax(logits, axis=-1), rtol=1e-12)
    big = softmax(np.array([[1000.0, 1001.0], [-1000.0, -1001.0]], dtype=np.float32))
    low, high = 1 / (1 + np.e), np.e / (1 + np.e)
    np.testing.assert_allclose(big, [[low, high], [high, low]])
    np.testing.assert_allclose(softmax(rng.normal(size=(2, 3, 4))).sum(axis=-1), np.ones((2, 3)), rtol=1e-12)


@pytest.mark.parametrize(
    ("p", "q", "message"),
    [
        ([[0.5, 0.6]], [[0.5, 0.5]], r"p row 0 sums to 1\.1, not 1.*softmax"),
        ([[0.5, 0.5]], [[2.0, 3.0]], r"q row 0 sums to 5"),
        ([[1.5, -0.5]], [[0.5, 0.5]], "negative entries"),
        ([[np.nan, 1.0]], [[0.5, 0.5]], "NaN or infinite"),
        ([[0.5, 0.5]], [[0.2, 0.3, 0.5]], r"shape \(1, 2\) but q has shape \(1, 3\)"),
        (np.zeros((0, 3)), np.zeros((0, 3)), "is empty"),
        (np.full((2, 2, 2), 0.5), np.full((2, 2, 2), 0.5), r"got shape \(2, 2, 2\)"),
    ],
)
@pytest.mark.parametrize("function", [js_divergence, js_divergence_per_sample, kl_divergence])
def test_divergences_reject_bad_probabilities(function, p, q, message):
    with pytest.raises(DataError, match=message):
        function(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))


@pytest.mark.parametrize("base", [1.0, 0.0, -2.0])
def test_js_rejects_bad_base(base):
    with pytest.raises(ConfigError, match="base must be positive and not 1"):
        js_divergence([[0.5, 0.5]], [[0.5, 0.5]], base=base)


@pytest.mark.parametrize(
    ("logits", "message"),
    [([1.0, np.nan], "NaN or infinite"), ([1.0, np.inf], "NaN or infinite"), ([], "empty"), (3.0, "empty")],
)
def test_softmax_rejects_bad_logits(logits, message):
    with pytest.raises(DataError, match=message):
        softmax(logits)


# ---------------------------------------------------------------- membership inference


def _oracle_mia_auc(members, nonmembers, folds, seed):
    """The documented recipe written out with sklearn: seeded balance, then out-of-fold LR AUC."""
    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    n = min(len(members), len(nonmembers))
    rng = np.random.default_rng(seed)
    if len(members) > n:
        members = members[rng.choice(len(members), size=n, replace=False)]
    elif len(nonmembers) > n:
        nonmembers = nonmembers[rng.choice(len(nonmembers), size=n, replace=False)]
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.r_[np.ones(n), np.zeros(n)]
    cv = StratifiedKFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression())
    proba = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return roc_auc_score(y, proba)


def test_mia_auc_separated_losses_are_detected():
    rng = np.random.default_rng(0)
    members = rng.exponential(0.05, size=300)  # memorised: tiny losses
    nonmembers = 1.0 + rng.exponential(1.0, size=200)
    # every member loss lies below every non-member loss (P(Exp(rate 20) > 1) = e^-20), so any monotone attack
    # ranks them perfectly
    assert members.max() < nonmembers.min()
    assert mia_auc(members, nonmembers) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mia_auc_same_distribution_is_near_half(seed):
    rng = np.random.default_rng(100 + seed)
    auc = mia_auc(rng.exponential(1.0, size=400), rng.exponential(1.0, size=600), seed=seed)
    # under no signal the AUC of 400 vs 400 balanced samples has sd sqrt((n + n + 1) / (12 n n)) = 0.020: 4 sd
    assert abs(auc - 0.5) <= 4 * np.sqrt(801 / (12 * 400 * 400))


@pytest.mark.parametrize(("n_members", "n_nonmembers"), [(300, 200), (150, 260), (120, 120)])
def test_mia_auc_equals_direct_sklearn_recomputation(n_members, n_nonmembers):
    rng = np.random.default_rng(n_members)
    members = rng.gamma(2.0, 0.3, size=n_members)
    nonmembers = rng.gamma(2.0, 0.45, size=n_nonmembers)
    for seed in (0, 7):
        expected = _oracle_mia_auc(members, nonmembers, folds=5, seed=seed)
        assert mia_auc(members, nonmembers, seed=seed) == pytest.approx(expected, abs=1e-12)


def test_mia_auc_reduces_folds_for_small_groups():
    members, nonmembers = [0.1, 0.2, 0.15], [0.9, 1.3, 0.4, 2.0, 1.1, 0.8, 0.7]
    got = mia_auc(members, nonmembers, folds=5)
    assert got == pytest.approx(_oracle_mia_auc(members, nonmembers, folds=3, seed=0), abs=1e-12)
    assert mia_auc([0.1, 0.2], [1.0, 2.0], folds=5) == pytest.approx(
        _oracle_mia_auc([0.1, 0.2], [1.0, 2.0], folds=2, seed=0), abs=1e-12
    )


def test_mia_auc_is_deterministic_for_a_seed():
    rng = np.random.default_rng(4)
    members, nonmembers = rng.exponential(0.8, 300), rng.exponential(1.0, 100)
    assert mia_auc(members, nonmembers, seed=3) == mia_auc(members, nonmembers, seed=3)


@pytest.mark.parametrize(
    ("members", "nonmembers", "message"),
    [
        ([0.1], [0.5, 0.7], r"member_losses has 1 samples but at least 2"),
        ([0.1, 0.2], [], r"nonmember_losses has 0 samples but at least 2"),
        ([0.1, np.nan], [0.5, 0.7], "NaN or infinite losses"),
        ([0.1, 0.2], [0.5, np.inf], "NaN or infinite losses"),
        ([[0.1, 0.2]], [0.5, 0.7], "must be a 1-D array of per-sample losses"),
    ],
)
def test_mia_auc_rejects_bad_losses(members, nonmembers, message):
    with pytest.raises(DataError, match=message):
        mia_auc(members, nonmembers)


def test_mia_auc_rejects_too_few_folds():
    with pytest.raises(ConfigError, match="folds must be at least 2"):
        mia_auc([0.1, 0.2], [0.5, 0.7], folds=1)


def _efficacy_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    retain = rng.exponential(0.2, size=1500)  # training data: low loss
    test = rng.exponential(1.0, size=500)  # unseen data: higher loss
    return rng, retain, test


# The Bayes attack on _efficacy_data: balanced members ~ Exp(rate 5) and non-members ~ Exp(rate 1) have the
# log-likelihood ratio log 5 - 4 * loss, linear in the loss, so the logistic regression is well specified and
# its cut-off tends to ln(5) / 4. A loss x lies above it with probability exp(-rate * ln(5) / 4) = 5 ** (-rate / 4).
TEST_REJECTION = 5 ** -0.25  # Exp(1) samples called non-member: 0.669
RETAIN_REJECTION = 5 ** -1.25  # Exp(5) samples called non-member: 0.134


def _test_rejection_rate(retain, test, seed=0):
    """Share of the test set that the documented attack (fit with sklearn here) calls non-member."""
    rng = np.random.default_rng(seed)
    kept = retain[rng.choice(len(retain), size=len(test), replace=False)]
    attack = make_pipeline(StandardScaler(), LogisticRegression())
    attack.fit(np.r_[kept, test].reshape(-1, 1), np.r_[np.ones(len(test)), np.zeros(len(test))])
    return float(np.mean(attack.predict(test.reshape(-1, 1)) == 0))


def test_mia_efficacy_on_the_test_set_itself_is_the_rejection_rate():
    _, retain, test = _efficacy_data()
    rate = _test_rejection_rate(retain, test)
    # the fitted cut-off is the Bayes one up to sampling noise (500 test samples: sd 0.02 of the rate)
    assert rate == pytest.approx(TEST_REJECTION, abs=0.06)
    assert mia_efficacy(retain, test, test) == pytest.approx(rate, abs=1e-12)


def test_mia_efficacy_forget_like_test_is_near_rejection_rate():
    rng, retain, test = _efficacy_data()
    forget = rng.exponential(1.0, size=4000)
    assert mia_efficacy(retain, test, forget) == pytest.approx(_test_rejection_rate(retain, test), abs=0.04)


def test_mia_efficacy_forget_like_retain_is_low():
    rng, retain, test = _efficacy_data()
    forget = rng.exponential(0.2, size=1000)
    efficacy = mia_efficacy(retain, test, forget)
    assert efficacy == pytest.approx(RETAIN_REJECTION, abs=0.05)  # 1000 forget samples: sd 0.01, plus the cut-off's
    assert efficacy < mia_efficacy(retain, test, rng.exponential(1.0, size=1000)) - 0.3


@pytest.mark.parametrize(
    ("retain", "test", "forget", "message"),
    [
        ([0.1, 0.2], [0.5, 0.7], [], r"forget_losses has 0 samples but at least 1"),
        ([0.1], [0.5, 0.7], [0.3], r"retain_losses has 1 samples but at least 2"),
        ([0.1, 0.2], [0.5], [0.3], r"test_losses has 1 samples but at least 2"),
        ([0.1, np.nan], [0.5, 0.7], [0.3], r"retain_losses contains NaN"),
        ([0.1, 0.2], [0.5, 0.7], [np.nan], r"forget_losses contains NaN"),
    ],
)
def test_mia_efficacy_rejects_bad_losses(retain, test, forget, message):
    with pytest.raises(DataError, match=message):
        mia_efficacy(retain, test, forget)


# ---------------------------------------------------------------- ROC helpers


def _tied_scores(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    scores = np.round(rng.normal(loc=0.8 * labels, size=n) * 3) / 3  # rounding makes many ties
    return scores, labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_roc_curve_points_match_sklearn(seed):
    scores, labels = _tied_scores(seed)
    assert len(np.unique(scores)) < len(scores) / 4
    fpr, tpr, thresholds = roc_curve_points(scores, labels)
    sk_fpr, sk_tpr, sk_thresholds = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds, sk_thresholds)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_curve_points_accept_bool_labels_and_lists():
    fpr, tpr, thresholds = roc_curve_points([0.9, 0.4, 0.4, 0.1], [True, True, False, False])
    np.testing.assert_allclose(fpr, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.4, 0.1])


def _interpolate_sklearn_curve(fpr_points, tpr_points, target):
    """TPR at ``target`` on sklearn's (default, intermediate points dropped) ROC curve."""
    at = fpr_points == target
    if at.any():
        return tpr_points[at].max()
    below = np.flatnonzero(fpr_points < target)[-1]
    above = np.flatnonzero(fpr_points > target)[0]
    return np.interp(target, fpr_points[[below, above]], tpr_points[[below, above]])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpr_at_fpr_matches_interpolated_sklearn_curve(seed):
    scores, labels = _tied_scores(seed)
    sk_fpr, sk_tpr, _ = roc_curve(labels, scores)
    rng = np.random.default_rng(seed)
    targets = np.r_[0.0, 1.0, 0.001, 0.01, 0.1, rng.random(20), np.unique(sk_fpr)]
    for target in targets:
        expected = _interpolate_sklearn_curve(sk_fpr, sk_tpr, target)
        assert tpr_at_fpr(scores, labels, float(target)) == pytest.approx(expected, abs=1e-12), target


def test_tpr_at_fpr_hand_examples():
    assert tpr_at_fpr([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0], fpr=0.0) == 1.0
    assert tpr_at_fpr([0.1, 0.3, 0.8, 0.9], [1, 1, 0, 0], fpr=0.0) == 0.0
    assert tpr_at_fpr([0.1, 0.3, 0.8, 0.9], [1, 1, 0, 0], fpr=1.0) == 1.0
    # one tied score: only a randomised threshold reaches fpr 0.25, and it gets tpr 0.25 too
    assert tpr_at_fpr([0.5, 0.5], [1, 0], fpr=0.25) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "only one class"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([0.1, 0.2, 0.3], [0, 1], "3 scores but 2 labels"),
        ([0.1, np.nan], [0, 1], "NaN or infinite"),
        ([], [], "scores are empty"),
        ([[0.1, 0.2]], [[0, 1]], "must be 1-D"),
    ],
)
@pytest.mark.parametrize("function", [roc_curve_points, lambda s, y: tpr_at_fpr(s, y, 0.1)])
def test_roc_helpers_reject_bad_input(function, scores, labels, message):
    with pytest.raises(DataError, match=message):
        function(scores, labels)


@pytest.mark.parametrize("fpr", [-0.1, 1.5, float("nan")])
def test_tpr_at_fpr_rejects_bad_rate(fpr):
    with pytest.raises(ConfigError, match=r"fpr must be in \[0, 1\]"):
        tpr_at_fpr([0.1, 0.9], [0, 1], fpr)
