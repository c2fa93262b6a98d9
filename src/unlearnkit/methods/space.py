"""Search spaces for ``unlearn tune``: each method declares the ranges worth searching next to its ``Config``.

    search_space = {"lr_scale": Float(0.01, 1.0, log=True), "epochs": Int(1, 6)}

A space only describes ranges; ``suggest(trial, name)`` asks an Optuna trial (or anything with the same
``suggest_float`` / ``suggest_int`` / ``suggest_categorical`` methods) for a value, so this module imports no
tuning library. Every range holds the method's default, so a study can start from the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Float:
    """A real value in [low, high]; ``log`` samples its logarithm uniformly (for scales and rates)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad float range [{self.low}, {self.high}] (log={self.log})")

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def contains(self, value) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high

    @property
    def ends(self) -> tuple:
        return (self.low, self.high)


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both included)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad int range [{self.low}, {self.high}] (log={self.log})")

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def contains(self, value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    @property
    def ends(self) -> tuple:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    """One of a few values (numbers, strings, booleans)."""

    values: tuple

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise ValueError(f"a choice needs at least two values, got {self.values}")

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.values))

    def contains(self, value) -> bool:
        return value in self.values

    @property
    def ends(self) -> tuple:
        return tuple(self.values)


Space = Float | Int | Choice
