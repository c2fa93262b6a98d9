"""Tests for the membership-inference attacks: the population threshold attack (unlearnkit.metrics.mia),
LiRA (Carlini et al., 2022) and U-LiRA (Hayes et al., 2024) (unlearnkit.metrics.lira), against
scikit-learn / SciPy oracles and slow per-example references, plus cases where the attack must fail
and every bad input.

Run: PYTHONPATH=src .venv/bin/python -m pytest tests/test_mia_attacks.py -q
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.lira import LIRA_MIN_STD, ULiraResult, lira_report, lira_scores, u_lira
from unlearnkit.metrics.mia import AttackReport, PopulationAttackResult, population_attack, tpr_at_fpr

# ---------------------------------------------------------------- population attack


def _losses(seed: int, n_members: int = 400, n_nonmembers: int = 300, n_targets: int = 250):
    rng = np.random.default_rng(seed)
    members = rng.gamma(2.0, 0.2, size=n_members)  # training data: low loss
    nonmembers = rng.gamma(2.0, 0.5, size=n_nonmembers)
    targets = rng.gamma(2.0, 0.35, size=n_targets)
    return members, nonmembers, targets


def _oracle_cut(members, nonmembers, fpr=None):
    """The documented rule on sklearn's ROC curve: the chosen point and the halfway loss threshold."""
    losses = np.r_[members, nonmembers]
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    curve_fpr, curve_tpr, thresholds = roc_curve(labels, -losses, drop_intermediate=False)
    if fpr is None:
        i = int(np.argmax(curve_tpr - curve_fpr))
    else:
        i = int(np.flatnonzero(curve_fpr <= fpr)[-1])
    cut = -thresholds[i]  # sklearn: member when -loss >= threshold, i.e. loss <= -threshold
    if np.isfinite(cut) and i + 1 < len(thresholds):
        cut = (cut - thresholds[i + 1]) / 2.0  # halfway to the next distinct loss
    return i, curve_fpr[i], curve_tpr[i], cut


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_population_attack_matches_sklearn_roc_at_best_balanced_accuracy(seed):
    members, nonmembers, targets = _losses(seed)
    result = population_attack(members, nonmembers, targets)
    _, fpr, tpr, cut = _oracle_cut(members, nonmembers)
    assert isinstance(result, PopulationAttackResult) and result.score == "loss"
    assert result.threshold == pytest.approx(cut, rel=1e-12)
    assert (result.calibration_fpr, result.calibration_tpr) == pytest.approx((fpr, tpr), abs=1e-15)
    assert result.calibration_tpr == np.mean(members <= result.threshold)
    assert result.calibration_fpr == np.mean(nonmembers <= result.threshold)
    assert result.member_rate == np.mean(targets <= result.threshold)
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    losses = np.r_[members, nonmembers]
    assert result.calibration.auc == pytest.approx(roc_auc_score(labels, -losses), abs=1e-12)
    assert result.calibration.tpr_at_1pct_fpr == tpr_at_fpr(-losses, labels, 0.01)
    assert result.calibration.tpr_at_0_1pct_fpr == tpr_at_fpr(-losses, labels, 0.001)


def test_population_attack_balanced_accuracy_is_the_brute_force_maximum():
    members, nonmembers, targets = _losses(5, 120, 80, 10)
    result = population_attack(members, nonmembers, targets)
    cuts = np.unique(np.r_[members, nonmembers])
    best = max((np.mean(members <= c) + np.mean(nonmembers > c)) / 2 for c in cuts)
    got = (result.calibration_tpr + 1 - result.calibration_fpr) / 2
    assert got == pytest.approx(best, abs=1e-15)


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.2, 1.0])
def test_population_attack_at_a_chosen_fpr_is_the_best_point_under_it(fpr):
    members, nonmembers, targets = _losses(3)
    result = population_attack(members, nonmembers, targets, fpr=fpr)
    _, oracle_fpr, oracle_tpr, cut = _oracle_cut(members, nonmembers, fpr)
    assert result.calibration_fpr <= fpr
    assert (result.calibration_fpr, result.calibration_tpr) == pytest.approx((oracle_fpr, oracle_tpr), abs=1e-15)
    assert result.threshold == pytest.approx(cut, rel=1e-12)
    # brute force: no loss cut-off with FPR <= fpr catches more members
    cuts = np.r_[-np.inf, np.unique(np.r_[members, nonmembers])]
    best = max(np.mean(members <= c) for c in cuts if np.mean(nonmembers <= c) <= fpr)
    assert result.calibration_tpr == best


