"""reset-layers: reset the first conv layer and the classifier, then distil back the retain-set behaviour.

A NeurIPS 2023 Machine Unlearning Challenge solution ("resetting layers"; Triantafillou et al., 2024,
"Are we making progress in unlearning?", arXiv:2406.09073): the layer that first sees the input and
the layer that maps features to classes -- the two ends where memorised samples leave the strongest
traces -- are re-initialised. The rest of the network is then taught to reproduce the original
model on the retain set, first by distillation alone (KL divergence at temperature 5 to the original's
softened outputs), then by cross-entropy plus that KL term. The forget set is never read: whatever the
reset removed is only relearnt where the retain set asks for it.

On models without conv layers (an MLP) the first linear/conv layer is reset instead, the fallback
the solution's description of "the first layer" implies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods.base import SCHEDULE, ByTarget, Method, UnlearnTask, register
from unlearnkit.methods.layers import classifier, reset_module, weight_layers
from unlearnkit.methods.loops import by_position, descend, outputs_on, seeds
from unlearnkit.methods.losses import kl_to_teacher
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, AT_LEAST_ZERO, NON_NEGATIVE, POSITIVE, Params, param

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def first_and_last(model: nn.Module, method: str) -> list[nn.Module]:
    """The first conv layer (else the first linear/conv layer) and the classifier, without repeats."""
    layers = [m for _, m in weight_layers(model)]
    first = next((m for m in layers if isinstance(m, CONVS)), layers[0])
    head = classifier(model, method)
    return [first] if first is head else [first, head]


@register
class ResetLayers(Method):
    name = "reset-layers"
    summary = "reset the first conv layer and the classifier, distil from the original on retain, then fine-tune"
    reference = "NeurIPS 2023 Machine Unlearning Challenge, resetting-layers solution (Triantafillou et al., 2024)"
    needs_forget = False

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "distill_epochs": Int(1, 3),
        "epochs": Int(1, 3),
        "lr_scale": Float(0.1, 2.0, log=True),
        "temperature": Float(1.0, 8.0),
        "kl_weight": Float(0.1, 1.0),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # 1 epoch of distillation, then 3 of cross-entropy + KL, at the original lr (benchmarks/tune_defaults.py on the
        # defaults suite, seeds 11-12, docs/results/defaults/): `--target samples --grid distill_epochs=1,3 --grid
        # epochs=1,3 --grid lr_scale=0.5,1`: PASS, mean gap 0.0122, x4.8 (the old 1 + 1: miss on all four, 0.0629:
        # too few steps to rebuild the reset layers; 3 + 3: 0.0109 at x3.1). `--target classes`, with the forgotten
        # classes masked out of the teacher (see run): PASS, 0.0056, x4.5 (1 + 1: test 0.09-0.10 under retraining
        # on the cnn; without the mask 1 + 3 relearnt class 3 to forget accuracy 0.26-0.52).
        distill_epochs: int | None = param(None, AT_LEAST_ZERO, auto=ByTarget(classes=1, samples=3))  # passes of
        # pure distillation on the retain set; on samples 3 (0.0109 at x3.1 above) passes the held-out random split
        # of tests/test_claims.py, where 1 ends at 0.0173 against the original's 0.0163
        epochs: int = param(3, AT_LEAST_ONE)  # passes of cross-entropy + KL on the retain set
        lr_scale: float = param(1.0, POSITIVE)  # learning rate = lr_scale x the original recipe's lr
        temperature: float = param(5.0, POSITIVE)  # the solution's distillation temperature
        kl_weight: float = param(0.5, NON_NEGATIVE)  # weight of the KL term in the second phase
        clip_grad: float | None = param(5.0, POSITIVE)  # the T^2-scaled KL diverged on Fashion-MNIST/cnn without
        # clipping
        schedule: str = param("cosine", SCHEDULE)

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        reset = first_and_last(model, self.name)
        for module, seed in zip(reset, seeds(task, len(reset), stream=1), strict=True):
            reset_module(module, seed, self.name)
        retain = task.split.retain
        # the original's logits on each retain row, computed once: the losses look rows up by position
        teacher = outputs_on(task.clone_model(), retain, task)
        if teacher is None:
            return model
        if task.split.forgets_whole_classes():
            # the original's softened outputs still rank the forgotten classes (its "dark knowledge" of them), and
            # distilling them relearns those classes (digits class:3 forget accuracy 0.16-0.52); the student is
            # taught the original's outputs over the remaining classes only
            teacher[:, task.split.forget.y.unique().to(teacher.device)] = torch.finfo(teacher.dtype).min
        labels = retain.y.to(task.device)
        lr = task.train_config.lr * cfg.lr_scale

        def distil(net: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return kl_to_teacher(net(x), teacher[rows], cfg.temperature)

        def finetune(net: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            logits = net(x)
            loss = F.cross_entropy(logits, labels[rows])
            if cfg.kl_weight:
                loss = loss + cfg.kl_weight * kl_to_teacher(logits, teacher[rows], cfg.temperature)
            return loss

        rows = by_position(retain)
        if cfg.distill_epochs:
            descend(model, rows, task, epochs=cfg.distill_epochs, lr=lr, loss_fn=distil, schedule=cfg.schedule,
                    clip_grad=cfg.clip_grad, stream=0, desc=f"{self.name} distil")
        return descend(model, rows, task, epochs=cfg.epochs, lr=lr, loss_fn=finetune, schedule=cfg.schedule,
                       clip_grad=cfg.clip_grad, stream=2, desc=f"{self.name} fine-tune")
