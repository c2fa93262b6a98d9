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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from unlearnkit import files
from unlearnkit.data import IndexedDataset
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models.architectures import LinearHead
from unlearnkit.models.checkpoint import checkpoint_paths
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
    "AT_OPTIMUM", "FEATURES", "GAMMA", "OBJECTIVES", "OPTIMUM_TOL", "REMOVAL_CACHE", "HessianState", "NewtonRemoval",
    "PREPARE_MAX_PARAMS", "RemovalCache", "augment", "correction_fits", "epsilon_spent", "fit_theta", "ids_digest",
    "load_removal_state", "prepare_removal", "save_removal_state", "state_file", "theta_digest",
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
    state: HessianState | None = None  # the cache's state for the remaining data, when one was used


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
    state: HessianState | None = None,
    augmented: bool = False,
    probabilities: torch.Tensor | None = None,
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
    ``residual_bound``, so the bound stays a bound. ``gram``: ``X~'^T X~'`` if the caller has it; the bound's
    spectral norm is read from it.

    ``state``: a :class:`HessianState` for the data trained on now (``x_retain`` and ``x_forget`` together), built
    at weights ``theta0`` (:meth:`RemovalCache.prepare`). It replaces both solvers: when ``theta`` is ``theta0``
    the state's factor, corrected for the removed rows (Woodbury), is the Hessian on the remaining data, and the
    step costs no pass over the data (the solve is as exact as ``direct``); at other weights (the requests after
    the first) it is an almost exact preconditioner, and the step is refined against true Hessian-vector products
    until the residual is below :data:`CG_TOL` relative or :data:`SOLVE_SHARE` of the step's bound (a few
    products where the weights moved little). ``augmented``: the features already carry the
    bias column (float64, :func:`augment`), so they are used without a copy. A state that the
    forget set would wear past :meth:`HessianState.takes` is left aside (the step is solved without it).
    ``probabilities``: the logistic model's softmax on ``x_retain`` at ``theta``, if the caller computed it
    (certified removal does, for the model's own gradient residual), so the solvers skip that pass.
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
    delta = _gradient(theta, xf, y_forget, objective, weight_decay)
    probabilities = None if probabilities is None else probabilities.to(theta.device, torch.float64)
    state = state.without(xf) if state is not None and state.takes(len(xf)) else None
    if state is not None:
        gram = state.gram
    gram = xr.T @ xr if gram is None else gram.to(theta.device, torch.float64)
    scale = _bound_scale(xr, gram, objective)
    if objective == "squared":  # H = G + lambda n I for every class: small and exact
        hess = gram.clone()
        hess.diagonal().add_(weight_decay * len(xr))
        step, solve_residual = _solve(hess, delta, objective), 0.0
    elif state is not None:
        step, solve_residual = state.newton_step(theta, xr, delta, scale, probabilities)
    elif solver == "direct":
        step, solve_residual = _solve(_hessian(theta, xr, objective, weight_decay), delta, objective), 0.0
    else:
        step, solve_residual = _cg_step(theta, xr, gram, delta, weight_decay, p=probabilities)
    return NewtonRemoval(theta + step, step, _residual_bound(xr, scale, step) + solve_residual, state)


def _cg_step(theta: torch.Tensor, xr: torch.Tensor, gram: torch.Tensor, delta: torch.Tensor, weight_decay: float,
             p: torch.Tensor | None = None, start: torch.Tensor | None = None,
             precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
             xt: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """``H^{-1} Delta`` for the multinomial loss by preconditioned conjugate gradients (from ``start``, default 0;
    ``precondition``: an approximation of ``H^{-1}`` in the sum form, default the Kronecker one); returns the step
    and the sum-form residual ``||H v - Delta||`` it leaves (``xt``: ``xr.T`` made contiguous, if the caller has it)."""
    n = len(xr)
    p = (xr @ theta.T).softmax(1) if p is None else p
    xt = xr.T.contiguous() if xt is None else xt
    if precondition is None:
        cov = torch.diag(p.mean(0)) - p.T @ p / n
        ea, ua = torch.linalg.eigh(cov)
        eg, ug = torch.linalg.eigh(gram / n)
        scale = ea.clamp_min(0)[:, None] * eg.clamp_min(0)[None, :] + weight_decay

        def mean_precondition(r: torch.Tensor) -> torch.Tensor:
            return ua @ ((ua.T @ r @ ug) / scale) @ ug.T
    else:
        def mean_precondition(r: torch.Tensor) -> torch.Tensor:
            return precondition(r) * n  # (H / n)^{-1} = n H^{-1}

    rhs = delta / n  # the mean form: (H / n) v = Delta / n
    goal = CG_TOL * float(rhs.norm())
    v = torch.zeros_like(rhs) if start is None else start.clone()
    r = rhs.clone() if start is None else rhs - _logistic_hvp(p, xr, v, weight_decay, xt)
    z = mean_precondition(r)
    d = z.clone()
    rz = float((r * z).sum())
    for _ in range(CG_MAX):
        if float(r.norm()) <= goal:
            break
        hd = _logistic_hvp(p, xr, d, weight_decay, xt)
        alpha = rz / float((d * hd).sum())
        v += alpha * d
        r -= alpha * hd
        z = mean_precondition(r)
        rz, previous = float((r * z).sum()), rz
        d = z + (rz / previous) * d
    exact = rhs - _logistic_hvp(p, xr, v, weight_decay, xt)  # the true residual, not CG's running one
    return v, float(exact.norm()) * n


def _bound_scale(xa: torch.Tensor, gram: torch.Tensor, objective: str) -> float:
    """``gamma ||X~'||_2 max_i ||x~'_i||``: the step's bound is this times ``||v|| ||X~' v^T||_F``."""
    gamma = GAMMA[objective]
    if gamma == 0.0:
        return 0.0
    # ||X~||_2 from the Gram matrix's top eigenvalue (exact in float64, unlike power iteration, which only
    # approaches it from below); a relative margin of 1e-9 covers the eigensolver's rounding and a Gram matrix
    # kept up to date by subtraction (HessianState).
    spectral = math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0)) * (1 + 1e-9)
    return gamma * spectral * float(xa.norm(dim=1).max())


