"""counterfactual-top: top-k fine-tuning on real and counterfactual samples (unlearnkit.methods.counterfactual_top).

The setting is colored-digits at rho 0.9 (a digit has its class colour 90% of the time in training, a random one in
the test split) with a small mlp trained for 15 epochs: it leans on the colour (unbiased test accuracy ~0.83 against
~0.96 for the same recipe on unbiased data). Claim tests compare the method with that original and with the model
trained on unbiased data.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from scipy.spatial.distance import jensenshannon
from torch import nn

from tests.conftest import same_state, state_copy
from unlearnkit.data import IndexedDataset, load_dataset
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation import bias_report
from unlearnkit.methods import METHODS
from unlearnkit.methods.counterfactual_top import js_consistency, other_values, renderers
from unlearnkit.methods.layers import weight_layers
from unlearnkit.models import build_model
from unlearnkit.train import TrainConfig, accuracy_on, fit
from unlearnkit.unlearning import remove_attribute

RECIPE = TrainConfig(epochs=15, batch_size=64, lr=0.05)
METHOD = "counterfactual-top"


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("colored-digits", data_options={"rho": 0.9})


@pytest.fixture(scope="module")
def original(bundle):
    return fit(build_model("mlp", bundle.spec, seed=0), bundle.train, RECIPE, progress=False)


@pytest.fixture(scope="module")
def result(bundle, original):
    """The method with its defaults, through remove_attribute with the bundle (which hands over its renderer)."""
    return remove_attribute(original, bundle, "color", METHOD, train_config=RECIPE, progress=False, seed=0)


def quiet_bias_report(model, bundle) -> dict:
    with warnings.catch_warnings():  # equalized odds on test groups that lack a class: irrelevant here
        warnings.simplefilter("ignore", RuntimeWarning)
        return bias_report(model, bundle, "color")["bias"]


def aligned_accuracy(model, bundle) -> float:
    """Bias-aligned accuracy on the whole test split: every test digit rendered in its class colour (bias_report's
    own figure rests on the ~36 test digits that happen to have it, where one sample moves it by 0.028)."""
    test = bundle.test
    return accuracy_on(model, IndexedDataset(bundle.counterfactual(test, "color", test.y), test.y, test.ids, 10))


def test_input_model_untouched_and_same_architecture(bundle, original):
    before, mode = state_copy(original), original.training
    out = remove_attribute(original, bundle, "color", METHOD, train_config=RECIPE, progress=False, epochs=1)
    assert same_state(before, state_copy(original)) and original.training == mode
    assert out.model is not original and type(out.model) is type(original) and not out.model.training
    assert {k: v.shape for k, v in out.model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert not same_state(before, state_copy(out.model))


def test_same_seed_same_weights(bundle, original):
    runs = [remove_attribute(original, bundle, "color", METHOD, train_config=RECIPE, progress=False, seed=seed,
                             epochs=2) for seed in (3, 3, 4)]
    assert same_state(state_copy(runs[0].model), state_copy(runs[1].model))
    assert not same_state(state_copy(runs[0].model), state_copy(runs[2].model))  # the seed draws the values


def test_removes_the_reliance_on_colour(bundle, original, result):
    """Unbiased and bias-conflicting accuracy rise and the counterfactual flip rate falls, each at least half-way
    from the original to the same recipe trained on unbiased data (rho 0.1: colour says nothing of the digit),
    while bias-aligned accuracy stays within a few points (0.05) of the original's."""
    unbiased_data = load_dataset("colored-digits", data_options={"rho": 0.1})  # same test split, fair training
    oracle = fit(build_model("mlp", bundle.spec, seed=0), unbiased_data.train, RECIPE, progress=False)
    before, after, fair = (quiet_bias_report(m, bundle) for m in (original, result.model, oracle))
    for key, better in (("unbiased_accuracy", 1), ("bias_conflicting_accuracy", 1), ("counterfactual_flip_rate", -1)):
        assert better * (fair[key] - before[key]) > 0.05, f"the original is not biased in {key}: {before} {fair}"
        halfway = before[key] + (fair[key] - before[key]) / 2
        assert better * (after[key] - halfway) >= 0, f"{key}: {before[key]} -> {after[key]}, unbiased data {fair[key]}"
    assert aligned_accuracy(result.model, bundle) >= aligned_accuracy(original, bundle) - 0.05


@pytest.mark.parametrize("k", [1, 2])
def test_layers_below_the_top_k_unchanged(bundle, original, k):
    out = remove_attribute(original, bundle, "color", METHOD, train_config=RECIPE, progress=False, k=k, epochs=1)
    layers = [name for name, _ in weight_layers(original)]
    new = dict(out.model.named_modules())
    for position, (name, layer) in enumerate(weight_layers(original)):
        same = all(torch.equal(p, q) for p, q in zip(layer.parameters(), new[name].parameters(), strict=True))
        assert same == (position < len(layers) - k), f"k={k}: layer {name} {'un' if same else ''}changed"


