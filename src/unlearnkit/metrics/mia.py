"""Membership-inference metrics on per-sample losses, and ROC helpers for score-based attacks.

- :func:`mia_auc` — can a loss-threshold attack tell the forget set (members) from the test set
  (non-members)? Cross-validated ROC AUC; 0.5 means indistinguishable.
- :func:`mia_efficacy` — the "MIA-efficacy" of Unlearn-Sparse / SalUn: an attack trained on retain
  vs test losses, applied to the forget set; the share judged non-member.
- :func:`roc_curve_points`, :func:`tpr_at_fpr` — plain numpy ROC curves for attacks that output a
  membership score (LiRA and friends), higher score = more likely a member.
- :func:`population_attack` — one loss (or confidence) threshold for every sample, calibrated on
  members (retain) vs non-members (test), then applied to the forget set.
- :class:`AttackReport` — ROC AUC and TPR at 1% / 0.1% FPR of a membership score.

The shadow-model attacks LiRA (Carlini et al., IEEE S&P 2022) and U-LiRA (Hayes et al., 2024) live in
:mod:`unlearnkit.metrics.lira` and build on the ROC helpers here.

Both logistic-regression attacks use one feature, the loss, standardised; groups are balanced by
seeded subsampling so that a larger retain or test set cannot move the numbers.

Score convention everywhere in this module: a *membership score* is higher for samples more likely
to be members. Losses point the other way (a low loss suggests a member), so functions that take
losses say so and negate them internally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from unlearnkit.errors import ConfigError, DataError


def _losses(values: ArrayLike, name: str, minimum: int) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array of per-sample losses after checking shape, size and finiteness."""
    return _vector(values, name, minimum, what="losses")


def _balanced(members: np.ndarray, nonmembers: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger group to the size of the smaller and stack them as an attack dataset.

    The larger group keeps the rows ``np.random.default_rng(seed).choice(len(larger),
    size=len(smaller), replace=False)``, in that order; nothing is drawn when sizes are equal.

    Returns:
        ``(x, y)``: features of shape ``(2 * n, 1)``, members first, and labels (1 member, 0 not).
    """
    n = min(members.shape[0], nonmembers.shape[0])
    rng = np.random.default_rng(seed)
    if members.shape[0] > n:
        members = members[rng.choice(members.shape[0], size=n, replace=False)]
    elif nonmembers.shape[0] > n:
        nonmembers = nonmembers[rng.choice(nonmembers.shape[0], size=n, replace=False)]
    x = np.concatenate([members, nonmembers])[:, None]
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    return x, y


def _attack() -> Pipeline:
    """The loss-threshold attack: standardised loss into a default logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression())


