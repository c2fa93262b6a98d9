"""Metrics for removing an attribute or a bias: group accuracies, attribute leakage, flip rate, parity gaps.

Pure functions on arrays: callers run the model and pass hard predictions (``logits.argmax(1)``), labels,
attribute values (e.g. the colour of a coloured-MNIST digit) or feature matrices; nothing here calls a model.

- :func:`unbiased_accuracy` — accuracy on a test set whose attribute is independent of the label.
- :func:`bias_aligned_accuracy`, :func:`bias_conflicting_accuracy` — accuracy on the samples whose
  attribute agrees (disagrees) with the bias the training set taught, given as a boolean mask.
- :func:`group_accuracies`, :func:`worst_group_accuracy` — accuracy per (label, attribute) group and its minimum.
- :func:`attribute_leakage` — balanced accuracy of a logistic-regression probe predicting the attribute
  from features, with the chance level to compare it with.
- :func:`counterfactual_flip_rate` — share of predictions that change when only the attribute changes.
- :func:`demographic_parity_difference`, :func:`equalized_odds_difference` — fairlearn's parity gaps, with
  a one-vs-rest reduction for multiclass tasks. These two need the ``fairness`` extra
  (``pip install 'unlearnkit[bias]'``); fairlearn is imported only when they are called.

Label and attribute arrays hold integer (or boolean) values; attributes may also be strings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unlearnkit.errors import ConfigError, DataError

# ---------------------------------------------------------------- input checks


def _labels(values: ArrayLike, name: str, n: int | None = None, *, strings: bool = False) -> np.ndarray:
    """Return ``values`` as a non-empty 1-D array of integer/boolean (or, with ``strings``, string) values,
    of length ``n`` when given."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-D array with one value per sample, got shape {array.shape}; "
                        "pass hard predictions (logits.argmax(1)) and class indices, not scores or one-hot rows.")
    if array.shape[0] == 0:
        raise DataError(f"{name} is empty; pass at least one sample.")
    kinds = "biuUS" if strings else "biu"
    if array.dtype.kind not in kinds:
        allowed = "integer, boolean or string" if strings else "integer or boolean"
        raise DataError(f"{name} must hold {allowed} values, got dtype {array.dtype}; "
                        "cast class indices with .astype(int).")
    if n is not None and array.shape[0] != n:
        raise DataError(f"{name} has {array.shape[0]} values but the predictions have {n}; "
                        "pass one value per sample, in the same order.")
    return array


def _mask(values: ArrayLike, name: str, n: int) -> np.ndarray:
    """Return ``values`` as a 1-D boolean mask of length ``n``."""
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype != np.bool_:
        raise DataError(f"{name} must be a 1-D boolean mask, got dtype {array.dtype} and shape {array.shape}; "
                        "build it with a comparison, e.g. aligned = attr == y for coloured data.")
    if array.shape[0] != n:
        raise DataError(f"{name} has {array.shape[0]} values but the predictions have {n}; "
                        "pass one value per sample, in the same order.")
    return array


