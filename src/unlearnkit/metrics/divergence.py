"""Distances between predictive distributions: softmax, Jensen-Shannon and Kullback-Leibler divergence,
activation distance, and the ZRF score.

Used to compare an unlearned model's outputs with the retrained model's outputs sample by sample
(or, for ZRF, with a randomly initialised model's outputs).
Inputs are arrays of probability rows of shape ``(n, classes)`` (a single 1-D row is treated as
``n = 1``); all arithmetic is float64, and ``0 * log 0`` counts as 0, so zeros in rows are fine.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import rel_entr

from unlearnkit.errors import ConfigError, DataError

# Row sums may be off by float32 rounding (a float32 softmax over 1000 classes is off by ~1e-6).
_SUM_TOLERANCE = 1e-5
# Floor for q in KL: log(1 / 1e-12) ~ 27.6 nats bounds each term, so KL stays finite.
KL_EPS = 1e-12


def _probability_rows(values: ArrayLike, name: str) -> np.ndarray:
    """Return ``values`` as float64 rows of shape ``(n, classes)`` after checking they are distributions.

    Rows that pass the check are divided by their sum, absorbing rounding up to ``_SUM_TOLERANCE``.
    """
    rows = np.asarray(values, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[None, :]
    if rows.ndim != 2:
        raise DataError(f"{name} must be probability rows of shape (n, classes), got shape {rows.shape}; "
                        "reshape it.")
    if rows.size == 0:
        raise DataError(f"{name} is empty (shape {rows.shape}); pass at least one row with one class.")
    if not np.all(np.isfinite(rows)):
        raise DataError(f"{name} contains NaN or infinite values; check the model outputs.")
    if np.any(rows < 0):
        raise DataError(f"{name} has negative entries; pass probabilities, e.g. softmax(logits).")
    sums = rows.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
    if bad.size:
        raise DataError(f"{name} row {bad[0]} sums to {sums[bad[0]]:.6g}, not 1; pass probabilities, "
                        "e.g. softmax(logits), not logits.")
    return rows / sums[:, None]


def _pair(p: ArrayLike, q: ArrayLike, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """Check two arrays of probability rows and that their shapes agree."""
    p_rows = _probability_rows(p, f"{caller}: p")
    q_rows = _probability_rows(q, f"{caller}: q")
    if p_rows.shape != q_rows.shape:
        raise DataError(f"{caller}: p has shape {p_rows.shape} but q has shape {q_rows.shape}; "
                        "pass outputs of the same samples and classes.")
    return p_rows, q_rows


def softmax(logits: ArrayLike) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64.

    Args:
        logits: Finite scores of shape ``(..., classes)``.

    Returns:
        Probabilities of the same shape; each slice along the last axis sums to 1.

    Raises:
        DataError: Empty input or NaN/infinite logits.

    Example:
        >>> softmax([0.0, 0.0]).tolist()
        [0.5, 0.5]
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.size == 0:
        raise DataError(f"softmax: logits of shape {z.shape} are empty; "
                        "pass an array of shape (..., classes).")
    if not np.all(np.isfinite(z)):
        raise DataError("softmax: logits contain NaN or infinite values; check the model outputs.")
    exp = np.exp(z - z.max(axis=-1, keepdims=True))  # shifting by the max keeps exp from overflowing
    return exp / exp.sum(axis=-1, keepdims=True)


def js_divergence_per_sample(p: ArrayLike, q: ArrayLike, base: float = 2.0) -> np.ndarray:
    """Jensen-Shannon divergence between matching rows of ``p`` and ``q``.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, in logarithm base
    ``base``. It is symmetric, always finite, and in ``[0, 1]`` for base 2. It equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=base) ** 2`` (SciPy returns the distance).

    Args:
        p: Probability rows of shape ``(n, classes)``, or one row.
        q: Probability rows of the same shape.
        base: Logarithm base; 2 gives bits.

    Returns:
        A float64 array of shape ``(n,)``.

    Raises:
        DataError: Shapes differ, or rows are empty, negative, non-finite or do not sum to 1.
        ConfigError: ``base`` not positive or equal to 1.
    """
    if not base > 0 or base == 1:
        raise ConfigError(f"js_divergence: base must be positive and not 1, got {base}; use 2 for bits.")
    p_rows, q_rows = _pair(p, q, "js_divergence")
    m = (p_rows + q_rows) / 2.0
    nats = 0.5 * rel_entr(p_rows, m).sum(axis=1) + 0.5 * rel_entr(q_rows, m).sum(axis=1)
    return np.maximum(nats, 0.0) / np.log(base)  # maximum: rounding can leave -1e-17 for equal rows


def js_divergence(p: ArrayLike, q: ArrayLike, base: float = 2.0) -> float:
    """Mean Jensen-Shannon divergence over rows; see :func:`js_divergence_per_sample`.

    Example:
        >>> js_divergence([[1.0, 0.0]], [[0.0, 1.0]])
        1.0
    """
    return float(np.mean(js_divergence_per_sample(p, q, base=base)))


def kl_divergence_per_sample(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Kullback-Leibler divergence ``KL(p || q)`` between matching rows, in nats.

    Entries of ``q`` below ``KL_EPS`` (1e-12) are raised to it before the logarithm, so the result
    stays finite where ``q`` is 0 but ``p`` is not (true KL would be infinite); each such entry
    then adds at most about ``p * 27.6`` nats. Rows without such entries are exact and equal
    ``scipy.stats.entropy(p, q)``. Entries with ``p = 0`` contribute 0.

    Args:
        p: Probability rows of shape ``(n, classes)``, or one row.
        q: Probability rows of the same shape.

    Returns:
        A float64 array of shape ``(n,)``, each value ``>= 0`` up to rounding.

    Raises:
        DataError: Shapes differ, or rows are empty, negative, non-finite or do not sum to 1.
    """
    p_rows, q_rows = _pair(p, q, "kl_divergence")
    return rel_entr(p_rows, np.maximum(q_rows, KL_EPS)).sum(axis=1)


