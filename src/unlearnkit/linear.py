"""Linear models trained to their optimum, and the Newton-step removal of Guo et al. (ICML 2020).

The models ``linear`` and ``logistic`` (``LinearHead`` in unlearnkit.models.architectures) are one linear layer
with parameters ``theta = [W | bias]`` of shape ``[C, d + 1]``, acting on features ``x`` (the flattened input, or
the features of a frozen network) read as ``x~ = [x, 1]``. In the paper's sum form, their objective on a
training set D of n samples is

    L(theta; D) = sum_i l(theta x~_i, y_i) + (lambda n / 2) ||theta||^2 + <b, theta>

with ``l`` the squared loss ``1/2 ||theta x~ - onehot(y)||^2`` (``linear``: ridge regression on one-hot targets)
or the softmax cross-entropy (``logistic``: multinomial logistic regression), ``lambda`` the recipe's
``weight_decay``, and ``b`` the model's loss-perturbation vector (its ``noise`` buffer; zero unless the model was
built with ``perturbation > 0``). The bias is penalised like the weights, so L is strongly convex and its
minimiser unique. Training minimises ``L / n`` in float64: least squares in closed form, logistic regression by
full-batch L-BFGS until ``||grad L / n|| <= OPTIMUM_TOL`` (or until float64 stalls, at most
``AT_OPTIMUM``); retraining repeats the same deterministic computation, so it reproduces the model.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError, DataError, TrainingDivergedError
from unlearnkit.models.architectures import LinearHead

if TYPE_CHECKING:
    from unlearnkit.train import TrainConfig

OBJECTIVES = ("squared", "logistic")
# L-BFGS stops once the gradient of the mean objective L / n has this 2-norm, or earlier where float64 line
# searches stall (on digits around 3e-9).
OPTIMUM_TOL = 1e-8
# A model counts as trained to the optimum when its mean-objective gradient is below this: fit_to_optimum raises
# otherwise, and certified refuses such a model. Whatever residual is left is counted in the removal bound.
AT_OPTIMUM = 1e-6
# gamma: a Lipschitz constant of the loss's second derivative in the logits. Squared loss: constant curvature.
# Softmax cross-entropy: the spectral norm of d/dz (diag(p) - p p^T) along a unit h is at most
# max |E_p[(h - E_p h)^3]| <= r^3 / (6 sqrt 3) with r = max h - min h <= sqrt 2, i.e. sqrt(6) / 9 ~ 0.272, attained
# by two classes (derivation in docs/exact/certified.md; tests/test_certified.py checks it by finite differences).
GAMMA = {"squared": 0.0, "logistic": math.sqrt(6.0) / 9.0}


# --- features and parameters ----------------------------------------------------------------------------------
@torch.no_grad()
def frozen_features(model: nn.Module, dataset: IndexedDataset, *, batch_size: int = 2048) -> IndexedDataset:
    """``dataset`` mapped through ``model`` up to the input of its ``classifier`` layer (its penultimate features).

    Ids, labels, subjects, attributes and tasks are kept, so a forget spec selects the same samples in the
    result. For a ``linear`` / ``logistic`` model these are the features its head reads (float64); for an mlp,
    cnn or resnet18 they are the activations its last linear layer reads (float32). The model runs in eval mode
    on the device it is on; the features come back on the CPU.

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> from unlearnkit.models import build_model
        >>> data = load_dataset("digits")
        >>> frozen_features(build_model("mlp", data.spec, hidden=(32,)), data.train).x.shape
        torch.Size([1438, 32])
    """
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear):
        raise ConfigError(f"{type(model).__name__} has no final nn.Linear named 'classifier' to read features from; "
                          "use one of the registered architectures")
    dev = classifier.weight.device
    captured: list[torch.Tensor] = []
    handle = classifier.register_forward_hook(lambda _module, inputs, _output: captured.append(inputs[0].cpu()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            model(dataset.x[start : start + batch_size].to(dev))
    finally:
        handle.remove()
        model.train(was_training)
    x = torch.cat(captured) if captured else torch.empty(0, classifier.in_features)
    return IndexedDataset(
        x=x, y=dataset.y, ids=dataset.ids, num_classes=dataset.num_classes, subjects=dataset.subjects,
        attributes=dict(dataset.attributes), tasks=dict(dataset.tasks),
    )


def head_parameters(model: LinearHead) -> torch.Tensor:
    """``theta = [W | bias]``, shape ``[C, d + 1]``, float64 (a copy)."""
    head = model.classifier
    return torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).to(torch.float64).clone()


def set_head_parameters(model: LinearHead, theta: torch.Tensor) -> LinearHead:
    """Write ``theta`` (``[C, d + 1]``) into the model's classifier; returns the model."""
    with torch.no_grad():
        model.classifier.weight.copy_(theta[:, :-1])
        model.classifier.bias.copy_(theta[:, -1])
    return model


