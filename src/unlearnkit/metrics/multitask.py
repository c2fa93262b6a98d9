"""The Unlearning Impact Score (UIS) of a multi-task unlearning run: lower is better, 0 is no impact beyond the
forgetting itself.

One task (OrthoGrad's score, Shamsian et al., arXiv 2503.02312). With ``O`` the original model, ``U`` the unlearned
one, ``t`` the test set and ``u`` the forget set:

* random (or subject) forgetting: ``UIS = mean(|O_t - U_t| / O_t, |O_t - U_u| / O_t)``: test accuracy kept, and the
  forget samples brought to the accuracy of unseen data (which is what a retrained model shows on them);
* class forgetting: ``UIS = mean(|O_t - U_t| / O_t, |U_u| / O_t)``: the forget accuracy driven to 0. Here ``O_t`` and
  ``U_t`` are accuracies on the test samples of the classes kept, since the forgotten class's test accuracy is
  meant to fall with it.

Many tasks (our extension; the multi-task paper, Huang et al., arXiv 2605.19042, reports a UIS without the formula
we could check). Each task in the deletion's scope gets its one-task score, by the rule that fits its forgotten
labels (class forgetting when no remaining label of that task has their classes, random otherwise). The tasks out
of scope (partial-task forgetting only) give the *task interference* ``|O_u^k - U_u^k| / O_u^k``: how far the
accuracy of task ``k`` on the forget samples moved, which should not move at all. Then

    UIS = mean over scoped tasks of UIS_task  +  mean over out-of-scope tasks of interference_k

(the second term is 0 in full-task forgetting). :func:`unlearning_impact` returns the total and every component.

    >>> acc = {"left": {"test": 0.90, "forget": 1.00}, "same": {"test": 0.95, "forget": 1.00}}
    >>> after = {"left": {"test": 0.88, "forget": 0.90}, "same": {"test": 0.95, "forget": 0.98}}
    >>> score, parts = unlearning_impact(acc, after, scope=["left"], classes={"left": False})
    >>> round(score, 4), round(parts["left.test_change"], 4), round(parts["interference.same"], 4)
    (0.0311, 0.0222, 0.02)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _ratio(numerator: float, denominator: float) -> float:
    return abs(numerator) / denominator if denominator > 0 else float("nan")


def task_impact(original_test: float, unlearned_test: float, unlearned_forget: float, *, classes: bool
                ) -> tuple[float, float, float]:
    """OrthoGrad's one-task score: ``(uis, test_change, forget_term)``; see the module docstring."""
    test_change = _ratio(original_test - unlearned_test, original_test)
    forget_term = _ratio(unlearned_forget, original_test) if classes else \
        _ratio(original_test - unlearned_forget, original_test)
    return (test_change + forget_term) / 2, test_change, forget_term


def unlearning_impact(original: Mapping[str, Mapping[str, float]], unlearned: Mapping[str, Mapping[str, float]],
                      scope: Sequence[str], classes: Mapping[str, bool]) -> tuple[float, dict[str, float]]:
    """The multi-task UIS and its components.

    Args:
        original, unlearned: per task, ``{"test": accuracy, "forget": accuracy on the forget samples}`` of the
            original and the unlearned model. For a class-forgotten task, ``test`` is the accuracy on the test
            samples of the classes kept.
        scope: the tasks the samples were forgotten for; every other task of ``original`` is out of scope.
        classes: per scoped task, whether its forgotten labels are whole classes (the class rule applies).

    Returns:
        ``(uis, components)`` with, per scoped task ``T``, ``T.uis``, ``T.test_change`` and ``T.forget_term``; per
        out-of-scope task ``K``, ``interference.K``; and ``scoped`` (the mean of the scoped tasks' scores) and
        ``interference`` (the mean of the interference terms, 0 without any).
    """
    if not scope:
        raise ValueError("the scope needs at least one task")
    unknown = [t for t in scope if t not in original or t not in unlearned]
    if unknown:
        raise ValueError(f"no accuracies for scoped task(s) {unknown}")
    parts: dict[str, float] = {}
    scores = []
    for t in scope:
        uis, test_change, forget_term = task_impact(original[t]["test"], unlearned[t]["test"], unlearned[t]["forget"],
                                                    classes=bool(classes.get(t, False)))
        parts[f"{t}.uis"], parts[f"{t}.test_change"], parts[f"{t}.forget_term"] = uis, test_change, forget_term
        scores.append(uis)
    interference = []
    for k in (k for k in original if k not in scope):
        value = _ratio(original[k]["forget"] - unlearned[k]["forget"], original[k]["forget"])
        parts[f"interference.{k}"] = value
        interference.append(value)
    parts["scoped"] = sum(scores) / len(scores)
    parts["interference"] = sum(interference) / len(interference) if interference else 0.0
    total = parts["scoped"] + parts["interference"]
    return (total if math.isfinite(total) else float("nan")), parts
