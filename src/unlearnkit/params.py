"""Declared parameter constraints, checked in one place (scikit-learn's ``_param_validation`` habit).

A config dataclass subclasses :class:`Params` and declares each field's constraint next to its default::

    @dataclass(frozen=True)
    class Config(Params):
        epochs: int = param(2, Interval(int, 1, None))  # passes over the retain set
        lr_scale: float = param(0.4, Interval(float, 0, None, closed="neither"))
        schedule: str = param("cosine", Options("cosine", "constant"))
        clip_grad: float | None = param(1.0, Interval(float, 0, None, closed="neither"))  # None: no clipping

Constructing the dataclass (directly, through ``dataclasses.replace`` or ``Method.make_config``) checks every field
and raises :class:`~unlearnkit.errors.ConfigError` with one message template::

    parameter 'lr_scale' of method 'scrub' must be a float in (0, inf), got nan

The type hint decides the type (``int`` refuses 2.5 and True, ``float`` takes ints but refuses bools, NaN and
infinities) and whether ``None`` is allowed (``float | None``); the declared constraint narrows the values. NaN lies
outside every interval, and an unbounded end (``None``) is open, so infinity is refused unless a bound is an explicit
``math.inf`` on a closed end. Rules across fields go in the dataclass's own ``__post_init__``, after
``super().__post_init__()``. This module imports only the standard library and :mod:`unlearnkit.errors`, so both
``train`` and ``methods`` can use it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any, ClassVar

from unlearnkit.errors import ConfigError

CLOSED = ("left", "right", "both", "neither")


class Constraint:
    """A set of allowed values: ``accepts(value)`` and ``describe()`` (the words after "must be")."""

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.describe()


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Interval(Constraint):
    """Numbers of ``type`` (``int`` or ``float``) between ``left`` and ``right``; ``None`` leaves that end unbounded
    (and open: infinity is not a float in ``[0, inf)``). ``closed`` says which ends belong to the interval.

    ``float`` intervals take ints too (``lr_scale=1``); ``int`` intervals take only integers. Booleans are never
    numbers here, and NaN lies outside every interval.

        >>> Interval(float, 0, 1, closed="right").accepts(1.0), Interval(int, 1, None).accepts(2.5)
        (True, False)
    """

    def __init__(self, type: type, left: float | None, right: float | None, *, closed: str = "left") -> None:
        if type not in (int, float):
            raise TypeError(f"Interval type must be int or float, got {type!r}")
        if closed not in CLOSED:
            raise ValueError(f"closed must be one of {CLOSED}, got {closed!r}")
        for end in (left, right):
            if end is not None and (not _is_real(end) or math.isnan(end)):
                raise ValueError(f"interval ends must be numbers or None, got {end!r}")
        if left is not None and right is not None and not left <= right:
            raise ValueError(f"empty interval: left {left} > right {right}")
        self.type, self.left, self.right, self.closed = type, left, right, closed

    def accepts(self, value: Any) -> bool:
        if not (_is_int(value) if self.type is int else _is_real(value)):
            return False
        if value != value:  # NaN
            return False
        if self.left is None:
            above = value > -math.inf
        else:
            above = value >= self.left if self.closed in ("left", "both") else value > self.left
        if self.right is None:
            below = value < math.inf
        else:
            below = value <= self.right if self.closed in ("right", "both") else value < self.right
        return above and below

    def describe(self) -> str:
        left = "-inf" if self.left is None else f"{self.left:g}"
        right = "inf" if self.right is None else f"{self.right:g}"
        opening = "[" if self.left is not None and self.closed in ("left", "both") else "("
        closing = "]" if self.right is not None and self.closed in ("right", "both") else ")"
        article = "an" if self.type is int else "a"
        return f"{article} {self.type.__name__} in {opening}{left}, {right}{closing}"

    def __repr__(self) -> str:
        return f"Interval({self.type.__name__}, {self.left!r}, {self.right!r}, closed={self.closed!r})"


class Options(Constraint):
    """One of a few values, compared by type and value (``Options(1, 2)`` does not take ``True``).

        >>> Options("cosine", "constant").accepts("linear")
        False
    """

    def __init__(self, *values: Any) -> None:
        if not values:
            raise ValueError("Options needs at least one value")
        self.values = values

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def __repr__(self) -> str:
        return f"Options{self.values!r}"


class InstanceOf(Constraint):
    """Any value of ``type``: the constraint of a field that declares none beyond its type hint (``bool``,
    ``str``). A ``float`` must be finite, an ``int`` or ``float`` must not be a bool."""

    def __init__(self, type: type) -> None:
        self.type = type

    def accepts(self, value: Any) -> bool:
        if self.type is float:
            return _is_real(value) and math.isfinite(value)
        if self.type is int:
            return _is_int(value)
        return isinstance(value, self.type)

    def describe(self) -> str:
        name = ("finite " if self.type is float else "") + self.type.__name__
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"

    def __repr__(self) -> str:
        return f"InstanceOf({self.type.__name__})"


class _Anything(Constraint):
    """No constraint: a field whose type hint is not a plain type (a tuple, a union of several types)."""

    def accepts(self, value: Any) -> bool:
        return True

    def describe(self) -> str:
        return "anything"


def param(default: Any, constraint: Constraint, *, hint: str | None = None, auto: Any = None) -> Any:
    """A dataclass field with ``default`` whose values must satisfy ``constraint``; ``hint`` (optional) is
    appended to the error message, e.g. what an unusual option is for. ``auto`` (optional) is a declared rule that
    replaces a ``None`` value when the config is used (an object with ``pick(context)`` and ``describe()``, e.g.
    ``unlearnkit.methods.base.ByTarget``); the default of such a field is ``None``, "auto"."""
    if not isinstance(constraint, Constraint):
        raise TypeError(f"param() needs a Constraint (Interval, Options, InstanceOf), got {constraint!r}")
    if auto is not None and default is not None:
        raise TypeError(f"a field with an auto rule defaults to None (auto), got {default!r}")
    return dataclasses.field(default=default, metadata={"constraint": constraint, "hint": hint, "auto": auto})


def autos(cls: type) -> dict[str, Any]:
    """Field name -> its auto rule, for the fields of dataclass ``cls`` that declare one."""
    return {f.name: f.metadata["auto"] for f in dataclasses.fields(cls) if f.metadata.get("auto") is not None}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts: its constraint, whether ``None`` is allowed (an optional type hint), and a hint."""

    constraint: Constraint
    optional: bool
    hint: str | None = None

    def accepts(self, value: Any) -> bool:
        return (value is None and self.optional) or self.constraint.accepts(value)

    def describe(self) -> str:
        return self.constraint.describe() + (" or None" if self.optional else "")