def _features(values: ArrayLike, name: str) -> np.ndarray:
    """Return ``values`` as a non-empty 2-D finite float64 matrix of shape ``(n, d)``."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D matrix (samples, features), got shape {array.shape}; "
                        "flatten each sample's features, or reshape(-1, 1) a single feature.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {array.shape}); pass at least one sample and one feature.")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contains NaN or infinite values; check the model's activations.")
    return array


def _predictions_and_labels(pred: ArrayLike, y: ArrayLike, caller: str) -> tuple[np.ndarray, np.ndarray]:
    predicted = _labels(pred, f"{caller}: pred")
    return predicted, _labels(y, f"{caller}: y", predicted.shape[0])


# ---------------------------------------------------------------- accuracies


def unbiased_accuracy(pred: ArrayLike, y: ArrayLike) -> float:
    """Accuracy on a test set whose attribute is drawn independently of the label (an "unbiased" test set).

    This is plain accuracy: what makes it unbiased is the data, not the formula. Pass predictions on a test
    set where every label occurs with every attribute value at the same rate (coloured MNIST with a random
    colour per digit): a model that predicts from the attribute instead of the shape then scores near
    chance. On a test set with the training set's bias it measures something else (mostly the bias).

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.

    Returns:
        The fraction correct, in ``[0, 1]``.

    Raises:
        DataError: Empty input, mismatched lengths, non-integer values or arrays that are not 1-D.

    Example:
        >>> unbiased_accuracy([0, 1, 1, 2], [0, 1, 2, 2])
        0.75
    """
    predicted, expected = _predictions_and_labels(pred, y, "unbiased_accuracy")
    return float(np.mean(predicted == expected))


def _masked_accuracy(pred: ArrayLike, y: ArrayLike, mask: ArrayLike, caller: str, group: str) -> float:
    predicted, expected = _predictions_and_labels(pred, y, caller)
    chosen = _mask(mask, f"{caller}: aligned", predicted.shape[0])
    if group == "bias-conflicting":
        chosen = ~chosen
    if not chosen.any():
        flag = "True" if group == "bias-conflicting" else "False"
        raise DataError(f"{caller}: no {group} samples (aligned is {flag} everywhere), so the accuracy is "
                        "undefined; evaluate on a test set whose attribute varies independently of the label.")
    return float(np.mean(predicted[chosen] == expected[chosen]))


def bias_aligned_accuracy(pred: ArrayLike, y: ArrayLike, aligned: ArrayLike) -> float:
    """Accuracy on the bias-aligned samples: those whose attribute agrees with the bias the training set taught.

    ``aligned`` is a boolean mask rather than attribute values because what "agrees" means depends on the
    data: for coloured MNIST, where digit ``k`` was mostly coloured with colour ``k``, it is ``attr == y``;
    with a lookup table of the biased colour per class, ``attr == bias_colour[y]``. A model that learnt the
    shortcut scores high here and low on :func:`bias_conflicting_accuracy`.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.
        aligned: 1-D boolean mask, shape ``(n,)``: True for a bias-aligned sample.

    Returns:
        The fraction correct among the samples where ``aligned`` is True, in ``[0, 1]``.

    Raises:
        DataError: No aligned sample (the accuracy of an empty group is undefined, and a NaN would
            quietly poison a mean), a mask that is not boolean, or bad ``pred``/``y`` as in
            :func:`unbiased_accuracy`.

    Example:
        >>> y, attr = np.array([0, 1, 1, 2]), np.array([0, 1, 0, 1])
        >>> bias_aligned_accuracy([0, 1, 0, 2], y, aligned=attr == y)
        1.0
    """
    return _masked_accuracy(pred, y, aligned, "bias_aligned_accuracy", "bias-aligned")


def bias_conflicting_accuracy(pred: ArrayLike, y: ArrayLike, aligned: ArrayLike) -> float:
    """Accuracy on the bias-conflicting samples: those where the ``aligned`` mask is False.

    Takes the same mask as :func:`bias_aligned_accuracy` (True = aligned), so that one mask serves both
    and the two groups always partition the samples.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.
        aligned: 1-D boolean mask, shape ``(n,)``: True for a bias-aligned sample.

    Returns:
        The fraction correct among the samples where ``aligned`` is False, in ``[0, 1]``.

    Raises:
        DataError: No conflicting sample (``aligned`` all True), a mask that is not boolean, or bad
            ``pred``/``y`` as in :func:`unbiased_accuracy`.

    Example:
        >>> y, attr = np.array([0, 1, 1, 2]), np.array([0, 1, 0, 1])
        >>> bias_conflicting_accuracy([0, 1, 0, 2], y, aligned=attr == y)
        0.5
    """
    return _masked_accuracy(pred, y, aligned, "bias_conflicting_accuracy", "bias-conflicting")


def group_accuracies(pred: ArrayLike, y: ArrayLike, attr: ArrayLike) -> dict[tuple, float]:
    """Accuracy in every (label, attribute) group that has at least one sample.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.
        attr: 1-D attribute values (integers, booleans or strings), shape ``(n,)``.

    Returns:
        ``{(label, attribute): accuracy}`` with Python scalars as keys, sorted by label then attribute;
        only groups present in the data appear.

    Raises:
        DataError: Empty input, mismatched lengths, values of the wrong type, or arrays that are not 1-D.

    Example:
        >>> group_accuracies([0, 0, 1, 0], [0, 0, 1, 1], [5, 6, 5, 5])
        {(0, 5): 1.0, (0, 6): 1.0, (1, 5): 0.5}
    """
    predicted, expected = _predictions_and_labels(pred, y, "group_accuracies")
    groups = _labels(attr, "group_accuracies: attr", predicted.shape[0], strings=True)
    label_values, label_index = np.unique(expected, return_inverse=True)
    attr_values, attr_index = np.unique(groups, return_inverse=True)
    code = label_index * attr_values.shape[0] + attr_index  # one integer per (label, attribute) pair, label-major
    cells = label_values.shape[0] * attr_values.shape[0]
    sizes = np.bincount(code, minlength=cells)
    hits = np.bincount(code, weights=(predicted == expected).astype(np.float64), minlength=cells)
    out = {}
    for cell in np.flatnonzero(sizes):
        i, j = divmod(int(cell), attr_values.shape[0])
        out[(label_values[i].item(), attr_values[j].item())] = float(hits[cell] / sizes[cell])
    return out


def worst_group_accuracy(pred: ArrayLike, y: ArrayLike, attr: ArrayLike) -> float:
    """The lowest accuracy over the (label, attribute) groups present: the minimum of :func:`group_accuracies`.

    A model that relies on the attribute fails on the groups where the attribute points to another label,
    and this is where it shows, while the average over groups can stay high. Every present group counts,
    however small: a group with a single sample can set the value, so check the group sizes on small data.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.
        attr: 1-D attribute values (integers, booleans or strings), shape ``(n,)``.

    Returns:
        The minimum group accuracy, in ``[0, 1]``.

    Raises:
        DataError: As in :func:`group_accuracies`.

    Example:
        >>> worst_group_accuracy([0, 0, 1, 0], [0, 0, 1, 1], [5, 6, 5, 5])
        0.5
    """
    return min(group_accuracies(pred, y, attr).values())


# ---------------------------------------------------------------- attribute leakage


@dataclass(frozen=True)
class AttributeLeakage:
    """Outcome of :func:`attribute_leakage`.

    Attributes:
        leakage: Balanced accuracy of the probe on the scoring part, in ``[0, 1]``.
        chance: Balanced accuracy of always predicting one class, ``1 / k`` for the ``k`` attribute
            values present in the scoring part: a leakage at this level means the features do not
            reveal the attribute (to a linear probe).
    """

    leakage: float
    chance: float


def _balanced_accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over the classes present in ``true`` of the recall of that class (classes only predicted are
    ignored), as ``sklearn.metrics.balanced_accuracy_score``."""
    return float(np.mean([np.mean(predicted[true == value] == value) for value in np.unique(true)]))


