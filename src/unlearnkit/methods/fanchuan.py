"""fanchuan: pull forget predictions to uniform, then contrast forget outputs against retain outputs.

Two stages. First, one pass over the forget set, one step per mini-batch, minimising the KL
divergence between the uniform distribution and the model's predicted distribution on forget samples.
Then ``epochs`` rounds, each made of:

* a forget round: for every forget mini-batch, a mini-batch of retain samples is drawn and the
  similarity matrix between the forget outputs and the (detached) retain outputs is formed,
  ``S = f(x_u) f(x_r)^T / temperature``, on the logits. The step minimises
  ``-mean(log_softmax(S, dim=1))``, the cross-entropy between each forget sample's softmax over the
  retain batch and the uniform distribution: no retain sample may stand out as similar to a forget
  sample, which pushes each forget output away from the retain outputs it resembles (the competition
  write-up calls this ascending a contrastive loss between forget and retain outputs);
* a retain round: one epoch of cross-entropy on the retain set, to repair utility.

The forget-round learning rate is cosine-annealed over all rounds. The contrast steps stop once forget
accuracy is at the level a retrained model shows (``forget_target``: 0 for whole classes, else the
original's accuracy on held-out data); the retain rounds still run.

On random or subject forgetting the defaults do not always end closer to retraining than the untouched
original: on the digits suite the retain rounds move the cnn further on random:0.1 (gap 0.0249 vs 0.0181)
and the mlp on subjects (0.0225 vs 0.0177); the run says so in a note on such splits. Each stage keeps its own optimizer
(the original recipe's optimizer type, with its own learning rate), as in the source.

Source: "Fanchuan", 2nd place of the NeurIPS 2023 Machine Unlearning Challenge (Kaggle), described in
Triantafillou et al., "Are we making progress in unlearning? Findings from the first NeurIPS
unlearning competition", 2024; code as ported by Cadet et al., 2024 (DeepUnlearn, ``kgltop1``). The
source ran 8 rounds at temperature 1.15; the round count and learning rates here are tuned on digits
(benchmarks/tune_challenge.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods.base import ByTarget, Method, UnlearnTask, register
from unlearnkit.methods.loops import cycle, forget_target
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, Params, param
from unlearnkit.train import accuracy_on, batches, check_finite, make_optimizer, make_schedule


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)), averaged over the batch."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    return F.kl_div(F.log_softmax(logits, dim=1), uniform, reduction="batchmean")


def contrastive_spread(forget_logits: torch.Tensor, retain_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-mean(log_softmax(f r^T / T))``: low when no retain output is singled out as similar to a forget output."""
    similarity = forget_logits @ retain_logits.detach().T / temperature
    return -F.log_softmax(similarity, dim=1).mean()