def mia_auc(member_losses: ArrayLike, nonmember_losses: ArrayLike, *, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a loss-based membership-inference attack.

    Members (label 1, usually the forget set) and non-members (label 0, usually the test set) are
    balanced: the larger group keeps the rows
    ``np.random.default_rng(seed).choice(len(larger), size=len(smaller), replace=False)``, and the
    attack data is members then non-members. A logistic regression on the standardised loss is
    scored out-of-fold with ``StratifiedKFold(folds, shuffle=True, random_state=seed)``. After
    unlearning, a value near 0.5 says the forget set now looks like data the model never saw.

    Args:
        member_losses: 1-D per-sample losses of the members; at least 2.
        nonmember_losses: 1-D per-sample losses of the non-members; at least 2.
        folds: Number of cross-validation folds, at least 2; lowered to the size of the smaller
            group when that group is smaller.
        seed: Seed for the subsampling and the fold shuffle.

    Returns:
        The ROC AUC of the out-of-fold member probabilities, in ``[0, 1]``.

    Raises:
        DataError: A group with fewer than 2 samples, not 1-D, or with NaN/infinite losses.
        ConfigError: ``folds`` below 2.

    Example:
        >>> round(mia_auc([0.01, 0.02, 0.03, 0.05], [1.0, 2.0, 1.5, 3.0], folds=2), 2)
        1.0
    """
    if folds < 2:
        raise ConfigError(f"mia_auc: folds must be at least 2, got {folds}; use the default 5.")
    members = _losses(member_losses, "mia_auc: member_losses", 2)
    nonmembers = _losses(nonmember_losses, "mia_auc: nonmember_losses", 2)
    x, y = _balanced(members, nonmembers, seed)
    splitter = StratifiedKFold(min(folds, x.shape[0] // 2), shuffle=True, random_state=seed)
    proba = cross_val_predict(_attack(), x, y, cv=splitter, method="predict_proba")
    return float(roc_auc_score(y, proba[:, 1]))


def mia_efficacy(
    retain_losses: ArrayLike, test_losses: ArrayLike, forget_losses: ArrayLike, *, seed: int = 0
) -> float:
    """Share of the forget set that a retain-vs-test attack classifies as non-member.

    The attack (logistic regression on the standardised loss) is fit on retain losses (members,
    label 1) against test losses (non-members, label 0), balanced by seeded subsampling of the
    larger group, then predicts the forget samples. This is "MIA-efficacy" as reported by
    Unlearn-Sparse (Jia et al., 2023) and SalUn (Fan et al., 2024): higher means more forgotten,
    and the value to aim for is the one the retrained model gets.

    Args:
        retain_losses: 1-D per-sample losses on the retain set; at least 2.
        test_losses: 1-D per-sample losses on the test set; at least 2.
        forget_losses: 1-D per-sample losses on the forget set; at least 1.
        seed: Seed for the balancing subsample.

    Returns:
        The fraction of forget samples predicted as non-members, in ``[0, 1]``.

    Raises:
        DataError: Too few samples, arrays that are not 1-D, or NaN/infinite losses.
    """
    retain = _losses(retain_losses, "mia_efficacy: retain_losses", 2)
    test = _losses(test_losses, "mia_efficacy: test_losses", 2)
    forget = _losses(forget_losses, "mia_efficacy: forget_losses", 1)
    x, y = _balanced(retain, test, seed)
    attack = _attack().fit(x, y)
    return float(np.mean(attack.predict(forget[:, None]) == 0))


def _scores_and_labels(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check a score/label pair for ROC computations; return float64 scores and boolean labels."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise DataError(f"roc: scores and labels must be 1-D, got shapes {s.shape} and {y.shape}; "
                        "flatten them.")
    if s.shape[0] != y.shape[0]:
        raise DataError(f"roc: {s.shape[0]} scores but {y.shape[0]} labels; pass one label per score.")
    if s.shape[0] == 0:
        raise DataError("roc: scores are empty; pass one score per sample.")
    if not np.all(np.isfinite(s)):
        raise DataError("roc: scores contain NaN or infinite values; clip or drop them first.")
    if y.dtype != np.bool_ and not np.all(np.isin(y, (0, 1))):
        raise DataError("roc: labels must be 0 (non-member) or 1 (member); map your labels to 0/1.")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise DataError("roc: labels hold only one class; an ROC curve needs both members (1) "
                        "and non-members (0).")
    return s, y


def roc_curve_points(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of a membership score, one point per distinct score value.

    Same points as ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``: the
    curve starts at ``(0, 0)`` with threshold ``inf``, and a sample counts as predicted member
    when its score is ``>=`` the threshold.

    Args:
        scores: 1-D finite scores, higher = more likely a member.
        labels: 1-D labels, 1 (or True) for members and 0 for non-members; both must occur.

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of equal length with ``fpr`` and ``tpr``
        non-decreasing from 0 to 1 and ``thresholds`` decreasing.

    Raises:
        DataError: Mismatched lengths, non-finite scores, labels other than 0/1, or one class only.
    """
    s, y = _scores_and_labels(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last index of each run of equal scores: every sample up to it is predicted member
    last = np.concatenate([np.flatnonzero(np.diff(s)), [s.shape[0] - 1]])
    true_pos = np.cumsum(y)[last].astype(np.float64)
    false_pos = (last + 1) - true_pos
    tpr = np.concatenate([[0.0], true_pos / true_pos[-1]])
    fpr = np.concatenate([[0.0], false_pos / false_pos[-1]])
    thresholds = np.concatenate([[np.inf], s[last]])
    return fpr, tpr, thresholds


def tpr_at_fpr(scores: ArrayLike, labels: ArrayLike, fpr: float) -> float:
    """True-positive rate of a membership score at a given false-positive rate.

    Reads the ROC curve of :func:`roc_curve_points` at ``fpr``: where the curve has points at
    exactly that false-positive rate, the highest of their TPRs; otherwise the straight line
    between the neighbouring points (the rate a randomised threshold achieves). LiRA reports
    this at low rates such as ``fpr=0.001``.

    Args:
        scores: 1-D finite scores, higher = more likely a member.
        labels: 1-D labels, 1 for members and 0 for non-members; both must occur.
        fpr: The false-positive rate, in ``[0, 1]``.

    Returns:
        The true-positive rate, in ``[0, 1]``.

    Raises:
        DataError: Bad scores or labels, as in :func:`roc_curve_points`.
        ConfigError: ``fpr`` outside ``[0, 1]``.

    Example:
        >>> tpr_at_fpr([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0], fpr=0.0)
        1.0
    """
    if not 0.0 <= fpr <= 1.0:
        raise ConfigError(f"tpr_at_fpr: fpr must be in [0, 1], got {fpr}; pass a rate such as 0.01.")
    curve_fpr, curve_tpr, _ = roc_curve_points(scores, labels)
    i = int(np.searchsorted(curve_fpr, fpr, side="right")) - 1  # last point with curve_fpr <= fpr
    if curve_fpr[i] == fpr:
        return float(curve_tpr[i])
    weight = (fpr - curve_fpr[i]) / (curve_fpr[i + 1] - curve_fpr[i])
    return float(curve_tpr[i] + weight * (curve_tpr[i + 1] - curve_tpr[i]))


# ---------------------------------------------------------------- attack summaries


@dataclass(frozen=True)
class AttackReport:
    """How well a membership score separates members from non-members.

    Attributes:
        auc: ROC AUC, in ``[0, 1]``; 0.5 means the score carries no membership signal.
        tpr_at_1pct_fpr: True-positive rate at a 1% false-positive rate (:func:`tpr_at_fpr`).
        tpr_at_0_1pct_fpr: True-positive rate at a 0.1% false-positive rate, the regime LiRA argues
            matters: an attack that confidently identifies even a few members is a privacy breach.
    """

    auc: float
    tpr_at_1pct_fpr: float
    tpr_at_0_1pct_fpr: float


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve by the trapezoidal rule (ties count half, as in ``roc_auc_score``)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _report(scores: np.ndarray, labels: np.ndarray) -> AttackReport:
    """AUC and low-FPR rates of already checked 1-D scores and labels."""
    fpr, tpr, _ = roc_curve_points(scores, labels)
    return AttackReport(
        auc=_auc(fpr, tpr),
        tpr_at_1pct_fpr=tpr_at_fpr(scores, labels, 0.01),
        tpr_at_0_1pct_fpr=tpr_at_fpr(scores, labels, 0.001),
    )


# ---------------------------------------------------------------- population attack

SCORE_KINDS = ("loss", "confidence")


@dataclass(frozen=True)
class PopulationAttackResult:
    """Outcome of :func:`population_attack`.

    Attributes:
        threshold: The calibrated cut-off in the units of the inputs. With ``score="loss"`` a sample
            is called a member when its loss is ``<= threshold``; with ``score="confidence"`` when
            its confidence is ``>= threshold``. Infinite when no finite cut-off was chosen (then no
            sample is called a member).
        score: ``"loss"`` or ``"confidence"``, as passed.
        member_rate: Share of the target samples called members, in ``[0, 1]``.
        calibration_tpr: Share of the calibration members called members at the threshold.
        calibration_fpr: Share of the calibration non-members called members at the threshold.
        calibration: AUC and TPR at 1% / 0.1% FPR of the score on the calibration data: how strong
            the attack is before it is pointed at the targets.
    """

    threshold: float
    score: str
    member_rate: float
    calibration_tpr: float
    calibration_fpr: float
    calibration: AttackReport


def _vector(values: ArrayLike, name: str, minimum: int, what: str = "values") -> np.ndarray:
    """Return ``values`` as a 1-D finite float64 array with at least ``minimum`` entries; ``what`` names
    them in the messages (e.g. "losses")."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of per-sample {what}, got shape {array.shape}; "
                        "flatten it or compute one value per sample.")
    if array.shape[0] < minimum:
        raise DataError(f"{name} has {array.shape[0]} samples but at least {minimum} are needed; "
                        "use a larger set.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains NaN or infinite {what}; clip them (e.g. losses at 1e4) "
                        "or drop those samples.")
    return array


def population_attack(
    member_scores: ArrayLike,
    nonmember_scores: ArrayLike,
    target_scores: ArrayLike,
    *,
    score: str = "loss",
    fpr: float | None = None,
) -> PopulationAttackResult:
    """Threshold membership attack: calibrate one cut-off on members vs non-members, apply it to targets.

    The "population" attack of the unlearning literature (Hayes et al., 2024, call it a population
    U-MIA: the same attacker for every example; Yeom et al., 2018, for the loss threshold). Usually
    members are the retain set, non-members the test set and targets the forget set: after good
    unlearning the forget set is called member about as often as the test set (``calibration_fpr``),
    and as often as for the model retrained without it.

    Score convention: ``score="loss"`` (the default) means *lower = more likely a member* (pass
    per-sample cross-entropy losses); ``score="confidence"`` means *higher = more likely a member*
    (pass e.g. the probability of the true class, or ``unlearnkit.metrics.logit_scaled_confidence``).

    The cut-off is chosen on the calibration ROC curve (:func:`roc_curve_points`):

    - ``fpr=None``: the point maximising balanced accuracy ``(TPR + 1 - FPR) / 2`` (Youden's J);
      ties go to the stricter cut-off (fewer samples called members).
    - ``fpr=a``: the point with the highest TPR whose calibration FPR is at most ``a``.

    The reported threshold lies halfway between the chosen calibration score and the next score
    on the non-member side, so calibration rates are exactly those of the chosen ROC point and new
    samples are not decided by where one calibration sample happened to fall.

    Args:
        member_scores: 1-D finite scores of known members (e.g. retain losses); at least 1.
        nonmember_scores: 1-D finite scores of known non-members (e.g. test losses); at least 1.
        target_scores: 1-D finite scores of the samples to judge (e.g. forget losses); at least 1.
        score: ``"loss"`` or ``"confidence"``, see above.
        fpr: Calibrate to this false-positive rate in ``[0, 1]`` instead of the best balanced accuracy.

    Returns:
        A :class:`PopulationAttackResult`.

    Raises:
        DataError: Arrays that are empty, not 1-D, or hold NaN/infinite values.
        ConfigError: Unknown ``score`` or ``fpr`` outside ``[0, 1]``.

    Example:
        >>> result = population_attack([0.1, 0.2, 0.3], [1.0, 1.5, 2.0], [0.15, 1.8])
        >>> result.threshold, result.member_rate
        (0.65, 0.5)
    """
    if score not in SCORE_KINDS:
        raise ConfigError(f"population_attack: unknown score {score!r}; choose one of {SCORE_KINDS} "
                          "('loss': lower = member, 'confidence': higher = member).")
    if fpr is not None and not 0.0 <= fpr <= 1.0:
        raise ConfigError(f"population_attack: fpr must be in [0, 1] or None, got {fpr}; pass a rate such as 0.01.")
    sign = -1.0 if score == "loss" else 1.0  # membership score: higher = more likely a member
    members = sign * _vector(member_scores, f"population_attack: member_scores ({score})", 1)
    nonmembers = sign * _vector(nonmember_scores, f"population_attack: nonmember_scores ({score})", 1)
    targets = sign * _vector(target_scores, f"population_attack: target_scores ({score})", 1)
    scores = np.concatenate([members, nonmembers])
    labels = np.concatenate([np.ones(members.shape[0], bool), np.zeros(nonmembers.shape[0], bool)])
    curve_fpr, curve_tpr, thresholds = roc_curve_points(scores, labels)
    if fpr is None:
        i = int(np.argmax(curve_tpr - curve_fpr))  # first maximum: the highest (strictest) threshold
    else:
        i = int(np.searchsorted(curve_fpr, fpr, side="right")) - 1  # last point with FPR <= fpr: highest TPR
    cut = thresholds[i]
    if math.isfinite(cut) and i + 1 < thresholds.shape[0]:  # the lowest score (last point) stays as it is
        cut = (cut + thresholds[i + 1]) / 2.0
    return PopulationAttackResult(
        threshold=float(sign * cut),
        score=score,
        member_rate=float(np.mean(targets >= cut)),
        calibration_tpr=float(curve_tpr[i]),
        calibration_fpr=float(curve_fpr[i]),
        calibration=_report(scores, labels),
    )
