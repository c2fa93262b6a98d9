"""Behaviours every registered method must have, run against each one automatically.

A new method is covered the moment it is registered: same architecture back, input model untouched,
deterministic per seed, budget respected, config validated, plus the claims each method makes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import DIGITS_RECIPE
from unlearnkit.data import select
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS, Budget
from unlearnkit.train import accuracy_on
from unlearnkit.unlearning import unlearn

# Methods that need training-time files (``requires``) are tested in their own modules (listed here, so a new
# one cannot slip through untested); every other method runs the whole suite below.
OWN_TESTS = {"sisa": "test_sisa.py", "amnesiac": "test_amnesiac.py", "certified": "test_certified.py"}
ALL = sorted(n for n in METHODS if METHODS[n].requires is None)


def test_methods_with_requirements_have_their_own_tests():
    from pathlib import Path

    special = {n: cls.requires for n, cls in METHODS.items() if cls.requires}
    assert set(special) == set(OWN_TESTS), f"add a test module for {sorted(set(special) - set(OWN_TESTS))}"
    for module in OWN_TESTS.values():
        assert (Path(__file__).parent / module).is_file()


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def class_split(digits):
    return select(digits.train, "class:3", seed=0)


@pytest.fixture(scope="module")
def random_split(digits):
    return select(digits.train, "random:0.1", seed=0)


@pytest.fixture
def original(name, request):
    """The model a method is tested on: the digits mlp, or the digits cnn for ``needs_conv`` methods."""
    return request.getfixturevalue("digits_cnn" if METHODS[name].needs_conv else "digits_model")


@pytest.fixture(scope="module")
def class_results(digits, digits_model, digits_cnn, class_split):
    """One default run per method on the class:3 split (shared by the claim tests)."""
    return {
        name: unlearn(digits_cnn if METHODS[name].needs_conv else digits_model, class_split, name,
                      train_config=DIGITS_RECIPE, holdout=digits.test, progress=False, seed=0)
        for name in ALL
    }


@pytest.mark.parametrize("name", ALL)
def test_declares_interface(name):
    cls = METHODS[name]
    assert cls.name == name and cls.summary and cls.reference
    assert isinstance(cls.exact, bool) and isinstance(cls.needs_retain, bool)
    assert isinstance(cls.params(), dict)
    cls()  # defaults are a valid config


@pytest.mark.parametrize("name", ALL)
def test_same_architecture_and_input_untouched(name, digits, original, class_split, class_results):
    before = _state(original)
    mode = original.training
    result = unlearn(original, class_split, name, train_config=DIGITS_RECIPE, holdout=digits.test,
                     progress=False, seed=0)
    assert _same(before, _state(original)), "the input model was mutated"
    assert original.training == mode
    assert result.model is not original
    assert type(result.model) is type(original)
    after = result.model.state_dict()
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert not result.model.training
    assert result.method == name and result.seconds > 0


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_weights(name, digits, original, random_split):
    runs = [unlearn(original, random_split, name, train_config=DIGITS_RECIPE, holdout=digits.test,
                    progress=False, seed=7) for _ in range(2)]
    assert _same(_state(runs[0].model), _state(runs[1].model))


@pytest.mark.parametrize("name", ALL)
def test_changes_the_model(name, class_results, original):
    assert not _same(_state(class_results[name].model), _state(original))


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter_refused(name, original, class_split):
    with pytest.raises(ConfigError, match=f"method '{name}' has no parameter"):
        unlearn(original, class_split, name, not_a_param=1)


@pytest.mark.parametrize("name", ALL)
def test_time_budget_respected(name, digits, original, random_split):
    """A tiny time budget ends the run early and says so in the notes."""
    result = unlearn(original, random_split, name, train_config=DIGITS_RECIPE, holdout=digits.test,
                     progress=False, budget=Budget(seconds=1e-4))
    assert any("budget" in note for note in result.notes), result.notes


# retrain takes its epochs from the TrainConfig; the others declare an ``epochs`` hyperparameter.
ITERATIVE = ["retrain", *(n for n in ALL if isinstance(METHODS[n].params().get("epochs"), int)
                          and METHODS[n].params()["epochs"] > 1)]


@pytest.mark.parametrize("name", ITERATIVE)
def test_epoch_budget_caps(name, digits, original, random_split):
    capped = unlearn(original, random_split, name, train_config=DIGITS_RECIPE, holdout=digits.test,
                     progress=False, budget=Budget(epochs=1))
    assert any(note.startswith("epochs capped by budget") and note.endswith("-> 1") for note in capped.notes)


# --- claims ---------------------------------------------------------------------------------------

CONV_ONLY = [n for n in ALL if METHODS[n].needs_conv]


@pytest.mark.parametrize("name", CONV_ONLY)
def test_conv_only_methods_refuse_an_mlp_clearly(name, digits_model, class_split):
    with pytest.raises(ConfigError, match="conv"):
        unlearn(digits_model, class_split, name, train_config=DIGITS_RECIPE, progress=False)


def test_exact_methods():
    assert [n for n in sorted(METHODS) if METHODS[n].exact] == sorted(["retrain", *EXACT_WITH_OWN_TESTS])


EXACT_WITH_OWN_TESTS: list[str] = ["sisa"]


def test_retrain_equals_training_on_retain(digits, digits_model, class_split):
    """retrain with seed 0 is exactly the original recipe on the retain set."""
    from unlearnkit.models import build_model
    from unlearnkit.train import fit

    direct = fit(build_model("mlp", digits.spec, seed=DIGITS_RECIPE.seed), class_split.retain, DIGITS_RECIPE,
                 progress=False)
    result = unlearn(digits_model, class_split, "retrain", train_config=DIGITS_RECIPE, progress=False, seed=0)
    assert _same(_state(direct), _state(result.model))


@pytest.mark.parametrize("name", ["retrain", "gradient-ascent"])
def test_class_forgetting_drives_forget_accuracy_to_zero(name, class_results, class_split, digits_model):
    assert accuracy_on(digits_model, class_split.forget) > 0.9  # there was something to forget
    assert accuracy_on(class_results[name].model, class_split.forget) <= 0.02


@pytest.mark.parametrize("name", ALL)
def test_retain_accuracy_stays_reasonable(name, class_results, class_split, original):
    before = accuracy_on(original, class_split.retain)
    assert accuracy_on(class_results[name].model, class_split.retain) >= before - 0.1


def test_gradient_ascent_moves_forget_accuracy_toward_retrain(digits, digits_model, random_split):
    """On a random forget set, GA stops once forget accuracy reaches the held-out level."""
    target = accuracy_on(digits_model, digits.test)
    result = unlearn(digits_model, random_split, "gradient-ascent", train_config=DIGITS_RECIPE,
                     holdout=digits.test, progress=False)
    before = accuracy_on(digits_model, random_split.forget)
    after = accuracy_on(result.model, random_split.forget)
    assert before > target
    assert after <= target
    assert any("early stop" in n for n in result.notes)


def test_gradient_ascent_without_holdout_notes_it(digits_model, random_split):
    result = unlearn(digits_model, random_split, "gradient-ascent", train_config=DIGITS_RECIPE, progress=False,
                     epochs=1)
    assert any("no holdout" in n for n in result.notes)


def test_finetune_only_reads_retain(digits, digits_model, random_split):
    """finetune must not depend on the forget samples: changing them changes nothing."""
    tampered = copy.deepcopy(random_split)
    tampered.forget.x = torch.randn_like(tampered.forget.x)
    a = unlearn(digits_model, random_split, "finetune", train_config=DIGITS_RECIPE, progress=False)
    b = unlearn(digits_model, tampered, "finetune", train_config=DIGITS_RECIPE, progress=False)
    assert _same(_state(a.model), _state(b.model))
