"""sisa: exact unlearning of a SISA ensemble by retraining only the shards that held the forget set.

Bourtoule et al., "Machine Unlearning", IEEE S&P 2021. The checkpoint must come from
``unlearn train --sisa shards=S,slices=R``; each shard holding a forget id is retrained from the weights saved
before its earliest affected slice, so the result equals SISA training without the forget set, weight for
weight on the CPU. The core lives in :mod:`unlearnkit.exact.sisa`; ``forget --json`` reports ``retrained_shards``
and ``retrained_slices``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.exact.sisa import EXECUTORS, check_matches, forget_sisa, load_sisa
from unlearnkit.methods.base import Method, UnlearnTask, register
from unlearnkit.params import Options, Params, param


@register
class Sisa(Method):
    name = "sisa"
    summary = "retrain only the SISA shards holding forget samples, from the slice before them (exact)"
    reference = "Bourtoule et al., Machine Unlearning, IEEE S&P 2021"
    exact = True
    requires = "a SISA checkpoint (unlearn train --sisa shards=S,slices=R)"

    @dataclass(frozen=True)
    class Config(Params):
        executor: str = param("local", Options(*EXECUTORS))  # local: affected shards one after another; ray: one Ray
        # task per affected shard
        ray_address: str | None = None  # an existing Ray cluster; None starts a local Ray for the call

    def run(self, task: UnlearnTask) -> nn.Module:
        state = load_sisa(task.checkpoint)
        check_matches(task.model, state, task.checkpoint)
        if task.budget is not None:
            task.note("budget ignored: SISA retrains the affected shards in full, or it would not be exact")
        result = forget_sisa(state, task.split, device=task.device, progress=task.progress,
                             executor=self.config.executor, ray_address=self.config.ray_address)
        task.info["retrained_shards"] = result.retrained_shards
        task.info["retrained_slices"] = result.retrained_slices
        task.info["first_retrained_slice"] = {str(k): r for k, r in result.first_slice.items()}
        task.info["shards"] = state.spec.shards
        task.info["slices"] = state.spec.slices
        return result.model
