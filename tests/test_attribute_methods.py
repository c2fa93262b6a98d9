"""Attribute methods (kind "attribute"): the conformance checks sample methods pass, and each method's claim.

On colored-digits (rho 0.95: a digit has its class colour 95% of the time in training, a random colour in the
test split) the original mlp leans on colour. Each method must move the bias metrics of ``bias_report`` the right
way against that original: unbiased accuracy up and the counterfactual flip rate down.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_attribute_methods.py -q
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import same_state, state_copy
from unlearnkit import remove_attribute, unlearn
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import ConfigError, TrainingDivergedError
from unlearnkit.evaluation import BIAS_KEYS, bias_report
from unlearnkit.methods import METHODS, Budget, methods_of_kind
from unlearnkit.models import build_model, penultimate
from unlearnkit.models.architectures import ErasedLinear
from unlearnkit.train import default_recipe, fit

ATTRIBUTE_METHODS = sorted(methods_of_kind("attribute"))


@pytest.fixture(scope="module")
def biased():
    return load_dataset("colored-digits", data_options={"rho": 0.95})


@pytest.fixture(scope="module")
def recipe():
    return default_recipe("colored-digits", "mlp")


@pytest.fixture(scope="module")
def biased_model(biased, recipe):
    return fit(build_model("mlp", biased.spec, seed=0), biased.train, recipe, progress=False)


@pytest.fixture(scope="module")
def original_report(biased_model, biased):
    return bias_report(biased_model, biased, "color")["bias"]


def test_the_attribute_methods_are_registered_as_such():
    assert {"grl", "counterfactual-top", "dfr", "leace", "retrain-balanced"} <= set(ATTRIBUTE_METHODS)
    for name in ATTRIBUTE_METHODS:
        cls = METHODS[name]
        assert cls.kind == "attribute" and not cls.forgets_classes, name


@pytest.mark.parametrize("name", ATTRIBUTE_METHODS)
def test_input_untouched_seeded_and_a_new_model(name, biased_model, biased, recipe):
    before = state_copy(biased_model)
    first = remove_attribute(biased_model, biased, "color", name, train_config=recipe, seed=3, progress=False)
    assert same_state(state_copy(biased_model), before), f"{name} changed its input model"
    assert first.model is not biased_model and not first.model.training
    assert first.method == name and set(first.config) == set(METHODS[name].params())
    second = remove_attribute(biased_model, biased, "color", name, train_config=recipe, seed=3, progress=False)
    assert same_state(state_copy(first.model), state_copy(second.model)), f"{name}: same seed, other weights"
    entry = first.attribute_history_entry("color", len(biased.train))
    assert entry["attribute"] == "color" and entry["method"] == name and json.dumps(entry)


@pytest.mark.parametrize("name", ATTRIBUTE_METHODS)
def test_each_method_moves_the_bias_metrics_the_right_way(name, biased_model, biased, recipe, original_report):
    """The claim: less reliance on colour than the original (unbiased accuracy up by a point or more, the flip rate
    when only the colour changes down), with bias-aligned accuracy kept within 10 points."""
    result = remove_attribute(biased_model, biased, "color", name, train_config=recipe, progress=False)
    report = bias_report(result.model, biased, "color")["bias"]
    assert set(report) == set(BIAS_KEYS)
    assert report["unbiased_accuracy"] >= original_report["unbiased_accuracy"] + 0.01, (name, report)
    assert report["counterfactual_flip_rate"] < original_report["counterfactual_flip_rate"], (name, report)
    assert report["bias_aligned_accuracy"] >= original_report["bias_aligned_accuracy"] - 0.10, (name, report)


def test_entry_points_refuse_the_other_kind_and_bad_attributes(biased_model, biased, recipe, digits, digits_model):
    with pytest.raises(ConfigError, match=r"method 'dfr' is of kind 'attribute': .*use remove_attribute\(\)"):
        unlearn(digits_model, select(digits.train, "class:3", seed=0), "dfr")
    with pytest.raises(ConfigError, match=r"method 'finetune' is of kind 'samples': .*use unlearn\(\) with a forget"):
        remove_attribute(biased_model, biased, "color", "finetune")
    with pytest.raises(ConfigError, match=r"the data has no attribute 'colour' \(its attributes: color\)"):
        remove_attribute(biased_model, biased, "colour", "dfr")
    with pytest.raises(ConfigError, match=r"the data has no attribute 'color' \(its attributes: none\)"):
        remove_attribute(digits_model, digits, "color", "dfr")
    single = biased.train.subset(biased.train.attributes["color"] == 0)
    with pytest.raises(ConfigError, match="takes a single value on this data: there is nothing to remove"):
        remove_attribute(biased_model, single, "color", "dfr")


def test_grl_names_a_diverging_run(biased_model, biased, recipe):
    with pytest.raises(TrainingDivergedError, match="in grl"):
        remove_attribute(biased_model, biased, "color", "grl", train_config=recipe.with_(lr=1e12), progress=False,
                         clip_grad=None, stabilise=False, epochs=3)


def test_grl_stops_within_a_time_budget(biased_model, biased, recipe):
    result = remove_attribute(biased_model, biased, "color", "grl", train_config=recipe, progress=False,
                              budget=Budget(seconds=0.01))
    assert any("time budget" in note for note in result.notes)


def test_leace_puts_an_eraser_before_the_output_layer_and_the_checkpoint_reloads(biased_model, biased, recipe,
                                                                                   tmp_path):
    """The eraser sits in front of the classifier: the penultimate features are its output, their class-
    conditional means per colour agree on counterfactual renders, and a checkpoint with erased=true loads."""
    from unlearnkit.models import CheckpointMeta, load_checkpoint, save_checkpoint

    result = remove_attribute(biased_model, biased, "color", "leace", train_config=recipe, progress=False)
    model = result.model
    assert isinstance(model.classifier, ErasedLinear)
    base = biased.train.subset(torch.arange(300))
    feats = []
    for value in range(10):
        x = biased.counterfactual(base, "color", torch.full((len(base),), value))
        with torch.no_grad():
            feats.append(penultimate(model, x)[0].mean(0))
    spread = torch.stack(feats).std(0).max()
    with torch.no_grad():
        raw = torch.stack([penultimate(biased_model, biased.counterfactual(base, "color", torch.full((300,), v)))[0]
                           .mean(0) for v in range(10)]).std(0).max()
    assert spread < 0.1 * raw, (spread, raw)  # the colour's mean effect on the features is gone (linear erasure)
    meta = CheckpointMeta("mlp", {"erased": True}, biased.spec, {}, recipe.to_dict())
    save_checkpoint(tmp_path / "m", model, meta)
    again = load_checkpoint(tmp_path / "m").model
    assert same_state(state_copy(again), state_copy(model))
    with pytest.raises(ConfigError, match="already has a concept eraser"):
        remove_attribute(model, biased, "color", "leace", train_config=recipe, progress=False)