def _residual_bound(xa: torch.Tensor, scale: float, step: torch.Tensor) -> float:
    return 0.0 if scale == 0.0 else scale * float(step.norm()) * float((xa @ step.T).norm())


# --- what successive removals share -----------------------------------------------------------------------------
SOLVE_SHARE = 1e-9  # the share of a step's bound its solve may add (the refinement stops below it)
REFINE_MAX = 8  # refinement steps against true Hessian-vector products before conjugate gradients take over


def correction_fits(shape: tuple[int, ...], n0: int, removed: int, rank: int) -> bool:
    """Whether a factor for ``n0`` rows and parameters of ``shape`` [C, D], corrected for ``removed`` rows by
    ``rank`` Woodbury columns, is still cheaper to use than a fresh factor: the rank stays within half the
    parameters, and at most a quarter of the rows are gone (the refinement for the penalty contracts by
    ``removed / n0``)."""
    return rank <= shape[0] * shape[1] // 2 and 4 * removed <= n0


class HessianState:
    """The Hessian of the regularised loss at weights ``theta0`` on the data ``D0`` a model was trained on, kept
    factored, and corrected for the rows removed since (the Woodbury identity), with the Gram matrix of what
    remains. Immutable: :meth:`without` returns the state for fewer rows and leaves this one as it is, so two
    requests from the same model (two branches) can share it.

    With ``A0 = H(theta0; D0)`` (sum form, penalty ``lambda n0``) and ``U`` one column per removed row and class
    (``sqrt(p_j) (e_j - p) (x) x~`` at ``theta0``: ``U U^T`` is the rows' own Hessian terms), the Hessian at
    ``theta0`` on what remains is ``B = A0 - U U^T - lambda m I`` (m rows removed). ``M = A0 - U U^T`` is solved
    exactly by Woodbury from A0's Cholesky factor and the small capacitance ``I - U^T A0^{-1} U``; the
    ``- lambda m I`` left over by fixed-point refinement ``x <- M^{-1}(b + lambda m x)``, which contracts by
    ``m / n0`` per step."""

    def __init__(self, theta0: torch.Tensor, factor: torch.Tensor | None, weight_decay: float, n0: int,
                 gram: torch.Tensor, colsum: torch.Tensor, removed: int = 0, u: torch.Tensor | None = None,
                 w: torch.Tensor | None = None, capacitance: torch.Tensor | None = None) -> None:
        self.theta0, self.factor, self.weight_decay, self.n0 = theta0, factor, weight_decay, n0
        self.gram, self.colsum, self.removed = gram, colsum, removed
        size = theta0.numel()
        self.u = theta0.new_zeros(size, 0) if u is None else u  # [P, r]
        self.w = theta0.new_zeros(size, 0) if w is None else w  # A0^{-1} U
        self.capacitance = theta0.new_zeros(0, 0) if capacitance is None else capacitance  # Cholesky factor

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def takes(self, rows: int) -> bool:
        """Whether removing ``rows`` more rows keeps the correction cheaper than a fresh factor (see
        :func:`correction_fits`)."""
        return correction_fits(self.theta0.shape, self.n0, self.removed + rows,
                               self.rank + (0 if self.factor is None else rows * self.theta0.shape[0]))

    def matches(self, xa: torch.Tensor) -> bool:
        """Whether ``xa`` (augmented rows) are the rows this state stands for (their column sums agree)."""
        sums = xa.sum(0)
        return sums.shape == self.colsum.shape and bool(torch.allclose(sums, self.colsum, rtol=1e-9, atol=1e-9))

    def without(self, xa: torch.Tensor) -> HessianState:
        """The state for the data without the rows ``xa`` (augmented, float64)."""
        gram, colsum = self.gram - xa.T @ xa, self.colsum - xa.sum(0)
        if self.factor is None:  # least squares: the Gram matrix is all it needs
            return HessianState(self.theta0, None, self.weight_decay, self.n0, gram, colsum, self.removed + len(xa))
        p = (xa @ self.theta0.T).softmax(1)  # [k, C]
        classes = p.shape[1]
        eye = torch.eye(classes, dtype=p.dtype, device=p.device)
        # column (i, j): sqrt(p_ij) (e_j - p_i) (x) x_i, class-major like theta.flatten()
        spread = p.sqrt()[:, :, None] * (eye[None, :, :] - p[:, None, :])  # [k, j, C]
        new_u = torch.einsum("kjc,kd->cdkj", spread, xa).reshape(self.theta0.numel(), -1)
        new_w = torch.cholesky_solve(new_u, self.factor)
        # the capacitance I - U^T A0^{-1} U grows by a block row: extend its Cholesky factor
        cross = -(self.u.T @ new_w)  # [r, q]
        corner = torch.eye(new_u.shape[1], dtype=p.dtype, device=p.device) - new_u.T @ new_w
        if self.rank:
            left = torch.linalg.solve_triangular(self.capacitance, cross, upper=False)  # L11^{-1} S12
            corner = corner - left.T @ left
        low, info = torch.linalg.cholesky_ex(corner)
        if int(info) != 0:
            raise ConfigError("the Hessian on the remaining data is not positive definite; raise --weight-decay")
        size = self.rank + new_u.shape[1]
        capacitance = p.new_zeros(size, size)
        capacitance[: self.rank, : self.rank] = self.capacitance
        if self.rank:
            capacitance[self.rank:, : self.rank] = left.T
        capacitance[self.rank:, self.rank:] = low
        return HessianState(self.theta0, self.factor, self.weight_decay, self.n0, gram, colsum,
                            self.removed + len(xa), torch.cat([self.u, new_u], 1), torch.cat([self.w, new_w], 1),
                            capacitance)

    def _solve_m(self, b: torch.Tensor) -> torch.Tensor:
        """``M^{-1} b`` for flat ``b`` [P, k], ``M = A0 - U U^T`` (Woodbury)."""
        x = torch.cholesky_solve(b, self.factor)
        if self.rank:
            x = x + self.w @ torch.cholesky_solve(self.w.T @ b, self.capacitance)
        return x

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """``B x`` from the factor (no pass over the data)."""
        out = self.factor @ (self.factor.T @ x) - self.u @ (self.u.T @ x)
        return out - self.weight_decay * self.removed * x

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``B^{-1} rhs`` (``rhs`` shaped like theta): the Hessian at ``theta0`` on what remains."""
        b = rhs.reshape(-1, 1)
        shift = self.weight_decay * self.removed
        x = self._solve_m(b)
        last = math.inf
        while shift > 0.0:  # contracts by removed / n0 per step; stops where rounding stops it
            nxt = self._solve_m(b + shift * x)
            change, x = float((nxt - x).norm()), nxt
            if change <= 1e-16 * float(x.norm()) or change >= 0.5 * last:
                break
            last = change
        return x.reshape(rhs.shape)

    def newton_step(self, theta: torch.Tensor, xr: torch.Tensor, delta: torch.Tensor, scale: float,
                    p: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """``H^{-1} Delta`` at ``theta`` on the remaining rows ``xr`` and the sum-form residual it leaves.
        ``scale``: the step's bound per ``||v|| ||X~' v^T||`` (:func:`_bound_scale`); the refinement stops once its
        residual is below :data:`CG_TOL` relative, or below :data:`SOLVE_SHARE` of the step's own bound."""
        if torch.equal(theta, self.theta0):  # the factor is this Hessian: as exact as a direct solve
            step = self.solve(delta)
            return step, float((delta.reshape(-1, 1) - self._apply(step.reshape(-1, 1))).norm())
        # elsewhere the factor is an almost exact preconditioner: refine against true products (M^{-1} alone will
        # do: the penalty's shift is one more small error the refinement removes)
        n, lam = len(xr), self.weight_decay
        p = (xr @ theta.T).softmax(1) if p is None else p
        xt = xr.T.contiguous()

        def precondition(r: torch.Tensor) -> torch.Tensor:
            return self._solve_m(r.reshape(-1, 1)).reshape(r.shape)

        step = precondition(delta)
        residual = delta - n * _logistic_hvp(p, xr, step, lam, xt)
        floor, last = CG_TOL * float(delta.norm()), math.inf
        for _ in range(REFINE_MAX):
            size = float(residual.norm())
            # ||X~' v^T||_F from the Gram matrix: sqrt(sum_c v_c G v_c^T)
            spread = math.sqrt(max(float(((step @ self.gram) * step).sum()), 0.0))
            if size <= max(floor, SOLVE_SHARE * scale * float(step.norm()) * spread):
                return step, size
            if size > 0.1 * last:  # not contracting fast: conjugate gradients from here
                break
            step, last = step + precondition(residual), size
            residual = delta - n * _logistic_hvp(p, xr, step, lam, xt)
        return _cg_step(theta, xr, self.gram, delta, lam, p=p, start=step, precondition=precondition, xt=xt)


