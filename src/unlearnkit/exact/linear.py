"""Certified removal from the linear models: the Newton-step removal of Guo et al. (ICML 2020).

The models, their objective and their training to the optimum are in unlearnkit.models.convex (below
training in the layers); this module adds removal on top and re-exports what removal callers use from there.

Removal (Guo et al., Section 3). For a model at the optimum of L on D, removing the samples R (m of them) takes
one Newton step on the remaining data D' = D \\ R:

    Delta = sum_{i in R} grad l_i(theta) + lambda m theta      (the removed samples' share of the gradient)
    H     = Hessian of L(.; D') at theta                      (on the remaining data)
    theta- = theta + H^{-1} Delta

For least squares H does not depend on theta and the step is exact. Otherwise the step leaves a gradient
residual ``||grad L(theta-; D')||`` that the paper bounds, data-dependently, by its Corollary 1:
``gamma ||X'|| ||H^{-1} Delta|| ||X' H^{-1} Delta||`` (X': the remaining data matrix, rows with norm <= 1; gamma:
a Lipschitz constant of the loss's second derivative). :func:`newton_removal` computes that bound with two
changes, both derived the same way as the corollary (docs/exact/certified.md gives the steps): rows are not
normalised, so the bound carries the factor ``max_i ||x~_i||``; and the loss is multinomial, so gamma is a
Lipschitz constant of the softmax Hessian ``diag(p) - p p^T`` in the logits, ``sqrt(6) / 9``.
Successive removals add their bounds (the paper's repeated-removal algorithm); with loss perturbation b ~ N(0, sigma^2),
The paper's loss-perturbation theorem turns a total bound beta into an (epsilon, delta) removal guarantee with
``epsilon = c beta / sigma``, ``c = sqrt(2 ln(1.5 / delta))`` (:func:`epsilon_spent`, :func:`residual_budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearnkit.errors import ConfigError
from unlearnkit.models.convex import (
    AT_OPTIMUM,
    OBJECTIVES,
    OPTIMUM_TOL,
    _check_objective,
    _gradient,
    _hessian,
    _solve,
    augment,
    fit_theta,
    fit_to_optimum,
    frozen_features,
    head_parameters,
    loss_gradient,
    set_head_parameters,
)

__all__ = [
    "AT_OPTIMUM", "GAMMA", "OBJECTIVES", "OPTIMUM_TOL", "NewtonRemoval", "augment", "epsilon_spent", "fit_theta",
    "fit_to_optimum", "frozen_features", "gradient_residual", "head_parameters", "loss_gradient", "newton_removal",
    "residual_budget", "set_head_parameters",
]

# gamma: a Lipschitz constant of the loss's second derivative in the logits. Squared loss: constant curvature.
# Softmax cross-entropy: the spectral norm of d/dz (diag(p) - p p^T) along a unit h is at most
# max |E_p[(h - E_p h)^3]| <= r^3 / (6 sqrt 3) with r = max h - min h <= sqrt 2, i.e. sqrt(6) / 9 ~ 0.272, attained
# by two classes (derivation in docs/exact/certified.md; tests/test_certified.py checks it by finite differences).
GAMMA = {"squared": 0.0, "logistic": math.sqrt(6.0) / 9.0}


# --- removal ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewtonRemoval:
    """One Newton removal step: the new parameters, the step ``H^{-1} Delta`` and its residual bound."""

    theta: torch.Tensor  # [C, d + 1], float64
    step: torch.Tensor  # H^{-1} Delta, same shape
    residual_bound: float  # bound on the gradient residual this step adds (Corollary 1 of Guo et al., generalised)


def newton_removal(
    theta: torch.Tensor,
    x_retain: torch.Tensor,
    y_retain: torch.Tensor,
    x_forget: torch.Tensor,
    y_forget: torch.Tensor,
    *,
    objective: str,
    weight_decay: float,
) -> NewtonRemoval:
    """Remove the samples ``(x_forget, y_forget)`` from parameters ``theta`` by one Newton step on the remaining
    samples ``(x_retain, y_retain)`` (features, not augmented): ``theta + H^{-1} Delta``.

    ``residual_bound`` is ``gamma ||X~'||_2 max_i ||x~'_i|| ||v|| ||X~' v^T||_F`` with ``v = H^{-1} Delta``
    (``[C, d + 1]``) and ``X~'`` the augmented remaining data: the paper's Corollary 1 for unnormalised rows and
    the multinomial loss; 0 for least squares, where the step is exact. If ``theta`` already had a gradient
    residual ``r`` on the full data, the new residual is at most ``||r|| + residual_bound``.
    """
    _check_objective(objective)
    if not weight_decay > 0:
        raise ConfigError(f"certified removal needs an L2 penalty (--weight-decay > 0), got {weight_decay}")
    theta = theta.to(torch.float64)
    xr, xf = augment(x_retain).to(theta.device), augment(x_forget).to(theta.device)
    delta = _gradient(theta, xf, y_forget, objective, weight_decay)
    step = _solve(_hessian(theta, xr, objective, weight_decay), delta, objective)
    return NewtonRemoval(theta + step, step, _residual_bound(xr, step, objective))


def _residual_bound(xa: torch.Tensor, step: torch.Tensor, objective: str) -> float:
    gamma = GAMMA[objective]
    if gamma == 0.0:
        return 0.0
    # ||X~||_2 from the Gram matrix's top eigenvalue (exact in float64, unlike power iteration, which only
    # approaches it from below); a relative margin of 1e-9 covers the eigensolver's rounding.
    spectral = math.sqrt(max(float(torch.linalg.eigvalsh(xa.T @ xa)[-1]), 0.0)) * (1 + 1e-9)
    max_row = float(xa.norm(dim=1).max())
    return gamma * spectral * max_row * float(step.norm()) * float((xa @ step.T).norm())


def gradient_residual(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, objective: str, weight_decay: float,
    noise: torch.Tensor | None = None,
) -> float:
    """``||grad L(theta; D)||_2`` in the paper's sum form: the quantity the removal bounds control."""
    return float(loss_gradient(theta, x, y, objective=objective, weight_decay=weight_decay, noise=noise).norm())


def residual_budget(sigma: float, epsilon: float, delta: float) -> float:
    """The largest total gradient-residual bound that keeps an (epsilon, delta) guarantee under loss perturbation
    with std ``sigma`` (Guo et al.: the loss-perturbation theorem and the repeated-removal algorithm):
    ``sigma * epsilon / c`` with ``c = sqrt(2 ln(1.5 / delta))``."""
    return sigma * epsilon / _c(delta)


def epsilon_spent(bound: float, sigma: float, delta: float) -> float:
    """The epsilon that a total gradient-residual bound ``bound`` costs at std ``sigma`` and ``delta``
    (the loss-perturbation theorem solved for epsilon): ``c * bound / sigma``; infinite without perturbation."""
    if sigma <= 0:
        return math.inf if bound > 0 else 0.0
    return _c(delta) * bound / sigma


def _c(delta: float) -> float:
    if not 0 < delta < 1:
        raise ConfigError(f"delta must lie in (0, 1), got {delta}")
    return math.sqrt(2 * math.log(1.5 / delta))