def attribute_leakage(
    train_features: ArrayLike,
    train_attr: ArrayLike,
    test_features: ArrayLike,
    test_attr: ArrayLike,
    *,
    seed: int = 0,
    max_iter: int = 1000,
) -> AttributeLeakage:
    """How well a linear probe recovers the attribute from features: low after the attribute was removed.

    A logistic regression on standardised features (``StandardScaler`` then ``LogisticRegression``,
    lbfgs, L2 with ``C=1``, ``random_state=seed``) is fit on the training part and scored by balanced
    accuracy on the test part, so that a frequent attribute value cannot inflate the score. Pass the two
    parts of one set of samples (e.g. the penultimate-layer activations of a held-out set split in two),
    not the training set the model saw alone. Compare ``leakage`` with ``chance``: the gap is what the
    features reveal. A linear probe is a lower bound on what a stronger attacker could recover.

    Args:
        train_features: 2-D finite features, shape ``(n_train, d)``, to fit the probe on.
        train_attr: 1-D attribute values of those samples; at least two distinct values.
        test_features: 2-D finite features, shape ``(n_test, d)``, to score the probe on.
        test_attr: 1-D attribute values of those samples; at least two distinct values. A value absent
            from ``train_attr`` cannot be predicted, and its recall of 0 counts in the mean.
        seed: Seed of the probe (lbfgs itself is deterministic; the seed is passed on for reproducibility).
        max_iter: lbfgs iterations; 1000 lets the standardised problem converge on typical activations
            (the scikit-learn default of 100 often does not).

    Returns:
        An :class:`AttributeLeakage` with the probe's balanced accuracy and the chance level.

    Raises:
        DataError: Features that are not 2-D or finite, mismatched lengths or widths, or an attribute with
            a single value in either part.
        ConfigError: ``max_iter`` below 1.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> attr = rng.integers(0, 2, size=200)
        >>> features = np.c_[attr + 0.1 * rng.normal(size=200), rng.normal(size=200)]
        >>> attribute_leakage(features[:100], attr[:100], features[100:], attr[100:])
        AttributeLeakage(leakage=1.0, chance=0.5)
    """
    if max_iter < 1:
        raise ConfigError(f"attribute_leakage: max_iter must be at least 1, got {max_iter}; use the default 1000.")
    x_train = _features(train_features, "attribute_leakage: train_features")
    x_test = _features(test_features, "attribute_leakage: test_features")
    a_train = _labels(train_attr, "attribute_leakage: train_attr", strings=True)
    a_test = _labels(test_attr, "attribute_leakage: test_attr", strings=True)
    for name, x, a in (("train", x_train, a_train), ("test", x_test, a_test)):
        if x.shape[0] != a.shape[0]:
            raise DataError(f"attribute_leakage: {x.shape[0]} {name}_features rows but {a.shape[0]} {name}_attr "
                            "values; pass one attribute value per row.")
        if np.unique(a).shape[0] < 2:
            raise DataError(f"attribute_leakage: {name}_attr holds a single value, so there is nothing to "
                            "predict; pass samples with at least two attribute values in each part.")
    if x_train.shape[1] != x_test.shape[1]:
        raise DataError(f"attribute_leakage: train_features have {x_train.shape[1]} columns but test_features "
                        f"{x_test.shape[1]}; take both from the same layer.")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(x_train, a_train)
    return AttributeLeakage(
        leakage=_balanced_accuracy(a_test, probe.predict(x_test)),
        chance=1.0 / np.unique(a_test).shape[0],
    )


