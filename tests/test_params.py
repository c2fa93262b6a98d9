"""Tests for unlearnkit.params: the constraint types against an oracle, the one message template, coercion.

The oracle for intervals is scikit-learn's own ``Interval`` (``sklearn.utils._param_validation``), whose habit this
module copies; the two differ on purpose in two places, both written out below: booleans are not numbers here, and an
unbounded end is always open (infinity is not "a float in [0, inf)").
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pytest
from sklearn.utils._param_validation import Interval as SkInterval

from unlearnkit import params as params_module
from unlearnkit.errors import ConfigError
from unlearnkit.params import (
    AT_LEAST_ONE,
    AT_LEAST_ZERO,
    CLOSED,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    InstanceOf,
    Interval,
    Options,
    Params,
    coerce,
    describe,
    param,
    validate,
)

# --- Interval against scikit-learn ----------------------------------------------------------------------------------

FLOAT_VALUES = [-math.inf, -2.5, -1, -1.0, -1e-12, 0, 0.0, 1e-300, 0.5, 1, 1.0, 1.5, 2, 2.0, 3.7, math.inf, math.nan,
                np.float64(0.5), np.float32(2.0), np.int64(1)]
INT_VALUES = [-2, -1, 0, 1, 2, 3, np.int64(2), 1.0, 2.5, math.inf, math.nan, -math.inf]
BOUNDS = [(None, None), (0, None), (None, 2), (0, 2), (-1, 1)]


def _sklearn_accepts(kind: type, left, right, closed: str, value) -> bool:
    # An unbounded end is open here; sklearn closes it if asked (and then takes inf), so ask it for the open end.
    left_closed = left is not None and closed in ("left", "both")
    right_closed = right is not None and closed in ("right", "both")
    closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}[
        (left_closed, right_closed)]
    sk = SkInterval(Integral if kind is int else Real, left, right, closed=closed)
    if not isinstance(value, Integral if kind is int else Real):
        return False  # sklearn checks the type before comparing
    return sk.is_satisfied_by(value)


@pytest.mark.parametrize("closed", CLOSED)
@pytest.mark.parametrize(("left", "right"), BOUNDS)
@pytest.mark.parametrize("kind", [int, float])
def test_interval_matches_sklearn(kind, left, right, closed):
    ours = Interval(kind, left, right, closed=closed)
    for value in FLOAT_VALUES if kind is float else INT_VALUES:
        expected = _sklearn_accepts(kind, left, right, closed, value)
        assert ours.accepts(value) == expected, (ours, value)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("constraint", [POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, AT_LEAST_ZERO, FRACTION])
def test_booleans_are_not_numbers(constraint, value):
    """sklearn's Interval(Real, ...) takes True as 1; a flag passed as a learning rate is a mistake here."""
    assert not constraint.accepts(value)


# --- a table of accepted and refused values, constraint by constraint ----------------------------------------------

TABLE = [
    # constraint, accepted, refused
    (POSITIVE, [1e-300, 0.4, 1, 1e300, np.float64(2.0), Fraction(1, 3)],
     [0, 0.0, -0.0, -1, math.inf, math.nan, "1", None, True]),
    (NON_NEGATIVE, [0, 0.0, -0.0, 5, 2e-3], [-1e-12, math.inf, -math.inf, math.nan, "0", None]),
    (AT_LEAST_ONE, [1, 2, 10**30, np.int64(3)], [0, -1, 1.0, 2.5, math.inf, math.nan, "2", True, None]),
    (AT_LEAST_ZERO, [0, 1], [-1, 0.0, math.nan, False]),
    (FRACTION, [1e-9, 0.5, 1, 1.0], [0, 0.0, 1.0000001, -0.5, math.nan, math.inf]),
    (Interval(float, 0, 1, closed="neither"), [0.5, 1e-9, 0.999999], [0, 1, 1.0, math.nan]),
    (Interval(float, 0, 1, closed="both"), [0, 0.0, 1, 0.3], [-1e-9, 1.0000001, math.nan]),
    (Interval(float, 0, math.inf, closed="both"), [0, 1, math.inf], [-1, math.nan, -math.inf]),
    (Interval(int, 1, 1, closed="both"), [1], [0, 2, 1.0]),
    (Interval(float, None, None, closed="neither"), [-1e300, 0, 1e300], [math.inf, -math.inf, math.nan]),
    (Options("cosine", "constant"), ["cosine", "constant"], ["linear", "Cosine", "", 1, None]),
    (Options(1, 2), [1, 2], [True, 1.0, "1", 3]),
    (InstanceOf(bool), [True, False], [1, 0, "true", "x", None, np.bool_(True)]),
    (InstanceOf(str), ["", "x"], [1, None, b"x"]),
    (InstanceOf(float), [0, 1.5, -2], [math.nan, math.inf, True, "1.5"]),
    (InstanceOf(int), [0, -3, np.int64(4)], [2.5, 2.0, True, "2"]),
]


