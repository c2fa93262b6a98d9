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

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from unlearnkit.errors import ConfigError
from unlearnkit.models.convex import (
    AT_OPTIMUM,
    FEATURES,
    OBJECTIVES,
    OPTIMUM_TOL,
    _check_objective,
    _gradient,
    _hessian,
    _logistic_hvp,
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
    "AT_OPTIMUM", "FEATURES", "GAMMA", "OBJECTIVES", "OPTIMUM_TOL", "REMOVAL_CACHE", "NewtonRemoval", "RemovalCache",
    "augment", "epsilon_spent", "fit_theta", "hessian_factor", "ids_digest",
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


SOLVERS = ("auto", "direct", "cg")
CG_TOL = 1e-13  # relative residual at which the conjugate-gradient solve stops (float64 resolves about 1e-16)
CG_MAX = 2000


def newton_removal(
    theta: torch.Tensor,
    x_retain: torch.Tensor,
    y_retain: torch.Tensor,
    x_forget: torch.Tensor,
    y_forget: torch.Tensor,
    *,
    objective: str,
    weight_decay: float,
    solver: str = "auto",
    gram: torch.Tensor | None = None,
    factor: torch.Tensor | None = None,
    augmented: bool = False,
) -> NewtonRemoval:
    """Remove the samples ``(x_forget, y_forget)`` from parameters ``theta`` by one Newton step on the remaining
    samples ``(x_retain, y_retain)`` (features, not augmented): ``theta + H^{-1} Delta``.

    ``residual_bound`` is ``gamma ||X~'||_2 max_i ||x~'_i|| ||v|| ||X~' v^T||_F`` with ``v = H^{-1} Delta``
    (``[C, d + 1]``) and ``X~'`` the augmented remaining data: the paper's Corollary 1 for unnormalised rows and
    the multinomial loss; 0 for least squares, where the step is exact. If ``theta`` already had a gradient
    residual ``r`` on the full data, the new residual is at most ``||r|| + residual_bound``.

    Solvers. ``direct`` builds the Hessian (for the multinomial loss ``(C (d+1))^2`` entries, C(C+1)/2 passes over
    the data) and solves with its Cholesky factor. ``cg`` (the ``auto`` choice for the logistic model) never forms
    it: conjugate gradients on Hessian-vector products (two passes each), preconditioned by the Kronecker
    approximation ``A (x) G / n + lambda`` (A: the mean softmax covariance, G: the Gram matrix ``X~'^T X~'``, both
    small), to a relative residual of :data:`CG_TOL`. The solve's own residual ``||H v - Delta||`` is added to
    ``residual_bound``, so the bound stays a bound. ``gram``: ``X~'^T X~'`` if the caller has it (a
    :class:`RemovalCache` keeps it between requests); the bound's spectral norm is read from it. ``factor``: the
    Cholesky factor of an earlier request's Hessian (:func:`hessian_factor`); near the current weights it is an
    almost exact preconditioner, and CG then needs a few products instead of about fifty. ``augmented``: the
    features already carry the bias column (float64, :func:`augment`), so they are used without a copy.
    """
    _check_objective(objective)
    if not weight_decay > 0:
        raise ConfigError(f"certified removal needs an L2 penalty (--weight-decay > 0), got {weight_decay}")
    if solver not in SOLVERS:
        raise ConfigError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    theta = theta.to(torch.float64)
    if augmented:
        xr, xf = x_retain.to(theta.device, torch.float64), x_forget.to(theta.device, torch.float64)
    else:
        xr, xf = augment(x_retain).to(theta.device), augment(x_forget).to(theta.device)
    gram = xr.T @ xr if gram is None else gram.to(theta.device, torch.float64)
    delta = _gradient(theta, xf, y_forget, objective, weight_decay)
    if objective == "squared":  # H = G + lambda n I for every class: small and exact
        hess = gram.clone()
        hess.diagonal().add_(weight_decay * len(xr))
        step, solve_residual = _solve(hess, delta, objective), 0.0
    elif solver == "direct":
        step, solve_residual = _solve(_hessian(theta, xr, objective, weight_decay), delta, objective), 0.0
    else:
        step, solve_residual = _cg_step(theta, xr, gram, delta, weight_decay, factor)
    return NewtonRemoval(theta + step, step, _residual_bound(xr, gram, step, objective) + solve_residual)


def hessian_factor(theta: torch.Tensor, x: torch.Tensor, weight_decay: float, *,
                   augmented: bool = False) -> torch.Tensor:
    """The Cholesky factor of the mean-form multinomial Hessian ``H / n`` at ``theta`` on the features ``x``
    (class-major; ``augmented``: ``x`` already carries the bias column), for :func:`newton_removal`'s ``factor``."""
    xa = (x.to(torch.float64) if augmented else augment(x)).to(theta.device)
    hess = _hessian(theta.to(torch.float64), xa, "logistic", weight_decay) / len(xa)
    chol, info = torch.linalg.cholesky_ex(hess)
    if int(info) != 0:
        raise ConfigError("the Hessian of the regularised loss is not positive definite; raise --weight-decay")
    return chol


def _cg_step(theta: torch.Tensor, xr: torch.Tensor, gram: torch.Tensor, delta: torch.Tensor,
             weight_decay: float, factor: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """``H^{-1} Delta`` for the multinomial loss by preconditioned conjugate gradients; returns the step and the
    sum-form residual ``||H v - Delta||`` it leaves."""
    n = len(xr)
    p = (xr @ theta.T).softmax(1)
    if factor is not None:
        def precondition(r: torch.Tensor) -> torch.Tensor:
            return torch.cholesky_solve(r.reshape(-1, 1), factor).reshape(r.shape)
    else:
        cov = torch.diag(p.mean(0)) - p.T @ p / n
        ea, ua = torch.linalg.eigh(cov)
        eg, ug = torch.linalg.eigh(gram / n)
        scale = ea.clamp_min(0)[:, None] * eg.clamp_min(0)[None, :] + weight_decay

        def precondition(r: torch.Tensor) -> torch.Tensor:
            return ua @ ((ua.T @ r @ ug) / scale) @ ug.T

    rhs = delta / n  # the mean form: (H / n) v = Delta / n
    goal = CG_TOL * float(rhs.norm())
    v = torch.zeros_like(rhs)
    r = rhs.clone()
    z = precondition(r)
    d = z.clone()
    rz = float((r * z).sum())
    for _ in range(CG_MAX):
        if float(r.norm()) <= goal:
            break
        hd = _logistic_hvp(p, xr, d, weight_decay)
        alpha = rz / float((d * hd).sum())
        v += alpha * d
        r -= alpha * hd
        z = precondition(r)
        rz, previous = float((r * z).sum()), rz
        d = z + (rz / previous) * d
    exact = rhs - _logistic_hvp(p, xr, v, weight_decay)  # the true residual, not CG's running one
    return v, float(exact.norm()) * n


def _residual_bound(xa: torch.Tensor, gram: torch.Tensor, step: torch.Tensor, objective: str) -> float:
    gamma = GAMMA[objective]
    if gamma == 0.0:
        return 0.0
    # ||X~||_2 from the Gram matrix's top eigenvalue (exact in float64, unlike power iteration, which only
    # approaches it from below); a relative margin of 1e-9 covers the eigensolver's rounding and a Gram matrix
    # kept up to date by subtraction (RemovalCache).
    spectral = math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0)) * (1 + 1e-9)
    max_row = float(xa.norm(dim=1).max())
    return gamma * spectral * max_row * float(step.norm()) * float((xa @ step.T).norm())


