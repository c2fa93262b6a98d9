"""salun: random-label unlearning restricted to the weights most salient for the forget set.

First a weight saliency map: the gradient of the forget-set cross-entropy, summed over the forget
batches, taken in absolute value; one global threshold keeps the top ``mask_fraction`` of all
parameters (weights and biases) by that magnitude. Then random-label fine-tuning (forget samples
relabelled to random wrong classes, mixed with the retain set) updates only the salient weights:
the gradients of all other weights, weight decay included, are zeroed, so they keep their values.

Source: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both
Image Classification and Generation", ICLR 2024 (github.com/OPTML-Group/Unlearn-Saliency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.methods.base import SCHEDULE, ByTarget, ByTargetPerStep, Method, UnlearnTask, register
from unlearnkit.methods.random_label import relabelled_mix
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, FRACTION, POSITIVE, Params, param
from unlearnkit.train import (
    batches,
    check_finite,
    make_optimizer,
    make_schedule,
    show_progress,
    supervised_loss,
    training_labels,
)


def saliency_mask(model: nn.Module, task: UnlearnTask, fraction: float) -> dict[str, torch.Tensor] | None:
    """Parameter name -> bool mask of the top ``fraction`` of all parameters by |forget-loss gradient|.

    One global threshold over every parameter (the paper's choice); exactly ``round(fraction * N)``
    entries are kept, ties broken by position. Returns None if the time budget ran out.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = {n: torch.zeros_like(p) for n, p in named}
    was_training = model.training
    model.eval()  # no batch-norm statistics update while measuring
    forget = task.split.forget_targets()  # multi-task: the scoped tasks' labels only
    for x, y in batches(forget, task.train_config.batch_size, shuffle=False, labels=training_labels(model, forget)):
        if task.out_of_time():
            return None
        loss = supervised_loss(model, model(x.to(task.device)), y.to(task.device), task.train_config)
        for (name, _), g in zip(named, torch.autograd.grad(loss, [p for _, p in named]), strict=True):
            grads[name] += g
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()]).cpu()
    keep = round(fraction * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.argsort(flat, descending=True, stable=True)[:keep]] = True
    masks, start = {}, 0
    for name, p in named:
        masks[name] = chosen[start:start + p.numel()].view_as(p).to(p.device)
        start += p.numel()
    return masks


@register
class SalUn(Method):
    name = "salun"
    summary = "random-label fine-tuning that updates only the weights most salient to the forget loss"
    reference = "Fan et al., ICLR 2024 (SalUn: gradient-based weight saliency)"
    multitask = True  # saliency of the scoped tasks' forget loss; random wrong labels for those tasks only

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "mask_fraction": Float(0.1, 0.9),
        "epochs": Int(1, 4),
        "lr_scale": Float(0.002, 0.5, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # Tuned with seed 1 (benchmarks/tune_finetuning.py); the same small-lr optimum as random-label.
        # By what is forgotten (benchmarks/tune_defaults.py on the defaults suite, seeds 11-12, docs/results/
        # defaults/): whole classes keep the paper's mask 0.5 and 2 epochs at 0.05x (forget 0.000-0.012, test within
        # 0.02 of retraining's). On random samples and subjects that pushed the cnn's forget samples far past a
        # retrained model (gap 0.0699 and 0.0615 against the original's 0.0181 and 0.0166); `--target samples
        # --grid lr_scale=0.015,0.02,0.025,0.03,0.05 --grid epochs=1 --grid mask_fraction=0.5,0.8` printed `PASS
        # gap 0.0133 x12.4 {lr_scale 0.02, epochs 1, mask_fraction 0.8}` (0.0106/0.0181 0.0046/0.0166 cnn,
        # 0.0231/0.0236 0.0151/0.0177 mlp), the lowest passing gap (mask 0.5: 0.0138 at 0.015, and 0.02 missed the
        # mlp's random split, 0.0243/0.0236); 0.03 and up missed on the cnn.
        mask_fraction: float | None = param(None, FRACTION, auto=ByTarget(classes=0.5, samples=0.8))  # share of all
        # parameters updated
        epochs: int | None = param(None, AT_LEAST_ONE, auto=ByTarget(classes=2, samples=1))  # passes over the
        # relabelled forget set plus the retain set
        # learning rate = lr_scale x the original recipe's lr; on random or subject samples 0.02 per 21 retain steps
        # per epoch (the digits recipe; above), scaled down for larger retain sets: Fashion-MNIST (71 steps) needs
        # about 0.005 (`tune_defaults.py benchmarks/defaults-fashion.toml ... --grid lr_scale=0.005,0.01,0.02`:
        # 0.005 PASS 0.0350, 0.01 and 0.02 miss random:0.1 at 0.0482 / 0.0571 vs the original's 0.0441)
        lr_scale: float | None = param(None, POSITIVE, auto=ByTargetPerStep(classes=0.05, samples=0.02))
        schedule: str = param("constant", SCHEDULE)

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        masks = saliency_mask(model, task, cfg.mask_fraction)
        if masks is None:
            return model.eval()
        data = relabelled_mix(task)
        batch_size = task.train_config.batch_size
        epochs = task.epochs(cfg.epochs)
        steps = epochs * math.ceil(len(data) / batch_size)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        # weight decay is applied by hand below, so that it too touches only the salient weights
        decay = task.train_config.weight_decay
        optimizer = make_optimizer(params, task.train_config.with_(weight_decay=0.0),
                                   lr=task.train_config.lr * cfg.lr_scale)
        scheduler = make_schedule(optimizer, cfg.schedule, steps)
        gen = task.generator(1)
        labels = training_labels(model, data)
        model.train()
        with tqdm(total=steps, desc="salun", disable=not show_progress(task.progress), leave=False,
                  unit="step") as bar:
            for epoch in range(epochs):
                for x, y in batches(data, batch_size, generator=gen, labels=labels):
                    if task.out_of_time():
                        return model.eval()
                    loss = supervised_loss(model, model(x.to(task.device)), y.to(task.device), task.train_config)
                    check_finite(loss, f"in salun at epoch {epoch + 1}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    with torch.no_grad():
                        for name, p in named:
                            if p.grad is not None:
                                p.grad.add_(p, alpha=decay).mul_(masks[name])
                    optimizer.step()
                    scheduler.step()
                    bar.update(1)
        return model.eval()
