"""retrain-balanced: the reference for attribute removal. A fresh model trained with group-balanced sampling.

Groups are (label, attribute value) pairs. The training set is resampled once, as many draws as it holds, each a
group uniformly and then one of its samples, so the rare bias-conflicting groups (a class in an unusual colour)
weigh as much as the common ones and the attribute no longer predicts the label in what the model sees. Everything
else is the checkpoint's own recipe: architecture (fresh weights), optimizer, schedule, epochs, batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.methods.base import AttributeTask, Method, register
from unlearnkit.methods.bias import balanced_draw, resampled
from unlearnkit.models.registry import fresh_copy
from unlearnkit.params import Params
from unlearnkit.train import fit


@register
class RetrainBalanced(Method):
    name = "retrain-balanced"
    kind = "attribute"
    summary = ("the reference: retrain from scratch with group-balanced sampling (label x attribute) and the "
               "checkpoint's own recipe")
    reference = ("Sagawa et al., ICLR 2020 (group-balanced sampling); Idrissi et al., CLeaR 2022 (Simple data "
                 "balancing achieves competitive worst-group-accuracy)")
    exact = True  # the reference the attribute methods are measured against, as retrain is for samples
    needs_forget = False
    forgets_classes = False

    @dataclass(frozen=True)
    class Config(Params):
        pass

    def run(self, task: AttributeTask) -> nn.Module:
        config = task.train_config.with_(seed=task.train_config.seed + task.seed)
        config = config.with_(epochs=task.epochs(config.epochs))
        # one balanced draw as large as the training set, reshuffled every epoch (resampling once keeps memory at
        # the training set's size; a rare group's samples repeat within it)
        draw = balanced_draw(task.groups(), len(task.train), task.generator(0))
        model = fresh_copy(task.model, seed=config.seed).to(task.device)
        return fit(model, resampled(task.train, draw), config, device=task.device, progress=task.progress,
                   description="retrain-balanced", should_stop=task.out_of_time)