class NormedMLP(nn.Module):
    """A batch norm below the top layer: frozen, it must stay in eval mode (running statistics unchanged)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        return self.classifier(self.features(x))


def test_frozen_batch_norm_keeps_its_statistics(bundle):
    torch.manual_seed(0)
    model = NormedMLP()
    with torch.no_grad():
        model.features[2].running_mean.normal_()  # not the initial zeros: a reset would show too
    before = state_copy(model)
    out = remove_attribute(model, bundle, "color", METHOD, train_config=RECIPE, progress=False, k=1, epochs=1)
    after = state_copy(out.model)
    for key in ("features.2.running_mean", "features.2.running_var", "features.2.num_batches_tracked",
                "features.1.weight", "features.2.weight"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_without_a_renderer_refused_naming_the_sources(bundle, original):
    with pytest.raises(ConfigError) as info:
        remove_attribute(original, bundle.train, "color", METHOD, train_config=RECIPE, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message == ("counterfactual-top needs a renderer of counterfactual samples, which only some sources have "
                       "(biased-tabular, colored-digits, colored-fashion-mnist): pass that source's DatasetBundle "
                       "to remove_attribute(), or counterfactual=")
    assert renderers() == ["biased-tabular", "colored-digits", "colored-fashion-mnist"]
    for name in ("biased-tabular", "colored-digits"):  # the ones named that need no files do have a renderer
        assert load_dataset(name).counterfactual is not None


def test_counterfactual_keyword_overrides_the_bundle(bundle, original):
    calls = []

    def spy(data, attribute, values):
        calls.append(len(data))
        return bundle.counterfactual(data, attribute, values)

    for data in (bundle, bundle.train):  # with the bundle, the keyword wins over bundle.counterfactual
        calls.clear()
        out = remove_attribute(original, data, "color", METHOD, train_config=RECIPE, progress=False, epochs=1,
                               counterfactual=spy, counterfactuals=2)
        steps = math.ceil(len(bundle.train) / RECIPE.batch_size)
        assert len(calls) == 1 + steps  # a one-row shape check, then one call per batch
        assert sum(calls) == 1 + 2 * len(bundle.train)  # every sample rendered twice
        assert any("2 counterfactual 'color' value(s)" in note for note in out.notes)


def test_renderer_of_the_wrong_shape_refused(bundle, original):
    with pytest.raises(ConfigError, match=r"^the counterfactual renderer returned shape \(1, 192\) for one row of "
                                          r"shape \(3, 8, 8\); it must return one row per input row, shaped alike$"):
        remove_attribute(original, bundle, "color", METHOD, train_config=RECIPE, progress=False,
                         counterfactual=lambda data, attribute, values: data.x.flatten(1))


def test_binary_attribute_caps_the_counterfactuals():
    data = load_dataset("biased-tabular", data_options={"n": 400})
    model = build_model("mlp", data.spec, seed=0)
    out = remove_attribute(model, data, "sensitive", METHOD, train_config=RECIPE, progress=False, epochs=1)
    assert "counterfactuals capped at 1: 'sensitive' takes 2 values" in out.notes
    assert METHODS[METHOD].params()["counterfactuals"] > 1  # so the default run above is capped


def test_other_values_are_distinct_and_never_the_own():
    values = torch.arange(10).repeat(50)
    for m in (1, 3, 9):
        others = other_values(values, m, 10, torch.Generator().manual_seed(0))
        assert others.shape == (500, m) and others.min() >= 0 and others.max() <= 9
        assert not (others == values.view(-1, 1)).any()
        assert all(len(set(row.tolist())) == m for row in others)
    every = other_values(values, 9, 10, torch.Generator().manual_seed(1))
    assert torch.equal(every.sort(dim=1).values, torch.stack([torch.tensor([w for w in range(10) if w != v])
                                                              for v in values.tolist()]))
    counts = torch.bincount(other_values(torch.zeros(9000, dtype=torch.int64), 1, 10,
                                         torch.Generator().manual_seed(2)).flatten(), minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 800  # uniform over the 9 others (1000 expected each)


def test_js_consistency_matches_scipy():
    logits = torch.randn(2, 20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = torch.softmax(logits, dim=-1).numpy()
    expected = sum(jensenshannon(p[0, i], p[1, i]) ** 2 for i in range(20)) / 20  # scipy: sqrt of JS, base e
    assert js_consistency(logits).item() == pytest.approx(expected, rel=1e-5)
    three = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    log_p = torch.log_softmax(three, dim=-1)
    mean = log_p.exp().mean(0)
    slow = sum((log_p[v].exp() * (log_p[v] - mean.log())).sum(-1).mean() for v in range(3)) / 3
    assert js_consistency(three).item() == pytest.approx(slow.item(), rel=1e-5)
    assert js_consistency(three[:1].expand(3, 4, 6)).item() == pytest.approx(0.0, abs=1e-6)
