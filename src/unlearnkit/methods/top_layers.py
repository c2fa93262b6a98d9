"""top-layers (CF-k): freeze all but the top k linear/conv layers and fine-tune those on the retain set.

"Catastrophic forgetting-k" from Goel et al., 2022 ("Towards Adversarial Evaluation of Inexact Machine
Unlearning", arXiv:2201.06640): the layers nearest the output are fine-tuned on the retain set while
everything below them stays frozen, so the forget set's influence fades only from those layers.
The trainable part is the top k layers plus any parameterised layer defined after the first of them
(e.g. a ResNet's last batch norms); frozen batch norms keep their running statistics (eval mode).

"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.methods.base import SCHEDULE, ByTarget, Method, UnlearnTask, register
from unlearnkit.methods.layers import top_block
from unlearnkit.methods.loops import train_only
from unlearnkit.methods.space import Float, Int
from unlearnkit.params import AT_LEAST_ONE, POSITIVE, Params, param


@register
class TopLayers(Method):
    name = "top-layers"
    summary = ("CF-k: freeze all but the top k linear/conv layers and fine-tune those on the retain set; barely "
               "moves a whole class (forget accuracy stays high)")
    reference = "Goel et al., 2022, Towards Adversarial Evaluation of Inexact Machine Unlearning (CF-k)"
    needs_forget = False
    # fine-tuning the top layers leaves a forgotten class at forget accuracy 0.90-0.97 on the digits mlp and cnn (the
    # defaults suite, docs/results/defaults/digits-before.md): held to its random/subject claim only.
    forgets_classes = False

    # what `unlearn tune` searches (docs/BENCHMARKS.md); every range holds the Config default below
    search_space = {
        "k": Int(1, 3),
        "epochs": Int(1, 8),
        "lr_scale": Float(0.5, 8.0, log=True),
    }

    @dataclass(frozen=True)
    class Config(Params):
        # k, epochs and lr_scale by what is forgotten (benchmarks/tune_defaults.py on the defaults suite, seeds
        # 11-12, docs/results/defaults/). Whole classes keep k=2, 5 epochs at 4x (tuned with seed 1,
        # benchmarks/tune_layers.py: the best digits gap among settings stable on Fashion-MNIST/cnn, where it
        # matches retraining, class:3 gap 0.002, and lr_scale 8 collapses the model); on digits it moves a class
        # only to forget accuracy 0.90-0.97, the claim it does not make. On random samples that setting left the
        # mlp's random split further from retraining than the untouched model (gap 0.0245 against 0.0236);
        # `--target samples --grid k=1,2,3 --grid epochs=2,3,5 --grid lr_scale=0.5,1,2,4,8` printed `PASS gap
        # 0.0163 x10.1 {k 3, epochs 2, lr_scale 1}` (0.0134/0.0181 0.0146/0.0166 cnn, 0.0226/0.0236 0.0147/0.0177
        # mlp), the lowest passing gap; every k=2 setting either missed the mlp's random split (0.0240-0.0262) or
        # only tied the original on one cnn split (0.0166/0.0166 at 0.5x), and lr_scale 8 wrecked the cnn. On the
        # 3-layer digits mlp k=3 trains every layer; on the cnn it keeps the first conv frozen.
        k: int | None = param(None, AT_LEAST_ONE, auto=ByTarget(classes=2, samples=3))  # layers fine-tuned, counted
        # from the output; needs k <= the model's linear/conv layers
        epochs: int | None = param(None, AT_LEAST_ONE, auto=ByTarget(classes=5, samples=2))  # passes over the retain
        # set (retraining on digits takes 30)
        lr_scale: float | None = param(None, POSITIVE, auto=ByTarget(classes=4.0, samples=1.0))  # learning rate =
        # lr_scale x the original recipe's lr
        schedule: str = param("cosine", SCHEDULE)  # anneal to zero so the high starting lr ends in a settled model

    def run(self, task: UnlearnTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        block = top_block(model, cfg.k, self.name)
        return train_only(model, [m for _, m in block], task, epochs=cfg.epochs,
                          lr=task.train_config.lr * cfg.lr_scale, schedule=cfg.schedule, desc=self.name)