class RemovalCache:
    """What successive certified removals from one model share, kept in this process: a :class:`HessianState` per
    set of samples a model is trained on now (keyed by the sorted ids' digest), built by :meth:`prepare` (a
    service does so when it loads a model, a benchmark after training) or, without that, from the second removal
    in a row on. (The frozen features are cached by unlearnkit.models.convex.FEATURES, which training shares.)"""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self.states: dict[str, HessianState] = {}
        self.produced: dict[str, None] = {}  # data left by an uncached removal: the next request builds a state
        self.weights: dict[str, str] = {}  # digest of a model's weights -> the key of its state

    def clear(self) -> None:
        self.states.clear()
        self.produced.clear()
        self.weights.clear()

    def prepare(self, theta: torch.Tensor, ids: torch.Tensor, xa: torch.Tensor, objective: str,
                weight_decay: float) -> HessianState:
        """Factor the Hessian at ``theta`` on the samples ``ids`` (rows of ``xa``, augmented) and keep it; for
        least squares, the Gram matrix only. The multinomial Hessian costs C(C+1)/2 passes over the data."""
        theta, xa = theta.to(torch.float64), xa.to(theta.device, torch.float64)
        factor = None
        if objective == "logistic":
            factor, info = torch.linalg.cholesky_ex(_hessian(theta, xa, objective, weight_decay))
            if int(info) != 0:
                raise ConfigError("the Hessian of the regularised loss is not positive definite; raise "
                                  "--weight-decay")
        state = HessianState(theta.clone(), factor, weight_decay, len(xa), xa.T @ xa, xa.sum(0))
        self.keep(ids, state)
        return state

    def find(self, ids: torch.Tensor, xa: torch.Tensor, weight_decay: float) -> HessianState | None:
        """The state kept for the samples ``ids`` whose rows are ``xa``, if any."""
        state = self.states.get(ids_digest(ids))
        if state is None or state.weight_decay != weight_decay or not state.matches(xa):
            return None
        return state

    def after_uncached(self, ids: torch.Tensor) -> None:
        """Note that an uncached removal left the samples ``ids``."""
        self._put(self.produced, ids_digest(ids), None)

    def in_a_row(self, ids: torch.Tensor) -> bool:
        """Whether an uncached removal left exactly the samples ``ids`` (the request now follows it)."""
        return ids_digest(ids) in self.produced

    def keep(self, ids: torch.Tensor, state: HessianState, theta: torch.Tensor | None = None) -> None:
        """Keep ``state`` for the samples ``ids``; ``theta``: the weights a model trained on them has now (default
        the state's own), by which :meth:`for_weights` finds it when the model is saved."""
        self.keep_key(ids_digest(ids), state, state.theta0 if theta is None else theta)

    def keep_key(self, key: str, state: HessianState, theta: torch.Tensor) -> None:
        self._put(self.states, key, state)
        self._put(self.weights, theta_digest(theta), key)

    def for_weights(self, theta: torch.Tensor) -> tuple[str, HessianState] | None:
        """The ids digest and state kept for a model whose weights are ``theta``, if any."""
        key = self.weights.get(theta_digest(theta))
        state = None if key is None else self.states.get(key)
        return None if state is None else (key, state)

    def _put(self, table: dict, key: str, value) -> None:
        table.pop(key, None)
        table[key] = value
        while len(table) > self.max_entries:
            table.pop(next(iter(table)))


