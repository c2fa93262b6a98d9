"""``unlearn(model, split, method, **config) -> UnlearnResult``: the one entry point for forgetting.

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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.data.select import ForgetSplit
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError
from unlearnkit.methods import Budget, Method, UnlearnTask, get_method
from unlearnkit.train import TrainConfig

# Why unlearn() refuses a method of another kind, and what runs it instead.
KIND_ADVICE = {
    "attribute": "this method removes an attribute, not samples; use remove_attribute() for it, not unlearn()",
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
            "forget_ids": [int(i) for i in split.forget.ids],
            "forget_ids_sha256": split.ids_digest(),
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
    if isinstance(method, Method):
        if config:
            raise ConfigError("pass hyperparameters either in the Method instance or as keywords, not both")
        instance = method
    else:
        instance = get_method(method)(**config)
    if instance.kind != "samples":
        advice = KIND_ADVICE.get(instance.kind, "unlearn() runs only methods that remove samples (kind 'samples')")
        raise ConfigError(f"method {instance.name!r} is of kind {instance.kind!r}: {advice}")
    if len(split.forget) == 0 or len(split.retain) == 0:
        raise ConfigError("the split needs a non-empty forget set and a non-empty retain set; check the forget spec")
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
