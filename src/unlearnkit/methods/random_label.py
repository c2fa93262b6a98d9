"""random-label: fine-tune on the forget samples relabelled to random wrong classes, mixed with retain data.

Every forget sample gets one uniformly random label other than its own (drawn once, from the task
seed); the model is then fine-tuned on the union of these relabelled samples and the retain set, so
the forget samples' original labels are overwritten while the retain data keeps the rest intact.

Sources: Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020 (random-label
fine-tuning baseline); Graves et al., "Amnesiac Machine Learning", AAAI 2021 (relabel the data to
forget, then train on it with the rest). The mixed-data recipe follows the RL baseline of Jia et al.
(NeurIPS 2023) and Fan et al. (SalUn, ICLR 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.methods.base import SCHEDULE, Method, UnlearnTask, register
from unlearnkit.methods.loops import descend
from unlearnkit.methods.losses import random_wrong_labels
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, POSITIVE, Params, param


def relabelled_mix(task: UnlearnTask, stream: int = 0) -> IndexedDataset:
    """The retain set plus the forget set with every label replaced by a random wrong one (seeded)."""
    forget, retain = task.split.forget, task.split.retain
    wrong = random_wrong_labels(forget.y, forget.num_classes, task.generator(stream))
    return IndexedDataset(
        torch.cat([forget.x, retain.x]), torch.cat([wrong, retain.y]), torch.cat([forget.ids, retain.ids]),
        num_classes=forget.num_classes,
    )


@register
class RandomLabel(Method):
    name = "random-label"
    summary = "fine-tune on forget samples relabelled to random wrong classes, mixed with the retain set"
    reference = "Golatkar et al., CVPR 2020; Graves et al., AAAI 2021 (amnesiac relabelling)"

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 4),
        "lr_scale": Float(0.01, 0.5, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # Tuned with seed 1 (benchmarks/tune_finetuning.py): wrong labels are learnt fast, so a small lr
        # forgets a whole class in 2 epochs; larger lrs also push random forget samples far past a
        # retrained model (MIA efficacy 0.2-0.4 against its 0.125).
        epochs: int = param(2, AT_LEAST_ONE)  # passes over the relabelled forget set plus the retain set
        lr_scale: float = param(0.05, POSITIVE)  # learning rate = lr_scale x the original recipe's lr
        schedule: str = param("constant", SCHEDULE)

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        return descend(model, relabelled_mix(task), task, epochs=cfg.epochs,
                       lr=task.train_config.lr * cfg.lr_scale, schedule=cfg.schedule, stream=1,
                       desc="random-label").eval()