def ids_digest(ids: torch.Tensor) -> str:
    """sha256 of the sorted ids: names a set of samples."""
    return hashlib.sha256(np.ascontiguousarray(torch.sort(ids.to(torch.int64)).values.numpy()).tobytes()).hexdigest()


REMOVAL_CACHE = RemovalCache()  # the process's cache; certified removals in a row (a stream, a bench) share it


PREPARE_MAX_PARAMS = 2048  # training prepares (and saves) the factor up to this many parameters: 32 MiB in float64
STATE_FORMAT = "unlearnkit-removal-state/1"


def theta_digest(theta: torch.Tensor) -> str:
    """sha256 of the head's parameters as float64: names the weights a saved state belongs to."""
    return hashlib.sha256(theta.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()).hexdigest()


def state_file(checkpoint: str | Path) -> Path:
    """Where the removal state of the checkpoint at ``checkpoint`` is kept: ``PATH.removal.safetensors``."""
    stem = checkpoint_paths(checkpoint)[1].with_suffix("")
    return stem.with_name(stem.name + ".removal.safetensors")


def save_removal_state(checkpoint: str | Path, model: LinearHead) -> Path | None:
    """Write the state the process's cache holds for ``model``'s current weights beside its checkpoint
    (``PATH.removal.safetensors``, replaced atomically; no pickle), so that a certified removal in another process
    starts with the factor; returns the file, or None when the cache holds no state for these weights (an old file
    there is then removed: it belongs to other weights)."""
    target = state_file(checkpoint)
    if target.exists() and not _holds_state(target):
        return None  # another file by that name (a checkpoint called PATH.removal): never overwritten
    theta = head_parameters(model)
    found = REMOVAL_CACHE.for_weights(theta)
    if found is None:
        target.unlink(missing_ok=True)
        return None
    key, state = found
    tensors = {"theta0": state.theta0, "gram": state.gram, "colsum": state.colsum, "u": state.u, "w": state.w,
               "capacitance": state.capacitance}
    if state.factor is not None:
        tensors["factor"] = state.factor
    meta = {"format": STATE_FORMAT, "weights": theta_digest(theta), "ids": key,
            "weight_decay": repr(state.weight_decay), "n0": str(state.n0), "removed": str(state.removed)}
    blob = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=meta)
    files.write_bytes_atomic(target, blob, force=True)
    return target


