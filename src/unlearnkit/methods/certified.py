"""certified: certified data removal for linear models (Guo, Goldstein, Hannun, van der Maaten, ICML 2020).

One Newton step on the remaining data removes the forget set from a ``linear`` or ``logistic`` model trained to
its optimum (``unlearn train --model logistic``). The step leaves a gradient residual on the remaining data that
the paper bounds (Corollary 1; unlearnkit.exact.linear computes it); the bounds of successive removals add up in the
checkpoint history, and once their total passes the budget the model is retrained from scratch on the remaining
data instead (the paper's repeated-removal algorithm). For least squares (``linear``) the step is exact and the
bound is 0.

    unlearn train --model logistic --perturbation 1 --unit-norm --out runs/lr
    unlearn forget -c runs/lr --forget ids:3,13 --method certified --out runs/lr-1 --json
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.errors import CheckpointError, ConfigError, DataError
from unlearnkit.exact.linear import (
    AT_OPTIMUM,
    FEATURES,
    REMOVAL_CACHE,
    augment,
    correction_fits,
    epsilon_spent,
    gradient_residual,
    head_parameters,
    load_removal_state,
    newton_removal,
    residual_budget,
    set_head_parameters,
)
from unlearnkit.methods.base import Method, UnlearnTask, register
from unlearnkit.models.architectures import LinearHead
from unlearnkit.models.checkpoint import read_sidecar
from unlearnkit.models.registry import fresh_copy
from unlearnkit.params import NON_NEGATIVE, POSITIVE, Interval, Params, param
from unlearnkit.train import fit

MODEL_NAMES = {"squared": "linear", "logistic": "logistic"}


@register
class Certified(Method):
    name = "certified"
    summary = ("Newton step on the remaining data for linear/logistic models with a bound on its gradient residual; "
               "retrains from scratch once the summed bounds pass a budget")
    reference = ("Guo, Goldstein, Hannun, van der Maaten, Certified Data Removal from Machine Learning Models, "
                 "ICML 2020")
    certified = True
    requires = ("a linear or logistic model trained to the optimum (unlearn train --model logistic), loaded from "
                "its checkpoint, whose history carries the running removal bound")

    @dataclass(frozen=True)
    class Config(Params):
        # Cap on the summed gradient-residual bounds (sum-form gradient norm, the paper's units); past it the model
        # is retrained from scratch on the remaining data. None: sigma * epsilon / c for a model trained with loss
        # perturbation sigma (the paper's repeated-removal algorithm); without perturbation, no cap (the bound is
        # only reported).
        # (Named so as not to clash with unlearn()'s own time/epoch ``budget``.)
        removal_budget: float | None = param(None, NON_NEGATIVE)
        # The (epsilon, delta) guarantee a perturbed model keeps: epsilon = 1 as in the paper's experiments.
        epsilon: float = param(1.0, POSITIVE)
        delta: float = param(1e-4, Interval(float, 0, 1, closed="neither"))  # below 1/n for the datasets here, as
        # differential privacy asks of delta

    def run(self, task: UnlearnTask) -> nn.Module:
        model = task.model
        if not isinstance(model, LinearHead):
            raise ConfigError(f"certified removal needs a linear or logistic model (one linear layer trained to the "
                              f"optimum), not {type(model).__name__}; train one with `unlearn train --model logistic`")
        kind, recipe = MODEL_NAMES[model.objective], task.train_config
        if recipe.optimizer != "lbfgs":
            raise ConfigError(f"this {kind} model was trained with {recipe.optimizer}, not to the optimum; train it "
                              f"with `unlearn train --model {kind} --optimizer lbfgs` (its default recipe)")
        new = task.clone_model()
        theta = head_parameters(new)
        if not torch.isfinite(theta).all():
            raise ConfigError(f"the {kind} model's weights contain NaN or inf; retrain it with "
                              f"`unlearn train --model {kind}`")
        retain, forget = FEATURES(new, task.split.retain), FEATURES(new, task.split.forget)
        if not (torch.isfinite(retain.x).all() and torch.isfinite(forget.x).all()):
            raise DataError("the retain or forget features contain NaN or inf; clean the data before removing samples")
        n, lam, noise = len(retain) + len(forget), recipe.weight_decay, new.noise
        xa = augment(torch.cat([retain.x, forget.x]))  # every row the model is trained on, with the bias column
        xr, xf = xa[: len(retain)], xa[len(retain):]
        # How far the model is from the optimum on the data it was trained on (retain + forget), in the sum form;
        # the logistic model's probabilities on those rows serve the Newton step's solver too.
        p = (xa.to(theta.device) @ theta.T).softmax(1) if model.objective == "logistic" else None
        residual = gradient_residual(theta, xa, torch.cat([retain.y, forget.y]), objective=model.objective,
                                     weight_decay=lam, noise=noise, augmented=True, probabilities=p)
        start, removals = self._running_total(task, kind, residual, n)
        # The Hessian factored once for the data trained on now (REMOVAL_CACHE.prepare, or an earlier request in
        # this process) turns the step into a small solve; without one, a single request solves by conjugate
        # gradients, and the second in a row factors the Hessian for itself and the requests after it.
        both = torch.cat([retain.ids, forget.ids])
        state = REMOVAL_CACHE.find(both, xa, lam)
        if state is None and task.checkpoint is not None:  # one saved beside the checkpoint (another process's)
            try:
                if load_removal_state(task.checkpoint, theta) is not None:
                    state = REMOVAL_CACHE.find(both, xa, lam)
            except CheckpointError as error:
                task.note(f"{error}; solving without it")
        if state is None and REMOVAL_CACHE.in_a_row(both) and correction_fits(
                theta.shape, len(both), len(forget), len(forget) * theta.shape[0]):
            state = REMOVAL_CACHE.prepare(theta.to(task.device), both, xa, model.objective, lam)
        removal = newton_removal(theta.to(task.device), xr, retain.y, xf, forget.y, objective=model.objective,
                                 weight_decay=lam, state=state, augmented=True,
                                 probabilities=None if p is None else p[: len(retain)])
        cumulative = start + removal.residual_bound
        budget = self._budget(model)
        retrained = budget is not None and cumulative > budget
        if retrained:
            task.note(f"the summed removal bound {cumulative:.4g} passed the budget {budget:.4g}: retrained from "
                      f"scratch on the {len(retain)} remaining samples")
            # a time budget may stop L-BFGS short of the optimum; the residual measured next then says so
            new = fit(fresh_copy(model, seed=recipe.seed), task.split.retain, recipe, device=task.device,
                      progress=task.progress, description="certified: retrain", should_stop=task.out_of_time)
            cumulative = gradient_residual(head_parameters(new), retain.x, retain.y, objective=model.objective,
                                           weight_decay=lam, noise=noise)
            removals = 0
        else:
            set_head_parameters(new, removal.theta)
            removals += 1
            if removal.state is not None:
                REMOVAL_CACHE.keep(retain.ids, removal.state, removal.theta)
            else:
                REMOVAL_CACHE.after_uncached(retain.ids)
        if budget is None:
            task.note("no loss perturbation and no budget: the removal bound is reported but certifies no (epsilon, "
                      "delta); train with --perturbation SIGMA or pass --param removal_budget=B")
        sigma = model.perturbation
        task.info.update({
            "residual_bound": removal.residual_bound,  # this request's Newton step (Corollary 1)
            "cumulative_bound": cumulative,  # bounds ||grad L(theta; remaining data)|| of the returned model
            "budget": budget,
            "retrained": retrained,
            "removals_since_retrain": removals,
            "sigma": sigma,
            "epsilon": epsilon_spent(cumulative, sigma, self.config.delta) if sigma > 0 else None,
            "delta": self.config.delta if sigma > 0 else None,
        })
        return new

    def _running_total(self, task: UnlearnTask, kind: str, residual: float, n: int) -> tuple[float, int]:
        """Where the summed bound starts: the last certified removal's total (read from the checkpoint history),
        or the model's own gradient residual when none precedes this one. Refuses models off the optimum."""
        last = read_sidecar(task.checkpoint).get("history", [])[-1:] if task.checkpoint is not None else []
        info = last[0].get("info", {}) if last and last[0].get("method") == self.name else {}
        if "cumulative_bound" not in info:
            if residual > n * AT_OPTIMUM:
                raise ConfigError(f"the {kind} model is not at the optimum of its regularised loss on this data "
                                  f"(mean-loss gradient norm {residual / n:.3g} > {AT_OPTIMUM:g}); train it with "
                                  f"`unlearn train --model {kind} --optimizer lbfgs` and forget from that checkpoint")
            return residual, 0
        total = float(info["cumulative_bound"])
        if residual > total + n * AT_OPTIMUM:
            raise ConfigError(f"the model's gradient residual {residual:.4g} exceeds the bound {total:.4g} its last "
                              "certified removal recorded: its weights changed since; retrain it with "
                              f"`unlearn forget --method retrain` before removing more")
        return max(total, residual), int(info.get("removals_since_retrain", 0))

    def _budget(self, model: LinearHead) -> float | None:
        if self.config.removal_budget is not None:
            return self.config.removal_budget
        if model.perturbation > 0:
            return residual_budget(model.perturbation, self.config.epsilon, self.config.delta)
        return None
