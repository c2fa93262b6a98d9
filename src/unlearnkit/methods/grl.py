"""grl: adversarial attribute removal through a gradient reversal layer, L = L_target + beta * L_attribute.

An attribute head reads the model's penultimate features and learns to predict the attribute; between the
features and the head sits a gradient reversal layer (identity forward, -beta x the gradient backward, Ganin &
Lempitsky, ICML 2015). Minimising ``L_target + L_attribute`` then trains the head to find the attribute while
the encoder below the features is pushed to *maximise* the head's loss, i.e. to drop the attribute, and the
target loss keeps the task. Kim et al. (CVPR 2019, "Learning Not to Learn") apply this to colour-biased MNIST.

The game is unstable: the two objectives conflict, and a head that is too weak (or too late) leaves the encoder
nothing to fight, one too strong makes it destroy features the task needs. The stabilisers, each a Config field
and all switched off by ``stabilise=false`` (the stability study in docs/BIAS.md compares the two):
- the DANN schedule for beta, ``beta x (2 / (1 + exp(-10 p)) - 1)`` over training progress p (Ganin et al.,
  JMLR 2016), so the adversary's push grows as the head becomes informative;
- head warm-up: ``warmup_epochs`` passes training the attribute head alone on the frozen features first;
- ``adversary_steps`` head updates per encoder update, keeping the head near its best response;
- gradient clipping of the encoder's update;
- an early stop once a fresh logistic probe on held-out features (``val``, else a seeded fifth of the training
  data) predicts the attribute no better than chance + ``stop_margin``.

On biased data the attribute predicts the label, so a head that reads features of the training samples can guess
the attribute from the class, and the reversed gradient then erases class information too: the trick fights the
task. When the data source can re-render its samples (the biased sources), the head instead reads the features of
each batch re-rendered with uniformly random attribute values (``adversary_data=counterfactual``, the default
then), where the attribute is independent of the class, so only the attribute itself is pushed out; the early
stop's probe reads held-out data re-rendered the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import AttributeTask, Method, register
from unlearnkit.methods.bias import features_of, rerendered
from unlearnkit.methods.space import Float, Int
from unlearnkit.models.architectures import penultimate
from unlearnkit.params import AT_LEAST_ONE, AT_LEAST_ZERO, NON_NEGATIVE, POSITIVE, Options, Params, param
from unlearnkit.train import check_finite, make_optimizer


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The gradient reversal layer: ``x`` forward; ``-scale`` x the incoming gradient backward."""
    return _Reverse.apply(x, scale)


