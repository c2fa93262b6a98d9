"""Multi-task models: a shared trunk and one linear head per task (``mtl-mlp``, ``mtl-cnn``).

A multi-task model returns the heads' logits side by side, ``[batch, sum of the tasks' classes]``, in the order of
its ``tasks`` (a tuple of ``(name, classes)`` pairs, saved with the checkpoint as a model keyword argument), so
that everything that passes tensors around (prediction, ``torch.func``, checkpoints) works unchanged;
:func:`task_logits` cuts that output into one tensor per task. Labels come as a matrix ``[batch, tasks]`` in the
same order (:func:`task_targets`), where ``MASKED`` (-1) marks a label the model must not learn from: the
labels a partial-task deletion removed. :func:`multitask_loss` is the weighted sum over the tasks of each task's
mean cross-entropy over its unmasked labels.

    >>> from unlearnkit.data import DataSpec
    >>> model = MultiTaskNet.mlp((1, 12, 12), 10, tasks=(("left", 10), ("same", 2)), hidden=(32,))
    >>> model(torch.zeros(3, 1, 12, 12)).shape
    torch.Size([3, 12])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import ConfigError, DataError

MULTITASK_MODELS = ("mtl-mlp", "mtl-cnn")  # the registered multi-task architectures
MASKED = -1  # a label a model must not learn from (a partial-task deletion's scoped tasks on the forget samples)
TaskSpec = tuple[tuple[str, int], ...]


def normalize_tasks(tasks: Sequence | dict | None, *, model: str = "a multi-task model") -> TaskSpec:
    """``tasks`` as ``((name, classes), ...)``: from pairs (a checkpoint's JSON gives lists) or a dict."""
    if not tasks:
        raise ConfigError(f"{model} needs its tasks; train it on a multi-task source (multi-digits, "
                          "multi-fashion-mnist, fashion-mnist-tasks: `unlearn datasets` lists each source's tasks)")
    pairs = list(tasks.items()) if isinstance(tasks, dict) else [tuple(t) for t in tasks]
    try:
        out = tuple((str(name), int(classes)) for name, classes in pairs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tasks must be (name, classes) pairs, got {tasks!r}") from exc
    names = [n for n, _ in out]
    if len(set(names)) != len(names) or any(c < 2 for _, c in out):
        raise ConfigError(f"tasks need distinct names and at least 2 classes each, got {out}")
    return out


class MultiTaskNet(nn.Module):
    """A shared ``trunk`` and one linear head per task (``heads[name]``); the output is the heads' logits
    concatenated in task order. Build one with :meth:`mlp` or :meth:`cnn` (``mtl-mlp``, ``mtl-cnn``)."""

    def __init__(self, trunk: nn.Module, width: int, tasks: TaskSpec):
        super().__init__()
        self.tasks = normalize_tasks(tasks)
        self.trunk = trunk
        self.heads = nn.ModuleDict({name: nn.Linear(width, classes) for name, classes in self.tasks})

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.tasks)

    def slices(self) -> dict[str, slice]:
        """Where each task's logits sit in the output."""
        out, start = {}, 0
        for name, classes in self.tasks:
            out[name] = slice(start, start + classes)
            start += classes
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return torch.cat([self.heads[name](h) for name in self.task_names], dim=1)

    @classmethod
    def mlp(cls, input_shape: tuple[int, ...], num_classes: int, tasks: Sequence | None = None,
            hidden: tuple[int, ...] = (256, 128)) -> MultiTaskNet:
        """``mtl-mlp``: flatten, ``len(hidden)`` ReLU layers shared by every task, one head per task."""
        tasks = normalize_tasks(tasks, model="mtl-mlp")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        return cls(nn.Sequential(*layers), width, tasks)

    @classmethod
    def cnn(cls, input_shape: tuple[int, ...], num_classes: int, tasks: Sequence | None = None, width: int = 16,
            hidden: int = 128) -> MultiTaskNet:
        """``mtl-cnn``: the ``cnn``'s two conv blocks and hidden layer shared by every task, one head per task."""
        tasks = normalize_tasks(tasks, model="mtl-cnn")
        if len(input_shape) != 3 or min(input_shape[1:]) < 8:
            raise ConfigError(f"mtl-cnn needs image inputs [C, H, W] of at least 8x8, got {input_shape}; use mtl-mlp")
        channels, height, wide = input_shape
        trunk = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (height // 4) * (wide // 4), hidden), nn.ReLU(),
        )
        return cls(trunk, hidden, tasks)


def is_multitask(model: nn.Module) -> bool:
    return isinstance(model, MultiTaskNet)


def task_logits(model: MultiTaskNet, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The packed output cut into one logits tensor per task."""
    return {name: logits[:, s] for name, s in model.slices().items()}


def check_tasks(model: MultiTaskNet, names: Sequence[str], *, what: str = "task") -> tuple[str, ...]:
    """``names`` if every one is a task of ``model``; otherwise a one-line error naming the tasks it has."""
    unknown = [n for n in names if n not in model.task_names]
    if unknown:
        raise ConfigError(f"{what} {', '.join(repr(n) for n in unknown)} not in this model (its tasks: "
                          f"{', '.join(model.task_names)}); scope the forget spec with @TASK[,TASK] of those")
    return tuple(names)


def task_targets(model: MultiTaskNet, data) -> torch.Tensor:
    """The label matrix ``[n, tasks]`` of an ``IndexedDataset`` in the model's task order (``MASKED`` kept)."""
    missing = [n for n in model.task_names if n not in data.tasks]
    if missing:
        have = ", ".join(sorted(data.tasks)) or "none"
        raise DataError(f"the data has no labels for task(s) {missing} (its tasks: {have}); evaluate a multi-task "
                        "model on the multi-task source it was trained on")
    return torch.stack([data.tasks[n] for n in model.task_names], dim=1)


def parse_task_weights(text: str) -> dict[str, float]:
    """``"left=1,same=0.5"`` -> ``{"left": 1.0, "same": 0.5}`` (tasks not named weigh 1)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"task weights must read NAME=WEIGHT[,NAME=WEIGHT] with weights >= 0, got {text!r}; "
                              "e.g. left=1,same=0.5")
        out[name.strip()] = weight
    return out


def task_weight_vector(model: MultiTaskNet, text: str) -> torch.Tensor:
    weights = parse_task_weights(text)
    check_tasks(model, list(weights), what="task weight for")
    return torch.tensor([weights.get(n, 1.0) for n in model.task_names])


def multitask_loss(model: MultiTaskNet, logits: torch.Tensor, targets: torch.Tensor,
                   weights: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
    """The weighted sum over tasks of the cross-entropy on the unmasked labels.

    ``reduction="mean"``: each task's loss is its mean over the batch's unmasked labels (a task with none adds 0);
    ``"none"``: one value per sample, the weighted sum of its unmasked tasks' losses.
    """
    total = logits.sum() * 0.0 if reduction == "mean" else logits.new_zeros(len(logits))
    for t, s in enumerate(model.slices().values()):
        y = targets[:, t]
        w = 1.0 if weights is None else float(weights[t])
        valid = y != MASKED
        if reduction == "none":
            per = F.cross_entropy(logits[:, s], y.clamp_min(0), reduction="none")
            total = total + w * torch.where(valid, per, torch.zeros_like(per))
        elif bool(valid.any()):
            total = total + w * F.cross_entropy(logits[valid][:, s], y[valid])
    return total


def task_correct(model: MultiTaskNet, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per task, a bool per sample: predicted right (masked labels count as wrong; filter them first)."""
    return {name: logits[:, s].argmax(1) == targets[:, t] for t, (name, s) in enumerate(model.slices().items())}


def labelled_accuracy(model: MultiTaskNet, logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Accuracy over the unmasked (sample, task) labels of ``targets``; NaN when every label is masked."""
    valid = targets != MASKED
    if not bool(valid.any()):
        return float("nan")
    correct = torch.stack(list(task_correct(model, logits, targets).values()), dim=1)
    return float(correct[valid].float().mean())


def task_accuracy(model: MultiTaskNet, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Per task, the accuracy over its unmasked labels of ``targets``; NaN for a task whose labels are all masked."""
    out = {}
    for t, (name, correct) in enumerate(task_correct(model, logits, targets).items()):
        valid = targets[:, t] != MASKED
        out[name] = float(correct[valid].float().mean()) if bool(valid.any()) else float("nan")
    return out