def _hint_type(hint: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of a type hint such as ``float | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), len(rest) < len(args)
    return hint, False


@functools.cache
def rules(cls: type) -> dict[str, Rule]:
    """Field name -> :class:`Rule` of a dataclass, from its ``param`` declarations and type hints."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind, optional = _hint_type(hints.get(f.name, Any))
        constraint = f.metadata.get("constraint")
        if constraint is None:
            constraint = InstanceOf(kind) if isinstance(kind, type) and not typing.get_args(kind) else _Anything()
        out[f.name] = Rule(constraint, optional, f.metadata.get("hint"))
    return out


def field_type(cls: type, name: str) -> Any:
    """The declared value type of field ``name`` (``float`` for ``float | None``): what strings coerce to."""
    constraint = rules(cls)[name].constraint
    if isinstance(constraint, Interval | InstanceOf):
        return constraint.type
    if isinstance(constraint, Options):
        kinds = {type(v) for v in constraint.values}
        return kinds.pop() if len(kinds) == 1 else str
    return _hint_type(typing.get_type_hints(cls).get(name, Any))[0]


def describe(cls: type) -> dict[str, str]:
    """Field name -> its constraint in words, e.g. ``{"lr_scale": "a float in (0, inf)"}``."""
    return {name: rule.describe() for name, rule in rules(cls).items()}


def owner_of(cls: type) -> str:
    return getattr(cls, "owner", None) or cls.__qualname__


def message(owner: str, name: str, rule: Rule, value: Any) -> str:
    """The one error message: ``parameter 'NAME' of OWNER must be CONSTRAINT, got VALUE[; HINT]``."""
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"parameter {name!r} of {owner} must be {rule.describe()}, got {shown}" + (
        f"; {rule.hint}" if rule.hint else "")


def validate(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its declaration (first failure raises)."""
    cls = type(obj)
    for name, rule in rules(cls).items():
        value = getattr(obj, name)
        if not rule.accepts(value):
            raise ConfigError(message(owner_of(cls), name, rule, value))


def coerce(cls: type, name: str, value: Any) -> Any:
    """``value`` for field ``name`` of ``cls``, converted from a string (as ``--param key=value`` gives it) to the
    declared type; a string that does not convert is returned unchanged, for :func:`validate` to refuse by name."""
    if not isinstance(value, str):
        return value
    rule = rules(cls)[name]
    text = value.strip().lower()
    if rule.optional and text in ("none", "null"):
        return None
    target = field_type(cls, name)
    try:
        if target is bool:
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text, value)
        if target in (int, float):
            return target(value)
    except ValueError:
        return value
    return value


def coerce_overrides(cls: type, owner: str, overrides: dict) -> dict:
    """``overrides`` (``--param key=value``) for the config dataclass ``cls``, each value coerced with :func:`coerce`;
    a name ``cls`` lacks is a one-line error naming ``owner`` and the names it has."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"{owner} has no parameter(s) {unknown}; its parameters: {', '.join(known) or 'none'}")
    return {k: coerce(cls, k, v) for k, v in overrides.items()}


class Params:
    """Base of validated config dataclasses: ``__post_init__`` checks every declared field.

    ``owner`` names the config in messages ("method 'scrub'", "TrainConfig"); cross-field rules go in a
    subclass's ``__post_init__`` after ``super().__post_init__()``.
    """

    owner: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate(self)


# Constraints many configs share, declared once.
POSITIVE = Interval(float, 0, None, closed="neither")  # (0, inf): learning-rate scales, temperatures
NON_NEGATIVE = Interval(float, 0, None, closed="left")  # [0, inf): weights and penalties where 0 switches off
AT_LEAST_ONE = Interval(int, 1, None)  # epochs, counts, batch sizes
AT_LEAST_ZERO = Interval(int, 0, None)  # optional passes where 0 skips them
FRACTION = Interval(float, 0, 1, closed="right")  # (0, 1]: a share of units, layers or samples, not none of them