def dann_weight(progress: float) -> float:
    """DANN's ramp, 0 at the start of training and close to 1 at its end: 2 / (1 + exp(-10 p)) - 1."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


@register
class GradientReversal(Method):
    name = "grl"
    kind = "attribute"
    summary = ("encoder level: train against an attribute head through a gradient reversal layer (L = L_target + "
               "beta L_attribute, reversed into the encoder), with DANN schedule, warm-up, several adversary steps, "
               "clipping and an early stop at chance leakage")
    reference = ("Ganin & Lempitsky, ICML 2015 (gradient reversal); Kim et al., CVPR 2019, 'Learning Not to Learn: "
                 "Training Deep Neural Networks with Biased Data'")
    needs_forget = False
    forgets_classes = False

    search_space = {"beta": Float(0.1, 10.0, log=True), "epochs": Int(1, 20), "lr_scale": Float(0.05, 2.0, log=True)}

    @dataclass(frozen=True)
    class Config(Params):
        epochs: int = param(10, AT_LEAST_ONE)  # passes over the training data (the adversarial phase)
        lr_scale: float = param(0.5, POSITIVE)  # encoder learning rate = this x the checkpoint recipe's lr
        beta: float = param(0.3, NON_NEGATIVE)  # weight of the reversed attribute loss (its maximum, under dann)
        head_hidden: int = param(64, AT_LEAST_ZERO)  # the attribute head: one hidden ReLU layer of this width (0:
        # a linear head)
        head_lr: float = param(1e-3, POSITIVE)  # Adam learning rate of the attribute head
        stabilise: bool = True  # False switches every stabiliser below off (constant beta, no warm-up, one
        # adversary step, no clipping, no early stop): the plain trick, for comparison
        schedule: str = param("dann", Options("dann", "constant"))  # beta's schedule over training progress
        warmup_epochs: int = param(1, AT_LEAST_ZERO)  # head-only passes before the adversarial phase
        adversary_steps: int = param(3, AT_LEAST_ONE)  # head updates per encoder update
        clip_grad: float | None = param(1.0, POSITIVE)  # max norm of the encoder's gradient
        stop_margin: float | None = param(0.05, NON_NEGATIVE)  # stop once held-out probe leakage <= chance + this
        # (None: never)
        adversary_data: str = param("auto", Options("auto", "counterfactual", "train"))  # what the attribute head
        # reads (module docstring); auto: counterfactual when the source can re-render its samples

    def run(self, task: AttributeTask) -> nn.Module:
        cfg = self.config
        on = cfg.stabilise
        model = task.clone_model()
        train, values = task.train, task.values()
        adversary_data = cfg.adversary_data if cfg.adversary_data != "auto" else \
            ("counterfactual" if task.counterfactual is not None else "train")
        if adversary_data == "counterfactual" and task.counterfactual is None:
            raise ConfigError("grl adversary_data=counterfactual needs a data source that can re-render its samples "
                              "(colored-digits, colored-fashion-mnist, biased-tabular); use adversary_data=train")
        cf_gen = task.generator(11)

        def adversary_batch(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """The inputs and attribute values the head learns from for this batch."""
            if adversary_data == "train":
                return x, a
            batch_data = IndexedDataset(x.cpu(), y.cpu(), torch.arange(len(y)), train.num_classes,
                                        attributes={task.attribute: a.cpu()})
            other = rerendered(task, batch_data, cf_gen)
            return other.x.to(task.device), task.values(other).to(task.device)
        width = features_of(model, train.subset(torch.arange(min(2, len(train)))), task.device).shape[1]
        head = (nn.Sequential(nn.Linear(width, cfg.head_hidden), nn.ReLU(), nn.Linear(cfg.head_hidden, task.n_values))
                if cfg.head_hidden else nn.Linear(width, task.n_values)).to(task.device)
        with torch.no_grad():  # the head's initial weights from the task seed, not the global generator
            gen = task.generator(7)
            for p in head.parameters():
                p.copy_(torch.empty_like(p, device="cpu").uniform_(-1, 1, generator=gen) / math.sqrt(p.shape[-1]))
        head_opt = torch.optim.Adam(head.parameters(), lr=cfg.head_lr)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(params, task.train_config, lr=task.train_config.lr * cfg.lr_scale)
        probe_x, probe_a = self._probe_data(task)
        batch = task.train_config.batch_size
        gen = task.generator(0)
        steps_per_epoch = math.ceil(len(train) / batch)

        def epoch_batches():
            order = torch.randperm(len(train), generator=gen)
            for start in range(0, len(train), batch):
                idx = order[start:start + batch]
                yield train.x[idx].to(task.device), train.y[idx].to(task.device), values[idx].to(task.device)

        def head_step(feats: torch.Tensor, a: torch.Tensor) -> None:
            head_opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(feats.detach()), a)
            check_finite(loss, "in grl's attribute head")
            loss.backward()
            head_opt.step()

        for _ in range(task.epochs(cfg.warmup_epochs) if on else 0):  # warm-up: the head alone, features frozen
            for x, y, a in epoch_batches():
                if task.out_of_time():
                    return model.eval()
                xa, va = adversary_batch(x, y, a)
                with torch.no_grad():
                    feats, _ = penultimate(model, xa)
                head_step(feats, va)

        epochs = task.epochs(cfg.epochs)
        total = max(1, epochs * steps_per_epoch)
        step = 0
        for epoch in range(epochs):
            model.train()
            for x, y, a in epoch_batches():
                if task.out_of_time():
                    return model.eval()
                scale = cfg.beta * (dann_weight(step / total) if on and cfg.schedule == "dann" else 1.0)
                xa, va = adversary_batch(x, y, a)
                for _ in range(cfg.adversary_steps if on else 1):
                    with torch.no_grad():
                        feats, _ = penultimate(model, xa)
                    head_step(feats, va)
                logits = model(x)
                feats, _ = penultimate(model, xa)
                adversary = F.cross_entropy(head(reverse_gradient(feats, scale)), va)
                loss = F.cross_entropy(logits, y) + adversary
                check_finite(loss, f"in grl at epoch {epoch + 1} (lower lr_scale or beta)")
                opt.zero_grad(set_to_none=True)
                head_opt.zero_grad(set_to_none=True)  # the head learns in its own steps only
                loss.backward()
                if on and cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
                opt.step()
                step += 1
            if on and cfg.stop_margin is not None:
                leak = self._leakage(model, probe_x, probe_a, task)
                if leak.leakage <= leak.chance + cfg.stop_margin:
                    task.note(f"early stop after epoch {epoch + 1}: held-out probe leakage {leak.leakage:.3f} <= "
                              f"chance {leak.chance:.3f} + {cfg.stop_margin:g}")
                    break
        return model.eval()

    @staticmethod
    def _probe_data(task: AttributeTask):
        """Held-out data for the early stop's probe: ``val``, else a seeded fifth of the training data; re-rendered
        with random attribute values when the source can (then the attribute says nothing about the class)."""
        if task.val is not None:
            data = task.val
        else:
            pick = torch.randperm(len(task.train), generator=task.generator(3))[: max(len(task.train) // 5, 4)]
            data = task.train.subset(pick)
        data = rerendered(task, data, task.generator(4)) or data
        return data, task.values(data)

    @staticmethod
    def _leakage(model: nn.Module, data, values: torch.Tensor, task: AttributeTask):
        from unlearnkit.metrics.fairness import attribute_leakage

        feats = features_of(model, data, task.device).numpy()
        order = torch.randperm(len(data), generator=task.generator(5)).numpy()
        half = len(order) // 2
        a = values.numpy()
        return attribute_leakage(feats[order[:half]], a[order[:half]], feats[order[half:]], a[order[half:]],
                                 seed=task.seed)
