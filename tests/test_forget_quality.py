"""Tests for unlearnkit.metrics.forget_quality against a slow per-example reference, SciPy and hand sums.

Run: nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_forget_quality.py

:func:`reference_forget_quality` is the obviously-correct transcription of the NeurIPS 2023 unlearning
challenge's forgetting quality (arXiv 2406.09073; google-deepmind/unlearning_evaluation ``metric.py``):
a Python loop over examples and over right thresholds, with every threshold built by ``np.linspace``
and every rule's rates by counting. It makes the same documented choices as the fast version (float64
grids, ties, 0 when no rule survives). ``benchmarks/bench_forget_quality.py`` imports it from here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.special
import torch

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.forget_quality import (
    EPSILON_CAP,
    ForgetQuality,
    forget_quality,
    logit_scaled_confidence,
    neurips_score,
)

# ---------------------------------------------------------------- the slow reference


def reference_rule_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Epsilon of each rule from its rates; NaN for a discarded rule, ``inf`` for perfect separation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1.0 - delta - fpr) - np.log(fnr), np.log(1.0 - delta - fnr) - np.log(fpr))
    eps = np.maximum(eps, 0.0)  # keeps NaN: both log ratios undefined, the rule is discarded
    eps = np.where((fpr == 0) != (fnr == 0), np.nan, eps)  # exactly one rate zero: discarded
    return np.where((fpr == 0) & (fnr == 0), np.inf, eps)


def reference_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    """Epsilon of one example; ``pos`` is the sample with the larger median (the unlearned one on a tie)."""
    pos_range = pos.max() - pos.min()
    neg_range = neg.max() - neg.min()
    with np.errstate(invalid="ignore"):  # 0 / 0 when both samples are constant: NaN, not capped
        ratio = min(pos_range, neg_range) / max(pos_range, neg_range)
    if ratio < 0.01:
        return EPSILON_CAP
    kept = []

    # Single threshold: "positive" if value >= t.
    low = min(pos.min(), neg.min())
    high = max(pos.max(), neg.max())
    thresholds = np.linspace(low, high, int(np.ceil((high - low) * 100)))
    fpr = (neg[None, :] >= thresholds[:, None]).mean(axis=1)
    fnr = (pos[None, :] < thresholds[:, None]).mean(axis=1)
    kept.append(reference_rule_epsilons(fpr, fnr, delta))

    # Double threshold: "positive" (the peaky, smaller-range sample) if left <= value <= right.
    peaky, other = (pos, neg) if pos_range < neg_range else (neg, pos)
    width = peaky.max() - peaky.min()
    right_low = (peaky.min() + width) - 2.0
    right_high = peaky.max() + 2.0
    for right in np.linspace(right_low, right_high, int(np.ceil((right_high - right_low) * 100))):
        lefts = np.linspace((right - width) - 2.0, (right - width) + 2.0, 400)
        peaky_in = (lefts[:, None] <= peaky[None, :]) & (peaky[None, :] <= right)
        other_in = (lefts[:, None] <= other[None, :]) & (other[None, :] <= right)
        kept.append(reference_rule_epsilons(other_in.mean(axis=1), (~peaky_in).mean(axis=1), delta))

    eps = np.concatenate(kept)
    eps = eps[~np.isnan(eps)]
    return float(np.clip(eps.max(), 0.0, EPSILON_CAP)) if eps.size else 0.0  # no rule kept: 0


def reference_forget_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 1e-5):
    """``(score, epsilons)`` of the challenge, one example at a time."""
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    n_models, n_examples = unlearned.shape
    epsilons = np.empty(n_examples)
    for i in range(n_examples):
        u, r = unlearned[:, i], retrained[:, i]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        epsilons[i] = reference_epsilon(pos, neg, delta)
    # Points: 1 in [0, 0.5), halving per 0.5-wide bucket, for buckets ending by ceil(log(N - 1)).
    max_epsilon = math.ceil(math.log(n_models - 1))
    buckets = []
    start, points = 0.0, 1.0
    while start + 0.5 <= max_epsilon:
        buckets.append((start, points))
        start, points = start + 0.5, points / 2
    total = 0.0
    for eps in epsilons:
        for start, points in buckets:
            if eps < start + 0.5:
                total += points
                break
    return total / n_examples, epsilons


def assert_same(unlearned, retrained, delta: float = 1e-5) -> ForgetQuality:
    """Fast and reference agree on every epsilon and on the score; returns the fast result."""
    fast = forget_quality(unlearned, retrained, delta)
    score, epsilons = reference_forget_quality(unlearned, retrained, delta)
    np.testing.assert_allclose(fast.epsilons, epsilons, rtol=1e-12, atol=1e-12)
    assert fast.score == pytest.approx(score, abs=1e-12)
    return fast


# ---------------------------------------------------------------- fast == reference


def _samples(kind: str, n_models: int, n_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    size = (n_models, n_examples)
    centre = rng.normal(0.0, 3.0, size=n_examples)
    if kind == "shifted":
        unlearned = centre + rng.normal(0.0, rng.uniform(0.2, 2.0, n_examples), size=size)
        retrained = centre + rng.normal(rng.uniform(-2, 2, n_examples), rng.uniform(0.2, 2.0, n_examples), size=size)
    elif kind == "heavy":
        unlearned = centre + rng.standard_t(2, size=size)
        retrained = centre + 0.5 + 2.0 * rng.standard_t(3, size=size)
    elif kind == "ties":  # many equal values: confidences on a coarse grid
        unlearned = np.round(centre + rng.normal(0.0, 1.0, size=size) * 2) / 2
        retrained = np.round(centre + rng.normal(0.5, 1.0, size=size) * 2) / 2
    elif kind == "integers":  # values that land on the grids' end points
        unlearned = rng.integers(-3, 4, size=size).astype(np.float64)
        retrained = rng.integers(-2, 5, size=size).astype(np.float64)
    elif kind == "skewed":  # like logit-scaled confidences: a bulk and a long left tail
        unlearned = centre + np.log(rng.uniform(1e-6, 1, size=size)) * 2.0
        retrained = centre + np.log(rng.uniform(1e-6, 1, size=size)) * 3.0 + 1.0
    else:
        raise AssertionError(kind)
    return unlearned, retrained


@pytest.mark.parametrize(
    ("kind", "n_models", "n_examples", "seed"),
    [
        ("shifted", 3, 9, 0), ("shifted", 8, 8, 1), ("shifted", 16, 6, 2), ("shifted", 33, 5, 3),
        ("shifted", 64, 3, 4), ("shifted", 5, 12, 5), ("heavy", 8, 8, 6), ("heavy", 21, 5, 7),
        ("ties", 4, 10, 8), ("ties", 16, 6, 9), ("ties", 40, 4, 10), ("integers", 6, 10, 11),
        ("integers", 24, 6, 12), ("skewed", 12, 8, 13), ("skewed", 32, 4, 14), ("shifted", 2, 10, 15),
    ],
)
def test_fast_matches_reference_on_random_cases(kind, n_models, n_examples, seed):
    unlearned, retrained = _samples(kind, n_models, n_examples, seed)
    assert_same(unlearned, retrained)


@pytest.mark.parametrize("delta", [0.0, 1e-3, 0.2])
def test_fast_matches_reference_for_other_deltas(delta):
    assert_same(*_samples("shifted", 10, 6, 20), delta=delta)


def test_fast_matches_reference_far_from_zero():
    # |values| ~ 1e3: the grid arithmetic rounds differently than near 0.
    unlearned, retrained = _samples("shifted", 12, 5, 21)
    assert_same(unlearned + 1234.5, retrained + 1234.5)


def test_chunking_does_not_change_the_result():
    unlearned, retrained = _samples("skewed", 16, 11, 22)
    whole = forget_quality(unlearned, retrained)
    one_by_one = forget_quality(unlearned, retrained, chunk_size=1)
    np.testing.assert_array_equal(whole.epsilons, one_by_one.epsilons)


def test_tensor_input_matches_numpy_input():
    unlearned, retrained = _samples("shifted", 9, 7, 23)
    from_numpy = forget_quality(unlearned, retrained)
    from_tensors = forget_quality(torch.from_numpy(unlearned), torch.from_numpy(retrained))
    mixed = forget_quality(torch.from_numpy(unlearned), retrained)
    np.testing.assert_array_equal(from_numpy.epsilons, from_tensors.epsilons)
    np.testing.assert_array_equal(from_numpy.epsilons, mixed.epsilons)
    assert from_tensors.epsilons.dtype == np.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    unlearned, retrained = _samples("skewed", 32, 40, 24)
    on_cpu = forget_quality(unlearned, retrained)
    on_gpu = forget_quality(torch.from_numpy(unlearned).cuda(), torch.from_numpy(retrained).cuda())
    np.testing.assert_allclose(on_gpu.epsilons, on_cpu.epsilons, rtol=1e-12, atol=1e-12)
    assert on_gpu.score == pytest.approx(on_cpu.score, abs=1e-12)


def test_the_positive_side_is_chosen_by_median_not_by_role():
    unlearned, retrained = _samples("shifted", 11, 8, 25)  # odd N: medians are sample values, no ties here
    forward = forget_quality(unlearned, retrained)
    backward = forget_quality(retrained, unlearned)
    np.testing.assert_array_equal(forward.epsilons, backward.epsilons)


# ---------------------------------------------------------------- edge cases


def test_identical_samples_give_epsilon_zero_and_full_points():
    unlearned, _ = _samples("shifted", 16, 5, 30)
    fast = assert_same(unlearned, unlearned.copy())
    np.testing.assert_array_equal(fast.epsilons, 0.0)
    assert fast.score == 1.0


def test_perfect_separation_is_infinite_then_clipped_to_the_cap():
    rng = np.random.default_rng(31)
    unlearned = rng.normal(0.0, 1.0, size=(16, 4))
    retrained = rng.normal(20.0, 1.0, size=(16, 4))
    fast = assert_same(unlearned, retrained)
    np.testing.assert_array_equal(fast.epsilons, EPSILON_CAP)
    assert fast.score == 0.0
    np.testing.assert_array_equal(fast.points, 0.0)


def test_a_near_constant_sample_gets_the_cap():
    rng = np.random.default_rng(32)
    spread = rng.normal(0.0, 1.0, size=(16, 3))
    peaky = 0.3 + rng.normal(0.0, 1e-4, size=(16, 3))  # range ratio ~1e-4, far below 0.01
    fast = assert_same(peaky, spread)
    np.testing.assert_array_equal(fast.epsilons, EPSILON_CAP)
    one_constant = spread.copy()
    one_constant[:, 0] = 0.25  # range exactly 0 against a spread sample
    np.testing.assert_array_equal(assert_same(one_constant, spread).epsilons[0], EPSILON_CAP)


def test_range_ratio_just_above_the_cap_is_scored_normally():
    # Ranges 0.0204 and 2 (ratio 1.02%, above the 1% cap), with most of the wide sample inside the
    # narrow band, so no rule separates them and the epsilon is finite.
    rng = np.random.default_rng(33)
    narrow = np.sort(rng.uniform(0.0, 0.0204, size=(12, 3)), axis=0)
    narrow[0], narrow[-1] = 0.0, 0.0204
    wide = np.concatenate([rng.uniform(0.0, 0.0204, size=(10, 3)), np.full((1, 3), -1.0), np.full((1, 3), 1.0)])
    fast = assert_same(narrow, wide)
    assert np.all(fast.epsilons < EPSILON_CAP)


def test_two_constant_samples():
    # Both ranges 0: the ratio is 0 / 0, not capped. Equal constants: every rule is discarded, 0 by
    # choice; constants 1 apart: a threshold between them separates perfectly.
    unlearned = np.full((8, 2), 1.5)
    retrained = np.array([[1.5, 2.5]] * 8)
    fast = assert_same(unlearned, retrained)
    np.testing.assert_array_equal(fast.epsilons, [0.0, EPSILON_CAP])


def test_two_models_always_score_zero():
    unlearned, retrained = _samples("shifted", 2, 12, 34)
    fast = assert_same(unlearned, retrained)
    assert fast.score == 0.0  # ceil(log(1)) = 0: no bucket earns points
    assert fast.n_models == 2


def test_points_halve_per_half_unit_up_to_log_n_minus_one():
    # N = 3: ceil(log 2) = 1, so the buckets are [0, 0.5) -> 1 and [0.5, 1) -> 1/2, then 0.
    rng = np.random.default_rng(35)
    unlearned, retrained = rng.normal(0, 1, size=(3, 60)), rng.normal(0.7, 1, size=(3, 60))
    fast = assert_same(unlearned, retrained)
    expected = np.where(fast.epsilons < 0.5, 1.0, np.where(fast.epsilons < 1.0, 0.5, 0.0))
    np.testing.assert_array_equal(fast.points, expected)
    assert fast.score == pytest.approx(expected.mean(), abs=1e-15)
    assert set(np.unique(fast.points)) <= {0.0, 0.5, 1.0}


# ---------------------------------------------------------------- calibration


def test_same_distribution_scores_well_below_one_and_separated_scores_zero():
    rng = np.random.default_rng(40)
    same = forget_quality(rng.normal(size=(64, 400)), rng.normal(size=(64, 400)))
    print(f"forget_quality of two N=64 samples from one Gaussian, 400 examples: {same.score:.4f}")
    # Measured 0.181-0.189 for seeds 0-4 with 1000 examples each (0.189 here): the max over ~160k
    # rules finds a median epsilon of ~1.6 between two samples of one distribution by chance alone.
    assert 0.1 < same.score < 0.35
    apart = forget_quality(rng.normal(size=(64, 100)), rng.normal(8.0, 1.0, size=(64, 100)))
    assert apart.score == 0.0


# ---------------------------------------------------------------- logit_scaled_confidence


def _scipy_confidence(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    onehot = np.arange(z.shape[-1]) == np.broadcast_to(targets, z.shape[:-1])[..., None]
    correct = np.take_along_axis(z, np.broadcast_to(targets, z.shape[:-1])[..., None], axis=-1)[..., 0]
    return correct - scipy.special.logsumexp(np.where(onehot, -np.inf, z), axis=-1)


def test_logit_scaled_confidence_matches_scipy():
    rng = np.random.default_rng(50)
    logits = rng.normal(0.0, 4.0, size=(3, 20, 10)).astype(np.float32)
    targets = rng.integers(0, 10, size=20)
    conf = logit_scaled_confidence(logits, targets)
    assert conf.dtype == torch.float64 and conf.shape == (3, 20) and conf.device.type == "cpu"
    np.testing.assert_allclose(conf.numpy(), _scipy_confidence(logits, targets), rtol=1e-13, atol=1e-13)
    # Also log p - log(1 - p) from a float64 log-softmax, where p is not too close to 1.
    log_p = np.take_along_axis(scipy.special.log_softmax(logits.astype(np.float64), axis=-1),
                               np.broadcast_to(targets, (3, 20))[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(conf.numpy(), log_p - np.log1p(-np.exp(log_p)), rtol=1e-9, atol=1e-9)


def test_logit_scaled_confidence_is_exact_for_extreme_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0], [-1e4, -1e4, 1e4]])
    targets = np.array([0, 2, 1])
    conf = logit_scaled_confidence(torch.tensor(logits), torch.tensor(targets)).numpy()
    np.testing.assert_allclose(conf, _scipy_confidence(logits, targets), rtol=1e-15)
    np.testing.assert_allclose(conf, [1e4, -1.0 - np.log1p(np.exp(-1e4 + 1.0)), -2e4], rtol=1e-15)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the naive route breaks down
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        naive = np.log(probs[np.arange(3), targets]) - np.log(1 - probs[np.arange(3), targets])
    assert not np.all(np.isfinite(naive))
    assert np.all(np.isfinite(conf))


def test_logit_scaled_confidence_broadcasts_targets_and_keeps_the_device():
    logits = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    broadcast = logit_scaled_confidence(logits, targets)
    explicit = logit_scaled_confidence(logits, targets.expand(4, 6))
    torch.testing.assert_close(broadcast, explicit, rtol=0, atol=0)
    assert broadcast.device == logits.device
    single = logit_scaled_confidence([0.0, np.log(3.0)], 1)  # p = 3/4: log(3/4) - log(1/4) = log 3
    assert float(single) == pytest.approx(np.log(3.0), rel=1e-15)


@pytest.mark.parametrize(
    ("logits", "targets", "match"),
    [
        (np.zeros((4, 1)), np.zeros(4, dtype=int), "at least 2 classes"),
        (np.zeros((4, 3)), np.array([0, 1, 3, 0]), "target 3 is outside"),
        (np.zeros((4, 3)), np.array([0, -1, 0, 0]), "target -1 is outside"),
        (np.zeros((4, 3)), np.zeros(4), "integer class labels"),
        (np.zeros((4, 3)), np.zeros(5, dtype=int), "do not broadcast"),
        (np.zeros((2, 4, 3)), np.zeros((3, 4), dtype=int), "do not broadcast"),
        (np.array([[0.0, np.nan]]), np.zeros(1, dtype=int), "NaN or infinite"),
        (np.array([[0.0, np.inf]]), np.zeros(1, dtype=int), "NaN or infinite"),
    ],
)
def test_logit_scaled_confidence_rejects_bad_input(logits, targets, match):
    with pytest.raises(DataError, match=match):
        logit_scaled_confidence(logits, targets)


# ---------------------------------------------------------------- forget_quality input checks


def test_forget_quality_result_is_a_frozen_record():
    fast = forget_quality(np.zeros((3, 2)) + [[0.0], [1.0], [2.0]], np.ones((3, 2)) + [[0.0], [1.5], [2.5]])
    assert isinstance(fast, ForgetQuality)
    assert fast.n_models == 3 and fast.delta == 1e-5
    assert fast.epsilons.shape == (2,) and fast.epsilons.dtype == np.float64
    assert fast.points.shape == (2,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.score = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("unlearned", "retrained", "match"),
    [
        (np.zeros(5), np.zeros(5), r"shape \(n_models, n_examples\)"),
        (np.zeros((1, 5)), np.zeros((1, 5)), "at least 2 are needed"),
        (np.zeros((3, 0)), np.zeros((3, 0)), "no examples"),
        (np.zeros((3, 5)), np.zeros((3, 4)), "5 examples in unlearned_confs but 4"),
        (np.zeros((3, 5)), np.zeros((4, 5)), "3 unlearned models but 4 retrained"),
        (np.full((3, 2), np.nan), np.zeros((3, 2)), "NaN or infinite"),
        (np.zeros((3, 2)), np.full((3, 2), -np.inf), "NaN or infinite"),
        (np.full((3, 2), 2e6), np.zeros((3, 2)), r"beyond \+-1e\+06"),
        ([[1.0, 2.0], [3.0]], np.zeros((2, 2)), "ragged|could not be read"),
    ],
)
def test_forget_quality_rejects_bad_confidences(unlearned, retrained, match):
    with pytest.raises(DataError, match=match):
        forget_quality(unlearned, retrained)


def test_forget_quality_rejects_bad_parameters_and_mixed_devices():
    ok = np.arange(6.0).reshape(3, 2)
    for delta in (-0.1, 1.0, float("nan"), True, "1e-5"):
        with pytest.raises(ConfigError, match="delta must be in"):
            forget_quality(ok, ok, delta)  # type: ignore[arg-type]
    for chunk in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
            forget_quality(ok, ok, chunk_size=chunk)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="different devices"):
        forget_quality(torch.zeros(3, 2), torch.zeros(3, 2, device="meta"))


# ---------------------------------------------------------------- neurips_score


def test_neurips_score_is_f_times_the_accuracy_ratios():
    # F = 0.5; RA_u = mean(0.9, 0.7) = 0.8, RA_r = 1.0; TA_u = 0.6, TA_r = mean(0.8, 0.8, 0.8) = 0.8.
    expected = 0.5 * (0.8 / 1.0) * (0.6 / 0.8)
    assert neurips_score(0.5, [0.9, 0.7], 1.0, 0.6, np.array([0.8, 0.8, 0.8])) == pytest.approx(expected, rel=1e-15)
    fq = forget_quality(np.arange(6.0).reshape(3, 2), np.arange(6.0).reshape(3, 2))  # identical: F = 1
    assert fq.score == 1.0
    assert neurips_score(fq, torch.tensor([0.5, 1.0]), 0.75, 0.9, 0.9) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((1.5, 0.9, 0.9, 0.9, 0.9), ConfigError, "forgetting score must be in"),
        ((-0.1, 0.9, 0.9, 0.9, 0.9), ConfigError, "forgetting score must be in"),
        ((0.5, 90.0, 0.9, 0.9, 0.9), DataError, "retain_acc_unlearned must be accuracies"),
        ((0.5, 0.9, [0.9, np.nan], 0.9, 0.9), DataError, "retain_acc_retrained must be accuracies"),
        ((0.5, 0.9, 0.9, [], 0.9), DataError, "test_acc_unlearned is empty"),
        ((0.5, 0.9, 0.0, 0.9, 0.9), DataError, "retain_acc_retrained averages to 0"),
        ((0.5, 0.9, 0.9, 0.9, [0.0, 0.0]), DataError, "test_acc_retrained averages to 0"),
    ],
)
def test_neurips_score_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        neurips_score(*args)