def test_population_attack_at_zero_fpr_without_a_clean_cut_calls_nobody_a_member():
    result = population_attack([0.5, 1.0], [0.1, 2.0], [0.0, 0.3], fpr=0.0)
    assert result.threshold == -np.inf and result.member_rate == 0.0
    assert result.calibration_tpr == 0.0 and result.calibration_fpr == 0.0


def test_population_attack_separated_losses_split_the_targets():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.uniform(0.0, 0.1, 200), rng.uniform(1.0, 3.0, 200)
    result = population_attack(members, nonmembers, np.r_[rng.uniform(0.0, 0.1, 50), rng.uniform(1, 3, 150)])
    assert result.calibration.auc == 1.0 and result.calibration.tpr_at_0_1pct_fpr == 1.0
    assert 0.1 < result.threshold < 1.0
    assert result.member_rate == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_population_attack_cannot_tell_members_from_identical_nonmembers(seed):
    rng = np.random.default_rng(50 + seed)
    members, nonmembers, targets = (rng.exponential(1.0, size=n) for n in (600, 600, 2000))
    result = population_attack(members, nonmembers, targets)
    assert 0.45 <= result.calibration.auc <= 0.55
    # targets from the same distribution are called members about as often as either calibration group
    assert result.member_rate == pytest.approx((result.calibration_tpr + result.calibration_fpr) / 2, abs=0.08)


def test_population_attack_confidence_convention_mirrors_loss():
    members, nonmembers, targets = _losses(7)
    by_loss = population_attack(members, nonmembers, targets, fpr=0.05)
    by_confidence = population_attack(-members, -nonmembers, -targets, score="confidence", fpr=0.05)
    assert by_confidence.score == "confidence"
    assert by_confidence.threshold == -by_loss.threshold
    assert by_confidence.member_rate == by_loss.member_rate
    assert by_confidence.calibration == by_loss.calibration
    assert by_confidence.member_rate == np.mean(-targets >= by_confidence.threshold)


def test_population_attack_result_is_frozen():
    result = population_attack([0.1, 0.2], [1.0, 2.0], [0.5])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.threshold = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (([0.1], [1.0], [0.5]), {"score": "logit"}, ConfigError, r"unknown score 'logit'.*'loss', 'confidence'"),
        (([0.1], [1.0], [0.5]), {"fpr": 1.5}, ConfigError, r"fpr must be in \[0, 1\] or None, got 1.5"),
        (([0.1], [1.0], [0.5]), {"fpr": -0.1}, ConfigError, "fpr must be in"),
        (([], [1.0], [0.5]), {}, DataError, r"member_scores \(loss\) has 0 samples but at least 1"),
        (([0.1], [], [0.5]), {}, DataError, r"nonmember_scores \(loss\) has 0 samples"),
        (([0.1], [1.0], []), {}, DataError, r"target_scores \(loss\) has 0 samples"),
        (([0.1, np.nan], [1.0], [0.5]), {}, DataError, "member_scores.*NaN or infinite"),
        (([0.1], [1.0], [np.inf]), {}, DataError, "target_scores.*NaN or infinite"),
        (([[0.1, 0.2]], [1.0], [0.5]), {}, DataError, r"must be a 1-D array.*got shape \(1, 2\)"),
    ],
)
def test_population_attack_rejects_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        population_attack(*args, **kwargs)


# ---------------------------------------------------------------- LiRA


