"""forget-free: unlearning without the forget set, by stochastic re-initialisation and knowledge preservation.

The method never reads the forget set. It runs ``cycles`` forget-remember cycles. Each cycle first
re-initialises a randomly chosen share of the model's weight layers (the forgetting phase: whatever
those layers held about any training sample is destroyed), then trains the whole model to reproduce
the original model's logits on retain inputs with Gaussian noise added (mean squared error, the
"knowledge-preserving" loss: the remembering phase). The share of layers reset grows from cycle to cycle
(by default 3 cycles for whole classes, 1 otherwise). Only what the retain set can
bring back returns, so the forget samples end up treated like data the model never saw. The input noise
widens the region around the retain samples on which the original's behaviour is copied, which keeps test
accuracy up.

Limits: copying the original's logits also copies what they imply about the forgotten data, so the
method suits random forget sets (its target in the challenge) far better than whole classes: a student
distilled on logits learns much about a class it never sees (Hinton et al., 2015, the "omitted 3"
experiment). On digits, ``class:3`` forget accuracy falls from 1.0 to about 0.2-0.7, not reliably to 0, so
the method does not claim class forgetting (``forgets_classes`` is False); its defaults are tuned for random
samples and subjects.
Because the layers to reset are drawn at random, results vary more from seed to seed than for most
methods (benchmarks/tune_challenge.py --seeds 1,2,3).

Source: J. Ahn, C. Lee, J.-H. Bae, J. Yim, H. Jung (Kyungpook National University, LG Energy
Solution), the "forget set-free" solution to the NeurIPS 2023 Machine Unlearning Challenge
(technical report: https://junhyunb.github.io/en/projects/neurips2023-unlearning/); the competition is
described in Triantafillou et al., "Are we making progress in unlearning?", 2024. The report gives the
design, not all numbers: the layer share, cycles, epochs, noise level, learning rate and the gradient
clip here are tuned on digits (benchmarks/tune_challenge.py).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods.base import ByTarget, Method, UnlearnTask, register
from unlearnkit.methods.layers import reinitialise, weight_layers
from unlearnkit.methods.loops import cycle
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Params, param
from unlearnkit.train import check_finite, make_optimizer, make_schedule


@register
class ForgetFree(Method):
    name = "forget-free"
    summary = ("re-initialise random layers, then copy the original's logits on noised retain inputs; repeat; keeps "
               "much of a whole class (the copied logits carry it)")
    reference = "Ahn, Lee, Bae, Yim, Jung: the forget set-free solution, NeurIPS 2023 Machine Unlearning Challenge"
    needs_forget = False
    # the copied logits carry a forgotten class: forget accuracy 0.09-0.69 on class:3 and class:3,5 of the digits
    # mlp and cnn (the defaults suite, docs/results/defaults/digits-before.md); held to its random/subject claim only.
    forgets_classes = False

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "cycles": Int(1, 4),
        "epochs": Int(2, 8),
        "lr_scale": Float(0.1, 1.0, log=True),
        "noise_std": Float(0.01, 0.5, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # cycles, epochs and lr_scale by what is forgotten (benchmarks/tune_defaults.py on the defaults suite, seeds
        # 11-12, docs/results/defaults/). Whole classes keep 3 cycles of 4 epochs at 0.6x (first tuned with seed 1,
        # benchmarks/tune_challenge.py: 2 cycles forgot less, 4 lost retain accuracy, 3 epochs forgot less and
        # kept less, lr 0.2-0.4 recovered too slowly): the most of a class it removes, forget accuracy 0.09-0.69
        # (the claim it does not make). On random samples and subjects that setting ended further from retraining
        # than the untouched model on all four scenarios (cnn subjects gap 0.0807 against 0.0166); `--target
        # samples --grid cycles=1,2,3 --grid epochs=3,4,5,6,8 --grid lr_scale=0.3,0.45,0.6` printed `PASS gap
        # 0.0155 x2.0 {cycles 1, epochs 6, lr_scale 0.45}` (0.0135/0.0181 0.0127/0.0166 cnn, 0.0205/0.0236
        # 0.0153/0.0177 mlp). Only 2 cycles of 8 epochs at 0.3x came closer (0.0140, x1.4); 4 epochs or fewer
        # missed at any cycle count. Every reset costs training to recover, so on random samples the method stays
        # only ~2-3x cheaper than retraining digits.
        cycles: int | None = param(None, AT_LEAST_ONE, auto=ByTarget(classes=3, samples=1))  # forget-remember
        # cycles (the source uses 3-4)
        epochs: int | None = param(None, AT_LEAST_ONE, auto=ByTarget(classes=4, samples=6))  # epochs of
        # knowledge-preserving training in all, split evenly over the cycles
        layer_fraction: float = param(0.34, FRACTION)  # share of weight layers reset in the last cycle, cycle c of n
        # resets c/n of it (at least one layer): on the 3-layer mlp one layer per cycle; resetting more left too little
        # training to recover
        noise_std: float = param(0.1, NON_NEGATIVE)  # std of the Gaussian noise on the (standardised) retain inputs
        lr_scale: float | None = param(None, POSITIVE, auto=ByTarget(classes=0.6, samples=0.45))  # learning rate =
        # lr_scale x the recipe's lr, cosine-annealed in each cycle
        clip_grad: float | None = param(30.0, POSITIVE)  # max gradient norm: catches the spikes right after a reset (lr
        # 0.6 diverged without it on some seeds; typical norms are 20-60, and 5 slowed recovery)

    def layers_to_reset(self, n_layers: int, cycle_index: int) -> int:
        """How many of ``n_layers`` weight layers cycle ``cycle_index`` (0-based) resets: a growing share."""
        share = self.config.layer_fraction * (cycle_index + 1) / self.config.cycles
        return min(n_layers, max(1, round(share * n_layers)))

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        teacher = copy.deepcopy(task.model).to(task.device).eval()  # the original, read under no_grad
        layers = weight_layers(model)
        retain = task.split.retain
        batch_size = task.train_config.batch_size
        epochs = task.epochs(cfg.epochs)
        total_steps = epochs * math.ceil(len(retain) / batch_size)
        stream = cycle(retain, batch_size, task.generator(0))
        choice = task.generator(1)  # which layers, and their new weights
        noise = task.generator(2)  # input noise
        lr = task.train_config.lr * cfg.lr_scale
        for c in range(cfg.cycles):
            steps = total_steps // cfg.cycles + (1 if c < total_steps % cfg.cycles else 0)
            if steps == 0:
                continue
            k = self.layers_to_reset(len(layers), c)
            for i in sorted(torch.randperm(len(layers), generator=choice)[:k].tolist()):
                reinitialise(layers[i][1], int(torch.randint(2**31 - 1, (1,), generator=choice)))
            optimizer = make_optimizer(model.parameters(), task.train_config, lr=lr)
            scheduler = make_schedule(optimizer, "cosine", steps)
            model.train()
            for _ in range(steps):
                if task.out_of_time():
                    return model.eval()
                x, _ = next(stream)
                x = x + cfg.noise_std * torch.randn(x.shape, generator=noise)
                x = x.to(task.device)
                with torch.no_grad():
                    target = teacher(x)
                loss = F.mse_loss(model(x), target)
                check_finite(loss, f"in forget-free cycle {c + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
                scheduler.step()
        return model.eval()
