"""Training loops shared by methods: retain-set descent with the task's seed, budget and device.

Kept here so each method file holds only what makes the method different.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.methods.base import UnlearnTask
from unlearnkit.models.multitask import is_multitask, labelled_accuracy, task_accuracy, task_targets
from unlearnkit.train import (
    accuracy_on,
    batches,
    check_finite,
    make_optimizer,
    make_schedule,
    show_progress,
    supervised_loss,
    training_labels,
)

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The supervised loss of ``model`` on a batch: cross-entropy, or a multi-task model's summed task losses
    (equal weights; ``descend`` applies the recipe's task weights when it runs this default)."""
    return supervised_loss(model, model(x), y)


def batch_accuracy(model: nn.Module, logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of a batch's logits on its labels (a multi-task model: over the unmasked (sample, task) labels)."""
    if not is_multitask(model):
        return (logits.argmax(1) == y).float().mean().item()
    return labelled_accuracy(model, logits, y)


def forget_target(task: UnlearnTask, fixed: float | None = None) -> float | None:
    """The forget accuracy a model retrained without the forget set would show, the level at which methods that
    ascend a forget loss stop: ``fixed`` if given; 0 when whole classes are forgotten; otherwise the original
    model's accuracy on held-out data (``task.holdout``), which is what a retrained model shows on samples it
    never saw. None (with a note) when there is no holdout to estimate it from."""
    if fixed is not None:
        return fixed
    if is_multitask(task.model):
        return _multitask_forget_target(task)
    if task.split.forgets_whole_classes():
        return 0.0
    if task.holdout is not None and len(task.holdout):
        return accuracy_on(task.model, task.holdout, device=task.device)
    task.note("no holdout data: early stop off, ran all epochs (pass holdout= or set stop_accuracy)")
    return None


def _multitask_forget_target(task: UnlearnTask) -> float | None:
    """``forget_target`` for a multi-task model, over the (sample, task) labels to forget: the mean over the scoped
    tasks of :func:`task_forget_targets` (each task holds one label per forget sample)."""
    levels = task_forget_targets(task)
    return None if levels is None else sum(levels.values()) / len(levels)


def task_forget_targets(task: UnlearnTask) -> dict[str, float] | None:
    """Per scoped task of a multi-task model, the forget accuracy retraining would show: 0 when its forgotten labels
    are classes no remaining label of that task has, else the original's held-out accuracy on that task. None (with
    a note) when that needs a holdout and there is none."""
    model, split = task.model, task.split
    levels: dict[str, float] = {}
    holdout_acc: dict[str, float] = {}
    whole = split.whole_classes()
    if not all(whole.values()) and task.holdout is not None and len(task.holdout):  # only tasks not whole classes
        logits = outputs_on(model, task.holdout, task)
        if logits is not None:
            holdout_acc = task_accuracy(model, logits.cpu(), task_targets(model, task.holdout))
    for name, whole_classes in whole.items():
        if whole_classes:
            levels[name] = 0.0
        elif name in holdout_acc:
            levels[name] = holdout_acc[name]
        else:
            task.note("no holdout data: early stop off, ran all epochs (pass holdout= or set stop_accuracy)")
            return None
    return levels


def cycle(dataset: IndexedDataset, batch_size: int, generator: torch.Generator,
          labels: torch.Tensor | None = None) -> Iterator[tuple]:
    """Endless seeded mini-batches (reshuffled every pass): pairs a second data stream with a loop."""
    while True:
        yield from batches(dataset, batch_size, generator=generator, labels=labels)


def descend(
    model: nn.Module,
    dataset: IndexedDataset,
    task: UnlearnTask,
    *,
    epochs: int,
    lr: float,
    loss_fn: LossFn = cross_entropy,
    batch_size: int | None = None,
    schedule: str = "constant",
    clip_grad: float | None = None,
    stream: int = 0,
    desc: str = "fine-tune",
) -> nn.Module:
    """Minimise ``loss_fn`` over ``dataset`` for ``epochs`` with the original recipe's optimizer.

    ``stream`` separates the batch order of several loops in one method. Respects the time budget.
    """
    epochs = task.epochs(epochs)
    batch_size = batch_size or task.train_config.batch_size
    gen = task.generator(stream)
    steps = epochs * math.ceil(len(dataset) / batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, task.train_config, lr=lr)
    scheduler = make_schedule(optimizer, schedule, steps)
    if loss_fn is cross_entropy and is_multitask(model):  # the recipe's task weights
        def loss_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return supervised_loss(net, net(x), y, task.train_config)
    labels = training_labels(model, dataset)
    model.train()
    with tqdm(total=steps, desc=desc, disable=not show_progress(task.progress), leave=False, unit="step") as bar:
        for epoch in range(epochs):
            for x, y in batches(dataset, batch_size, generator=gen, labels=labels):
                if task.out_of_time():
                    return model
                x, y = x.to(task.device), y.to(task.device)
                loss = loss_fn(model, x, y)
                check_finite(loss, f"in {desc} at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad:
                    torch.nn.utils.clip_grad_norm_(params, clip_grad)
                optimizer.step()
                scheduler.step()
                bar.update(1)
    return model


def clip_norm(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """``grads`` (one tensor per parameter) scaled down to a joint L2 norm of at most ``max_norm``."""
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
    return [g * (max_norm / norm) for g in grads] if norm > max_norm else grads


def seeds(task: UnlearnTask, n: int, stream: int) -> list[int]:
    """``n`` integer seeds drawn from the task's generator ``stream``."""
    return [int(s) for s in torch.randint(0, 2**31 - 1, (n,), generator=task.generator(stream))]


def by_position(dataset: IndexedDataset) -> IndexedDataset:
    """``dataset`` with each row's position as its label. Handed to ``descend`` (which draws the same
    batches for any dataset of the same length), it gives the loss the batch's row numbers, so the loss
    can look up what was computed once per row beforehand: the true labels, a teacher's outputs."""
    return IndexedDataset(dataset.x, torch.arange(len(dataset)), dataset.ids, num_classes=max(len(dataset), 1))


def outputs_on(model: nn.Module, dataset: IndexedDataset, task: UnlearnTask, batch_size: int = 1024
               ) -> torch.Tensor | None:
    """``model``'s logits on every row of ``dataset``, in order, on the task's device (eval mode, no
    gradients); None once the time budget is spent."""
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for x, _ in batches(dataset, batch_size, shuffle=False):
            if task.out_of_time():
                model.train(was_training)
                return None
            outs.append(model(x.to(task.device)))
    model.train(was_training)
    return torch.cat(outs)


def train_only(
    model: nn.Module,
    modules: list[nn.Module],
    task: UnlearnTask,
    *,
    epochs: int,
    lr: float,
    schedule: str,
    loss_fn: LossFn = cross_entropy,
    stream: int = 0,
    desc: str,
) -> nn.Module:
    """Descend on the retain set updating only the parameters of ``modules``; the rest of the model is
    frozen (batch norms outside ``modules`` in eval mode, so their statistics do not move either)."""
    chosen = {id(m) for m in modules}
    trainable = {id(p) for m in modules for p in m.parameters(recurse=False)}
    frozen_stats = [m for m in model.modules() if getattr(m, "track_running_stats", False) and id(m) not in chosen]
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)

    def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for m in frozen_stats:
            m.eval()
        return loss_fn(net, x, y)

    try:
        descend(model, task.split.retain, task, epochs=epochs, lr=lr, schedule=schedule, loss_fn=loss,
                stream=stream, desc=desc)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return model