def _simulate(seed: int, gap: float, *, n_shadow: int = 16, n_examples: int = 300, n_targets: int = 8,
              spread: float = 2.0, noise: float = 1.0):
    """Shadow and target confidences: example j has its own level mu_j; training on it adds ``gap``."""
    rng = np.random.default_rng(seed)
    level = rng.normal(scale=spread, size=n_examples)
    shadow_in = rng.random((n_shadow, n_examples)) < 0.5
    shadow_in[0], shadow_in[1] = True, False  # every example has "in" and "out" shadows ...
    shadow_in[2], shadow_in[3] = True, False  # ... at least two of each
    shadow = level + gap * shadow_in + rng.normal(scale=noise, size=shadow_in.shape)
    target_in = rng.random((n_targets, n_examples)) < 0.5
    targets = level + gap * target_in + rng.normal(scale=noise, size=target_in.shape)
    return shadow, shadow_in, targets, target_in


def _oracle_lira(shadow, in_mask, out_mask, targets, online, global_variance=False):
    """Slow reference: one example at a time with scipy.stats.norm."""
    n_examples = shadow.shape[1]

    def pooled_std(mask):
        residuals = [shadow[mask[:, j], j] - shadow[mask[:, j], j].mean() for j in range(n_examples)]
        dof = sum(len(r) - 1 for r in residuals)
        return np.sqrt(sum(np.sum(r**2) for r in residuals) / dof)

    global_in = pooled_std(in_mask) if global_variance and online else None
    global_out = pooled_std(out_mask) if global_variance else None
    scores = np.empty(np.shape(targets))
    for j in range(n_examples):
        outs = shadow[out_mask[:, j], j]
        sd_out = global_out if global_variance else outs.std(ddof=1)
        if not online:
            scores[..., j] = scipy.stats.norm.logcdf(targets[..., j], outs.mean(), sd_out)
            continue
        ins = shadow[in_mask[:, j], j]
        sd_in = global_in if global_variance else ins.std(ddof=1)
        scores[..., j] = (scipy.stats.norm.logpdf(targets[..., j], ins.mean(), sd_in)
                          - scipy.stats.norm.logpdf(targets[..., j], outs.mean(), sd_out))
    return scores


@pytest.mark.parametrize("online", [True, False])
@pytest.mark.parametrize("global_variance", [False, True])
def test_lira_scores_match_per_example_scipy_gaussians(online, global_variance):
    shadow, shadow_in, targets, _ = _simulate(0, gap=1.5, n_shadow=10, n_examples=40, n_targets=3)
    got = lira_scores(shadow, shadow_in, targets, online=online, global_variance=global_variance)
    oracle = _oracle_lira(shadow, shadow_in, ~shadow_in, targets, online, global_variance)
    assert got.shape == targets.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, oracle, rtol=1e-10, atol=1e-10)
    one = lira_scores(shadow, shadow_in.astype(int), targets[1], online=online, global_variance=global_variance)
    np.testing.assert_allclose(one, oracle[1], rtol=1e-10, atol=1e-10)


def test_lira_offline_keeps_confident_members_apart_in_the_tail():
    shadow = np.array([[0.0], [1.0], [2.0]])
    targets = np.array([[10.0], [13.0]])  # z = 9 and 12: Phi(z) rounds to 1.0 for both, log Phi(z) does not
    assert scipy.stats.norm.cdf(9.0) == scipy.stats.norm.cdf(12.0) == 1.0
    got = lira_scores(shadow, np.zeros((3, 1), bool), targets, online=False)
    assert got[0, 0] < got[1, 0] < 0.0
    np.testing.assert_allclose(got[:, 0], scipy.stats.norm.logcdf(targets[:, 0], 1.0, 1.0), rtol=1e-9)


@pytest.mark.parametrize("online", [True, False])
def test_lira_finds_members_when_training_shifts_confidence(online):
    shadow, shadow_in, targets, target_in = _simulate(1, gap=4.0)
    report = lira_report(lira_scores(shadow, shadow_in, targets, online=online), target_in)
    assert report.auc > 0.97
    assert report.tpr_at_1pct_fpr > 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lira_is_chance_when_in_and_out_are_identical(seed):
    shadow, shadow_in, targets, target_in = _simulate(10 + seed, gap=0.0)
    for online in (True, False):
        report = lira_report(lira_scores(shadow, shadow_in, targets, online=online), target_in)
        assert 0.45 <= report.auc <= 0.55, (online, report)
        assert report.tpr_at_1pct_fpr < 0.05


