"""neggrad-plus: descend the retain loss and ascend the forget loss in the same step (NegGrad+).

Each step takes a retain batch and a forget batch (the smaller forget set is cycled) and minimises
``alpha * CE(retain) - (1 - alpha) * CE(forget)``: the forget term pushes the forget samples' loss up,
the retain term holds the rest of the model in place. Epochs run over the retain set, and gradients
are clipped because the ascent term is unbounded.

Source: Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023 — the NegGrad+
baseline (github.com/meghdadk/SCRUB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.methods.base import SCHEDULE, Method, UnlearnTask, register
from unlearnkit.methods.loops import cycle
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, POSITIVE, Interval, Params, param
from unlearnkit.train import batches, check_finite, make_optimizer, make_schedule, show_progress


@register
class NegGradPlus(Method):
    name = "neggrad-plus"
    summary = "minimise alpha*CE(retain) - (1-alpha)*CE(forget) over the retain set, forget batches cycled, clipped"
    reference = "Kurmanji et al., NeurIPS 2023 (NegGrad+, the SCRUB paper's strong baseline)"

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 3),
        "lr_scale": Float(0.2, 4.0, log=True),
        "alpha": Float(0.8, 0.999),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # Tuned with seed 1 (benchmarks/tune_finetuning.py), then checked on other classes, seeds and a
        # less-trained model. The forget ascent does little while the model is confident on the forget
        # set, then runs away once that cracks: a high constant lr with a tight clip crosses that point
        # within one epoch without wrecking the rest. At <= 1x the lr (or with a cosine decay) class 3
        # stayed unforgotten; clip 1.0 cost retain accuracy (0.966 vs 0.982 on class:3).
        epochs: int = param(1, AT_LEAST_ONE)  # passes over the retain set (1/30 of retraining on the digits recipe)
        lr_scale: float = param(2.0, POSITIVE)  # learning rate = lr_scale x the original recipe's lr
        alpha: float = param(0.95, Interval(float, 0, 1, closed="both"))  # weight of the retain loss; 1 - alpha weighs
        # the forget-loss ascent
        clip_grad: float | None = param(0.5, POSITIVE)  # max gradient norm: the ascent term is unbounded
        schedule: str = param("constant", SCHEDULE)  # a cosine decay slows the lr before the ascent breaks through

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        retain, forget = task.split.retain, task.split.forget
        batch_size = task.train_config.batch_size
        epochs = task.epochs(cfg.epochs)
        steps = epochs * math.ceil(len(retain) / batch_size)
        params = list(model.parameters())
        optimizer = make_optimizer(params, task.train_config, lr=task.train_config.lr * cfg.lr_scale)
        scheduler = make_schedule(optimizer, cfg.schedule, steps)
        forget_stream = cycle(forget, batch_size, task.generator(1))
        gen = task.generator(0)
        model.train()
        with tqdm(total=steps, desc="neggrad-plus", disable=not show_progress(task.progress), leave=False,
                  unit="step") as bar:
            for epoch in range(epochs):
                for x, y in batches(retain, batch_size, generator=gen):
                    if task.out_of_time():
                        return model.eval()
                    fx, fy = next(forget_stream)
                    retain_loss = F.cross_entropy(model(x.to(task.device)), y.to(task.device))
                    forget_loss = F.cross_entropy(model(fx.to(task.device)), fy.to(task.device))
                    loss = cfg.alpha * retain_loss - (1 - cfg.alpha) * forget_loss
                    check_finite(loss, f"in neggrad-plus at epoch {epoch + 1}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.clip_grad:
                        torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                    optimizer.step()
                    scheduler.step()
                    bar.update(1)
        return model.eval()
