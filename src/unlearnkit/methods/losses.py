"""Loss terms shared by distillation-style methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened outputs, scaled by T^2 (Hinton et al., 2015)."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from each true label."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return (y.cpu() + shift) % num_classes


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample prediction entropy in nats."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def task_kl(model, student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
            valid: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`kl_to_teacher` for a multi-task model: the sum over its heads of each head's KL, each averaged over
    the batch rows where ``valid[:, task]`` is True (``valid``: ``[batch, tasks]`` bools; None: every row)."""
    t = temperature
    total = student_logits.sum() * 0.0
    for i, s in enumerate(model.slices().values()):
        rows = slice(None) if valid is None else valid[:, i]
        if valid is not None and not bool(rows.any()):
            continue
        per = F.kl_div(F.log_softmax(student_logits[rows][:, s] / t, dim=1),
                       F.log_softmax(teacher_logits[rows][:, s] / t, dim=1), reduction="none", log_target=True)
        total = total + per.sum(1).mean() * (t * t)
    return total
