"""The convex models ``linear`` and ``logistic``: their objective, and training them to its optimum.

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
full-batch L-BFGS, finished by Newton-CG steps where L-BFGS stalls, until ``||grad L / n|| <= OPTIMUM_TOL`` (or
until float64 stalls, at most ``AT_OPTIMUM``); retraining repeats the same deterministic computation, so it
reproduces the model.

Certified removal from these models lives in unlearnkit.exact.linear; this module sits below training
(``fit`` calls :func:`fit_to_optimum` for ``optimizer="lbfgs"``), so training needs nothing from ``exact/``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
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
# L-BFGS hands over to Newton-CG once the gradient norm is below this: from there Newton converges in a few steps,
# where L-BFGS crawled (Fashion-MNIST, 12,000 images: 1,000 iterations ended at 3.9e-6; with the hand-over 11 s to
# 1.6e-13, python benchmarks/bench_convex.py)
NEWTON_BELOW = 1e-4

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
    eraser = getattr(classifier, "eraser", None)  # an erased output layer reads its eraser's output

    def hook(_module, inputs, _output) -> None:
        captured.append((inputs[0] if eraser is None else eraser(inputs[0])).cpu())

    handle = classifier.register_forward_hook(hook)
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


class FeatureCache:
    """The frozen feature network's outputs by sample id, kept in this process: keyed by the network's weights and
    the data's origin, so training, retraining and certified removals from one head (a stream of requests, a
    benchmark) run the network over each sample once. Flattened inputs (no network) are not cached."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self.tables: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # key -> (sorted ids, rows)

    def clear(self) -> None:
        self.tables.clear()

    def __call__(self, model: nn.Module, dataset: IndexedDataset) -> IndexedDataset:
        """``frozen_features(model, dataset)``, from the cache where it holds the rows."""
        network = getattr(model, "features", None)
        if network is None or isinstance(network, nn.Flatten) or not network.state_dict():
            return frozen_features(model, dataset)
        digest = hashlib.sha256()
        for name, value in sorted(network.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        key = f"{digest.hexdigest()}:{dataset.origin or ''}"
        known, rows = self.tables.get(key, (torch.empty(0, dtype=torch.int64), None))
        missing = ~torch.isin(dataset.ids, known)
        if bool(missing.any()):
            fresh = frozen_features(model, dataset.subset(missing))
            ids = torch.cat([known, fresh.ids])
            rows = fresh.x if rows is None else torch.cat([rows, fresh.x.to(rows.dtype)])
            order = torch.argsort(ids)
            known, rows = ids[order], rows[order]
            self.tables.pop(key, None)
            self.tables[key] = (known, rows)
            while len(self.tables) > self.max_entries:
                self.tables.pop(next(iter(self.tables)))
        x = rows[torch.searchsorted(known, dataset.ids)]
        return IndexedDataset(x=x, y=dataset.y, ids=dataset.ids, num_classes=dataset.num_classes,
                              subjects=dataset.subjects)


FEATURES = FeatureCache()  # the process's cache (unlearnkit.exact.linear's removals and fit_to_optimum share it)


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


def _loss_slopes(theta: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, objective: str,
                 p: torch.Tensor | None = None) -> torch.Tensor:
    """d loss_i / d logits_i for every sample: ``[n, C]`` (prediction minus one-hot target); ``p``: the logistic
    model's softmax probabilities on ``xa`` at ``theta``, if the caller has them."""
    target = F.one_hot(y.to(xa.device), theta.shape[0]).to(xa.dtype)
    if p is None:
        logits = xa @ theta.T
        p = logits if objective == "squared" else logits.softmax(1)
    return p - target


def _gradient(theta, xa, y, objective, weight_decay, noise=None, p=None) -> torch.Tensor:
    grad = _loss_slopes(theta, xa, y, objective, p).T @ xa + weight_decay * len(xa) * theta
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
    newton: bool = True,
) -> tuple[torch.Tensor, float]:
    """The minimiser of ``L(theta; D) / n`` for features ``x`` and labels ``y``, and its final gradient norm.

    Least squares: closed form, ``theta = (Y^T X~ - b) (X~^T X~ + lambda n I)^{-1}``. Logistic: full-batch L-BFGS
    (strong Wolfe line search) from zero until ``||grad|| <= tol``, ``max_iter`` iterations, or a stall;
    ``should_stop`` is checked between rounds of 20 iterations. Below :data:`NEWTON_BELOW` (or where L-BFGS stalls)
    Newton-CG steps finish the job (``newton=False``: L-BFGS alone, as before, for comparison). Starting from zero
    (not from the model's initial weights) makes the result depend on the data alone. Returns
    ``(theta [C, d + 1] float64, ||grad L / n||)``.
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
    while done < max_iter and grad_norm > (max(tol, NEWTON_BELOW) if newton else tol) and stalled < 5:
        if should_stop is not None and should_stop():
            break
        optimizer.param_groups[0]["max_iter"] = min(rounds, max_iter - done)
        optimizer.step(closure)
        done = optimizer.state[theta]["n_iter"]
        with torch.no_grad():
            grad_norm = float(_gradient(theta, xa, y, objective, weight_decay, noise).norm()) / n
        best, stalled = (grad_norm, 0) if grad_norm < 0.9 * best else (best, stalled + 1)
    theta = theta.detach()
    if newton and grad_norm > tol and not (should_stop is not None and should_stop()):
        theta, grad_norm = _newton_cg(theta, xa, y, weight_decay, noise, tol)
    return theta, grad_norm


def _logistic_hvp(theta_p: torch.Tensor, xa: torch.Tensor, v: torch.Tensor, weight_decay: float,
                  xt: torch.Tensor | None = None) -> torch.Tensor:
    """(H / n) v for the mean logistic objective, H at the softmax probabilities ``theta_p`` ([n, C]), without
    forming H: per sample the logit Hessian is diag(p) - p p^T. ``xt``: ``xa.T`` made contiguous, if the caller
    keeps one (the second product then runs about twice as fast on the CPU)."""
    z = xa @ v.T
    r = theta_p * (z - (theta_p * z).sum(1, keepdim=True))
    back = r.T @ xa if xt is None else (xt @ r).T
    return back / len(xa) + weight_decay * v


def _newton_cg(theta: torch.Tensor, xa: torch.Tensor, y: torch.Tensor, weight_decay: float, noise: torch.Tensor,
               tol: float, max_newton: int = 30, max_cg: int = 500) -> tuple[torch.Tensor, float]:
    """Finish where L-BFGS stalls: Newton steps on the mean logistic objective, each solved by conjugate gradients
    on Hessian-vector products (Jacobi-preconditioned), accepted when they lower the gradient norm (halved up to 20
    times otherwise). Near the optimum a Newton step needs no line search on the loss, whose float64 differences
    there are too small for L-BFGS to resolve. Returns (theta, ||grad L / n||)."""
    n = len(xa)

    def grad_of(t: torch.Tensor) -> torch.Tensor:
        return _gradient(t, xa, y, "logistic", weight_decay, noise) / n

    g = grad_of(theta)
    norm = float(g.norm())
    xt = xa.T.contiguous()
    for _ in range(max_newton):
        if norm <= tol:
            break
        p = (xa @ theta.T).softmax(1)
        precond = 1.0 / ((p * (1 - p)).T @ xa.square() / n + weight_decay)
        # preconditioned CG for (H / n) step = -g, to a residual well below the gradient
        step = torch.zeros_like(theta)
        r = -g
        z = precond * r
        d = z.clone()
        rz = float((r * z).sum())
        goal = min(0.1, norm) * norm
        for _ in range(max_cg):
            hd = _logistic_hvp(p, xa, d, weight_decay, xt)
            alpha = rz / float((d * hd).sum())
            step += alpha * d
            r -= alpha * hd
            if float(r.norm()) <= goal:
                break
            z = precond * r
            rz, rz_old = float((r * z).sum()), rz
            d = z + (rz / rz_old) * d
        scale = 1.0
        for _ in range(20):
            candidate = theta + scale * step
            g_new = grad_of(candidate)
            if float(g_new.norm()) < norm:
                break
            scale /= 2
        else:
            break  # no step lowers the gradient any more: float64's floor
        theta, g, norm = candidate, g_new, float(g_new.norm())
    return theta, norm


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
    feats = FEATURES(model, dataset)
    if not torch.isfinite(feats.x).all():
        raise DataError("the training features contain NaN or inf; clean the data (or the feature network) first")
    theta, grad_norm = fit_theta(
        feats.x.to(dev), feats.y, dataset.num_classes, objective=model.objective, weight_decay=config.weight_decay,
        noise=model.noise, max_iter=config.epochs, should_stop=should_stop,
    )
    stopped = should_stop is not None and should_stop()
    if grad_norm > AT_OPTIMUM and not stopped:
        raise ConfigError(f"L-BFGS and Newton-CG ended with gradient norm {grad_norm:.3g} > {AT_OPTIMUM:g}, short of "
                          f"the optimum (L-BFGS capped at {config.epochs} iterations); the problem is badly "
                          "conditioned: raise --weight-decay, or standardise the features")
    return set_head_parameters(model, theta).eval()
