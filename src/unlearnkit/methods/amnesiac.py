"""amnesiac: subtract the recorded updates of every training batch that held a forget sample, then repair.

Graves, Nagisetty and Ganesh, "Amnesiac Machine Learning", AAAI 2021. During training
(``unlearn train --record-updates``) every optimizer step's parameter change is stored with the ids of
its batch (:mod:`unlearnkit.exact.updates`). To forget, the changes of the batches that held a forget id are
subtracted from the final weights, and a brief round of training on the retain set repairs the damage
the subtraction does to what the other batches built on top of those updates.

Subtracting is exact only for a batch nothing came after (the last one): later steps were computed from
weights that included the removed update, so their own updates carry its trace. Hence not ``exact``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.errors import CheckpointError
from unlearnkit.exact.updates import check_matches, read_updates, state_fingerprint, updates_dir
from unlearnkit.methods.base import Method, UnlearnTask, register
from unlearnkit.methods.loops import descend
from unlearnkit.models.checkpoint import read_sidecar
from unlearnkit.params import AT_LEAST_ZERO, POSITIVE, Params, param
from unlearnkit.train import batches

# Above this share of subtracted steps the model is thrown back close to its initial weights (typical of
# class forgetting: almost every shuffled batch holds a sample of the class), and the repair does the work.
MOST_STEPS = 0.5


def _reestimate_batch_norm(model: nn.Module, task: UnlearnTask) -> bool:
    """Recompute every batch norm's running statistics on the retain set (cumulative average over one pass,
    no gradients); the recorded updates do not cover these buffers. True if the model has any."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every retain batch counts equally
    model.train()
    with torch.no_grad():
        for x, _ in batches(task.split.retain, task.train_config.batch_size, shuffle=False):
            model(x.to(task.device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return True


@register
class Amnesiac(Method):
    name = "amnesiac"
    summary = "subtract the recorded updates of the batches that held forget samples, then repair on the retain set"
    reference = "Graves, Nagisetty, Ganesh, Amnesiac Machine Learning, AAAI 2021"
    requires = "a checkpoint trained with --record-updates"

    @dataclass(frozen=True)
    class Config(Params):
        # The paper repairs with a brief round of training on the remaining data. Two epochs at the original
        # lr bring the digits mlp (10-epoch recipe) back to 0.99 retain accuracy after forgetting a random 1%
        # (43% of the steps subtracted), where one epoch leaves 0.985 (0.979 at 0.4x the lr); class forgetting
        # subtracts every step and is not repaired in so short a time. 0 keeps the bare subtraction.
        repair_epochs: int = param(2, AT_LEAST_ZERO)
        lr_scale: float = param(1.0, POSITIVE)  # repair learning rate = lr_scale x the original recipe's lr

    def run(self, task: UnlearnTask) -> nn.Module:
        checkpoint = task.checkpoint
        history = read_sidecar(checkpoint).get("history", [])
        if history:
            original = history[0].get("parent", "the one trained with --record-updates")
            raise CheckpointError(
                f"{checkpoint} is the output of {len(history)} forget operation(s), so its weights are not the end "
                f"of a recorded run; run amnesiac on the original checkpoint ({original}) with every id to forget, the "
                "earlier ones included (e.g. --forget ids:FILE)"
            )
        log = read_updates(updates_dir(checkpoint))
        check_matches(log, task.model, checkpoint)
        if state_fingerprint(task.model) != log.index.get("final_state_sha256"):
            raise CheckpointError(
                f"the weights of {checkpoint} are not those at the end of the run recorded in {log.directory} (the "
                "checkpoint was replaced or edited after recording); retrain it with --record-updates"
            )

        forget_ids = task.split.forget.ids
        steps = log.steps_containing(forget_ids)
        never = int((~torch.isin(forget_ids, log.ids)).sum())
        model = task.clone_model()
        if steps:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, total in log.sum_deltas(steps).items():
                    p = params[name]
                    p.copy_((p.detach().to("cpu", torch.float64) - total).to(p.dtype))
        fraction = len(steps) / max(1, log.steps)
        task.info.update({
            "subtracted_batches": len(steps), "recorded_batches": log.steps,
            "subtracted_fraction": round(fraction, 6), "update_dtype": log.dtype,
        })
        if never:
            task.info["forget_ids_never_recorded"] = never
            task.note(f"{never} forget ids are in no recorded batch (training stopped early?); nothing to undo there")
        if not steps:
            task.note("no recorded batch held a forget id; the subtraction changed nothing")
        elif fraction > MOST_STEPS:
            task.note(f"subtracted {fraction:.0%} of all training steps: the model falls back near its initial weights "
                      "and the repair does most of the work; retrain may be as cheap")
        if _reestimate_batch_norm(model, task):
            task.info["batch_norm_reestimated"] = True
        if self.config.repair_epochs > 0:
            descend(model, task.split.retain, task, epochs=self.config.repair_epochs,
                    lr=task.train_config.lr * self.config.lr_scale, schedule="cosine", desc="amnesiac repair")
        return model
