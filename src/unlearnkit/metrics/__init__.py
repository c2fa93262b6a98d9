"""Pure metric functions (numpy in, float or numpy out) and the metadata reports use to rank them.

``METRICS`` maps a metric name to its :class:`MetricInfo`: which direction is better, the unit,
and whether it needs the retrained reference model. ``higher_is_better=None`` marks metrics where
neither direction is better on its own: what counts is closeness to the retrained model (e.g. a
forget accuracy far below the retrained model's is as telling as one far above it).

``FAIRNESS_METRICS`` holds the same metadata for the attribute- and bias-removal metrics of
:mod:`unlearnkit.metrics.fairness`. They are kept apart from ``METRICS`` because they need what a
forget split does not carry (attribute values, counterfactual inputs, features), and ``METRICS`` is the
table ``evaluation.Report.not_computed`` walks: every name in it that a report lacks is listed there as
needing the reference or the original model.
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.metrics.accuracy import accuracy
from unlearnkit.metrics.distance import weight_distance, weight_distance_per_tensor
from unlearnkit.metrics.divergence import (
    activation_distance,
    activation_distance_per_sample,
    js_divergence,
    js_divergence_per_sample,
    kl_divergence,
    kl_divergence_per_sample,
    softmax,
    zrf_score,
)
from unlearnkit.metrics.fairness import (
    AttributeLeakage,
    attribute_leakage,
    bias_aligned_accuracy,
    bias_conflicting_accuracy,
    counterfactual_flip_rate,
    demographic_parity_difference,
    equalized_odds_difference,
    group_accuracies,
    unbiased_accuracy,
    worst_group_accuracy,
)
from unlearnkit.metrics.forget_quality import ForgetQuality, forget_quality, logit_scaled_confidence, neurips_score
from unlearnkit.metrics.lira import ULiraResult, lira_report, lira_scores, u_lira
from unlearnkit.metrics.mia import (
    AttackReport,
    PopulationAttackResult,
    mia_auc,
    mia_efficacy,
    population_attack,
    roc_curve_points,
    tpr_at_fpr,
)


@dataclass(frozen=True)
class MetricInfo:
    """What a report needs to know about one metric.

    Attributes:
        name: The key in ``METRICS`` and in reports.
        higher_is_better: True or False for a fixed direction; None when closeness to the
            retrained model is what matters.
        unit: What the number measures, e.g. ``"fraction"`` or ``"bits"``.
        needs_reference: Whether computing it needs the model retrained without the forget set.
        description: One sentence for report legends.
        needs_original: Whether computing it needs the model before unlearning.
    """

    name: str
    higher_is_better: bool | None
    unit: str
    needs_reference: bool
    description: str
    needs_original: bool = False


_INFOS = (
    MetricInfo(
        name="forget_accuracy", higher_is_better=None, unit="fraction", needs_reference=False,
        description="Accuracy on the forget set; the target is the retrained model's value, not 0.",
    ),
    MetricInfo(
        name="retain_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Accuracy on the retained training data: utility kept on what the model may still use.",
    ),
    MetricInfo(
        name="test_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Accuracy on held-out test data: generalisation kept after unlearning.",
    ),
    MetricInfo(
        name="mia_auc", higher_is_better=None, unit="auc", needs_reference=False,
        description="Cross-validated AUC of a loss attack telling forget (members) from test samples; "
        "0.5 = indistinguishable.",
    ),
    MetricInfo(
        name="mia_efficacy", higher_is_better=None, unit="fraction", needs_reference=False,
        description="Share of forget samples a retain-vs-test loss attack calls non-members; "
        "the target is the retrained model's value.",
    ),
    MetricInfo(
        name="mia_population", higher_is_better=None, unit="fraction", needs_reference=False,
        description="Share of forget samples a loss-threshold attack (calibrated on retain vs test) calls "
        "members; the target is the retrained model's value.",
    ),
    MetricInfo(
        name="zrf", higher_is_better=None, unit="score", needs_reference=False,
        description="1 - mean JS divergence (bits) to a randomly initialised copy's predictions on the forget "
        "set (Chundawat et al., AAAI 2023); the target is the retrained model's value.",
    ),
    MetricInfo(
        name="js_divergence", higher_is_better=False, unit="bits", needs_reference=True,
        description="Mean Jensen-Shannon divergence between the unlearned and the retrained model's "
        "predictions on the forget set.",
    ),
    MetricInfo(
        name="kl_divergence", higher_is_better=False, unit="nats", needs_reference=True,
        description="Mean KL divergence from the retrained model's predictions to this model's on the forget set.",
    ),
    MetricInfo(
        name="activation_distance", higher_is_better=False, unit="L2", needs_reference=True,
        description="Mean L2 distance between the two models' output probabilities on the forget set "
        "(Chundawat et al., AAAI 2023).",
    ),
    MetricInfo(
        name="weight_distance", higher_is_better=False, unit="L2", needs_reference=True,
        description="L2 distance between this model's parameters and the retrained model's.",
    ),
    MetricInfo(
        name="weight_distance_original", higher_is_better=None, unit="L2", needs_reference=False,
        needs_original=True,
        description="L2 distance between this model's parameters and the original's: how far unlearning moved it.",
    ),
    MetricInfo(
        name="relearn_steps", higher_is_better=None, unit="steps", needs_reference=False, needs_original=True,
        description="Fine-tuning steps on the forget set until forget accuracy is back at the original's; a "
        "model that only hid the data relearns in far fewer steps than a retrained one.",
    ),
    MetricInfo(
        name="gap.average", higher_is_better=False, unit="fraction", needs_reference=True,
        description="Mean absolute gap to the retrained model over forget, retain and test accuracy "
        "and MIA efficacy.",
    ),
    MetricInfo(
        name="neurips.forget_quality", higher_is_better=True, unit="score", needs_reference=True,
        description="The NeurIPS-2023 forgetting quality F of N unlearned vs N retrained models (bench metric "
        "`neurips`); two retrained populations score about 0.15-0.2, the estimator's ceiling.",
    ),
    MetricInfo(
        name="neurips.score", higher_is_better=True, unit="score", needs_reference=True,
        description="The challenge's final score: F x retain-accuracy ratio x test-accuracy ratio.",
    ),
    MetricInfo(
        name="speedup", higher_is_better=True, unit="x", needs_reference=True,
        description="Retraining seconds over the method's seconds on the same split.",
    ),
)
METRICS: dict[str, MetricInfo] = {info.name: info for info in _INFOS}

_FAIRNESS_INFOS = (
    MetricInfo(
        name="unbiased_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Accuracy on a test set whose attribute is independent of the label.",
    ),
    MetricInfo(
        name="bias_aligned_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Accuracy on the samples whose attribute agrees with the bias the training set taught.",
    ),
    MetricInfo(
        name="bias_conflicting_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Accuracy on the samples whose attribute contradicts the training set's bias: "
        "low when the model uses the attribute as a shortcut.",
    ),
    MetricInfo(
        name="worst_group_accuracy", higher_is_better=True, unit="fraction", needs_reference=False,
        description="Lowest accuracy over the (label, attribute) groups present.",
    ),
    MetricInfo(
        name="attribute_leakage", higher_is_better=False, unit="balanced accuracy", needs_reference=False,
        description="Balanced accuracy of a logistic-regression probe predicting the attribute from features; "
        "compare with its chance level 1/k.",
    ),
    MetricInfo(
        name="counterfactual_flip_rate", higher_is_better=False, unit="fraction", needs_reference=False,
        description="Share of predictions that change when only the attribute of the input changes.",
    ),
    MetricInfo(
        name="demographic_parity_difference", higher_is_better=False, unit="rate difference",
        needs_reference=False,
        description="Largest gap between attribute groups in how often a class is predicted (fairlearn; "
        "one-vs-rest maximum for multiclass).",
    ),
    MetricInfo(
        name="equalized_odds_difference", higher_is_better=False, unit="rate difference", needs_reference=False,
        description="Largest gap between attribute groups in true- or false-positive rate (fairlearn; "
        "one-vs-rest maximum for multiclass).",
    ),
)
FAIRNESS_METRICS: dict[str, MetricInfo] = {info.name: info for info in _FAIRNESS_INFOS}

__all__ = [
    "FAIRNESS_METRICS",
    "METRICS",
    "AttackReport",
    "AttributeLeakage",
    "ForgetQuality",
    "MetricInfo",
    "PopulationAttackResult",
    "ULiraResult",
    "accuracy",
    "activation_distance",
    "activation_distance_per_sample",
    "attribute_leakage",
    "bias_aligned_accuracy",
    "bias_conflicting_accuracy",
    "counterfactual_flip_rate",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "forget_quality",
    "group_accuracies",
    "js_divergence",
    "js_divergence_per_sample",
    "kl_divergence",
    "kl_divergence_per_sample",
    "lira_report",
    "lira_scores",
    "logit_scaled_confidence",
    "mia_auc",
    "mia_efficacy",
    "neurips_score",
    "population_attack",
    "roc_curve_points",
    "softmax",
    "tpr_at_fpr",
    "u_lira",
    "unbiased_accuracy",
    "weight_distance",
    "weight_distance_per_tensor",
    "worst_group_accuracy",
    "zrf_score",
]