@pytest.mark.parametrize(("constraint", "accepted", "refused"), TABLE, ids=[repr(row[0]) for row in TABLE])
def test_accepted_and_refused_values(constraint, accepted, refused):
    for value in accepted:
        assert constraint.accepts(value), (constraint, value)
    for value in refused:
        assert not constraint.accepts(value), (constraint, value)


@pytest.mark.parametrize(("constraint", "words"), [
    (POSITIVE, "a float in (0, inf)"),
    (NON_NEGATIVE, "a float in [0, inf)"),
    (AT_LEAST_ONE, "an int in [1, inf)"),
    (FRACTION, "a float in (0, 1]"),
    (Interval(float, 0, 1, closed="neither"), "a float in (0, 1)"),
    (Interval(float, 1e-9, None), "a float in [1e-09, inf)"),
    (Interval(float, None, 0, closed="both"), "a float in (-inf, 0]"),
    (Interval(float, 0, math.inf, closed="both"), "a float in [0, inf]"),
    (Options("cosine", "constant"), "one of 'cosine', 'constant'"),
    (InstanceOf(bool), "a bool"),
    (InstanceOf(float), "a finite float"),
    (InstanceOf(int), "an int"),
])
def test_descriptions(constraint, words):
    assert constraint.describe() == words == str(constraint)


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: Interval(complex, 0, 1), TypeError, "Interval type must be int or float"),
    (lambda: Interval(float, 0, 1, closed="open"), ValueError, "closed must be one of"),
    (lambda: Interval(float, 2, 1), ValueError, "empty interval: left 2 > right 1"),
    (lambda: Interval(float, math.nan, 1), ValueError, "interval ends must be numbers or None, got nan"),
    (lambda: Interval(float, "0", 1), ValueError, "interval ends must be numbers or None"),
    (lambda: Options(), ValueError, "Options needs at least one value"),
    (lambda: param(1, (0, 1)), TypeError, r"param\(\) needs a Constraint"),
])
def test_bad_declarations_fail_at_import_time(make, error, message):
    with pytest.raises(error, match=message):
        make()


# --- validate: one template naming owner, field and value ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Demo(Params):
    owner = "demo 'd'"

    rate: float = param(0.5, POSITIVE)
    steps: int = param(2, AT_LEAST_ONE)
    clip: float | None = param(None, POSITIVE)  # None: no clipping
    limit: int | None = None  # no declared constraint: the type hint alone
    mode: str = param("a", Options("a", "b"), hint="b is the slow one")
    flag: bool = True
    label: str = "x"
    ratio: float = 1.0  # a float without a declaration must still be finite


