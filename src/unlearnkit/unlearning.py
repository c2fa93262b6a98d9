"""The entry points for forgetting: ``unlearn(model, split, method, **config)`` removes samples and
``remove_attribute(model, data, attribute, method, **config)`` removes an attribute's influence; both return an
``UnlearnResult``.

The input model is never mutated; the result holds a new ``nn.Module`` of the same architecture.

Example:
    >>> from unlearnkit import load_dataset, select, unlearn, fit, TrainConfig, build_model
    >>> data = load_dataset("digits")
    >>> model = fit(build_model("mlp", data.spec), data.train, TrainConfig(epochs=5), progress=False)
    >>> split = select(data.train, "class:3", seed=0)
    >>> result = unlearn(model, split, "gradient-ascent", train_config=TrainConfig(epochs=5), progress=False)
    >>> result.method
    'gradient-ascent'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data.dataset import DatasetBundle, IndexedDataset
from unlearnkit.data.select import ForgetSplit
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError
from unlearnkit.methods import AttributeTask, Budget, Method, UnlearnTask, get_method
from unlearnkit.methods.base import multitask_methods
from unlearnkit.models.multitask import check_tasks, is_multitask, task_targets
from unlearnkit.train import TrainConfig

# Why an entry point refuses a method of another kind, and what runs it instead.
KIND_ADVICE = {
    "attribute": "this method removes an attribute, not samples; use remove_attribute() for it, not unlearn()",
    "samples": "this method removes samples, not an attribute; use unlearn() with a forget split for it",
}


@dataclass
class UnlearnResult:
    """The unlearned model, what produced it, and how long it took."""

    model: nn.Module
    method: str
    config: dict
    seconds: float
    seed: int
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # structured facts the method reported (task.info)

    def history_entry(self, split: ForgetSplit) -> dict:
        """The record a checkpoint's history keeps for this forget operation."""
        return {
            "method": self.method,
            "config": self.config,
            "forget_spec": split.spec,
            "seed": self.seed,
            "n_forget": len(split.forget),
            # partial-task forgetting removes these tasks' labels of the samples, not the samples
            **({"forget_tasks": list(split.tasks)} if split.partial else {}),
            "forget_ids": [int(i) for i in split.forget.ids],
            "forget_ids_sha256": split.ids_digest(),
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
            **({"info": self.info} if self.info else {}),
        }

    def attribute_history_entry(self, attribute: str, n_train: int) -> dict:
        """The record a checkpoint's history keeps for an attribute removal."""
        return {
            "method": self.method,
            "config": self.config,
            "attribute": attribute,
            "seed": self.seed,
            "n_train": n_train,
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
            **({"info": self.info} if self.info else {}),
        }


def unlearn(
    model: nn.Module,
    split: ForgetSplit,
    method: str | Method,
    *,
    train_config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    holdout: IndexedDataset | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    **config,
) -> UnlearnResult:
    """Remove the influence of ``split.forget`` from ``model``.

    Args:
        model: the trained classifier; left untouched.
        split: forget and retain sets (see :func:`unlearnkit.data.select`).
        method: a registered method name (``unlearn methods``) or a configured ``Method`` instance, of kind
            "samples" (``Method.kind``; a method that removes an attribute is refused).
        train_config: the recipe the model was trained with (``retrain`` reuses it; others take
            their optimizer and learning rate scale from it). Defaults to ``TrainConfig()``.
        device: ``None`` picks cuda > mps > cpu.
        seed: seeds all of the method's randomness; same seed, same weights (on CPU).
        budget: optional wall-clock / epoch limits.
        holdout: data the model never saw (test/val), used only for calibration such as early stops.
        progress: progress bars (default: only on a terminal).
        checkpoint: the path the model was loaded from; methods with ``requires`` (sisa, amnesiac) read
            the files training saved beside it.
        **config: the method's hyperparameters (see ``Method.params()``).
    """
    instance = _configured(method, config, "samples")
    if len(split.forget) == 0 or len(split.retain) == 0:
        raise ConfigError("the split needs a non-empty forget set and a non-empty retain set; check the forget spec")
    check_multitask(model, split, instance)
    if instance.requires and checkpoint is None:
        raise ConfigError(f"method {instance.name!r} needs {instance.requires}; pass its path as checkpoint= "
                          "(the CLI's --checkpoint does this)")
    dev = resolve_device(device)
    task = UnlearnTask(
        model=model, split=split, train_config=train_config or TrainConfig(), device=dev, seed=seed,
        budget=budget, holdout=holdout, progress=progress,
        checkpoint=None if checkpoint is None else Path(checkpoint),
    )
    instance = instance.for_task(task)  # auto defaults follow what is forgotten (classes or samples)
    return _run(instance, task)


