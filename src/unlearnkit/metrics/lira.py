"""Shadow-model membership-inference attacks: LiRA and its unlearning form U-LiRA.

- :func:`lira_scores` — the per-example Likelihood Ratio Attack LiRA (Carlini, Chien, Nasr, Song,
  Terzis, Tramer, "Membership Inference Attacks From First Principles", IEEE S&P 2022): Gaussians
  fit to each example's logit-scaled confidences under shadow models that trained on it ("in") and
  that did not ("out"); a target model's confidence is scored by their likelihood ratio.
- :func:`lira_report` — ROC AUC and TPR at 1% / 0.1% FPR of such scores (an
  :class:`~unlearnkit.metrics.mia.AttackReport`).
- :func:`u_lira` — U-LiRA (Hayes, Shumailov, Triantafillou, Khalifa, Papernot, "Inexact Unlearning
  Needs More Careful Evaluations to Avoid a False Sense of Privacy", 2024): the same test, asking per
  example whether a model *unlearned* it or was *retrained* without it.

Inputs are logit-scaled confidences (``unlearnkit.metrics.logit_scaled_confidence``) of many models,
shaped ``(n_models, n_examples)``. Score convention as in :mod:`unlearnkit.metrics.mia`: higher =
more likely a member (for U-LiRA: more likely unlearned rather than retrained). The ROC helpers and
the loss-based attacks that need no shadow models are in :mod:`unlearnkit.metrics.mia`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_ndtr

from unlearnkit.errors import DataError
from unlearnkit.metrics.mia import AttackReport, _report, _scores_and_labels


def lira_report(scores: ArrayLike, membership_labels: ArrayLike) -> AttackReport:
    """ROC AUC and TPR at 1% and 0.1% FPR of membership scores, e.g. from :func:`lira_scores`.

    Scores and labels may have any shape (e.g. ``(n_targets, n_examples)``, one row per target
    model); they are flattened together, so every (model, example) pair is one guess.

    Args:
        scores: Finite membership scores, higher = more likely a member.
        membership_labels: Same shape; 1 (or True) for members, 0 for non-members; both must occur.

    Returns:
        An :class:`AttackReport`.

    Raises:
        DataError: Shapes differ, non-finite scores, labels other than 0/1, or one class only.

    Example:
        >>> lira_report([2.0, 1.0, -1.0, -3.0], [1, 1, 0, 0]).auc
        1.0
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(membership_labels)
    if s.shape != y.shape:
        raise DataError(f"lira_report: scores have shape {s.shape} but membership_labels have shape {y.shape}; "
                        "pass one label per score.")
    return _report(*_scores_and_labels(s.ravel(), y.ravel()))


# ---------------------------------------------------------------- LiRA and U-LiRA

# Floor for a fitted standard deviation, in logit units: a shadow set whose confidences for one
# example are all equal would otherwise give a zero-width Gaussian and infinite likelihood ratios.
LIRA_MIN_STD = 1e-6