@register
class Fanchuan(Method):
    name = "fanchuan"
    summary = "pull forget predictions to uniform, then rounds of forget-vs-retain contrast plus a retain CE epoch"
    reference = ("'Fanchuan', 2nd place, NeurIPS 2023 Machine Unlearning Challenge (Triantafillou et al., 2024; "
                 "port in Cadet et al., 2024)")

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 4),
        "temperature": Float(0.5, 2.0),
        "forget_lr_scale": Float(0.005, 0.1, log=True),
        "retain_lr_scale": Float(0.05, 1.0, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        epochs: int = param(2, AT_LEAST_ONE)  # contrast + retain rounds (source: 8); on digits 2 matched 3 or 5 at a
        # fraction of the cost
        temperature: float = param(1.15, POSITIVE)  # the source's temperature on the forget-retain similarities
        uniform_lr_scale: float = param(0.05, NON_NEGATIVE)  # stage-1 lr / recipe lr: the source's 0.005 with its 0.1
        # recipe; 0 skips it
        # contrast-step lr / recipe lr, cosine-annealed over the rounds, by what is forgotten
        # (benchmarks/tune_defaults.py on the defaults suite, seeds 11-12, docs/results/defaults/, with the stop rule
        # below): classes 0.05, `... --method fanchuan --target classes --grid forget_lr_scale=0.05,0.1`: miss, mean
        # gap 0.0394, x6.4, only mlp
        # class:3,5 missed (forget 0.416); 0.1 forgot it (0.022) but cost cnn class:3 0.29 test accuracy; 0.02: miss,
        # 0.0600. Samples 0.02 (the source's 0.003 left class forgetting partial).
        forget_lr_scale: float | None = param(None, POSITIVE, auto=ByTarget(classes=0.05, samples=0.02))
        retain_lr_scale: float = param(0.2, POSITIVE)  # retain-epoch lr / recipe lr (source: 0.04); repairs utility in
        # one epoch
        # the contrast steps stop once forget accuracy is at the retrained level (None: auto, 0 for whole classes,
        # else the original's accuracy on held-out data; a number: this level)
        stop_accuracy: float | None = param(None, Interval(float, 0, 1, closed="both"))

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        forget, retain = task.split.forget, task.split.retain
        batch_size = task.train_config.batch_size
        base_lr, dev = task.train_config.lr, task.device
        params = list(model.parameters())
        model.train()

        # Stage 1: one pass pulling forget predictions toward the uniform distribution.
        if cfg.uniform_lr_scale > 0:
            optimizer = make_optimizer(params, task.train_config, lr=base_lr * cfg.uniform_lr_scale)
            for x, _ in batches(forget, batch_size, generator=task.generator(0)):
                if task.out_of_time():
                    return model.eval()
                loss = uniform_kl(model(x.to(dev)))
                check_finite(loss, "in fanchuan's uniform stage")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        # Stage 2: rounds of forget-retain contrast, each followed by a cross-entropy epoch on retain.
        rounds = task.epochs(cfg.epochs)
        forget_opt = make_optimizer(params, task.train_config, lr=base_lr * cfg.forget_lr_scale)
        forget_sched = make_schedule(forget_opt, "cosine", rounds * math.ceil(len(forget) / batch_size))
        retain_opt = make_optimizer(params, task.train_config, lr=base_lr * cfg.retain_lr_scale)
        forget_order, retain_order = task.generator(1), task.generator(3)
        partners = cycle(retain, batch_size, task.generator(2))
        target = forget_target(task, cfg.stop_accuracy)
        if not task.split.forgets_whole_classes():
            task.note_no_gain("fanchuan's defaults are tuned for whole classes")
        contrasting = target is None or accuracy_on(model, forget, device=dev) > target
        model.train()
        if not contrasting:
            task.note("forget accuracy already at the target: no contrast steps")
        for r in range(rounds):
            for xf, yf in batches(forget, batch_size, generator=forget_order) if contrasting else ():
                if task.out_of_time():
                    return model.eval()
                xr, _ = next(partners)
                out_f = model(xf.to(dev))
                batch_at_target = target is not None and (out_f.argmax(1) == yf.to(dev)).float().mean().item() <= target
                with torch.no_grad():
                    out_r = model(xr.to(dev))
                loss = contrastive_spread(out_f, out_r, cfg.temperature)
                check_finite(loss, f"in fanchuan's contrast round {r + 1}")
                forget_opt.zero_grad(set_to_none=True)
                loss.backward()
                forget_opt.step()
                forget_sched.step()
                if batch_at_target:  # the batch was at the target before this step: check the whole set
                    acc = accuracy_on(model, forget, device=dev)
                    model.train()
                    if acc <= target:
                        contrasting = False
                        task.note(f"contrast stopped in round {r + 1}: forget accuracy {acc:.4f} <= target "
                                  f"{target:.4f}; retain rounds continue")
                        break
            for x, y in batches(retain, batch_size, generator=retain_order):
                if task.out_of_time():
                    return model.eval()
                loss = F.cross_entropy(model(x.to(dev)), y.to(dev))
                check_finite(loss, f"in fanchuan's retain round {r + 1}")
                retain_opt.zero_grad(set_to_none=True)
                loss.backward()
                retain_opt.step()
        return model.eval()