# ---------------------------------------------------------------- counterfactual flips


def counterfactual_flip_rate(pred: ArrayLike, pred_counterfactual: ArrayLike) -> float:
    """Share of samples whose prediction changes when only the attribute changes.

    Pass the predictions on the original inputs and on counterfactual copies that differ only in the
    attribute (the same digit in another colour). With several counterfactual versions per sample, stack
    them as ``(k, n)``: a sample counts as flipped when *any* version's prediction differs from the
    original's, so the rate grows with ``k`` and only rates with the same ``k`` compare.

    Args:
        pred: 1-D predicted class indices on the original inputs, shape ``(n,)``.
        pred_counterfactual: Predicted class indices on the counterfactuals, shape ``(n,)`` for one
            version or ``(k, n)`` for ``k >= 1`` versions.

    Returns:
        The fraction of flipped samples, in ``[0, 1]``; 0 means the attribute never decides the prediction.

    Raises:
        DataError: Empty input, shapes that do not match, non-integer values, or no counterfactual version.

    Example:
        >>> counterfactual_flip_rate([0, 1, 2, 3], [[0, 1, 2, 0], [0, 2, 2, 3]])
        0.5
    """
    original = _labels(pred, "counterfactual_flip_rate: pred")
    given = np.asarray(pred_counterfactual)
    versions = given[None, :] if given.ndim == 1 else given
    n = original.shape[0]
    if versions.ndim != 2 or versions.shape[1] != n or versions.shape[0] == 0:
        raise DataError(f"counterfactual_flip_rate: pred_counterfactual must have shape ({n},) or (k, {n}) with "
                        f"k >= 1 to match pred, got {given.shape}; stack one row of predictions per "
                        "counterfactual version.")
    if versions.dtype.kind not in "biu":
        raise DataError(f"counterfactual_flip_rate: pred_counterfactual must hold integer class indices, got dtype "
                        f"{versions.dtype}; pass logits.argmax(1), cast with .astype(int).")
    return float(np.mean(np.any(versions != original[None, :], axis=0)))


# ---------------------------------------------------------------- parity gaps (fairlearn)


def _fairlearn_metrics(caller: str) -> ModuleType:
    try:
        import fairlearn.metrics
    except ImportError as exc:
        raise ConfigError(f"{caller} needs fairlearn: pip install 'unlearnkit[bias]' "
                          "(or pip install fairlearn)") from exc
    return fairlearn.metrics


def _groups(attr: ArrayLike, caller: str, n: int) -> np.ndarray:
    groups = _labels(attr, f"{caller}: attr", n, strings=True)
    if np.unique(groups).shape[0] < 2:
        raise DataError(f"{caller}: attr holds a single value, so there is no gap between groups to measure; "
                        "pass samples from at least two attribute groups.")
    return groups


def _is_binary(*arrays: np.ndarray) -> bool:
    """Whether every value is 0 or 1: the tasks fairlearn's binary metrics take as they are, 1 positive."""
    return all(np.isin(a, (0, 1)).all() for a in arrays)


