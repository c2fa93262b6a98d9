"""The method interface: ``Method``, its ``Config`` dataclass, the registry, and ``UnlearnTask``.

A method is one small file: a ``Method`` subclass with class attributes ``name``, ``summary``,
``reference`` and capability flags, a frozen ``Config`` dataclass whose defaults are the tuned
recipe, and ``run(task) -> nn.Module``. The Config subclasses :class:`unlearnkit.params.Params` and declares each
field's constraint beside its default (``lr_scale: float = param(0.4, POSITIVE)``), so every way of building it
(``Config(...)``, ``make_config`` from ``--param`` strings, ``Method(config, **overrides)``) checks it the same way.
``@register`` adds it to ``METHODS``; the conformance suite (tests/test_methods_conformance.py) then tests it
automatically, including values just outside each declared constraint.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.data.select import ForgetSplit
from unlearnkit.errors import ConfigError
from unlearnkit.methods.space import Space
from unlearnkit.params import AT_LEAST_ONE, POSITIVE, Options, Params, autos, coerce_overrides, describe, param
from unlearnkit.registry import Registry
from unlearnkit.train import SCHEDULES, TrainConfig

# What a method removes. "samples": the forget set's rows (``unlearn``); "attribute": a feature of every row
# (``remove_attribute``, not ``unlearn``).
KINDS = ("samples", "attribute")
SCHEDULE = Options(*SCHEDULES)  # the learning-rate schedule of a method's own training loop


# The phrase of UnlearnTask.note_no_gain: tests and users can find such notes by it.
NO_GAIN = "not expected to end closer to retraining than the original"


@dataclass(frozen=True)
class Budget(Params):
    """Limits on an unlearning run. ``seconds``: wall-clock cap (loops stop at the next step and
    note it); ``epochs``: a cap on any method's own epoch count."""

    owner = "Budget"

    seconds: float | None = param(None, POSITIVE)
    epochs: int | None = param(None, AT_LEAST_ONE)


class TaskTools:
    """What every task gives a method, whatever it removes (samples or an attribute): a trainable copy of the
    original model, seeded generators, the budget's caps, and notes. Subclasses are dataclasses with the fields
    ``model``, ``device``, ``seed``, ``budget``, ``notes`` and ``_start``."""

    def clone_model(self) -> nn.Module:
        """A trainable deep copy of the original model on the task's device."""
        model = copy.deepcopy(self.model).to(self.device)
        for p in model.parameters():
            p.requires_grad_(True)
        return model.train()

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the task seed (offset separates independent streams)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def epochs(self, wanted: int) -> int:
        """The method's epoch count, capped by the budget."""
        if self.budget is not None and self.budget.epochs is not None and wanted > self.budget.epochs:
            self.note(f"epochs capped by budget: {wanted} -> {self.budget.epochs}")
            return self.budget.epochs
        return wanted

    def out_of_time(self) -> bool:
        """True once the wall-clock budget is spent (recorded once in the notes)."""
        if self.budget is None or self.budget.seconds is None:
            return False
        if time.perf_counter() - self._start < self.budget.seconds:
            return False
        self.note(f"stopped early: time budget of {self.budget.seconds:g}s spent")
        return True

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class UnlearnTask(TaskTools):
    """Everything a method of kind "samples" receives. ``model`` is the original and must never be mutated:
    methods start from :meth:`clone_model`.

    ``holdout`` is optional data the model never trained on (the test or validation split); methods
    may use it only for calibration (e.g. gradient ascent's early stop), never as training data.
    """

    model: nn.Module
    split: ForgetSplit
    train_config: TrainConfig
    device: torch.device
    seed: int = 0
    budget: Budget | None = None
    holdout: IndexedDataset | None = None
    progress: bool | None = None
    # The checkpoint the model was loaded from (without suffix), for methods that read what training saved
    # beside it (SISA slices, recorded updates); None for a model built in memory.
    checkpoint: Path | None = None
    notes: list[str] = field(default_factory=list)
    # Structured facts a method reports beside its model (e.g. SISA's retrained_shards); JSON-serialisable,
    # copied to UnlearnResult.info, the CLI's --json and the checkpoint history.
    info: dict = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def note_no_gain(self, why: str) -> None:
        """Note that on this split the method is not expected to end closer to retraining than the untouched
        original (the defaults suite measured so; docs/METHODS.md lists such cases), and why."""
        self.note(f"{why}: {NO_GAIN} on random or subject forgetting (defaults suite, docs/METHODS.md)")


