"""Claims of the layer-reset family: top-layers (CF-k), eu-k, prune-reinit, activation-prune,
reset-layers and noise-reinit. The conformance suite covers the shared behaviours; these tests check
what each method says it does, on the digits MLP (class:3 unless stated)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import DIGITS_RECIPE
from unlearnkit.data import select
from unlearnkit.errors import ConfigError
from unlearnkit.train import accuracy_on
from unlearnkit.unlearning import unlearn


@pytest.fixture(scope="module")
def original(digits_model, class_split):
    """The fixture model's forget/retain accuracy before unlearning."""
    return accuracy_on(digits_model, class_split.forget), accuracy_on(digits_model, class_split.retain)


def run(model, split, method, **config):
    return unlearn(model, split, method, train_config=DIGITS_RECIPE, progress=False, seed=0, **config).model


def forgets_class(model, split, original, bound):
    """Forget accuracy falls from the original's (~1.0) to at most ``bound``; retain accuracy holds."""
    before_forget, before_retain = original
    assert before_forget > 0.9
    assert accuracy_on(model, split.forget) <= bound
    assert accuracy_on(model, split.retain) >= before_retain - 0.1


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def bn_mlp(spec) -> nn.Module:
    """A small MLP with a batch norm below its last layer (for frozen-statistics checks)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 32),
                             nn.ReLU(), nn.Linear(32, spec.num_classes))


@pytest.mark.parametrize(("method", "bad", "message"), [
    ("top-layers", {"lr_scale": 0.0}, r"'lr_scale' of method 'top-layers' must be a float in \(0, inf\)"
     r" or None, got 0.0$"),
    ("top-layers", {"schedule": "linear"}, "'schedule' of method 'top-layers' must be one of 'cosine', 'constant'"),
    ("eu-k", {"epochs": 0}, r"'epochs' of method 'eu-k' must be an int in \[1, inf\), got 0$"),
    ("prune-reinit", {"prune_fraction": 1.0}, r"'prune_fraction' of method 'prune-reinit' must be a float in \(0, 1\)"),
    ("prune-reinit", {"entropy_weight": -1.0}, r"'entropy_weight' of method 'prune-reinit' must be a float in \[0,"),
    ("activation-prune", {"fraction": 0.0}, r"'fraction' of method 'activation-prune' must be a float in \(0, 1\]"),
    ("activation-prune", {"score": "max"}, "'score' of method 'activation-prune' must be one of 'ratio', 'difference'"),
    ("reset-layers", {"temperature": 0.0}, r"'temperature' of method 'reset-layers' must be a float in \(0, inf\)"),
    ("reset-layers", {"clip_grad": -1.0}, r"'clip_grad' of method 'reset-layers' must be a float in \(0, inf\) or"),
    ("noise-reinit", {"noise_layers": 1.5}, r"'noise_layers' of method 'noise-reinit' must be a float in \(0, 1\]"),
    ("noise-reinit", {"noise_std": -0.1}, r"'noise_std' of method 'noise-reinit' must be a float in \[0, inf\)"),
])
def test_bad_parameters_are_refused_with_the_reason(method, bad, message):
    from unlearnkit.methods import METHODS

    with pytest.raises(ConfigError, match=message):
        METHODS[method](**bad)


# --- top-layers (CF-k) ------------------------------------------------------------------------------

def test_top_layers_moves_forget_accuracy(digits_model, class_split, original):
    """CF-k forgets a whole class only slowly (it has no signal but the retain set): with its defaults
    forget accuracy drops from 1.0 to about 0.66 on this model, so the honest bound is 0.8."""
    forgets_class(run(digits_model, class_split, "top-layers"), class_split, original, bound=0.8)


def test_top_layers_trains_only_the_top(digits_model, class_split):
    before = weights(digits_model)
    after = weights(run(digits_model, class_split, "top-layers", k=1, epochs=1))
    for name in ("features.1.weight", "features.1.bias", "features.3.weight", "features.3.bias"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_top_layers_keeps_frozen_batch_norm_statistics(digits, class_split):
    from unlearnkit.train import fit

    model = fit(bn_mlp(digits.spec), digits.train, DIGITS_RECIPE.with_(epochs=2), progress=False)
    before = weights(model)
    after = weights(run(model, class_split, "top-layers", k=1, epochs=1))
    assert torch.equal(before["2.running_mean"], after["2.running_mean"])  # below the cut: frozen
    assert torch.equal(before["1.weight"], after["1.weight"])
    assert not torch.equal(before["6.weight"], after["6.weight"])
    # k=3 cuts below the batch norm, which then trains with the top and its statistics move
    moved = weights(run(model, class_split, "top-layers", k=3, epochs=1))
    assert not torch.equal(before["2.running_mean"], moved["2.running_mean"])


def test_top_layers_refuses_k_beyond_the_model(digits_model, class_split):
    with pytest.raises(ConfigError, match=r"k must lie in \[1, 3\]"):
        run(digits_model, class_split, "top-layers", k=4)
    with pytest.raises(ConfigError, match=r"'k' of method 'top-layers' must be an int in \[1, inf\) or None, got 0$"):
        run(digits_model, class_split, "top-layers", k=0)


# --- retain-only methods ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["top-layers", "eu-k", "prune-reinit", "reset-layers", "noise-reinit"])
def test_reads_only_the_retain_set(method, digits_model, digits):
    """needs_forget=False is true: scrambling the forget samples changes nothing."""
    import copy

    split = select(digits.train, "random:0.1", seed=0)
    tampered = copy.deepcopy(split)
    tampered.forget.x = torch.randn_like(tampered.forget.x)
    a, b = run(digits_model, split, method, epochs=1), run(digits_model, tampered, method, epochs=1)
    assert all(torch.equal(x, y) for x, y in zip(weights(a).values(), weights(b).values(), strict=True))


# --- eu-k -------------------------------------------------------------------------------------------

def test_eu_k_forgets_a_class(digits_model, class_split, original):
    forgets_class(run(digits_model, class_split, "eu-k"), class_split, original, bound=0.3)


def test_eu_k_resets_the_top_and_freezes_the_rest(digits_model, class_split):
    """With no time to train, the result is the original with fresh top layers."""
    from unlearnkit.methods import Budget

    before = weights(digits_model)
    result = unlearn(digits_model, class_split, "eu-k", k=2, train_config=DIGITS_RECIPE, progress=False,
                     budget=Budget(seconds=1e-4))
    reset = weights(result.model)
    assert torch.equal(before["features.1.weight"], reset["features.1.weight"])
    for name in ("features.3.weight", "features.3.bias", "classifier.weight", "classifier.bias"):
        assert not torch.equal(before[name], reset[name]), name
    # the fresh layer has the init's scale, not the trained one's: |w| <= 1/sqrt(fan_in) for nn.Linear
    assert reset["classifier.weight"].abs().max() <= 1 / 128**0.5 + 1e-6
    trained = weights(run(digits_model, class_split, "eu-k", k=2))
    assert torch.equal(before["features.1.weight"], trained["features.1.weight"])
    assert not torch.equal(reset["classifier.weight"], trained["classifier.weight"])


# --- prune-reinit -----------------------------------------------------------------------------------

def test_prune_reinit_forgets_a_class(digits_model, class_split, original):
    forgets_class(run(digits_model, class_split, "prune-reinit"), class_split, original, bound=0.3)


def test_magnitude_masks_cover_the_fraction_globally(digits_model):
    from unlearnkit.methods.layers import weight_layers
    from unlearnkit.methods.prune_reinit import magnitude_masks

    layers = [m for _, m in weight_layers(digits_model)]
    masks = magnitude_masks(layers, 0.9)
    total = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == round(0.9 * total)
    pruned = torch.cat([layer.weight.detach().abs()[m] for layer, m in zip(layers, masks, strict=True)])
    kept = torch.cat([layer.weight.detach().abs()[~m] for layer, m in zip(layers, masks, strict=True)])
    assert pruned.max() <= kept.min()
    # global, not per layer: layers keep different shares of their weights
    shares = [float((~m).float().mean()) for m in masks]
    assert max(shares) - min(shares) > 0.01


def test_prune_reinit_keeps_the_largest_weights_and_redraws_the_rest(digits_model, class_split):
    """With no time to repair, the result is the original with its pruned weights freshly drawn."""
    from unlearnkit.methods import Budget
    from unlearnkit.methods.layers import weight_layers
    from unlearnkit.methods.prune_reinit import magnitude_masks

    layers = dict(weight_layers(digits_model))
    masks = dict(zip(layers, magnitude_masks(list(layers.values()), 0.99), strict=True))
    result = unlearn(digits_model, class_split, "prune-reinit", train_config=DIGITS_RECIPE, progress=False,
                     budget=Budget(seconds=1e-4))
    new_layers = dict(weight_layers(result.model))
    for name, layer in layers.items():
        before, after, mask = layer.weight.detach(), new_layers[name].weight.detach(), masks[name]
        assert torch.equal(before[~mask], after[~mask]), name
        assert (before[mask] != after[mask]).float().mean() > 0.99, name
        assert after[mask].abs().max() <= 1 / layer.in_features**0.5 + 1e-6  # nn.Linear's init range
        assert torch.equal(layer.bias, new_layers[name].bias)


# --- activation-prune -------------------------------------------------------------------------------

def test_activation_prune_forgets_a_class(digits_model, class_split, original):
    forgets_class(run(digits_model, class_split, "activation-prune"), class_split, original, bound=0.3)


def test_mean_activations_match_a_direct_computation(digits, class_split):
    from unlearnkit.methods import UnlearnTask
    from unlearnkit.methods.activation_prune import mean_activations

    torch.manual_seed(0)
    linear, conv = nn.Linear(64, 5), nn.Conv2d(1, 3, 3, padding=1)
    task = UnlearnTask(model=linear, split=class_split, train_config=DIGITS_RECIPE, device=torch.device("cpu"))
    x = class_split.forget.x
    got = mean_activations(nn.Sequential(nn.Flatten(), linear), [linear], class_split.forget, task, 7)
    assert torch.allclose(got[0], torch.relu(linear(x.flatten(1))).mean(0).double(), atol=1e-6)
    got = mean_activations(conv, [conv], class_split.forget, task, 7)
    assert torch.allclose(got[0], torch.relu(conv(x)).mean(dim=(0, 2, 3)).double(), atol=1e-6)


def test_top_units_follow_the_score():
    from unlearnkit.methods.activation_prune import top_units, unit_scores

    forget, retain = torch.tensor([1.0, 5.0, 0.1, 0.0]), torch.tensor([1.0, 1.0, 0.001, 0.0])
    assert top_units(unit_scores(forget, retain, "ratio"), 0.25).tolist() == [2]  # used by the forget set only
    assert top_units(unit_scores(forget, retain, "difference"), 0.25).tolist() == [1]
    assert top_units(unit_scores(forget, retain, "ratio"), 0.5).tolist() == [2, 1]


def test_activation_prune_resets_exactly_the_forget_units(digits_model, class_split):
    """With a negligible repair step, only the chosen units' incoming weights change, and the chosen
    units are ones class 3 drives far harder than the other classes."""
    from unlearnkit.methods import UnlearnTask
    from unlearnkit.methods.activation_prune import hidden_layers, mean_activations, top_units, unit_scores

    task = UnlearnTask(model=digits_model, split=class_split, train_config=DIGITS_RECIPE, device=torch.device("cpu"))
    model = task.clone_model()
    layers = hidden_layers(model, "activation-prune")
    forget = mean_activations(model, layers, class_split.forget, task, 256)
    retain = mean_activations(model, layers, class_split.retain, task, 256)
    result = run(digits_model, class_split, "activation-prune", fraction=0.2, epochs=1, lr_scale=1e-9)
    after = weights(result)
    for name, f, r in zip(("features.1", "features.3"), forget, retain, strict=True):
        scores = unit_scores(f, r, "ratio")
        units = top_units(scores, 0.2)
        assert scores[units].min() > 1.5  # class 3 drives every reset unit well above the retain level
        rest = torch.ones(len(scores), dtype=torch.bool)
        rest[units] = False
        w_before, w_after = weights(digits_model)[f"{name}.weight"], after[f"{name}.weight"]
        assert (w_before[units] != w_after[units]).float().mean() > 0.99
        assert torch.allclose(w_before[rest], w_after[rest], atol=1e-6)
    assert torch.allclose(weights(digits_model)["classifier.weight"], after["classifier.weight"], atol=1e-6)


def test_activation_prune_needs_hidden_layers(digits, class_split):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, digits.spec.num_classes))
    with pytest.raises(ConfigError, match="needs hidden linear/conv layers below the classifier"):
        run(flat, class_split, "activation-prune")


# --- reset-layers -----------------------------------------------------------------------------------

def test_reset_layers_forgets_a_class(digits_model, class_split, original):
    """Distilling from the original on the retain set brings some of the class back (~0.12 here), so
    the bound is 0.3; more distillation epochs bring more back."""
    forgets_class(run(digits_model, class_split, "reset-layers"), class_split, original, bound=0.3)


def test_reset_layers_resets_the_first_layer_and_the_classifier(digits_model, class_split):
    from unlearnkit.methods import Budget

    before = weights(digits_model)
    result = unlearn(digits_model, class_split, "reset-layers", train_config=DIGITS_RECIPE, progress=False,
                     budget=Budget(seconds=1e-4))
    reset = weights(result.model)
    for name in ("features.1.weight", "classifier.weight", "classifier.bias"):
        assert not torch.equal(before[name], reset[name]), name
    assert torch.equal(before["features.3.weight"], reset["features.3.weight"])


def test_reset_layers_picks_the_first_conv_on_a_cnn(digits):
    from unlearnkit.methods.reset_layers import first_and_last
    from unlearnkit.models import build_model

    cnn = build_model("cnn", digits.spec, seed=0)
    assert first_and_last(cnn, "reset-layers") == [cnn.features[0], cnn.classifier]
    flat = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert first_and_last(flat, "reset-layers") == [flat[1]]


# --- noise-reinit -----------------------------------------------------------------------------------

def test_noise_reinit_forgets_a_class(digits_model, class_split, original):
    forgets_class(run(digits_model, class_split, "noise-reinit"), class_split, original, bound=0.3)


def test_noise_reinit_resets_the_classifier_and_shakes_half_the_layers(digits_model, class_split):
    """With no time to train, the result is the original with a fresh classifier and noise of 0.5x the
    weight std on one of its two hidden layers (noise_layers=0.5)."""
    from unlearnkit.methods import Budget

    before = weights(digits_model)
    result = unlearn(digits_model, class_split, "noise-reinit", train_config=DIGITS_RECIPE, progress=False,
                     budget=Budget(seconds=1e-4))
    after = weights(result.model)
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    shaken = [n for n in ("features.1.weight", "features.3.weight") if not torch.equal(before[n], after[n])]
    assert len(shaken) == 1
    name = shaken[0]
    ratio = float((after[name] - before[name]).std() / before[name].std())
    assert 0.45 < ratio < 0.55
    assert torch.equal(before[name.replace("weight", "bias")], after[name.replace("weight", "bias")])