def kl_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Mean ``KL(p || q)`` over rows in nats, eps-clipped; see :func:`kl_divergence_per_sample`."""
    return float(np.mean(kl_divergence_per_sample(p, q)))


def activation_distance_per_sample(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Euclidean (L2) distance between matching probability rows of two models.

    ``||p_i - q_i||_2`` for every row ``i``; in ``[0, sqrt(2)]``, 0 for identical rows and
    ``sqrt(2)`` for two different one-hot rows.

    Args:
        p: Probability rows of shape ``(n, classes)``, or one row (e.g. the unlearned model's softmax).
        q: Probability rows of the same shape (e.g. the retrained model's softmax).

    Returns:
        A float64 array of shape ``(n,)``.

    Raises:
        DataError: Shapes differ, or rows are empty, negative, non-finite or do not sum to 1.
    """
    p_rows, q_rows = _pair(p, q, "activation_distance")
    return np.linalg.norm(p_rows - q_rows, axis=1)


def activation_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Mean L2 distance between two models' output probabilities: the "activation distance".

    Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in Deep
    Networks Using an Incompetent Teacher", AAAI 2023: the average over samples (usually the forget
    set) of the L2 distance between the unlearned and the retrained model's softmax outputs; lower
    means closer to the retrained model. See :func:`activation_distance_per_sample`.

    Example:
        >>> round(activation_distance([[1.0, 0.0]], [[0.0, 1.0]]), 6)
        1.414214
    """
    return float(np.mean(activation_distance_per_sample(p, q)))


def zrf_score(model_probs: ArrayLike, random_model_probs: ArrayLike, base: float = 2.0) -> float:
    """ZRF, Zero Retrain Forgetting: how far the model is from a randomly initialised one on the forget set.

    Chundawat et al., AAAI 2023 ("Can Bad Teaching Induce Forgetting?"):
    ``ZRF = 1 - (1 / n) * sum_i JS(M(x_i), T_d(x_i))``, with ``M`` the unlearned model, ``T_d`` a
    randomly initialised ("incompetent") model of the same architecture, and ``x_i`` the forget
    samples. JS is :func:`js_divergence_per_sample` in logarithm base ``base``; base 2 (the default)
    bounds JS by 1, so ZRF lies in ``[0, 1]``: 1 means the model answers like the random model
    (nothing of the forget set left), 0 means every answer is maximally far from it. With
    ``base=e`` (nats) ZRF lies in ``[1 - ln 2, 1]``. The paper's reference code computes PyTorch's
    ``kl_div(log p, m)`` with the default element-wise mean instead, i.e. ``KL(m || p)`` averaged
    over samples *and classes*; its numbers sit closer to 1 and are not comparable with this one.

    Higher is not simply better: the target is the retrained model's ZRF, since a model that never
    saw the forget set still generalises to it and so differs from a random model.

    Args:
        model_probs: Probability rows ``(n, classes)`` of the model under evaluation on the forget set.
        random_model_probs: Probability rows of the randomly initialised model on the same samples.
        base: Logarithm base of the JS divergence; 2 gives ZRF in ``[0, 1]``.

    Returns:
        The ZRF score.

    Raises:
        DataError: Shapes differ, or rows are empty, negative, non-finite or do not sum to 1.
        ConfigError: ``base`` not positive or equal to 1.

    Example:
        >>> zrf_score([[0.5, 0.5]], [[0.5, 0.5]])
        1.0
    """
    return 1.0 - js_divergence(model_probs, random_model_probs, base=base)