def _mask(values: ArrayLike, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Check a boolean (or 0/1) mask of a given shape; return it as bool."""
    mask = np.asarray(values)
    if mask.shape != shape:
        raise DataError(f"{name} has shape {mask.shape} but the confidences have shape {shape}; "
                        "pass one flag per (model, example).")
    if mask.dtype != np.bool_ and not np.all(np.isin(mask, (0, 1))):
        raise DataError(f"{name} must be a boolean mask (or 0/1); map it with == 1.")
    return mask.astype(bool)


def _confidences(values: ArrayLike, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """Check confidences for rank, emptiness and finiteness; return float64."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise DataError(f"{name} must be {expected} (models x examples), got shape {array.shape}.")
    if array.size == 0:
        raise DataError(f"{name} is empty (shape {array.shape}); pass at least one model and one example.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains NaN or infinite values; compute them from logits with "
                        "unlearnkit.metrics.logit_scaled_confidence, which stays finite.")
    return array


def _fit_gaussians(
    confidences: np.ndarray, mask: np.ndarray, side: str, global_variance: bool, caller: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and standard deviation of ``confidences[mask[:, j], j]`` for every example ``j``.

    Per-example: the sample standard deviation (``ddof=1``). Global: one standard deviation for all
    examples, pooled from the deviations around each example's own mean
    (``sum (c - mean_j)^2 / sum (n_j - 1)``); means stay per example.
    """
    counts = mask.sum(axis=0)
    need = 1 if global_variance else 2
    short = np.flatnonzero(counts < need)
    if short.size:
        j = int(short[0])
        fix = ("train more shadow models" if global_variance else
               "train more shadow models or pass global_variance=True, which needs only 1")
        raise DataError(f"{caller}: example {j} has {int(counts[j])} '{side}' shadow confidence(s) but at least "
                        f"{need} are needed ({short.size} example(s) short); {fix}.")
    mean = np.where(mask, confidences, 0.0).sum(axis=0) / counts
    squares = np.where(mask, (confidences - mean) ** 2, 0.0).sum(axis=0)
    if global_variance:
        dof = int(np.sum(counts - 1))
        if dof < 1:
            raise DataError(f"{caller}: a global '{side}' variance needs some example with at least 2 '{side}' "
                            "shadow confidences; train more shadow models.")
        variance = np.full(mean.shape, squares.sum() / dof)
    else:
        variance = squares / (counts - 1)
    return mean, np.maximum(np.sqrt(variance), LIRA_MIN_STD)


def _gaussian_logpdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2.0 * math.pi)


def _lira_core(
    shadow: np.ndarray,
    in_mask: np.ndarray,
    out_mask: np.ndarray,
    targets: np.ndarray,
    *,
    online: bool,
    global_variance: bool,
    caller: str,
) -> np.ndarray:
    """Log likelihood-ratio scores of ``targets`` (``(..., n_examples)``) under per-example Gaussians."""
    mean_out, std_out = _fit_gaussians(shadow, out_mask, "out", global_variance, caller)
    if not online:
        return log_ndtr((targets - mean_out) / std_out)
    mean_in, std_in = _fit_gaussians(shadow, in_mask, "in", global_variance, caller)
    return _gaussian_logpdf(targets, mean_in, std_in) - _gaussian_logpdf(targets, mean_out, std_out)


def _shadow_and_targets(
    shadow_confidences: ArrayLike, target_confidences: ArrayLike, caller: str, target_ndims: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    shadow = _confidences(shadow_confidences, f"{caller}: shadow_confidences", (2,))
    targets = _confidences(target_confidences, f"{caller}: target_confidences", target_ndims)
    if targets.shape[-1] != shadow.shape[1]:
        raise DataError(f"{caller}: target_confidences have {targets.shape[-1]} examples but shadow_confidences "
                        f"have {shadow.shape[1]}; score the same examples, in the same order.")
    return shadow, targets


def lira_scores(
    shadow_confidences: ArrayLike,
    shadow_in: ArrayLike,
    target_confidences: ArrayLike,
    *,
    online: bool = True,
    global_variance: bool = False,
) -> np.ndarray:
    """Per-example membership scores of the Likelihood Ratio Attack (LiRA).

    Carlini, Chien, Nasr, Song, Terzis, Tramer, "Membership Inference Attacks From First
    Principles", IEEE S&P 2022. For every example ``j``, the logit-scaled confidences
    (``unlearnkit.metrics.logit_scaled_confidence``) of the shadow models that trained on it ("in") and of those
    that did not ("out") are each fit by a Gaussian; a target model's confidence ``c`` is scored by

    - online (both distributions): ``log N(c; mu_in, sd_in) - log N(c; mu_out, sd_out)``, the log
      likelihood ratio of the paper's Algorithm 1;
    - offline (out only, for when no shadow model may train on the targets): the one-sided test
      ``log Pr[Z < c]`` with ``Z ~ N(mu_out, sd_out)``, the log of the paper's
      ``1 - Pr[Z > c]``. The log keeps confident members apart where the probability rounds to 1.

    Higher = more likely a member in both modes. Means are per-example sample means (the paper's
    mu; its reference code uses medians); standard deviations are per-example sample standard
    deviations (``ddof=1``), floored at ``LIRA_MIN_STD``. ``global_variance=True`` is the paper's
    option for few shadow models: one "in" and one "out" standard deviation shared by all
    examples, pooled from the deviations around each example's own mean (the reference code instead
    takes the spread of all "in" confidences together, across examples, for both sides).

    Args:
        shadow_confidences: ``(n_shadow, n_examples)`` logit-scaled confidences of the shadow models.
        shadow_in: Boolean mask of the same shape, True where the shadow model trained on the example.
        target_confidences: ``(n_examples,)`` for one target model, or ``(n_targets, n_examples)``.
        online: Use both "in" and "out" Gaussians (True) or only "out" (False).
        global_variance: Share one standard deviation per side across examples.

    Returns:
        Float64 scores with the shape of ``target_confidences``. Feed them with the true membership
        to :func:`lira_report`.

    Raises:
        DataError: Bad shapes or masks, non-finite confidences, or an example with too few shadow
            confidences on a side the mode uses: per-example variance needs 2 "in" and 2 "out"
            (online) or 2 "out" (offline); global variance needs 1 per example, and 2 for at least
            one example so that a spread around the example's mean exists.

    Example:
        >>> shadow = [[3.0, -1.0], [3.2, -0.8], [-1.0, 3.0], [-1.2, 2.8]]
        >>> keep = [[True, False], [True, False], [False, True], [False, True]]
        >>> bool(lira_scores(shadow, keep, [3.1, -1.1])[0] > 0)
        True
    """
    shadow, targets = _shadow_and_targets(shadow_confidences, target_confidences, "lira_scores", (1, 2))
    in_mask = _mask(shadow_in, "lira_scores: shadow_in", shadow.shape)
    return _lira_core(shadow, in_mask, ~in_mask, targets, online=online, global_variance=global_variance,
                      caller="lira_scores")


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not results
class ULiraResult:
    """Outcome of :func:`u_lira`.

    Attributes:
        scores: ``(n_targets, n_examples)`` log likelihood ratios, higher = more likely *unlearned*
            (rather than retrained); NaN where the pair was not evaluated. Read-only.
        report: AUC and TPR at 1% / 0.1% FPR over the evaluated pairs, "unlearned" as the positive
            class. An AUC near 0.5 means unlearned models look like retrained ones.
        accuracy: Balanced accuracy of the likelihood-ratio decision "unlearned when score > 0"
            (the Bayes rule for equal priors) over the evaluated pairs; 0.5 is the ideal.
        example_accuracy: ``(n_examples,)`` share of correct decisions per example over the target
            models that evaluated it (NaN where none did): which examples stay exposed. Read-only.
    """

    scores: np.ndarray
    report: AttackReport
    accuracy: float
    example_accuracy: np.ndarray


def u_lira(
    shadow_confidences: ArrayLike,
    shadow_unlearned: ArrayLike,
    shadow_retrained: ArrayLike,
    target_confidences: ArrayLike,
    target_unlearned: ArrayLike,
    *,
    target_evaluated: ArrayLike | None = None,
    global_variance: bool = False,
) -> ULiraResult:
    """U-LiRA: can a per-example likelihood-ratio test tell an unlearned model from a retrained one?

    Hayes, Shumailov, Triantafillou, Khalifa, Papernot, "Inexact Unlearning Needs More Careful
    Evaluations to Avoid a False Sense of Privacy", 2024 (SaTML 2025). The LiRA test of
    :func:`lira_scores` (online), with the two hypotheses of unlearning instead of training:

    - "in": shadow models that trained on the example and then *unlearned* it with the method under
      test (``shadow_unlearned``);
    - "out": shadow models *retrained* without it, the exact-unlearning gold standard
      (``shadow_retrained``).

    A shadow model may be neither for a given example (it trained on it and kept it, say); such pairs
    are simply unused. Each target model likewise either unlearned an example (``target_unlearned``
    True) or was retrained without it (False); ``target_evaluated`` drops pairs that are neither.
    A perfect unlearning method leaves the two hypotheses indistinguishable: AUC and accuracy 0.5.

    Args:
        shadow_confidences: ``(n_shadow, n_examples)`` logit-scaled confidences
            (``unlearnkit.metrics.logit_scaled_confidence``) of the shadow models.
        shadow_unlearned: Boolean mask of that shape: the shadow model unlearned the example.
        shadow_retrained: Boolean mask of that shape: the shadow model was retrained without the
            example. Must not overlap ``shadow_unlearned``.
        target_confidences: ``(n_targets, n_examples)`` (or ``(n_examples,)`` for one target).
        target_unlearned: Boolean mask of that shape: True where the target unlearned the example,
            False where it was retrained without it.
        target_evaluated: Optional boolean mask of that shape selecting the pairs to score; all by default.
        global_variance: Share one standard deviation per side across examples (few shadow models).

    Returns:
        A :class:`ULiraResult`.

    Raises:
        DataError: Bad shapes or masks, overlapping shadow masks, non-finite confidences, too few
            shadow confidences for an example (see :func:`lira_scores`), or evaluated pairs that
            hold only unlearned or only retrained targets.
    """
    caller = "u_lira"
    shadow, targets = _shadow_and_targets(shadow_confidences, target_confidences, caller, (1, 2))
    targets = np.atleast_2d(targets)
    unlearned = _mask(shadow_unlearned, f"{caller}: shadow_unlearned", shadow.shape)
    retrained = _mask(shadow_retrained, f"{caller}: shadow_retrained", shadow.shape)
    both = np.argwhere(unlearned & retrained)
    if both.size:
        i, j = (int(v) for v in both[0])
        raise DataError(f"{caller}: shadow model {i} is marked both unlearned and retrained for example {j}; "
                        "a model either trained on an example and unlearned it, or never saw it.")
    labels = _mask(np.atleast_2d(np.asarray(target_unlearned)), f"{caller}: target_unlearned", targets.shape)
    evaluated = (np.ones(targets.shape, bool) if target_evaluated is None else
                 _mask(np.atleast_2d(np.asarray(target_evaluated)), f"{caller}: target_evaluated", targets.shape))
    if not evaluated.any():
        raise DataError(f"{caller}: target_evaluated selects no pair; mark the (target, example) pairs to score.")
    scores = _lira_core(shadow, unlearned, retrained, targets, online=True, global_variance=global_variance,
                        caller=caller)
    scores = np.where(evaluated, scores, np.nan)
    picked_scores, picked_labels = scores[evaluated], labels[evaluated]
    if picked_labels.all() or not picked_labels.any():
        raise DataError(f"{caller}: the evaluated targets are all {'unlearned' if picked_labels.all() else 'retrained'}"
                        "; score both unlearned and retrained target models.")
    correct = (scores > 0) == labels
    decided = picked_scores > 0
    accuracy = 0.5 * (np.mean(decided[picked_labels]) + np.mean(~decided[~picked_labels]))
    counts = evaluated.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        example_accuracy = np.where(counts > 0, (correct & evaluated).sum(axis=0) / counts, np.nan)
    scores.setflags(write=False)
    example_accuracy.setflags(write=False)
    return ULiraResult(
        scores=scores,
        report=_report(picked_scores, picked_labels),
        accuracy=float(accuracy),
        example_accuracy=example_accuracy,
    )
