"""evaluate() and Report: values checked against independent computations (scikit-learn, SciPy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score, log_loss

from tests.conftest import DIGITS_RECIPE
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import BASE_METRICS, GAP_METRICS, evaluate
from unlearnkit.metrics import mia_auc, mia_efficacy
from unlearnkit.train import predict_logits
from unlearnkit.unlearning import unlearn


@pytest.fixture(scope="module")
def retrained(digits_model, class_split):
    return unlearn(digits_model, class_split, "retrain", train_config=DIGITS_RECIPE, progress=False).model


def _probs(model, data) -> np.ndarray:
    return torch.softmax(predict_logits(model, data).double(), 1).numpy()


def test_accuracies_match_sklearn(digits, digits_model, class_split):
    report = evaluate(digits_model, class_split, digits.test)
    for key, data in (("forget_accuracy", class_split.forget), ("retain_accuracy", class_split.retain),
                      ("test_accuracy", digits.test)):
        expected = accuracy_score(data.y.numpy(), _probs(digits_model, data).argmax(1))
        assert report.metrics[key] == pytest.approx(expected)


def test_per_sample_losses_match_sklearn_log_loss(digits, digits_model, class_split):
    report = evaluate(digits_model, class_split, digits.test)
    probs = _probs(digits_model, class_split.forget)
    y = class_split.forget.y.numpy()
    mean_expected = log_loss(y, probs, labels=list(range(10)))
    assert report.per_sample["forget_loss"].mean() == pytest.approx(mean_expected, rel=1e-6)
    assert report.per_sample["forget_ids"].tolist() == class_split.forget.ids.tolist()


def test_membership_figures_use_the_losses(digits, digits_model, class_split):
    report = evaluate(digits_model, class_split, digits.test, seed=3)

    def losses(data):
        p = _probs(digits_model, data)
        return -np.log(p[np.arange(len(p)), data.y.numpy()])

    assert report.metrics["mia_auc"] == pytest.approx(mia_auc(losses(class_split.forget), losses(digits.test), seed=3),
                                                      abs=1e-6)
    expected = mia_efficacy(losses(class_split.retain), losses(digits.test), losses(class_split.forget), seed=3)
    assert report.metrics["mia_efficacy"] == pytest.approx(expected, abs=1e-6)


def test_reference_gap_and_js(digits, digits_model, class_split, retrained):
    report = evaluate(digits_model, class_split, digits.test, retrained)
    ref = evaluate(retrained, class_split, digits.test)
    for key in BASE_METRICS:
        assert report.reference.metrics[key] == pytest.approx(ref.metrics[key])
        assert report.gap[key] == pytest.approx(abs(report.metrics[key] - ref.metrics[key]))
    assert report.gap["average"] == pytest.approx(np.mean([report.gap[k] for k in GAP_METRICS]))
    p, q = _probs(digits_model, class_split.forget), _probs(retrained, class_split.forget)
    expected = np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p, q, strict=True)])
    assert report.js_divergence == pytest.approx(expected, abs=1e-9)
    # the original still recognises class 3 and the retrained model does not: a large gap
    assert report.gap["forget_accuracy"] > 0.8 and report.js_divergence > 0.5


def test_reference_against_itself_has_zero_gap(digits, class_split, retrained):
    report = evaluate(retrained, class_split, digits.test, retrained)
    assert report.gap["average"] == 0.0
    assert report.js_divergence == pytest.approx(0.0, abs=1e-12)


def test_reference_report_reused(digits, digits_model, class_split, retrained):
    ref_report = evaluate(retrained, class_split, digits.test)
    a = evaluate(digits_model, class_split, digits.test, ref_report).to_json()
    b = evaluate(digits_model, class_split, digits.test, retrained).to_json()
    assert b["comparison"].pop("weight_distance") > 0  # needs the reference's weights, not only its report
    assert a == b


def test_json_and_markdown(digits, digits_model, class_split, retrained):
    plain = evaluate(digits_model, class_split, digits.test).to_json()
    assert list(plain) == list(BASE_METRICS)
    full = evaluate(digits_model, class_split, digits.test, retrained)
    data = json.loads(full.dumps())
    assert set(data) == {*BASE_METRICS, "reference", "gap", "js_divergence", "comparison"}
    assert set(data["comparison"]) == {"kl_divergence", "activation_distance", "weight_distance"}
    assert set(data["gap"]) == {*BASE_METRICS, "average"}
    assert full["gap.average"] == full.gap["average"] and full["js_divergence"] == full.js_divergence
    per_sample = full.to_json(per_sample=True)["per_sample"]
    assert len(per_sample["forget_js"]) == len(class_split.forget)
    assert "forget_probs" not in per_sample  # matrices stay out of the JSON
    md = full.to_markdown()
    assert md.startswith("| metric |") and "gap.average" in md and "js_divergence" in md
    assert full.had_reference and "js_divergence" in full.needs_reference()


def test_reference_free_extras_zrf_and_population_attack(digits, digits_model, class_split, retrained):
    report = evaluate(digits_model, class_split, digits.test, retrained)
    for key in ("zrf", "mia_population"):
        assert 0.0 <= report.metrics[key] <= 1.0
        assert report.gap[key] == pytest.approx(abs(report.metrics[key] - report.reference.metrics[key]))
    # the original still knows class 3: its forget samples look like members, the retrained model's do not
    assert report.metrics["mia_population"] > report.reference.metrics["mia_population"]
    # kl and activation distance are the means of their per-sample arrays, zero against itself
    assert report["kl_divergence"] == pytest.approx(report.per_sample["forget_kl"].mean())
    same = evaluate(retrained, class_split, digits.test, retrained)
    assert same["kl_divergence"] == pytest.approx(0.0, abs=1e-9)
    assert same["activation_distance"] == pytest.approx(0.0, abs=1e-9) and same["weight_distance"] == 0.0


def test_original_gives_weight_distance_and_relearn(digits, digits_model, class_split, retrained):
    report = evaluate(retrained, class_split, digits.test, original=digits_model, relearn=True, relearn_max_steps=100)
    assert report["weight_distance_original"] > 0
    assert report["relearn_steps"] >= 1  # the retrained model never knew class 3
    itself = evaluate(digits_model, class_split, digits.test, original=digits_model, relearn=True)
    assert itself["weight_distance_original"] == 0.0 and itself["relearn_steps"] == 0
    assert "relearn_steps" not in evaluate(digits_model, class_split, digits.test).comparison
    missing = evaluate(digits_model, class_split, digits.test).not_computed()
    assert missing["js_divergence"].startswith("a reference") and missing["weight_distance_original"] == (
        "the original model")
    with pytest.raises(ConfigError, match="relearn time needs the original model"):
        evaluate(digits_model, class_split, digits.test, relearn=True)
