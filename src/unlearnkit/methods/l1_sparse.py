"""l1-sparse: fine-tune on the retain set with an L1 penalty on the weights that decays to zero.

The loss is ``CE(retain) + gamma_t * ||theta||_1`` with ``gamma_t`` falling linearly from ``l1`` to 0
over the run. The penalty pushes the model toward a sparse solution early on, which removes the
weights the forget set relied on faster than plain fine-tuning; its decay lets the last steps recover
accuracy on the retain set.

Source: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (the
sparsity-aware unlearning "l1-sparse", github.com/OPTML-Group/Unlearn-Sparse). The source decays the
coefficient per epoch; here it decays per step, which is the same line sampled more finely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.methods.base import SCHEDULE, Method, UnlearnTask, register
from unlearnkit.methods.loops import descend
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Params, param


def l1_norm(model: nn.Module) -> torch.Tensor:
    """Sum of absolute values of every trainable parameter (the source's ``l1_regularization``)."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


@register
class L1Sparse(Method):
    name = "l1-sparse"
    summary = "fine-tune on the retain set with an L1 weight penalty whose coefficient decays linearly to 0"
    reference = "Jia et al., NeurIPS 2023 (Model Sparsity Can Simplify Machine Unlearning: l1-sparse)"
    needs_forget = False

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 6),
        "lr_scale": Float(0.2, 4.0, log=True),
        "l1": Float(1e-4, 1e-2, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # Tuned with seed 1 (benchmarks/tune_finetuning.py): plain fine-tuning barely forgets a class in a
        # few epochs; a strong start of the penalty at twice the original lr does within 3 (5 epochs did
        # slightly better but is under 5x cheaper than retraining). The penalty sums over every
        # parameter (~50k in the digits MLP), so much larger models want a smaller ``l1``.
        epochs: int = param(3, AT_LEAST_ONE)  # passes over the retain set
        lr_scale: float = param(2.0, POSITIVE)  # learning rate = lr_scale x the original recipe's lr
        l1: float = param(2e-3, NON_NEGATIVE)  # starting L1 coefficient (sum of |w| over all parameters), decayed
        # linearly to 0
        schedule: str = param("constant", SCHEDULE)

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        retain = task.split.retain
        epochs = task.epochs(cfg.epochs)
        total = epochs * math.ceil(len(retain) / task.train_config.batch_size)
        step = 0

        def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            nonlocal step
            gamma = cfg.l1 * (1 - step / total)  # linear decay to 0 over the run
            step += 1
            return nn.functional.cross_entropy(m(x), y) + gamma * l1_norm(m)

        return descend(model, retain, task, epochs=epochs, lr=task.train_config.lr * cfg.lr_scale,
                       loss_fn=loss_fn, schedule=cfg.schedule, desc="l1-sparse").eval()
