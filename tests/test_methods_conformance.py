"""Behaviours every registered method must have, run against each one automatically.

A new method is covered the moment it is registered: same architecture back, input model untouched,
deterministic per seed, budget respected, config validated, plus the claims each method makes.
"""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import torch

from tests.conftest import DIGITS_RECIPE
from unlearnkit.data import select
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS, Budget, Method, UnlearnTask, register
from unlearnkit.methods.base import KINDS
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import Interval, Options, Params, Rule, autos, field_type, rules
from unlearnkit.train import TrainConfig, accuracy_on
from unlearnkit.unlearning import unlearn

# Methods that need training-time files (``requires``) are tested in their own modules (listed here, so a new
# one cannot slip through untested); every other method runs the whole suite below.
OWN_TESTS = {"sisa": "test_sisa.py", "amnesiac": "test_amnesiac.py", "certified": "test_certified.py"}
ALL = sorted(n for n in METHODS if METHODS[n].requires is None and METHODS[n].kind == "samples")


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


class _Work:
    """Counts the work a run does: optimizer steps (any optimizer, via torch's global hook) and forward passes of
    the original model and of every copy of it (``clone_model`` deep-copies the hook along with the model)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.steps, self.forwards = model, 0, 0

    def __enter__(self) -> _Work:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        def step(*_) -> None:
            self.steps += 1

        def forward(*_) -> None:  # a plain function: deepcopy shares it (a bound method would copy the counter)
            self.forwards += 1

        self._hooks = [register_optimizer_step_pre_hook(step), self.model.register_forward_pre_hook(forward)]
        return self

    def __exit__(self, *_) -> None:
        for hook in self._hooks:
            hook.remove()


@pytest.mark.parametrize("name", ALL)
def test_time_budget_respected(name, digits, original, random_split):
    """A time budget that is spent before the first step ends the run there, and the notes say so: no optimizer step
    and next to no forward pass, where the same run without a budget does all of its work."""
    runs = {}
    for label, budget in (("full", None), ("spent", Budget(seconds=1e-9))):
        with _Work(original) as work:
            result = unlearn(original, random_split, name, train_config=DIGITS_RECIPE, holdout=digits.test,
                             progress=False, budget=budget)
        runs[label] = (work, result)
    (full, _), (spent, result) = runs["full"], runs["spent"]
    assert full.forwards > 4, "the counters saw no work in the unbudgeted run"
    assert any("budget" in note for note in result.notes), result.notes
    assert spent.steps == 0, f"{spent.steps} optimizer steps after the budget was spent ({full.steps} without one)"
    # a loop checks the clock before each batch; at most a set-up pass (e.g. a first accuracy check) may run
    assert spent.forwards <= full.forwards / 4, (spent.forwards, full.forwards)


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
    assert [n for n in sorted(METHODS) if METHODS[n].exact] == sorted(["retrain", "retrain-balanced",
                                                                         *EXACT_WITH_OWN_TESTS])


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


# --- declared constraints, generated for every registered method ----------------------------------------------------

EVERY = sorted(METHODS)


def _field(name: str, field: str) -> tuple[type, Rule]:
    rule = rules(METHODS[name].Config)[field]
    return field_type(METHODS[name].Config, field), rule


def _outside(interval: Interval) -> list:
    """The values just outside ``interval``'s finite ends."""
    out = []
    for end, closed_sides, direction in ((interval.left, ("left", "both"), -math.inf),
                                         (interval.right, ("right", "both"), math.inf)):
        if end is None:
            continue
        if interval.closed not in closed_sides:
            out.append(end if interval.type is float else int(end))
        elif interval.type is int:
            out.append(int(end) + (1 if direction > 0 else -1))
        else:
            out.append(math.nextafter(float(end), direction))
    return out


def _bad_values(name: str, field: str) -> list[tuple[str, object]]:
    """(how, value) pairs the field must refuse: "direct" is ``Config(field=value)``, "param" is
    ``make_config(field=value)`` with ``value`` a string as ``--param`` gives it, "override" is
    ``Method(Config(), field=value)``."""
    kind, rule = _field(name, field)
    constraint = rule.constraint
    bad: list[tuple[str, object]] = []
    if kind in (int, float):
        assert isinstance(constraint, Interval)
        for value in _outside(constraint):
            bad += [("direct", value), ("param", repr(value)), ("override", value)]
        bad += [(how, value) for how in ("direct", "override") for value in (math.nan, math.inf, -math.inf)]
        bad += [("param", text) for text in ("nan", "inf", "-inf", "NaN", "x", "")]
        bad += [("direct", True), ("direct", "1"), ("direct", [1])]
        if kind is int:
            bad += [("direct", 2.5), ("direct", 1.0), ("param", "2.5"), ("override", 2.5)]
    elif kind is bool:
        bad += [("direct", "x"), ("direct", 1), ("param", "maybe"), ("override", "maybe")]
    elif isinstance(constraint, Options):
        bad += [("direct", "not-an-option"), ("param", "not-an-option"), ("direct", 1), ("override", "x")]
    elif kind is str:
        bad += [("direct", 1), ("override", 2.5)]
    if not rule.optional:
        bad += [("direct", None), ("param", "none")]
    return bad