def remove_attribute(
    model: nn.Module,
    data: DatasetBundle | IndexedDataset,
    attribute: str,
    method: str | Method,
    *,
    train_config: TrainConfig | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    val: IndexedDataset | None = None,
    progress: bool | None = None,
    checkpoint: str | Path | None = None,
    counterfactual: Callable[[IndexedDataset, str, torch.Tensor], torch.Tensor] | None = None,
    **config,
) -> UnlearnResult:
    """Remove the influence of ``attribute`` (a sensitive attribute or a spurious feature) from ``model``.

    Args:
        model: the trained classifier; left untouched. Its penultimate features are the input of its output
            layer (a final ``nn.Linear``, named ``classifier`` in every registered architecture).
        data: the data the model was trained on, with ``attributes[attribute]``: a ``DatasetBundle`` (its
            ``train`` and, when present, ``val``) or its training ``IndexedDataset``.
        attribute: the attribute's name (e.g. ``"color"``).
        method: a registered method of kind "attribute" (``unlearn methods``) or a configured instance.
        train_config: the recipe the model was trained with (``retrain-balanced`` reuses it; others take their
            optimizer and learning-rate scale from it). Defaults to ``TrainConfig()``.
        val: held-out data from the training distribution with the attribute (default: ``data.val``); methods
            use it for calibration, and ``dfr`` trains its head on a group-balanced subset of it.
        counterfactual: re-renders samples with other attribute values, ``counterfactual(data, attribute, values)
            -> x`` (default: ``data.counterfactual`` when ``data`` is a ``DatasetBundle``, which the biased sources
            set); methods that train on counterfactual samples (``counterfactual-top``) need it.
        Other arguments as in :func:`unlearn`.

    Raises:
        ConfigError: the data lacks the attribute, the attribute takes a single value, or the method is not of
            kind "attribute".
    """
    train = data.train if isinstance(data, DatasetBundle) else data
    if val is None and isinstance(data, DatasetBundle):
        val = data.val
    if counterfactual is None and isinstance(data, DatasetBundle):
        counterfactual = data.counterfactual
    instance = _configured(method, config, "attribute")
    check_attribute(train, attribute)
    if val is not None and attribute not in val.attributes:
        raise ConfigError(f"the validation data has no attribute {attribute!r}; pass val data with it, or none")
    dev = resolve_device(device)
    task = AttributeTask(model=model, train=train, attribute=attribute, train_config=train_config or TrainConfig(),
                         device=dev, seed=seed, budget=budget, val=val, progress=progress,
                         checkpoint=None if checkpoint is None else Path(checkpoint), counterfactual=counterfactual)
    return _run(instance, task)


def _configured(method: str | Method, config: dict, kind: str) -> Method:
    """The method to run: a registered name configured with ``config``, or an instance (then ``config`` must be
    empty); refused in one line, with :data:`KIND_ADVICE`, when it is not of ``kind``."""
    if isinstance(method, Method):
        if config:
            raise ConfigError("pass hyperparameters either in the Method instance or as keywords, not both")
        instance = method
    else:
        instance = get_method(method)(**config)
    if instance.kind != kind:
        advice = KIND_ADVICE.get(instance.kind, f"this entry point runs only methods of kind {kind!r}")
        raise ConfigError(f"method {instance.name!r} is of kind {instance.kind!r}: {advice}")
    return instance


def _run(instance: Method, task: UnlearnTask | AttributeTask) -> UnlearnResult:
    """Run a configured method on its task, seeded and timed; the input model keeps its mode and is never returned.
    Shared by :func:`unlearn` and :func:`remove_attribute`."""
    model, dev, seed = task.model, task.device, task.seed
    original_mode = model.training
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        new_model = instance.run(task)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    model.train(original_mode)
    if new_model is model:
        raise RuntimeError(f"method {instance.name!r} returned the input model; methods must work on a copy")
    return UnlearnResult(
        model=new_model.eval(), method=instance.name, config=instance.resolved_config(), seconds=seconds,
        seed=seed, notes=list(task.notes), info=dict(task.info),
    )


def check_multitask(model: nn.Module, split: ForgetSplit, method: Method) -> None:
    """Refuse, in one line: a ``@TASK`` scope on a single-task model, a scope naming a task the model lacks, a
    multi-task model's data without its tasks, or a method that does not serve multi-task models."""
    if not is_multitask(model):
        if split.tasks:
            raise ConfigError(f"forget spec {split.spec!r} scopes tasks, but this model has a single task; drop the "
                              "@TASK suffix, or train a multi-task model (--model mtl-mlp or mtl-cnn)")
        return
    check_tasks(model, split.tasks)
    task_targets(model, split.forget)  # the data carries every task of the model
    if not method.multitask:
        raise ConfigError(f"method {method.name!r} does not serve multi-task models; use one of: "
                          f"{', '.join(multitask_methods())}")


def check_attribute(data: IndexedDataset, attribute: str) -> None:
    """Refuse, in one line, an attribute ``data`` does not have or that takes a single value there."""
    if attribute not in data.attributes:
        have = ", ".join(sorted(data.attributes)) or "none"
        raise ConfigError(f"the data has no attribute {attribute!r} (its attributes: {have}); choose one of them, "
                          "or a dataset with attributes (`unlearn datasets`)")
    if len(torch.unique(data.attributes[attribute])) < 2:
        raise ConfigError(f"attribute {attribute!r} takes a single value on this data: there is nothing to remove")