@pytest.mark.parametrize(("changes", "message"), [
    ({"rate": math.nan}, "parameter 'rate' of demo 'd' must be a float in (0, inf), got nan"),
    ({"rate": math.inf}, "parameter 'rate' of demo 'd' must be a float in (0, inf), got inf"),
    ({"rate": 0}, "parameter 'rate' of demo 'd' must be a float in (0, inf), got 0"),
    ({"rate": None}, "parameter 'rate' of demo 'd' must be a float in (0, inf), got None"),
    ({"steps": 2.5}, "parameter 'steps' of demo 'd' must be an int in [1, inf), got 2.5"),
    ({"steps": "3"}, "parameter 'steps' of demo 'd' must be an int in [1, inf), got '3'"),
    ({"clip": -1.0}, "parameter 'clip' of demo 'd' must be a float in (0, inf) or None, got -1.0"),
    ({"limit": 1.5}, "parameter 'limit' of demo 'd' must be an int or None, got 1.5"),
    ({"mode": "c"}, "parameter 'mode' of demo 'd' must be one of 'a', 'b', got 'c'; b is the slow one"),
    ({"flag": "x"}, "parameter 'flag' of demo 'd' must be a bool, got 'x'"),
    ({"flag": 1}, "parameter 'flag' of demo 'd' must be a bool, got 1"),
    ({"label": 3}, "parameter 'label' of demo 'd' must be a str, got 3"),
    ({"ratio": math.nan}, "parameter 'ratio' of demo 'd' must be a finite float, got nan"),
    ({"label": ["y"] * 40}, "parameter 'label' of demo 'd' must be a str, got " + repr(["y"] * 40)[:57] + "..."),
])
def test_one_message_template(changes, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$") as info:
        Demo(**changes)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):  # replace() runs the same checks
        dataclasses.replace(Demo(), **changes)


def test_valid_values_are_stored_unchanged():
    demo = Demo(rate=1, steps=3, clip=None, limit=4, mode="b", flag=False, label="", ratio=-2)
    assert (demo.rate, demo.steps, demo.clip, demo.limit, demo.mode, demo.flag, demo.ratio) == (
        1, 3, None, 4, "b", False, -2)
    assert type(demo.rate) is int  # stored as given, like scikit-learn's hyperparameters
    validate(demo)


def test_owner_defaults_to_the_class_name():
    @dataclasses.dataclass(frozen=True)
    class Anonymous(Params):
        rate: float = param(0.5, POSITIVE)

    with pytest.raises(ConfigError, match=r"^parameter 'rate' of test_owner_defaults_to_the_class_name.<locals>"
                                          r".Anonymous must be a float in \(0, inf\), got -1$"):
        Anonymous(rate=-1)


def test_describe_lists_every_field():
    assert describe(Demo) == {
        "rate": "a float in (0, inf)", "steps": "an int in [1, inf)", "clip": "a float in (0, inf) or None",
        "limit": "an int or None", "mode": "one of 'a', 'b'", "flag": "a bool", "label": "a str",
        "ratio": "a finite float",
    }


# --- coerce: strings as --param gives them ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "value"), [
    ("rate", "0.25", 0.25), ("rate", "1", 1.0), ("rate", "1e-3", 1e-3),
    ("rate", "x", "x"),  # left as it is, for validate to refuse by name
    ("steps", "3", 3), ("steps", "2.5", "2.5"), ("steps", "nan", "nan"),
    ("clip", "none", None), ("clip", "None", None), ("clip", "null", None), ("clip", "2", 2.0),
    ("rate", "none", "none"),  # None only where the hint allows it
    ("limit", "7", 7), ("limit", "NONE", None),
    ("mode", "b", "b"),
    ("flag", "true", True), ("flag", "Yes", True), ("flag", "1", True), ("flag", "false", False),
    ("flag", "no", False), ("flag", "0", False), ("flag", "maybe", "maybe"),
    ("label", "none", "none"),
])
def test_coerce(name, text, value):
    assert coerce(Demo, name, text) == value
    assert type(coerce(Demo, name, text)) is type(value)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_strings_become_floats_and_are_refused_by_name(text):
    value = coerce(Demo, "rate", text)
    assert isinstance(value, float) and not math.isfinite(value)
    with pytest.raises(ConfigError, match=r"^parameter 'rate' of demo 'd' must be a float in \(0, inf\), got "):
        Demo(rate=value)


def test_non_strings_pass_through_coerce():
    assert coerce(Demo, "rate", math.nan) is not None and math.isnan(coerce(Demo, "rate", math.nan))
    assert coerce(Demo, "steps", 2.5) == 2.5


# --- the module stays small ------------------------------------------------------------------------------------------

def test_params_imports_only_the_standard_library_and_errors():
    """train.py and methods/ both import it: anything else risks an import cycle."""
    tree = ast.parse(Path(params_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"__future__"} <= {"dataclasses", "functools", "math", "numbers", "types", "typing",
                                         "unlearnkit.errors"}