@pytest.mark.parametrize("name", EVERY)
def test_every_numeric_parameter_declares_an_interval(name):
    """So the generated checks below cover it; a bare ``float`` would take any finite number."""
    for field in METHODS[name].params():
        kind, rule = _field(name, field)
        if kind in (int, float):
            assert isinstance(rule.constraint, Interval), f"{name}.{field}: declare param(default, Interval(...))"
            assert rule.constraint.type is kind, f"{name}.{field}: the Interval's type differs from the hint"


@pytest.mark.parametrize("name", EVERY)
def test_declared_constraints_refuse_bad_values_by_name(name):
    cls = METHODS[name]
    defaults = cls.Config()
    for field in cls.params():
        bad = _bad_values(name, field)
        assert bad, f"{name}.{field}: no bad values generated"
        for how, value in bad:
            build = {"direct": lambda kw: cls.Config(**kw), "param": lambda kw: cls.make_config(**kw),
                     "override": lambda kw: cls(defaults, **kw)}[how]
            try:
                build({field: value})
            except ConfigError as exc:
                text = str(exc)
            else:
                pytest.fail(f"{name}: {field}={value!r} ({how}) was accepted")
            assert text.startswith(f"parameter '{field}' of method '{name}' must be "), text
            assert "\n" not in text
            assert text.endswith(f", got {value!r}") or how == "param", text


@pytest.mark.parametrize("name", EVERY)
def test_defaults_survive_the_command_line(name):
    """Every default, written as ``--param`` would receive it, gives the default back, and is accepted directly."""
    cls = METHODS[name]
    for field, default in cls.params().items():
        text = "none" if default is None else str(default)
        assert getattr(cls.make_config(**{field: text}), field) == default
        assert rules(cls.Config)[field].accepts(default)
        if rules(cls.Config)[field].optional:
            assert getattr(cls.Config(**{field: None}), field) is None


@pytest.mark.parametrize("name", EVERY)
def test_unknown_parameter_refused_with_a_config(name):
    with pytest.raises(ConfigError, match=f"^method '{name}' has no parameter\\(s\\) \\['not_a_param'\\]"):
        METHODS[name](METHODS[name].Config(), not_a_param=1)
    with pytest.raises(ConfigError, match=f"^method '{name}' needs a "):
        METHODS[name](TrainConfig())


@pytest.mark.parametrize("name", sorted(n for n in METHODS if METHODS[n].search_space))
def test_search_space_lies_inside_the_declarations(name, class_split, random_split):
    """``unlearn tune`` must never suggest a value the Config refuses, and every range holds the default."""
    cls = METHODS[name]
    defaults = cls.params()
    for field, space in cls.search_space.items():
        assert field in defaults, f"{name}: search_space names {field!r}, not a parameter"
        rule = rules(cls.Config)[field]
        for end in space.ends:
            assert rule.accepts(end), f"{name}.{field}: {end!r} in {space} is not {rule.describe()}"
        if isinstance(space, Float | Int):  # an interval is convex: its ends inside mean all of it is
            kind = field_type(cls.Config, field)
            assert kind is float or isinstance(space, Int), f"{name}.{field}: a Float range on an int parameter"
        auto = autos(cls.Config).get(field)
        if auto is not None:  # an auto default: both of its values lie in the range (and pass the declaration)
            for value in (auto.pick(class_split), auto.pick(random_split)):
                assert rule.accepts(value) and space.contains(value), f"{name}.{field}: auto {value!r} outside {space}"
        else:
            assert space.contains(defaults[field]), f"{name}.{field}: default {defaults[field]!r} outside {space}"


@pytest.mark.parametrize("name", sorted(n for n in METHODS if METHODS[n].auto_rules()))
def test_auto_defaults_resolve_by_what_is_forgotten(name, class_split, random_split):
    """An auto field (None) becomes its rule's class value on a class split and its sample value otherwise; the
    result's config reports the resolved values."""
    cls = METHODS[name]
    for split, pick in ((class_split, "classes"), (random_split, "samples")):
        task = UnlearnTask(model=torch.nn.Linear(1, 1), split=split, train_config=TrainConfig(),
                           device=torch.device("cpu"))
        resolved = cls().for_task(task).config
        other = random_split if pick == "classes" else class_split
        for field, rule in autos(cls.Config).items():
            assert getattr(resolved, field) == rule.pick(split), (name, field, pick)
        explicit = {field: rule.pick(other) for field, rule in autos(cls.Config).items()}
        assert cls(**explicit).for_task(task).config == cls(**explicit).config  # a value given is kept


