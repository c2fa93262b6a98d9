"""Metrics of a poisoning attack and of its removal (numpy in, float out).

- :func:`attack_success_rate`: of the *triggered* test inputs (test samples not of the target class, with the
  trigger stamped on), the share the model classifies as the attacker's target class. A clean model scores near
  the share of non-target inputs it confuses with the target class anyway; a backdoored one near 1.
- :func:`corrected_accuracy`: accuracy on the same triggered inputs against their true labels.
- :func:`class_pair_accuracy`: accuracy on the test samples of two classes (the label-flip attack's pair).

    >>> attack_success_rate([0, 0, 3, 0], target=0)
    0.75
    >>> corrected_accuracy([0, 1, 3, 2], [1, 1, 3, 2])
    0.75
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import DataError


def _ints(values, what: str) -> np.ndarray:
    out = np.asarray(values)
    if out.ndim != 1:
        raise DataError(f"{what} must be one label per sample (1-D), got shape {out.shape}")
    return out.astype(np.int64)


def attack_success_rate(predictions, target: int) -> float:
    """Share of ``predictions`` (on triggered non-target-class inputs) equal to the attack's ``target`` label."""
    pred = _ints(predictions, "predictions")
    if len(pred) == 0:
        raise DataError("no triggered inputs to measure the attack on (every test sample is of the target class?)")
    return float(np.mean(pred == int(target)))


def corrected_accuracy(predictions, labels) -> float:
    """Accuracy of ``predictions`` on triggered inputs against their true ``labels``."""
    pred, true = _ints(predictions, "predictions"), _ints(labels, "labels")
    if len(pred) != len(true) or len(pred) == 0:
        raise DataError(f"predictions and labels must be non-empty and aligned, got {len(pred)} and {len(true)}")
    return float(np.mean(pred == true))


def class_pair_accuracy(predictions, labels, classes: tuple[int, int]) -> float:
    """Accuracy on the samples whose true label is one of ``classes``."""
    pred, true = _ints(predictions, "predictions"), _ints(labels, "labels")
    keep = np.isin(true, list(classes))
    if not keep.any():
        raise DataError(f"no test sample of classes {classes}")
    return float(np.mean(pred[keep] == true[keep]))