class RemovalCache:
    """What successive certified removals from one model share, kept in this process: the Gram matrix of the samples
    the model is trained on now, brought up to date by subtracting the removed rows. (The frozen features are
    cached by unlearnkit.models.convex.FEATURES, which training shares.)"""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self.factors: dict[str, torch.Tensor] = {}  # digest of the ids trained on -> an earlier Hessian's factor
        # digest of the ids trained on -> (X~^T X~, the column sums of X~: a check that the rows are the same)
        self.grams: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def gram(self, ids: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """``xa^T xa`` for the samples ``ids`` (rows of ``xa``, augmented), from the cache when the same ids were
        seen with the same rows (their column sums agree), else computed and cached."""
        key, sums = ids_digest(ids), xa.sum(0)
        entry = self.grams.get(key)
        if entry is None or entry[1].shape != sums.shape or not torch.allclose(entry[1], sums, rtol=1e-9, atol=1e-9):
            entry = (xa.T @ xa, sums)
            self._put(self.grams, key, entry)
            self.factors.pop(key, None)  # other rows under the same ids: an earlier factor belongs to other data
        return entry[0]

    def gram_known(self, ids: torch.Tensor) -> bool:
        """Whether a Gram matrix for the samples ``ids`` is kept (a removal from them came before)."""
        return ids_digest(ids) in self.grams

    def downdate(self, ids: torch.Tensor, gram: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        """The Gram matrix of ``ids`` (what remains) from ``gram`` minus the removed rows (augmented), cached."""
        before = next((sums for g, sums in self.grams.values() if g is gram), None)
        new = gram - removed.T @ removed
        if before is not None:
            self._put(self.grams, ids_digest(ids), (new, before - removed.sum(0)))
        return new

    def factor(self, ids: torch.Tensor, size: int) -> torch.Tensor | None:
        """The Hessian factor kept for the samples ``ids`` (the data the model is trained on now, checked by
        :meth:`gram` first), if any and of ``size`` rows."""
        factor = self.factors.get(ids_digest(ids))
        return factor if factor is not None and factor.shape[0] == size else None

    def keep_factor(self, ids: torch.Tensor, factor: torch.Tensor) -> None:
        self._put(self.factors, ids_digest(ids), factor)

    def _put(self, table: dict, key: str, value) -> None:
        table.pop(key, None)
        table[key] = value
        while len(table) > self.max_entries:
            table.pop(next(iter(table)))


def ids_digest(ids: torch.Tensor) -> str:
    """sha256 of the sorted ids: names a set of samples."""
    return hashlib.sha256(np.ascontiguousarray(torch.sort(ids.to(torch.int64)).values.numpy()).tobytes()).hexdigest()


REMOVAL_CACHE = RemovalCache()  # the process's cache; certified removals in a row (a stream, a bench) share it


def gradient_residual(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, objective: str, weight_decay: float,
    noise: torch.Tensor | None = None, augmented: bool = False,
) -> float:
    """``||grad L(theta; D)||_2`` in the paper's sum form: the quantity the removal bounds control
    (``augmented``: ``x`` already carries the bias column, :func:`augment`)."""
    if augmented:
        _check_objective(objective)
        return float(_gradient(theta, x.to(theta.device), y.to(theta.device), objective, weight_decay, noise).norm())
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