def test_per_example_lira_beats_a_population_threshold_on_varied_examples():
    # Hayes et al.'s point: when examples differ in how hard they are, one global threshold sees the
    # spread between examples, while the per-example test sees the membership shift
    shadow, shadow_in, targets, target_in = _simulate(2, gap=1.5, spread=3.0, noise=0.5, n_shadow=32)
    lira = lira_report(lira_scores(shadow, shadow_in, targets), target_in)
    population = lira_report(targets, target_in)  # raw confidence as a global membership score
    assert population.auc < 0.7
    assert lira.auc > 0.9
    assert lira.tpr_at_1pct_fpr > 5 * max(population.tpr_at_1pct_fpr, 0.01)


def test_lira_global_variance_works_where_examples_have_a_single_shadow_on_a_side():
    shadow, shadow_in, targets, target_in = _simulate(3, gap=3.0, n_shadow=6, noise=0.5)
    rows = [0, 1, 4, 5]  # one forced "in", one forced "out", two random: 1 to 3 per side
    few, few_in = shadow[rows], shadow_in[rows]
    assert (few_in.sum(0) == 1).any() and (few_in.sum(0) == 3).any()
    with pytest.raises(DataError, match=r"example \d+ has 1 '(in|out)' shadow confidence\(s\) but at least 2 "
                                        r"are needed.*global_variance=True"):
        lira_scores(few, few_in, targets)
    scores = lira_scores(few, few_in, targets, global_variance=True)
    np.testing.assert_allclose(scores, _oracle_lira(few, few_in, ~few_in, targets, True, True), rtol=1e-10)
    assert lira_report(scores, target_in).auc > 0.9
    # one shadow per side everywhere: no example shows its own spread, so not even a pooled variance exists
    with pytest.raises(DataError, match="global 'out' variance needs some example with at least 2"):
        lira_scores(shadow[[0, 1]], shadow_in[[0, 1]], targets, global_variance=True)


def test_lira_floors_a_zero_spread_at_the_minimum_std():
    shadow = np.array([[2.0], [2.0], [0.0], [0.0]])
    in_mask = np.array([[True], [True], [False], [False]])
    got = lira_scores(shadow, in_mask, np.array([2.0]))
    assert np.isfinite(got[0]) and got[0] > 1e6
    expected = scipy.stats.norm.logpdf(2.0, 2.0, LIRA_MIN_STD) - scipy.stats.norm.logpdf(2.0, 0.0, LIRA_MIN_STD)
    assert got[0] == pytest.approx(expected, rel=1e-12)


def test_lira_report_matches_sklearn_and_flattens_models():
    rng = np.random.default_rng(4)
    labels = rng.random((5, 60)) < 0.5
    scores = rng.normal(size=(5, 60)) + labels
    report = lira_report(scores, labels)
    assert isinstance(report, AttackReport)
    assert report.auc == pytest.approx(roc_auc_score(labels.ravel(), scores.ravel()), abs=1e-12)
    assert report.tpr_at_1pct_fpr == tpr_at_fpr(scores.ravel(), labels.ravel(), 0.01)
    assert report.tpr_at_0_1pct_fpr == tpr_at_fpr(scores.ravel(), labels.ravel(), 0.001)
    tied = np.round(scores)  # ties count half, as in roc_auc_score
    assert lira_report(tied, labels).auc == pytest.approx(roc_auc_score(labels.ravel(), tied.ravel()), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([1.0, 2.0], [1, 0, 1], r"scores have shape \(2,\) but membership_labels have shape \(3,\)"),
        ([1.0, 2.0], [1, 1], "only one class"),
        ([1.0, np.nan], [1, 0], "NaN or infinite"),
        ([1.0, 2.0], [1, 2], "labels must be 0"),
    ],
)
def test_lira_report_rejects_bad_input(scores, labels, message):
    with pytest.raises(DataError, match=message):
        lira_report(scores, labels)


