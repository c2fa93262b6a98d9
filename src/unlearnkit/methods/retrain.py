"""retrain: the exact reference. A fresh model trained on the retain set with the original recipe.

On a multi-task model with a partial-task split it trains on everything that remains: the retain set plus the forget
samples with the scoped tasks' labels masked (``ForgetSplit.remaining``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.methods.base import Method, UnlearnTask, register
from unlearnkit.models.registry import fresh_copy
from unlearnkit.params import Params
from unlearnkit.train import fit


@register
class Retrain(Method):
    name = "retrain"
    summary = "retrain from scratch on the retain set with the checkpoint's own TrainConfig (exact)"
    reference = "the gold standard of every unlearning paper, e.g. Bourtoule et al., IEEE S&P 2021"
    exact = True
    needs_forget = False
    multitask = True  # trains on split.remaining(): the forgotten tasks' labels of the forget samples masked

    @dataclass(frozen=True)
    class Config(Params):
        pass

    def run(self, task: UnlearnTask) -> nn.Module:
        # Seed 0 reproduces the original recipe exactly (same init, same batch-order seed), minus
        # the forget set; other seeds give independent retrained references.
        config = task.train_config.with_(seed=task.train_config.seed + task.seed)
        config = config.with_(epochs=task.epochs(config.epochs))
        model = fresh_copy(task.model, seed=config.seed).to(task.device)
        return fit(model, task.split.remaining(), config, device=task.device, progress=task.progress,
                   description="retrain", should_stop=task.out_of_time)