def demographic_parity_difference(pred: ArrayLike, attr: ArrayLike, *, positive: int | None = None) -> float:
    """Largest gap between attribute groups in how often a class is predicted (fairlearn's definition).

    For one positive class the value is ``max_a P(pred = positive | attr = a) - min_a P(...)``, computed
    by ``fairlearn.metrics.demographic_parity_difference`` (between groups). Which class:

    - ``positive=c``: class ``c`` against all others (predictions are mapped to ``pred == c`` first).
    - ``positive=None`` and every prediction 0 or 1: fairlearn's binary metric as it is, with 1 positive.
    - ``positive=None`` otherwise (multiclass): one-vs-rest, the maximum over the predicted classes ``c``
      of the binary metric with ``c`` positive, each computed by fairlearn. Classes never predicted have a
      rate of 0 in every group and could not raise the maximum. For a binary task the one-vs-rest maximum
      equals the binary value (the rates of 0 are one minus the rates of 1), so both rules agree.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        attr: 1-D attribute values (integers, booleans or strings), shape ``(n,)``; at least two groups.
        positive: The class to treat as positive, or None for the rules above.

    Returns:
        The gap, in ``[0, 1]``; 0 means every group gets every class equally often.

    Raises:
        DataError: Bad arrays (as in :func:`group_accuracies`) or a single attribute group.
        ConfigError: fairlearn is not installed.

    Example:
        >>> demographic_parity_difference([1, 1, 0, 0], [0, 0, 1, 1])
        1.0
    """
    caller = "demographic_parity_difference"
    predicted = _labels(pred, f"{caller}: pred")
    groups = _groups(attr, caller, predicted.shape[0])
    metrics = _fairlearn_metrics(caller)

    def binary(outcome: np.ndarray) -> float:
        return float(metrics.demographic_parity_difference(outcome, outcome, sensitive_features=groups))

    if positive is not None:
        return binary((predicted == positive).astype(np.int64))
    if _is_binary(predicted):
        return binary(predicted)
    return max(binary((predicted == c).astype(np.int64)) for c in np.unique(predicted))


def equalized_odds_difference(pred: ArrayLike, y: ArrayLike, attr: ArrayLike, *, positive: int | None = None) -> float:
    """Largest gap between attribute groups in true- or false-positive rate (fairlearn's definition).

    For one positive class the value is the larger of the between-group ranges (max minus min) of
    ``P(pred = positive | y = positive, attr = a)`` (true-positive rate) and
    ``P(pred = positive | y != positive, attr = a)`` (false-positive rate), computed by
    ``fairlearn.metrics.equalized_odds_difference`` (worst case, between groups). Which class:

    - ``positive=c``: class ``c`` against all others (labels and predictions mapped to ``== c`` first).
    - ``positive=None`` and every label and prediction 0 or 1: fairlearn's binary metric as it is, 1 positive.
    - ``positive=None`` otherwise (multiclass): one-vs-rest, the maximum over the classes ``c`` present in
      ``y`` or ``pred`` of the binary metric with ``c`` positive, each computed by fairlearn. For a binary
      task this equals the binary value (swapping the positive class turns the TPR into 1 - FPR).

    fairlearn (through scikit-learn's normalised confusion matrix) gives a group without positives a
    true-positive rate of 0, and one without negatives a false-positive rate of 0. When some groups have
    positives (negatives) of a class and others have none, that 0 can set the gap, so a ``RuntimeWarning``
    names the class: evaluate on a test set where every group holds every class, or pass ``positive``.

    Args:
        pred: 1-D predicted class indices, shape ``(n,)``.
        y: 1-D true class indices, shape ``(n,)``.
        attr: 1-D attribute values (integers, booleans or strings), shape ``(n,)``; at least two groups.
        positive: The class to treat as positive, or None for the rules above.

    Returns:
        The gap, in ``[0, 1]``; 0 means every group has the same true- and false-positive rates.

    Raises:
        DataError: Bad arrays (as in :func:`group_accuracies`) or a single attribute group.
        ConfigError: fairlearn is not installed.

    Example:
        >>> equalized_odds_difference([1, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1])
        1.0
    """
    caller = "equalized_odds_difference"
    predicted, expected = _predictions_and_labels(pred, y, caller)
    groups = _groups(attr, caller, predicted.shape[0])
    metrics = _fairlearn_metrics(caller)
    group_values = np.unique(groups)

    def binary(truth: np.ndarray, outcome: np.ndarray, label: object) -> float:
        for kind, rate, has in (("of", "true-positive", truth == 1), ("outside", "false-positive", truth == 0)):
            present = [has[groups == g].any() for g in group_values]
            if any(present) and not all(present):
                sign = "positives" if kind == "of" else "negatives"
                warnings.warn(f"{caller}: some attribute groups have no samples {kind} class {label} ({sign}); "
                              f"fairlearn counts their {rate} rate as 0, which can set the gap",
                              RuntimeWarning, stacklevel=3)
        return float(metrics.equalized_odds_difference(truth, outcome, sensitive_features=groups))

    if positive is not None:
        return binary((expected == positive).astype(np.int64), (predicted == positive).astype(np.int64), positive)
    if _is_binary(predicted, expected):
        return binary(expected.astype(np.int64), predicted.astype(np.int64), 1)
    classes = np.union1d(expected, predicted)
    return max(binary((expected == c).astype(np.int64), (predicted == c).astype(np.int64), c.item())
               for c in classes)