def _small():
    shadow, shadow_in, targets, _ = _simulate(5, gap=1.0, n_shadow=6, n_examples=5, n_targets=2)
    return shadow, shadow_in, targets


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, m, t: (s[0], m, t), r"shadow_confidences must be 2-D \(models x examples\), got shape \(5,\)"),
        (lambda s, m, t: (s, m[:, :4], t), r"shadow_in has shape \(6, 4\) but the confidences have shape \(6, 5\)"),
        (lambda s, m, t: (s, m * 2.0, t), "shadow_in must be a boolean mask"),
        (lambda s, m, t: (s, m, t[:, :4]), "target_confidences have 4 examples but shadow_confidences have 5"),
        (lambda s, m, t: (s, m, t[None]), r"target_confidences must be 1-D or 2-D"),
        (lambda s, m, t: (np.where(m, np.nan, s), m, t), "shadow_confidences contains NaN or infinite"),
        (lambda s, m, t: (s, m, t + np.inf), "target_confidences contains NaN or infinite"),
        (lambda s, m, t: (s[:, :0], m[:, :0], t[:, :0]), "shadow_confidences is empty"),
        (lambda s, m, t: (s, np.ones_like(m), t), r"example 0 has 0 'out' shadow confidence\(s\) but at least 2"),
    ],
)
def test_lira_scores_reject_bad_input(change, message):
    with pytest.raises(DataError, match=message):
        lira_scores(*change(*_small()))


def test_lira_offline_needs_no_in_shadows():
    shadow, _, targets = _small()
    scores = lira_scores(shadow, np.zeros(shadow.shape, bool), targets, online=False)
    assert np.all(np.isfinite(scores))
    with pytest.raises(DataError, match="'in' shadow"):
        lira_scores(shadow, np.zeros(shadow.shape, bool), targets, online=True)


# ---------------------------------------------------------------- U-LiRA


def _unlearning_world(seed: int, residual: float, *, n_shadow: int = 24, n_examples: int = 200, n_targets: int = 10):
    """Shadow/target confidences where unlearning leaves ``residual`` of a membership shift behind.

    Each shadow model, for each example, either unlearned it (1/3), was retrained without it (1/3) or
    kept it in training (1/3, unused by U-LiRA, with a large shift that must not leak in).
    """
    rng = np.random.default_rng(seed)
    level = rng.normal(scale=2.0, size=n_examples)
    state = rng.integers(0, 3, size=(n_shadow, n_examples))  # 0 retrained, 1 unlearned, 2 kept
    state[:2], state[2:4] = 0, 1  # at least two of each per example
    shift = np.select([state == 1, state == 2], [residual, 5.0], 0.0)
    shadow = level + shift + rng.normal(scale=0.7, size=state.shape)
    target_unlearned = rng.random((n_targets, n_examples)) < 0.5
    targets = level + residual * target_unlearned + rng.normal(scale=0.7, size=target_unlearned.shape)
    return shadow, state == 1, state == 0, targets, target_unlearned


def test_u_lira_scores_use_only_unlearned_and_retrained_shadows():
    shadow, unlearned, retrained, targets, labels = _unlearning_world(0, residual=1.0, n_examples=30, n_targets=4)
    result = u_lira(shadow, unlearned, retrained, targets, labels)
    assert isinstance(result, ULiraResult) and result.scores.shape == targets.shape
    np.testing.assert_allclose(result.scores, _oracle_lira(shadow, unlearned, retrained, targets, online=True),
                               rtol=1e-10, atol=1e-10)
    pooled = u_lira(shadow, unlearned, retrained, targets, labels, global_variance=True)
    np.testing.assert_allclose(pooled.scores, _oracle_lira(shadow, unlearned, retrained, targets, True, True),
                               rtol=1e-10, atol=1e-10)