def augment(x: torch.Tensor) -> torch.Tensor:
    """Features ``[n, d]`` -> float64 ``[n, d + 1]`` with a trailing column of ones (the bias input)."""
    x = x.to(torch.float64).flatten(1)
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64, device=x.device)], 1)


# --- the objective --------------------------------------------------------------------------------------------
def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")


def _loss_slopes(theta: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, objective: str) -> torch.Tensor:
    """d loss_i / d logits_i for every sample: ``[n, C]`` (prediction minus one-hot target)."""
    logits = xa @ theta.T
    target = F.one_hot(y.to(xa.device), theta.shape[0]).to(xa.dtype)
    return (logits if objective == "squared" else logits.softmax(1)) - target


def _gradient(theta, xa, y, objective, weight_decay, noise=None) -> torch.Tensor:
    grad = _loss_slopes(theta, xa, y, objective).T @ xa + weight_decay * len(xa) * theta
    return grad if noise is None else grad + noise


def loss_gradient(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, objective: str, weight_decay: float,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The gradient ``[C, d + 1]`` of the sum-form objective L(theta; D) over the samples ``(x, y)``.

    Without ``noise`` this is the samples' own share of the gradient (their loss terms and their ``lambda m``
    part of the penalty): for the removed samples, the paper's Delta.
    """
    _check_objective(objective)
    return _gradient(theta, augment(x).to(theta.device), y, objective, weight_decay, noise)


def _hessian(theta: torch.Tensor | None, xa: torch.Tensor, objective: str, weight_decay: float) -> torch.Tensor:
    """Hessian of L(.; D) at theta. Squared loss: the ``[D, D]`` block shared by every class (it does not depend
    on theta). Logistic: the full ``[C D, C D]`` matrix, class-major (``theta.flatten()`` order)."""
    n, width = xa.shape
    if objective == "squared":
        hess = xa.T @ xa
    else:
        p = (xa @ theta.T).softmax(1)
        classes = p.shape[1]
        hess = xa.new_zeros(classes, width, classes, width)
        for c in range(classes):
            for k in range(c, classes):
                weight = p[:, c] * (float(c == k) - p[:, k])
                block = xa.T @ (xa * weight[:, None])  # symmetric
                hess[c, :, k, :] = block
                hess[k, :, c, :] = block
        hess = hess.reshape(classes * width, classes * width)
    hess.diagonal().add_(weight_decay * n)
    return hess


def _solve(hess: torch.Tensor, rhs: torch.Tensor, objective: str) -> torch.Tensor:
    """``H^{-1} rhs`` for ``rhs`` of shape ``[C, D]`` (Cholesky; H is positive definite when lambda > 0)."""
    chol, info = torch.linalg.cholesky_ex(hess)
    if int(info) != 0:
        raise ConfigError("the Hessian of the regularised loss is not positive definite; raise --weight-decay")
    if objective == "squared":
        return torch.cholesky_solve(rhs.T, chol).T
    return torch.cholesky_solve(rhs.reshape(-1, 1), chol).reshape(rhs.shape)


# --- training to the optimum ------------------------------------------------------------------------------------
def fit_theta(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    objective: str,
    weight_decay: float,
    noise: torch.Tensor | None = None,
    max_iter: int = 1000,
    tol: float = OPTIMUM_TOL,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, float]:
    """The minimiser of ``L(theta; D) / n`` for features ``x`` and labels ``y``, and its final gradient norm.

    Least squares: closed form, ``theta = (Y^T X~ - b) (X~^T X~ + lambda n I)^{-1}``. Logistic: full-batch L-BFGS
    (strong Wolfe line search) from zero until ``||grad|| <= tol``, ``max_iter`` iterations, or a stall;
    ``should_stop`` is checked between rounds of 20 iterations. Starting from zero (not from the model's initial
    weights) makes the result depend on the data alone. Returns ``(theta [C, d + 1] float64, ||grad L / n||)``.
    """
    _check_objective(objective)
    if not weight_decay > 0:
        raise ConfigError(f"training to the optimum needs an L2 penalty: --weight-decay must be > 0, "
                          f"got {weight_decay}")
    xa = augment(x)
    n, width = xa.shape
    if n == 0:
        raise ConfigError("cannot train on an empty dataset; check the forget spec and --train-size")
    noise = torch.zeros(num_classes, width, dtype=torch.float64, device=xa.device) if noise is None else \
        noise.to(xa.device, torch.float64)
    if objective == "squared":
        rhs = F.one_hot(y.to(xa.device), num_classes).to(xa.dtype).T @ xa - noise
        theta = _solve(_hessian(None, xa, objective, weight_decay), rhs, objective)
        return theta, float(_gradient(theta, xa, y, objective, weight_decay, noise).norm()) / n
    theta = torch.zeros(num_classes, width, dtype=torch.float64, device=xa.device, requires_grad=True)
    y = y.to(xa.device)

    def closure() -> torch.Tensor:
        with torch.no_grad():
            logits = xa @ theta.T
            loss = (F.cross_entropy(logits, y, reduction="sum") + weight_decay * n / 2 * theta.square().sum()
                    + (noise * theta).sum()) / n
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"the logistic loss became {loss.item()} in L-BFGS; check the features "
                                            "for huge values or raise --weight-decay")
            theta.grad = _gradient(theta, xa, y, objective, weight_decay, noise) / n
        return loss

    rounds = 20
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=rounds, history_size=50, line_search_fn="strong_wolfe",
                                  tolerance_grad=tol / math.sqrt(theta.numel()), tolerance_change=0.0)
    grad_norm, best, stalled, done = math.inf, math.inf, 0, 0
    # Near the optimum float64 line searches stop making progress (the loss no longer resolves the steps):
    # five rounds without a 10% lower gradient end the run there.
    while done < max_iter and grad_norm > tol and stalled < 5:
        if should_stop is not None and should_stop():
            break
        optimizer.param_groups[0]["max_iter"] = min(rounds, max_iter - done)
        optimizer.step(closure)
        done = optimizer.state[theta]["n_iter"]
        with torch.no_grad():
            grad_norm = float(_gradient(theta, xa, y, objective, weight_decay, noise).norm()) / n
        best, stalled = (grad_norm, 0) if grad_norm < 0.9 * best else (best, stalled + 1)
    return theta.detach(), grad_norm


def fit_to_optimum(
    model: nn.Module,
    dataset: IndexedDataset,
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> nn.Module:
    """Train a ``linear`` / ``logistic`` model in place to the optimum of its regularised loss; ``fit`` calls this
    for ``optimizer="lbfgs"``. ``config.weight_decay`` is lambda, ``config.epochs`` caps the L-BFGS iterations;
    batch size, learning rate, momentum and schedule play no part. Raises ConfigError for any other model, for
    ``linear`` with another optimizer, and when L-BFGS does not reach the optimum within the cap."""
    if not isinstance(model, LinearHead):
        raise ConfigError(f"optimizer 'lbfgs' trains the linear and logistic models to their optimum, not "
                          f"{type(model).__name__}; use --optimizer sgd or adam, or --model logistic")
    if config.optimizer != "lbfgs":
        raise ConfigError(f"model 'linear' is fit by least squares in closed form, not by {config.optimizer}; "
                          "train it with --optimizer lbfgs")
    dev = resolve_device(device)
    model.to(dev)
    feats = frozen_features(model, dataset)
    if not torch.isfinite(feats.x).all():
        raise DataError("the training features contain NaN or inf; clean the data (or the feature network) first")
    theta, grad_norm = fit_theta(
        feats.x.to(dev), feats.y, dataset.num_classes, objective=model.objective, weight_decay=config.weight_decay,
        noise=model.noise, max_iter=config.epochs, should_stop=should_stop,
    )
    stopped = should_stop is not None and should_stop()
    if grad_norm > AT_OPTIMUM and not stopped:
        raise ConfigError(f"L-BFGS ended with gradient norm {grad_norm:.3g} > {AT_OPTIMUM:g}, short of the optimum, "
                          f"after at most {config.epochs} iterations; raise --epochs (the iteration cap of lbfgs)")
    return set_head_parameters(model, theta).eval()


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