@dataclass
class AttributeTask(TaskTools):
    """Everything a method of kind "attribute" receives: the original model (never mutated), the data it was
    trained on with the attribute to remove (``train.attributes[attribute]``), and the recipe.

    ``val`` is optional held-out data from the training distribution, with the attribute: methods may use it for
    calibration and model selection (an early stop), and those that say so in their summary train their head on
    a group-balanced subset of it (as deep feature reweighting does). The test split is never given.

    ``counterfactual`` is the data source's renderer, when it has one (``DatasetBundle.counterfactual``, the biased
    sources): ``counterfactual(data, attribute, values) -> x``, the rows of ``data`` as they would be with the
    attribute set to ``values`` (one per row). None otherwise; methods that need it (``counterfactual-top``) say so.
    """

    model: nn.Module
    train: IndexedDataset
    attribute: str
    train_config: TrainConfig
    device: torch.device
    seed: int = 0
    budget: Budget | None = None
    val: IndexedDataset | None = None
    progress: bool | None = None
    checkpoint: Path | None = None
    counterfactual: Callable[[IndexedDataset, str, torch.Tensor], torch.Tensor] | None = field(
        default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def values(self, data: IndexedDataset | None = None) -> torch.Tensor:
        """The attribute of every sample of ``data`` (default: ``train``)."""
        return (self.train if data is None else data).attributes[self.attribute]

    def groups(self, data: IndexedDataset | None = None) -> torch.Tensor:
        """Each sample's group, label x attribute, as one int: ``label * n_values + value``."""
        data = self.train if data is None else data
        return data.y * self.n_values + self.values(data)

    @property
    def n_values(self) -> int:
        """How many values the attribute takes (its largest value + 1 on the training data)."""
        return int(self.values().max()) + 1


class Method(ABC):
    """Base class of every unlearning method.

    Subclasses set ``name``, ``summary``, ``reference``, the flags, and a frozen ``Config`` dataclass,
    and implement :meth:`run`. Hyperparameters are the Config's fields, with defaults, and nothing else.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    reference: ClassVar[str]
    exact: ClassVar[bool] = False  # the result equals retraining without the forget set
    needs_retain: ClassVar[bool] = True  # reads the retain set
    needs_forget: ClassVar[bool] = True  # reads the forget set
    needs_conv: ClassVar[bool] = False  # works only on models with conv layers (raises ConfigError otherwise)
    certified: ClassVar[bool] = False  # comes with a removal guarantee (a bound on the distance to retraining)
    # Claims class forgetting: with its defaults, forgetting whole classes drives their forget accuracy to the
    # retrained model's level (0) at a test accuracy near retraining's (benchmarks/check_defaults.py checks it on
    # the defaults suite; tests/test_claims.py on a test-sized version). False for methods that by design barely
    # move a whole class; their summary says so.
    forgets_classes: ClassVar[bool] = True
    # What the method removes (one of KINDS): "samples" (the forget set; run by ``unlearn``) or "attribute" (a
    # feature of every sample; such methods are refused by ``unlearn`` and run by ``remove_attribute``).
    kind: ClassVar[str] = "samples"
    # What the method needs beyond a trained model, in words (None: nothing), e.g. "a checkpoint trained with
    # --record-updates". Such methods read training-time files beside ``task.checkpoint``; unlearn() refuses
    # them without a checkpoint path, and they have their own test modules instead of the conformance suite.
    requires: ClassVar[str | None] = None
    # Serves multi-task models (unlearnkit.models.multitask): applies its losses to the scoped tasks' labels of the
    # forget samples and keeps every label that remains (ForgetSplit.forget_targets / remaining). False: unlearn()
    # refuses a multi-task model in one line.
    multitask: ClassVar[bool] = False
    # Hyperparameter name -> range for `unlearn tune` (unlearnkit.methods.space: Float, Int, Choice); declared
    # next to each Config. Empty: nothing to tune (retrain).
    search_space: ClassVar[dict[str, Space]] = {}

    @dataclass(frozen=True)
    class Config(Params):
        """Hyperparameters, each declared with its default and constraint (:func:`unlearnkit.params.param`)."""

    def __init__(self, config: Config | None = None, **overrides) -> None:
        if config is None:
            self.config = self.make_config(**overrides)
            return
        if not isinstance(config, self.Config):
            raise ConfigError(f"method {self.name!r} needs a {type(self).__name__}.Config, got "
                              f"{type(config).__name__}")
        self.config = dataclasses.replace(config, **self._values(overrides)) if overrides else config

    @classmethod
    def params(cls) -> dict[str, object]:
        """Hyperparameter name -> default."""
        return {f.name: f.default for f in dataclasses.fields(cls.Config)}

    @classmethod
    def constraints(cls) -> dict[str, str]:
        """Hyperparameter name -> its declared constraint in words, e.g. ``{"lr_scale": "a float in (0, inf)"}``."""
        return describe(cls.Config)

    @classmethod
    def make_config(cls, **overrides) -> Config:
        """Build the Config from keyword overrides, refusing unknown names and coercing strings
        (as they come from ``--param key=value``) to the declared types; the Config checks the values."""
        values = cls._values(overrides)
        try:
            return cls.Config(**values)
        except TypeError as exc:
            raise ConfigError(f"bad parameters for method {cls.name!r}: {exc}") from exc

    @classmethod
    def _values(cls, overrides: dict) -> dict:
        return coerce_overrides(cls.Config, f"method {cls.name!r}", overrides)

    @classmethod
    def auto_rules(cls) -> dict[str, str]:
        """Field name -> its auto rule in words, for the fields whose default depends on what is forgotten."""
        return {name: rule.describe() for name, rule in autos(cls.Config).items()}

    def for_task(self, task: UnlearnTask) -> Method:
        """This method with every auto field (value None, an ``auto`` rule declared) resolved for ``task``: the
        configuration that actually runs, and that :meth:`resolved_config` then reports."""
        rules = autos(self.Config)
        split = getattr(task, "split", None)  # an attribute task forgets no samples: its rules have nothing to read
        if split is None:
            return self
        resolved = {name: rule.pick(split, task.train_config.batch_size) for name, rule in rules.items()
                    if getattr(self.config, name) is None}
        if not resolved:
            return self
        return type(self)(dataclasses.replace(self.config, **resolved))

    def resolved_config(self) -> dict[str, object]:
        return dataclasses.asdict(self.config)

    @abstractmethod
    def run(self, task: UnlearnTask | AttributeTask) -> nn.Module:
        """Return a new model that has forgotten ``task.split.forget`` (kind "samples") or no longer relies on
        ``task.attribute`` (kind "attribute"); never mutate ``task.model``."""


@dataclass(frozen=True)
class ByTarget:
    """An auto rule: a hyperparameter's default chosen by what is forgotten, ``classes`` when the forget set is
    whole classes (no retained sample shares its labels) and ``samples`` otherwise (random samples, subjects).

    Class forgetting wants the class's accuracy driven to 0; random forgetting only wants memorised samples
    brought down to the level of unseen data, where the same strength wrecks the model. Declared next to the
    default, with the tuning evidence in a comment: ``lr_scale: float | None = param(None, POSITIVE,
    auto=ByTarget(classes=2.0, samples=0.5))``.
    """

    classes: object
    samples: object

    def pick(self, split: ForgetSplit, batch_size: int | None = None) -> object:
        return self.classes if split.forgets_whole_classes() else self.samples

    def describe(self) -> str:
        return f"auto: {self.classes!r} when whole classes are forgotten, else {self.samples!r}"


@dataclass(frozen=True)
class ByTargetPerStep:
    """An auto rule for a learning-rate scale: ``classes`` when whole classes are forgotten; otherwise ``samples``
    times ``reference_steps`` / the steps per epoch over the ``over`` set (``"retain"`` or ``"forget"``: its size
    over the batch size), so that an epoch moves the model by about as much on a large set as on a small one.
    Measured for random-label on random forgetting: 0.02 suits the digits recipe (21 retain steps per epoch) and
    0.005 the Fashion-MNIST one (71 steps), where 0.02 ends further from retraining than the original; and for
    boundary-shrink, which trains on the forget set only: 0.01 at digits' 3 forget steps, at most 0.004 at
    Fashion-MNIST's 16 (docs/DEFAULTS.md)."""

    classes: float
    samples: float
    reference_steps: int = 21  # digits: 1,294 retain samples of a random 10% forget, batch 64
    over: str = "retain"

    scaled: tuple[str, ...] = ("samples",)  # which of the two values follow the steps ("classes", "samples")
    power: float = 1.0  # value x (reference_steps / steps) ** power: 1 keeps an epoch's movement, 0.5 halfway

    def __post_init__(self) -> None:
        if self.over not in ("retain", "forget"):
            raise ValueError(f"ByTargetPerStep.over must be 'retain' or 'forget', got {self.over!r}")
        if not self.scaled or not set(self.scaled) <= {"classes", "samples"}:
            raise ValueError(f"ByTargetPerStep.scaled must name 'classes' and/or 'samples', got {self.scaled!r}")

    def pick(self, split: ForgetSplit, batch_size: int | None = None) -> float:
        target = "classes" if split.forgets_whole_classes() else "samples"
        value = getattr(self, target)
        if target not in self.scaled:
            return value
        data = split.retain if self.over == "retain" else split.forget
        steps = math.ceil(len(data) / (batch_size or 64))
        return value * (self.reference_steps / max(steps, 1)) ** self.power

    def describe(self) -> str:
        ratio = f"{self.reference_steps} / the {self.over} set's steps per epoch"
        per_step = f" x {ratio}" if self.power == 1 else f" x ({ratio}) ** {self.power!r}"
        classes = f"{self.classes!r}" + (per_step if "classes" in self.scaled else "")
        samples = f"{self.samples!r}" + (per_step if "samples" in self.scaled else "")
        return f"auto: {classes} when whole classes are forgotten, else {samples}"


METHODS: Registry[type[Method]] = Registry("method", listing="unlearn methods")


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry under ``cls.name`` (duplicates refused)."""
    for attr in ("name", "summary", "reference"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__} must set the class attribute {attr!r}")
    if not (dataclasses.is_dataclass(cls.Config) and issubclass(cls.Config, Params)):
        raise TypeError(f"{cls.__name__}.Config must be a dataclass subclassing unlearnkit.params.Params")
    if cls.kind not in KINDS:
        raise TypeError(f"{cls.__name__}.kind must be one of {KINDS}, got {cls.kind!r}")
    owner = f"method {cls.name!r}"
    if vars(cls.Config).get("owner", owner) != owner:
        raise TypeError(f"{cls.__name__} must declare its own Config (this one is {cls.Config.owner}'s)")
    cls.Config.owner = owner  # names the method in the Config's error messages
    return METHODS.add(cls.name, cls)


def get_method(name: str) -> type[Method]:
    return METHODS.get(name)


def multitask_methods() -> list[str]:
    """The registered names of the methods that serve multi-task models, in registration order."""
    return [name for name, cls in METHODS.items() if cls.multitask]


def methods_of_kind(kind: str) -> list[str]:
    """The registered names of the methods of ``kind`` ("samples" or "attribute"), in registration order."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [name for name, cls in METHODS.items() if cls.kind == kind]