def test_u_lira_with_complementary_masks_is_online_lira():
    shadow, shadow_in, targets, target_in = _simulate(6, gap=1.0, n_examples=50)
    result = u_lira(shadow, shadow_in, ~shadow_in, targets, target_in)
    np.testing.assert_array_equal(result.scores, lira_scores(shadow, shadow_in, targets))
    assert result.report == lira_report(result.scores, target_in)


def test_u_lira_summaries_match_sklearn_and_a_per_example_loop():
    shadow, unlearned, retrained, targets, labels = _unlearning_world(1, residual=1.0, n_examples=60)
    evaluated = np.random.default_rng(1).random(targets.shape) < 0.7
    evaluated[:, 0] = False  # an example no target evaluates
    result = u_lira(shadow, unlearned, retrained, targets, labels, target_evaluated=evaluated)
    assert np.isnan(result.scores[~evaluated]).all() and np.isfinite(result.scores[evaluated]).all()
    picked, y = result.scores[evaluated], labels[evaluated]
    assert result.report.auc == pytest.approx(roc_auc_score(y, picked), abs=1e-12)
    assert result.accuracy == pytest.approx(balanced_accuracy_score(y, picked > 0), abs=1e-12)
    assert np.isnan(result.example_accuracy[0])
    for j in range(1, targets.shape[1]):
        rows = evaluated[:, j]
        if rows.any():
            assert result.example_accuracy[j] == pytest.approx(np.mean((result.scores[rows, j] > 0) == labels[rows, j]))
    with pytest.raises(ValueError, match="read-only"):
        result.scores[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        result.example_accuracy[0] = 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_u_lira_is_chance_when_unlearning_matches_retraining(seed):
    result = u_lira(*_unlearning_world(20 + seed, residual=0.0))
    assert 0.45 <= result.report.auc <= 0.55
    assert 0.45 <= result.accuracy <= 0.55
    assert result.report.tpr_at_1pct_fpr < 0.05


def test_u_lira_detects_unlearning_that_leaves_a_trace():
    result = u_lira(*_unlearning_world(30, residual=3.0))
    assert result.report.auc > 0.97
    assert result.accuracy > 0.9
    assert np.nanmean(result.example_accuracy) > 0.9


def test_u_lira_accepts_one_target_model():
    shadow, unlearned, retrained, targets, labels = _unlearning_world(2, residual=2.0, n_examples=40)
    result = u_lira(shadow, unlearned, retrained, targets[0], labels[0])
    assert result.scores.shape == (1, 40)
    np.testing.assert_allclose(result.scores[0], u_lira(shadow, unlearned, retrained, targets, labels).scores[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, u, r, t, y, e: (s, u | r, r, t, y, e),
         "shadow model 0 is marked both unlearned and retrained for example 0"),
        (lambda s, u, r, t, y, e: (s, u, r, t, np.ones_like(y), e), "evaluated targets are all unlearned"),
        (lambda s, u, r, t, y, e: (s, u, r, t, np.zeros_like(y), e), "evaluated targets are all retrained"),
        (lambda s, u, r, t, y, e: (s, u, r, t, y, np.zeros_like(y)), "target_evaluated selects no pair"),
        (lambda s, u, r, t, y, e: (s, u, r, t, y[:, :3], e), r"target_unlearned has shape \(3, 3\)"),
        (lambda s, u, r, t, y, e: (s, u, r, t, y, e[:1]), r"target_evaluated has shape \(1, 5\)"),
        (lambda s, u, r, t, y, e: (s, u, r[:2], t, y, e), r"shadow_retrained has shape \(2, 5\)"),
        (lambda s, u, r, t, y, e: (s, u & False, r, t, y, e), r"example 0 has 0 'in' shadow confidence"),
    ],
)
def test_u_lira_rejects_bad_input(change, message):
    shadow, unlearned, retrained, targets, labels = _unlearning_world(3, residual=1.0, n_examples=5, n_targets=3)
    labels[0, 0], labels[1, 0] = True, False  # both classes present
    s, u, r, t, y, e = change(shadow, unlearned, retrained, targets, labels, np.ones(labels.shape, bool))
    with pytest.raises(DataError, match=message):
        u_lira(s, u, r, t, y, target_evaluated=e)
