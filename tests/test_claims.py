"""Every method keeps its own claim with its defaults: a test-sized version of the defaults suite.

The suite (benchmarks/defaults-digits.toml, defaults-fashion.toml, checked by benchmarks/check_defaults.py) runs
every method on several datasets, scenarios and tuning seeds. Here one case of each kind runs in `make test`, as
a user would meet it: `unlearn compare --dataset digits --methods all` on the digits default recipe, the mlp for
every method and the cnn for the conv-only ones, on a class and a seed that the tuning did not use (class 5,
seed 0; the suite tuned on classes 3 and 3,5 with seeds 11 and 12).

Claims, all derived from the retrained model (`retrain` in the same comparison), never from printed output:
- class forgetting, for every method whose ``forgets_classes`` flag is set: forget accuracy at most 0.05 (the
  retrained model's is 0) and test accuracy within 0.05 of the retrained model's;
- no collapse, for every method: test accuracy at least the retrained model's minus 0.10 on class forgetting
  and minus 0.05 on random forgetting;
- random forgetting: gap.average to the retrained model no larger than the untouched original's, unless the
  method says in a note that it cannot beat the original there.

Run: .venv/bin/python -m pytest tests/test_claims.py -q
"""

from __future__ import annotations

import pytest

from unlearnkit.bench.compare import compare
from unlearnkit.data import load_dataset
from unlearnkit.methods import METHODS
from unlearnkit.methods.base import NO_GAIN  # the phrase of the note of methods that cannot beat the original
from unlearnkit.train import default_recipe

FORGET_CEILING = 0.05
TEST_TOLERANCE = 0.05

# Misses of this check that are known and reported (issue "defaults that work everywhere", docs/METHODS.md, "Claims
# and misses"): each fails today with the figure given; strict, so a fixed one fails the suite until it is removed.
KNOWN_MISSES = {
    ("class", "conv-noise"): "keeps 0.21 of class 5 (tuned on classes 3 and 3,5, where it forgets them)",
    ("class", "conv-transpose"): "test 0.819 vs retrain 0.877",
    ("class", "fanchuan"): "keeps 0.51 of class 5",
    ("class", "targeted-reinit"): "keeps 0.25 of class 5",
    ("random", "bad-teacher"): "gap 0.0174 vs the original's 0.0163",
    ("random", "conv-noise"): "gap 0.0194 vs the original's 0.0111",
    ("random", "conv-transpose"): "test 0.908 vs retrain 0.975 (collapse check; it notes that it cannot beat the "
                                  "original here)",
    ("random", "scrub"): "gap 0.0224 vs the original's 0.0163",
    ("random", "targeted-reinit"): "gap 0.0169 vs the original's 0.0111",
}


def _known(kind: str, names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_MISSES[(kind, n)], strict=True))
            if (kind, n) in KNOWN_MISSES else n for n in names]


RUNNABLE = sorted(n for n, cls in METHODS.items() if cls.requires is None and n != "retrain" and cls.kind == "samples")


def _comparison(model: str, forget: str) -> dict:
    data = load_dataset("digits")
    methods = [n for n in RUNNABLE if METHODS[n].needs_conv] if model == "cnn" else \
        [n for n in RUNNABLE if not METHODS[n].needs_conv]
    result = compare(data, forget=forget, methods=methods, model=model, config=default_recipe("digits", model),
                     seed=0, progress=False)
    return result.to_json()


@pytest.fixture(scope="module")
def class_mlp():
    return _comparison("mlp", "class:5")


@pytest.fixture(scope="module")
def class_cnn():
    return _comparison("cnn", "class:5")


@pytest.fixture(scope="module")
def random_mlp():
    return _comparison("mlp", "random:0.1")


@pytest.fixture(scope="module")
def random_cnn():
    return _comparison("cnn", "random:0.1")


def _case(name: str, mlp: dict, cnn: dict) -> tuple[dict, dict]:
    """(the method's row, the retrain row) of the comparison its model kind ran in."""
    out = cnn if METHODS[name].needs_conv else mlp
    return out["methods"][name], out["methods"]["retrain"]


def test_every_runnable_method_is_checked(class_mlp, class_cnn):
    ran = set(class_mlp["methods"]) | set(class_cnn["methods"])
    assert ran == {"retrain", *RUNNABLE}


@pytest.mark.parametrize("name", _known("class", RUNNABLE))
def test_class_forgetting_reaches_the_retrained_level_without_collapse(name, class_mlp, class_cnn):
    row, retrain = _case(name, class_mlp, class_cnn)
    assert retrain["forget_accuracy"] == 0.0  # the claim's reference: a model that never saw class 5
    assert row["test_accuracy"] >= retrain["test_accuracy"] - 2 * TEST_TOLERANCE, f"{name} collapsed: {row}"
    if METHODS[name].forgets_classes:
        assert row["forget_accuracy"] <= FORGET_CEILING, f"{name} kept class 5: {row['forget_accuracy']:.4f}"
        assert abs(row["test_accuracy"] - retrain["test_accuracy"]) <= TEST_TOLERANCE, (
            f"{name}: test {row['test_accuracy']:.4f} vs retrain {retrain['test_accuracy']:.4f}")
    else:  # such methods say in their summary that they barely move a whole class
        assert "class" in METHODS[name].summary, f"{name} claims no class forgetting; its summary must say so"


@pytest.mark.parametrize("name", _known("random", RUNNABLE))
def test_random_forgetting_is_no_further_from_retraining_than_the_original(name, random_mlp, random_cnn):
    row, retrain = _case(name, random_mlp, random_cnn)
    original = (random_cnn if METHODS[name].needs_conv else random_mlp)["original"]
    assert row["test_accuracy"] >= retrain["test_accuracy"] - TEST_TOLERANCE, f"{name} collapsed: {row}"
    if any(NO_GAIN in note for note in row["notes"]):
        return  # the method says so (and METHODS.md documents it)
    assert row["gap"]["average"] <= original["gap"]["average"], (
        f"{name}: gap {row['gap']['average']:.4f} > the untouched original's {original['gap']['average']:.4f}")