def _holds_state(path: Path) -> bool:
    """Whether ``path`` is a removal-state file (its safetensors metadata says so); False for anything else."""
    try:
        with safe_open(path, framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == STATE_FORMAT
    except Exception:  # noqa: BLE001 - unreadable: not ours to judge, so not ours to overwrite either
        return False


def load_removal_state(checkpoint: str | Path, theta: torch.Tensor) -> HessianState | None:
    """The state saved beside ``checkpoint`` for the weights ``theta``, now kept in the process's cache; None if
    there is no file, or it belongs to other weights. An unreadable file raises CheckpointError (the caller may go
    on without it: it is a cache)."""
    path = state_file(checkpoint)
    if not path.exists():
        return None
    try:
        with safe_open(path, framework="pt") as handle:
            doc = handle.metadata() or {}
            if doc.get("format") != STATE_FORMAT:
                raise ValueError(f"not a {STATE_FORMAT} file")
            if doc["weights"] != theta_digest(theta):
                return None
            t = {name: handle.get_tensor(name).to(theta.device) for name in handle.keys()}  # noqa: SIM118
        state = HessianState(t["theta0"], t.get("factor"), float(doc["weight_decay"]), int(doc["n0"]), t["gram"],
                             t["colsum"], int(doc["removed"]), t["u"], t["w"], t["capacitance"])
    except Exception as error:  # noqa: BLE001 - any damage to a cache file reads the same to the caller
        raise CheckpointError(f"{path}: unreadable removal state ({error}); delete it, it is only a cache") from None
    REMOVAL_CACHE.keep_key(doc["ids"], state, theta)
    return state


def prepare_removal(model: LinearHead, dataset: IndexedDataset, weight_decay: float) -> HessianState:
    """Factor the Hessian of ``model`` (a ``linear`` / ``logistic`` head at the optimum on ``dataset``, with
    ``weight_decay`` its recipe's lambda) in the process's :data:`REMOVAL_CACHE`, so that the first certified
    removal from it is a small solve: what a service does once when it loads a model. For a logistic head on
    ``n`` rows of ``d`` features and ``C`` classes this costs about ``C (C + 1) / 2`` passes of ``n d^2`` (the
    same order as training it) and keeps ``(C (d + 1))^2`` floats.

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> from unlearnkit.models import build_model
        >>> from unlearnkit.train import TrainConfig, fit
        >>> data = load_dataset("digits")
        >>> recipe = TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3)
        >>> head = fit(build_model("logistic", data.spec), data.train, recipe, progress=False)
        >>> prepare_removal(head, data.train, recipe.weight_decay).factor.shape
        torch.Size([650, 650])
    """
    if not isinstance(model, LinearHead):
        raise ConfigError(f"prepare_removal needs a linear or logistic model, not {type(model).__name__}")
    feats = FEATURES(model, dataset)
    theta = head_parameters(model)
    return REMOVAL_CACHE.prepare(theta, feats.ids, augment(feats.x).to(theta.device), model.objective, weight_decay)


def gradient_residual(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, objective: str, weight_decay: float,
    noise: torch.Tensor | None = None, augmented: bool = False, probabilities: torch.Tensor | None = None,
) -> float:
    """``||grad L(theta; D)||_2`` in the paper's sum form: the quantity the removal bounds control
    (``augmented``: ``x`` already carries the bias column, :func:`augment`; ``probabilities``: with it, the
    logistic model's softmax on ``x`` at ``theta``, if the caller has it)."""
    if augmented:
        _check_objective(objective)
        p = None if probabilities is None else probabilities.to(theta.device)
        return float(_gradient(theta, x.to(theta.device), y.to(theta.device), objective, weight_decay, noise,
                               p).norm())
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
