"""Relearn time: how many fine-tuning steps on the forget set bring a model's forget accuracy back?

A model that only *hid* the forget set (suppressed its outputs, kept the features) relearns it in
far fewer steps than one that never learned it. Relearn time turns that into a number: fine-tune a
copy of the model on the forget set alone and count the steps until its forget accuracy reaches a
target, usually the original model's (Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless
Net", CVPR 2020; Tarun et al., "Fast Yet Effective Machine Unlearning", 2023). Compare an unlearned
model's count with the retrained model's: fewer steps means knowledge was left behind.

Not under ``metrics/`` because it trains. Run it from Python:

    from unlearnkit.relearn import relearn_time
    result = relearn_time(unlearned, split.forget, target_accuracy=1.0, config=recipe, max_steps=200)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.train import TrainConfig, accuracy_on, batches, check_finite, make_optimizer


@dataclass(frozen=True)
class RelearnResult:
    """Outcome of :func:`relearn_time`.

    Attributes:
        steps: Optimizer steps until forget accuracy first reached the target (0 when the model
            already met it); ``max_steps`` when it never did.
        reached: Whether the target was reached within ``max_steps``.
        accuracies: Forget accuracy at every check, the first before any step.
        checked_at: The step count of each entry of ``accuracies`` (0, k, 2k, ..., and the last step).
    """

    steps: int
    reached: bool
    accuracies: tuple[float, ...]
    checked_at: tuple[int, ...]


def relearn_time(
    model: nn.Module,
    forget: IndexedDataset,
    target_accuracy: float,
    config: TrainConfig,
    *,
    max_steps: int,
    lr_scale: float = 0.1,
    check_every: int = 1,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> RelearnResult:
    """Count the steps of fine-tuning on the forget set alone until forget accuracy reaches a target.

    A deep copy of ``model`` is trained (the input is never changed) with cross-entropy on
    ``forget`` only: the recipe's optimizer, momentum, weight decay and batch size, at a constant
    learning rate ``config.lr * lr_scale`` (no schedule: there is no epoch budget to anneal over).
    Batches cycle through the forget set in an order drawn from ``seed``. Forget accuracy (argmax,
    eval mode) is measured before the first step and after every ``check_every`` steps; a coarser
    check is cheaper on large forget sets but can only report multiples of it.

    Args:
        model: The model to probe, e.g. an unlearned or a retrained model.
        forget: The forget set.
        target_accuracy: The forget accuracy to reach, in ``[0, 1]``; usually the original model's.
        config: The training recipe; its optimizer, lr, momentum, weight decay and batch size are used.
        max_steps: Give up after this many optimizer steps, at least 1.
        lr_scale: Multiplies ``config.lr``. Default 0.1: at the full training rate SGD with momentum
            relearns digit class 3 in 1 step when it was only hidden and in 3 when it was never
            learned, too coarse to compare; at a tenth it takes 4 vs 11 steps (digits MLP, see
            ``tests/test_distances.py::test_a_hidden_class_relearns_faster_than_a_retrained_model``).
        check_every: Measure forget accuracy every this many steps, at least 1.
        device: ``None`` picks cuda > mps > cpu.
        seed: Seeds the batch order and any randomness inside the model (dropout).

    Returns:
        A :class:`RelearnResult`.

    Raises:
        DataError: An empty forget set.
        ConfigError: ``target_accuracy`` outside ``[0, 1]``, ``max_steps`` or ``check_every`` below 1,
            or ``lr_scale`` not a positive number.
        TrainingDivergedError: The loss became NaN or infinite.
    """
    if len(forget) == 0:
        raise DataError("relearn_time: the forget set is empty; there is nothing to relearn.")
    if not 0.0 <= target_accuracy <= 1.0:
        raise ConfigError(f"relearn_time: target_accuracy must be in [0, 1], got {target_accuracy}; "
                          "pass the original model's forget accuracy.")
    if max_steps < 1:
        raise ConfigError(f"relearn_time: max_steps must be at least 1, got {max_steps}.")
    if check_every < 1:
        raise ConfigError(f"relearn_time: check_every must be at least 1, got {check_every}.")
    if not (lr_scale > 0 and math.isfinite(lr_scale)):
        raise ConfigError(f"relearn_time: lr_scale must be a positive number, got {lr_scale}; the default is 0.1.")
    dev = resolve_device(device)
    probe = copy.deepcopy(model).to(dev)
    optimizer = make_optimizer(probe.parameters(), config, lr=config.lr * lr_scale)
    generator = torch.Generator().manual_seed(seed)
    accuracies = [accuracy_on(probe, forget, device=dev)]
    checked_at = [0]
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout and any other randomness inside the model
        while accuracies[-1] < target_accuracy and step < max_steps:
            for x, y in batches(forget, config.batch_size, generator=generator):
                probe.train()
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                loss = F.cross_entropy(probe(x), y)
                check_finite(loss, f"at relearn step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % check_every == 0 or step == max_steps:
                    accuracies.append(accuracy_on(probe, forget, device=dev))
                    checked_at.append(step)
                    if accuracies[-1] >= target_accuracy or step == max_steps:
                        break
    reached = accuracies[-1] >= target_accuracy
    return RelearnResult(
        steps=checked_at[-1] if reached else max_steps,
        reached=reached,
        accuracies=tuple(accuracies),
        checked_at=tuple(checked_at),
    )
