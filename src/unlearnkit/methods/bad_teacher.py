"""bad-teacher: distil from a competent teacher on retain samples and an incompetent one on forget samples.

The student starts as a copy of the original model. Two frozen teachers guide it: the original model
(the competent teacher) and a randomly initialised copy of the architecture (the incompetent teacher).
Each batch mixes forget samples with a random subset of the retain set; the student minimises the
temperature-softened KL divergence to the incompetent teacher's outputs on forget samples and to the
competent teacher's outputs on retain samples, so it forgets the forget set (its predictions there
become as uninformed as a random network's) while keeping everything else.

Source: Chundawat, Tarun, Mandal and Kankanhalli, "Can Bad Teaching Induce Forgetting? Unlearning in
Deep Networks Using an Incompetent Teacher", AAAI 2023; the loop follows the authors'
``blindspot_unlearner`` (one epoch over forget + 30% of the retain set). Two deliberate differences:
the KL is averaged per sample and scaled by T^2 (the authors' ``F.kl_div`` default averages over
classes too, a constant factor the learning rate absorbs), and the optimizer is the original recipe's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.methods.base import ByTargetPerStep, Method, UnlearnTask, register
from unlearnkit.methods.losses import kl_to_teacher
from unlearnkit.methods.space import Float, Int
from unlearnkit.models.registry import fresh_copy
from unlearnkit.params import AT_LEAST_ONE, FRACTION, POSITIVE, Params, param
from unlearnkit.train import check_finite, make_optimizer


@register
class BadTeacher(Method):
    name = "bad-teacher"
    summary = "distil from the original on retain samples and from a random network on forget samples"
    reference = "Chundawat et al., AAAI 2023, 'Can Bad Teaching Induce Forgetting?' (Bad-T / blindspot)"

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "epochs": Int(1, 3),
        "lr_scale": Float(0.01, 0.5, log=True),
        "temperature": Float(1.0, 4.0),
        "retain_fraction": Float(0.1, 1.0),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # lr_scale and retain_fraction from benchmarks/tune_defaults.py on the defaults suite (seeds 11-12,
        # docs/results/defaults/): `... --method bad-teacher --target classes --grid lr_scale=0.05,0.1 --grid
        # retain_fraction=1.0`: 0.1 PASS, mean gap 0.0100, x8.5 (0.05: miss, 0.0173, mlp class:3,5 forget 0.068);
        # `... --target samples --grid retain_fraction=1.0 --grid lr_scale=0.02 / 0.05,0.1`: 0.02 PASS, mean gap
        # 0.0135, x7.2 (0.05: miss, 0.0161; 0.1: miss, 0.0310, the cnn pulled 0.05 further from retraining).
        epochs: int = param(1, AT_LEAST_ONE)  # passes over the mix of forget and retain samples (paper: 1)
        # learning rate = lr_scale x the original recipe's lr, by what is forgotten (see above); on random samples and
        # subjects it follows the retain set's steps per epoch (0.02 at digits' 21, 0.0059 at Fashion-MNIST's 71):
        # `... defaults-fashion.toml ... --method bad-teacher --target samples --grid lr_scale=0.003,0.006,0.01,0.02`
        # printed 0.0330 / 0.0285 / 0.0450 / 0.0548 on random:0.1 against the original's 0.0441.
        lr_scale: float | None = param(None, POSITIVE, auto=ByTargetPerStep(classes=0.1, samples=0.02))
        temperature: float = param(1.0, POSITIVE)  # softening of teachers and student in the KL (paper: 1; 2 and 4 did
        # no better)
        # share of the retain set mixed in each epoch (paper: 0.3); the whole retain set (was 0.5) kept the cnn's
        # test accuracy within 0.02 of retraining's on class forgetting, where 0.5 lost 0.05-0.07 (see above)
        retain_fraction: float = param(1.0, FRACTION)

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        forget, retain = task.split.forget, task.split.retain
        gen = task.generator(0)
        competent = _frozen(copy.deepcopy(task.model), task)
        seed = int(torch.randint(2**31 - 1, (1,), generator=task.generator(1)))
        incompetent = _frozen(fresh_copy(task.model, seed=seed), task)  # random init of the same architecture
        student = task.clone_model()
        optimizer = make_optimizer(list(student.parameters()), task.train_config,
                                   lr=task.train_config.lr * cfg.lr_scale)
        batch_size = task.train_config.batch_size
        n_retain = max(1, round(cfg.retain_fraction * len(retain)))
        for epoch in range(task.epochs(cfg.epochs)):
            # a fresh retain subset each epoch, mixed with the whole forget set; flag 1 marks forget samples
            subset = torch.randperm(len(retain), generator=gen)[:n_retain]
            x_all = torch.cat([forget.x, retain.x[subset]])
            is_forget = torch.cat([torch.ones(len(forget), dtype=torch.bool), torch.zeros(n_retain, dtype=torch.bool)])
            order = torch.randperm(len(x_all), generator=gen)
            for start in range(0, len(order), batch_size):
                if task.out_of_time():
                    return student.eval()
                idx = order[start:start + batch_size]
                x, flag = x_all[idx].to(task.device), is_forget[idx].to(task.device)
                with torch.no_grad():
                    target = torch.where(flag[:, None], incompetent(x), competent(x))
                student.train()
                loss = kl_to_teacher(student(x), target, cfg.temperature)
                check_finite(loss, f"in bad-teacher at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return student.eval()


def _frozen(model: nn.Module, task: UnlearnTask) -> nn.Module:
    model = model.to(task.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
