"""finetune: keep training on the retain set only, relying on catastrophic forgetting of the rest."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.methods.base import SCHEDULE, Method, UnlearnTask, register
from unlearnkit.methods.loops import descend
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, POSITIVE, Params, param


@register
class Finetune(Method):
    name = "finetune"
    summary = "fine-tune on the retain set only (catastrophic forgetting of the forget set)"
    reference = "Warnecke et al., NDSS 2023; the FT baseline of Jia et al., NeurIPS 2023 (Unlearn-Sparse)"
    needs_forget = False

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 6),
        "lr_scale": Float(0.05, 2.0, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # 2 epochs at 0.4x the original lr: enough on digits and Fashion-MNIST to pull random-forget
        # accuracy toward test accuracy while keeping retain accuracy (tuned with seed 1).
        epochs: int = param(2, AT_LEAST_ONE)
        lr_scale: float = param(0.4, POSITIVE)  # learning rate = lr_scale x the original recipe's lr
        schedule: str = param("cosine", SCHEDULE)

    def run(self, task: UnlearnTask) -> nn.Module:
        model = task.clone_model()
        return descend(model, task.split.retain, task, epochs=self.config.epochs,
                       lr=task.train_config.lr * self.config.lr_scale, schedule=self.config.schedule,
                       desc="finetune")
