"""finetune: keep training on the retain set only, relying on catastrophic forgetting of the rest."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import Method, UnlearnTask, register
from unlearnkit.methods.loops import descend
from unlearnkit.methods.space import Float, Int


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
    class Config:
        # 2 epochs at 0.4x the original lr: enough on digits and Fashion-MNIST to pull random-forget
        # accuracy toward test accuracy while keeping retain accuracy (tuned with seed 1).
        epochs: int = 2
        lr_scale: float = 0.4  # learning rate = lr_scale x the original recipe's lr
        schedule: str = "cosine"

        def __post_init__(self) -> None:
            if self.epochs < 1 or not self.lr_scale > 0:
                raise ConfigError("finetune needs epochs >= 1 and lr_scale > 0")
            if self.schedule not in ("cosine", "constant"):
                raise ConfigError(f"finetune schedule must be cosine or constant, got {self.schedule!r}")

    def run(self, task: UnlearnTask) -> nn.Module:
        model = task.clone_model()
        return descend(model, task.split.retain, task, epochs=self.config.epochs,
                       lr=task.train_config.lr * self.config.lr_scale, schedule=self.config.schedule,
                       desc="finetune")