def test_per_step_rule_scales_by_the_named_set(class_split, random_split):
    """ByTargetPerStep: the class value on whole classes; otherwise samples x reference steps / the steps per epoch
    of the retain or forget set (its size over the batch size, rounded up)."""
    from unlearnkit.methods.base import ByTargetPerStep

    on_retain = ByTargetPerStep(classes=0.1, samples=0.02, reference_steps=21)
    on_forget = ByTargetPerStep(classes=0.1, samples=0.02, reference_steps=3, over="forget")
    assert on_retain.pick(class_split) == on_forget.pick(class_split) == 0.1
    assert len(random_split.retain) != len(random_split.forget)
    for rule, data in ((on_retain, random_split.retain), (on_forget, random_split.forget)):
        for batch_size in (1, 7, 16):
            steps = -(-len(data) // batch_size)
            assert rule.pick(random_split, batch_size=batch_size) == pytest.approx(0.02 * rule.reference_steps / steps)
        one_step = rule.pick(random_split, batch_size=len(data))
        assert one_step == pytest.approx(0.02 * rule.reference_steps)
    both = ByTargetPerStep(classes=2.0, samples=1.0, reference_steps=21, scaled=("classes", "samples"), power=0.5)
    for split, value in ((class_split, 2.0), (random_split, 1.0)):
        steps = -(-len(split.retain) // 16)
        assert both.pick(split, batch_size=16) == pytest.approx(value * (21 / steps) ** 0.5)
    with pytest.raises(ValueError, match="over must be 'retain' or 'forget'"):
        ByTargetPerStep(classes=0.1, samples=0.02, over="test")
    with pytest.raises(ValueError, match="scaled must name"):
        ByTargetPerStep(classes=0.1, samples=0.02, scaled=("test",))


# --- method kinds ---------------------------------------------------------------------------------------------------

def test_every_method_declares_a_kind():
    assert {cls.kind for cls in METHODS.values()} <= set(KINDS)
    assert all(METHODS[n].kind == "samples" for n in ALL)


def test_methods_json_shows_kind_and_constraints():
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    result = CliRunner().invoke(app, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == set(METHODS)
    for name, row in rows.items():
        assert row["kind"] == METHODS[name].kind
        assert row["constraints"] == METHODS[name].constraints()
        assert set(row["constraints"]) == set(row["params"])
    assert rows["scrub"]["constraints"]["lr_scale"] == "a float in (0, inf)"
    assert rows["scrub"]["constraints"]["batch_size"] == "an int in [1, inf) or None"
    assert rows["finetune"]["constraints"]["schedule"] == "one of 'cosine', 'constant'"


@pytest.fixture
def attribute_method():
    """A method of kind "attribute", registered for one test and removed after it."""
    from dataclasses import dataclass

    @register
    class FakeAttribute(Method):
        name = "fake-attribute"
        summary = "a stand-in for a method that removes an attribute"
        reference = "tests"
        kind = "attribute"

        @dataclass(frozen=True)
        class Config(Params):
            pass

        def run(self, task):
            raise AssertionError("unlearn() must refuse an attribute method before running it")

    try:
        yield FakeAttribute
    finally:
        METHODS.pop("fake-attribute", None)


def test_unlearn_refuses_a_method_of_another_kind(attribute_method, digits_model, class_split):
    message = ("method 'fake-attribute' is of kind 'attribute': this method removes an attribute, not samples; use "
               "remove_attribute() for it, not unlearn()")
    for method in ("fake-attribute", attribute_method()):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            unlearn(digits_model, class_split, method, progress=False)


def test_register_refuses_an_unknown_kind():
    from dataclasses import dataclass

    class Odd(Method):
        name = "odd-kind"
        summary = "x"
        reference = "x"
        kind = "rows"

        @dataclass(frozen=True)
        class Config(Params):
            pass

        def run(self, task):
            return task.clone_model()

    with pytest.raises(TypeError, match=r"Odd.kind must be one of \('samples', 'attribute'\), got 'rows'"):
        register(Odd)
    assert "odd-kind" not in METHODS


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 2, "max_epochs": 3}, "method 'scrub' needs max_epochs <= epochs, got max_epochs=3 and epochs=2"),
    ({"alpha": 0.0, "gamma": 0.0}, "method 'scrub' needs alpha > 0 or gamma > 0: with both 0 the retain loss is zero"),
])
def test_cross_field_rules_name_the_fields(changes, message):
    """The one rule left in a ``__post_init__`` (scrub's), by every way of building the config."""
    cls = METHODS["scrub"]
    for build in (lambda: cls.Config(**changes), lambda: cls.make_config(**{k: str(v) for k, v in changes.items()}),
                  lambda: cls(cls.Config(), **changes)):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            build()
