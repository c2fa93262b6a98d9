"""Training: ``fit(model, dataset, TrainConfig)``, the recipe every checkpoint stores.

Training is seeded and deterministic on CPU: batch order comes from a generator seeded by
``TrainConfig.seed`` and nothing else. ``retrain`` reuses a checkpoint's own ``TrainConfig`` on the
retain set, so the exact reference is trained exactly as the original was. ``fit_ensemble`` trains many
small models at once with ``torch.func``, each exactly as ``fit`` would train it from its own seed.

Run a quick fit from the shell:
    python -c "from unlearnkit.train import *; ..."   (or `unlearn train --dataset digits`)
"""

from __future__ import annotations

import copy
import math
import operator
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError, TrainingDivergedError, UnlearnError
from unlearnkit.models.multitask import (
    is_multitask,
    labelled_accuracy,
    multitask_loss,
    parse_task_weights,
    task_accuracy,
    task_targets,
    task_weight_vector,
)
from unlearnkit.params import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Interval, Options, Params, param

OPTIMIZERS = ("sgd", "adam")
# Full batch, float64, to the optimum of the L2-regularised loss (weight_decay = lambda): the linear and logistic
# models only (unlearnkit.models.convex), for exact retraining and certified removal.
FULL_BATCH_OPTIMIZERS = ("lbfgs",)
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig(Params):
    """The training recipe. Stored with every checkpoint; ``retrain`` reproduces it.

    Defaults are the digits/MLP recipe: SGD with momentum and a cosine schedule is the standard
    recipe of the unlearning literature (SalUn, SCRUB, the NeurIPS-2023 starting kit).
    """

    owner = "TrainConfig"  # names the recipe in error messages

    epochs: int = param(30, AT_LEAST_ONE)
    batch_size: int = param(64, AT_LEAST_ONE)
    optimizer: str = param("sgd", Options(*OPTIMIZERS, *FULL_BATCH_OPTIMIZERS),
                           hint="lbfgs: full batch, to the optimum (linear and logistic models)")
    lr: float = param(0.05, POSITIVE)
    momentum: float = param(0.9, Interval(float, 0, 1, closed="left"))
    weight_decay: float = param(5e-4, NON_NEGATIVE)
    schedule: str = param("cosine", Options(*SCHEDULES))
    seed: int = 0
    # multi-task models: each task's weight in the summed loss, "NAME=W,NAME=W" (unnamed tasks weigh 1; "" all 1)
    task_weights: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task_weights:
            parse_task_weights(self.task_weights)  # a malformed string fails here, in one line

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.task_weights:  # single-task recipes keep the sidecars (and cache keys) they always had
            del out["task_weights"]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def with_(self, **changes) -> TrainConfig:
        return replace(self, **changes)


# Default recipes per (dataset, model): what `unlearn train` uses unless flags override it.
# fashion-mnist/cnn: 10 epochs of SGD reach ~92% test accuracy; lr 0.05 is stable without batch norm.
RECIPES: dict[tuple[str, str], TrainConfig] = {
    ("digits", "mlp"): TrainConfig(epochs=30, batch_size=64, lr=0.05),
    ("digits", "cnn"): TrainConfig(epochs=20, batch_size=64, lr=0.05),
    ("fashion-mnist", "cnn"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
    ("fashion-mnist", "mlp"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
    ("mnist", "cnn"): TrainConfig(epochs=5, batch_size=128, lr=0.05),
    # linear / logistic: full-batch L-BFGS to the optimum (epochs: its iteration cap); weight decay is the L2
    # strength lambda of certified removal, whose residual bound shrinks like 1 / (lambda^2 n).
    ("digits", "linear"): TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3),
    ("digits", "logistic"): TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3),
    ("fashion-mnist", "linear"): TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3),
    ("fashion-mnist", "logistic"): TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=1e-3),
    ("cifar10", "resnet18"): TrainConfig(epochs=30, batch_size=128, lr=0.1),
    # the biased sources train as the data they derive from (biased-tabular: a small mlp on 7 features)
    ("colored-digits", "mlp"): TrainConfig(epochs=30, batch_size=64, lr=0.05),
    ("colored-digits", "cnn"): TrainConfig(epochs=20, batch_size=64, lr=0.05),
    # lr 0.02, not fashion-mnist's 0.05: at 0.05 the cnn on coloured images of seed 2 died in its first epoch (loss
    # stuck at 2.30, test accuracy 0.10); at 0.02 it trains (train accuracy 0.994; benchmarks/bench_bias.py, BIAS.md)
    ("colored-fashion-mnist", "cnn"): TrainConfig(epochs=10, batch_size=128, lr=0.02),
    ("colored-fashion-mnist", "mlp"): TrainConfig(epochs=10, batch_size=128, lr=0.02),
    ("biased-tabular", "mlp"): TrainConfig(epochs=20, batch_size=64, lr=0.05),
    # multi-task sources: the summed task losses, recipes of the data they derive from
    ("multi-digits", "mtl-mlp"): TrainConfig(epochs=30, batch_size=64, lr=0.05),
    ("multi-digits", "mtl-cnn"): TrainConfig(epochs=20, batch_size=64, lr=0.05),
    ("multi-fashion-mnist", "mtl-cnn"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
    ("multi-fashion-mnist", "mtl-mlp"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
    ("fashion-mnist-tasks", "mtl-cnn"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
    ("fashion-mnist-tasks", "mtl-mlp"): TrainConfig(epochs=10, batch_size=128, lr=0.05),
}


def default_recipe(source: str, model: str) -> TrainConfig:
    return RECIPES.get((source, model), TrainConfig())


def show_progress(flag: bool | None) -> bool:
    """Progress bars on a terminal, quiet otherwise (logs, CI, pipes), unless forced."""
    return sys.stderr.isatty() if flag is None else flag


def batches(
    dataset: IndexedDataset,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    with_ids: bool = False,
    labels: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """(x, y) mini-batches in a seeded order, (x, y, ids) with ``with_ids``; ``generator`` decides the shuffle.
    ``labels`` (one row per sample, e.g. a multi-task label matrix) replaces ``y`` in the batches."""
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    y_all = dataset.y if labels is None else labels
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield (dataset.x[idx], y_all[idx], dataset.ids[idx]) if with_ids else (dataset.x[idx], y_all[idx])


def training_labels(model: nn.Module, dataset: IndexedDataset) -> torch.Tensor:
    """What ``model`` learns ``dataset`` from: ``y``, or for a multi-task model the label matrix (masks kept)."""
    return task_targets(model, dataset) if is_multitask(model) else dataset.y


def supervised_loss(model: nn.Module, logits: torch.Tensor, y: torch.Tensor, config: TrainConfig | None = None
                    ) -> torch.Tensor:
    """Cross-entropy; for a multi-task model the recipe-weighted sum of its tasks' losses over unmasked labels."""
    if is_multitask(model):
        weights = task_weight_vector(model, config.task_weights) if config and config.task_weights else None
        return multitask_loss(model, logits, y, weights)
    return F.cross_entropy(logits, y)


def make_optimizer(params, config: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    lr = config.lr if lr is None else lr
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int):
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def check_finite(loss: torch.Tensor, where: str) -> None:
    """Stop at the first NaN/inf loss with a message that says what to change."""
    if not torch.isfinite(loss).all():
        raise TrainingDivergedError(
            f"loss became {loss.item()} {where}; lower the learning rate (--lr) or enable gradient clipping"
        )


def fit(
    model: nn.Module,
    dataset: IndexedDataset,
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    description: str = "train",
    on_epoch: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    after_step: Callable[[int, torch.Tensor, nn.Module], None] | None = None,
    steps: int | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``dataset`` with the recipe ``config``; returns the model.

    Args:
        model: any classifier returning logits ``[batch, classes]``.
        dataset: the training samples.
        config: optimizer, schedule, epochs, batch size, weight decay, seed.
        device: ``None`` picks cuda > mps > cpu.
        progress: show a progress bar (default: only on a terminal).
        on_epoch: called with (epoch, mean loss) after every epoch.
        should_stop: checked before every step; True ends training early (e.g. a time budget).
        after_step: called after every optimizer step with (step number from 0, the ids of that batch, the model),
            e.g. :class:`unlearnkit.exact.updates.UpdateRecorder`; it must not touch the model or the random generators.
        steps: train exactly this many optimizer steps instead of ``config.epochs`` epochs (the last epoch cut
            short; the schedule spans these steps), e.g. SISA's fractional epochs per slice step.

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> from unlearnkit.models import build_model
        >>> data = load_dataset("digits")
        >>> model = fit(build_model("mlp", data.spec), data.train, TrainConfig(epochs=2), progress=False)
    """
    if len(dataset) == 0:
        raise ConfigError("cannot train on an empty dataset; check the forget spec and --train-size")
    if config.optimizer == "lbfgs" or getattr(model, "objective", None) == "squared":
        from unlearnkit.models.convex import fit_to_optimum  # linear/logistic: to the optimum (least squares: only so)

        if after_step is not None:
            raise ConfigError("optimizer lbfgs takes full-batch steps, none to record; drop --record-updates")
        return fit_to_optimum(model, dataset, config, device=device, should_stop=should_stop)
    dev = resolve_device(device)
    model.to(dev).train()
    labels = training_labels(model, dataset)
    if is_multitask(model) and config.task_weights:
        task_weight_vector(model, config.task_weights)  # a task the model lacks fails before the first step
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    total_steps = config.epochs * steps_per_epoch if steps is None else steps
    optimizer = make_optimizer(model.parameters(), config)
    scheduler = make_schedule(optimizer, config.schedule, total_steps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # dropout and any other randomness inside the model
        bar = tqdm(total=total_steps, desc=description,
                   disable=not show_progress(progress), unit="step", leave=False)
        for epoch in range(math.ceil(total_steps / steps_per_epoch)):
            total, count = 0.0, 0
            # ids ride along (same draws, same order) only for after_step
            for i, (x, y, *ids) in enumerate(batches(dataset, config.batch_size, generator=gen,
                                                     with_ids=after_step is not None, labels=labels)):
                if epoch * steps_per_epoch + i >= total_steps:
                    break
                if should_stop is not None and should_stop():
                    bar.close()
                    return model.eval()
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                loss = supervised_loss(model, model(x), y, config)
                check_finite(loss, f"at epoch {epoch + 1} of {description}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if after_step is not None:
                    after_step(epoch * steps_per_epoch + i, ids[0], model)
                total += loss.item() * len(y)
                count += len(y)
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, total / count)
        bar.close()
    model.eval()
    return model


def model_device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    dataset: IndexedDataset,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Logits of ``model`` on every sample of ``dataset``, in order, on the CPU (eval mode).

    Runs on ``device`` if given, else on the device the model's parameters live on.
    """
    dev = model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    outs = [model(x.to(dev)).float().cpu() for x, _ in batches(dataset, batch_size, shuffle=False)]
    model.train(was_training)
    if not outs:
        return torch.empty(0, dataset.num_classes)
    return torch.cat(outs)


def accuracy_on(
    model: nn.Module, dataset: IndexedDataset, *, device: str | torch.device | None = None
) -> float:
    """Fraction of ``dataset`` that ``model`` classifies correctly; for a multi-task model, of its unmasked
    (sample, task) labels."""
    if len(dataset) == 0:
        return float("nan")
    logits = predict_logits(model, dataset, device=device)
    if is_multitask(model):
        return labelled_accuracy(model, logits, task_targets(model, dataset))
    return float((logits.argmax(1) == dataset.y).float().mean())


def per_task_accuracy(model: nn.Module, dataset: IndexedDataset, *, device: str | torch.device | None = None
                      ) -> dict[str, float]:
    """A multi-task model's accuracy on each task's unmasked labels of ``dataset``."""
    return task_accuracy(model, predict_logits(model, dataset, device=device), task_targets(model, dataset))


# ----------------------------------------------------------------------------------------------------------------
# Many small models at once: the vectorized ensemble trainer (torch.func).


class EnsembleFallbackWarning(UserWarning):
    """``fit_ensemble`` could not vectorize the model and trained the models one by one with ``fit``."""


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds as plain ints; refuses an empty list, non-integers and repeats with a clear message."""
    try:
        values = [operator.index(s) for s in seeds]
    except TypeError as exc:
        raise ConfigError(f"seeds must be integers, got {list(seeds)!r}; pass e.g. seeds=[0, 1, 2]") from exc
    if not values:
        raise ConfigError("need at least one seed; each seed trains one model")
    repeated = sorted({s for s in values if values.count(s) > 1})
    if repeated:
        raise ConfigError(f"seeds must be distinct, got {repeated} more than once; a repeated seed trains the "
                          "same model twice")
    return values


def _vmap_obstacle(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained under ``vmap`` exactly as ``fit`` trains it, or None if it can."""
    if is_multitask(model):
        return "a multi-task model trains on a label matrix with masked labels, which the stacked trainer lacks"
    for name, module in model.named_modules():
        # BatchNorm updates its running statistics in place during training; vmap would have to batch that
        # in-place buffer update, and torch.func's documented remedy (dropping the running stats) would
        # change what the model computes in eval mode. So such models are trained one by one.
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            return f"{type(module).__name__} layer {name!r} tracks running statistics, which vmap cannot update"
    return None


def fit_ensemble(
    build: Callable[[int], nn.Module],
    dataset: IndexedDataset,
    config: TrainConfig,
    n_models: int,
    seeds: Sequence[int] | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    description: str = "ensemble",
    vectorize: bool | None = None,
) -> list[nn.Module]:
    """Train ``n_models`` models at once, model i as ``fit(build(seeds[i]), dataset, config.with_(seed=seeds[i]))``.

    The models' parameters are stacked (``torch.func.stack_module_state``) and one call runs all of them
    with ``vmap`` over ``grad`` of ``functional_call``, each on its own mini-batch: every model keeps the
    batch order ``fit`` would draw from its seed, and its gradient is that of its own mean cross-entropy,
    as in ``fit`` (not scaled by ``n_models``). The stacked tensors are updated by the very optimizer and
    schedule ``fit`` uses (``make_optimizer``, ``make_schedule``): SGD with momentum and weight decay, and
    Adam, act element by element, so each model's slice follows its own trajectory. Results equal
    sequential ``fit`` calls up to float rounding, because batched matmuls sum in another order: in
    float64 the two agree to ~1e-15; in float32 they agree to ~1e-7 after a few epochs of the digits MLP,
    but a long run can amplify rounding (30 epochs: up to ~5e-3 on single weights for an unlucky seed,
    the same order by which float32 ``fit`` itself differs from float64 ``fit``), with the same predictions.

    Speed: vectorizing removes per-step Python and dispatch overhead, so it pays most where that
    overhead dominates (small MLPs on CPU; any small model on a GPU). On CPU, conv layers under ``vmap``
    become grouped convolutions that run slower than one model at a time; see
    ``benchmarks/bench_ensemble.py`` for measured numbers.

    Models that ``vmap`` cannot train exactly as ``fit`` does — batch norm that tracks running statistics,
    dropout (``fit`` draws its masks from the global generator seeded per model), or any error raised by
    the functional transforms — are trained one by one with ``fit`` instead, with identical results and
    no speed-up. That fallback is reported with an :class:`EnsembleFallbackWarning` (filter it with
    ``warnings.simplefilter("ignore", EnsembleFallbackWarning)`` where it is expected).

    Args:
        build: ``seed -> model``, e.g. ``lambda s: build_model("mlp", spec, seed=s)``; every call must
            return the same architecture.
        dataset: the training samples, shared by all models.
        config: the recipe; its ``seed`` is replaced by each model's seed.
        n_models: how many models to train.
        seeds: one seed per model (initial weights and batch order); default ``config.seed + i``, so
            ``n_models=1`` reproduces ``fit(build(config.seed), dataset, config)``.
        device: ``None`` picks cuda > mps > cpu.
        progress: show a progress bar (default: only on a terminal).
        description: the progress bar's label and the name used in divergence messages.
        vectorize: True: vectorize wherever vmap applies; False: one ``fit`` per seed; None (default):
            vectorize except conv models on the CPU, where grouped convolutions made 16 Fashion-MNIST cnns
            about 3x slower than 16 sequential fits (benchmarks/bench_ensemble.py --fashion).

    Returns:
        The trained models in the order of ``seeds``: ordinary modules with their own parameters, in eval mode.

    Raises:
        ConfigError: ``n_models`` below 1, ``seeds`` of the wrong length or repeated, or an empty dataset.
        TrainingDivergedError: a model's loss became NaN or infinite (as ``fit`` raises it).

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> from unlearnkit.models import build_model
        >>> data = load_dataset("digits")
        >>> models = fit_ensemble(lambda s: build_model("mlp", data.spec, seed=s), data.train,
        ...                       TrainConfig(epochs=2), n_models=4, progress=False)
    """
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise ConfigError(f"n_models must be a positive integer, got {n_models!r}")
    seeds = list(range(config.seed, config.seed + n_models)) if seeds is None else check_seeds(seeds)
    if len(seeds) != n_models:
        raise ConfigError(f"got {len(seeds)} seeds for n_models={n_models}; give one seed per model or none")
    if len(dataset) == 0:
        raise ConfigError("cannot train on an empty dataset; check the forget spec and --train-size")
    dev = resolve_device(device)
    models = [build(seed).to(dev) for seed in seeds]
    if config.optimizer == "lbfgs":  # full-batch L-BFGS has no mini-batch loop to vectorize
        return _fit_each(models, dataset, config, seeds, dev, progress, description)
    obstacle = _vmap_obstacle(models[0])
    if vectorize is None:
        vectorize = not (dev.type == "cpu" and any(isinstance(m, nn.modules.conv._ConvNd) for m in models[0].modules()))
    if obstacle is None and not vectorize:
        return _fit_each(models, dataset, config, seeds, dev, progress, description)
    if obstacle is None:
        try:
            if _plain_mlp_layers(models[0]) is not None:
                return _fit_stacked(models, dataset, config, seeds, dev, progress, description, batched_mlp=True)
            return _fit_stacked(models, dataset, config, seeds, dev, progress, description)
        except UnlearnError:  # divergence and the like: what fit itself would raise
            raise
        except Exception as exc:  # any failure of the functional transforms falls back to fit
            first_line = (str(exc).splitlines() or [""])[0]
            obstacle = f"torch.func could not vectorize it ({type(exc).__name__}: {first_line})"
    warnings.warn(
        EnsembleFallbackWarning(
            f"fit_ensemble trains the {n_models} models one by one with fit: {obstacle}; "
            "results are the same, only slower"
        ),
        stacklevel=2,
    )
    return _fit_each(models, dataset, config, seeds, dev, progress, description)


def _fit_each(models: list[nn.Module], dataset: IndexedDataset, config: TrainConfig, seeds: list[int],
              dev: torch.device, progress: bool | None, description: str) -> list[nn.Module]:
    """One ``fit`` per seed. The stacked path copies the parameters, so after a failed attempt the built models
    still hold their initial weights; the description names the seed as the vectorized path does, so
    divergence messages read the same."""
    return [
        fit(model, dataset, config.with_(seed=seed), device=dev, progress=progress,
            description=f"{description} (seed {seed})")
        for model, seed in zip(models, seeds, strict=True)
    ]


def _parameters_with_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> set[str]:
    """Names of the parameters that ``fit``'s optimizer updates: those the loss gives a gradient.

    ``torch.func.grad`` returns zeros for a frozen parameter or one the forward pass never uses, where
    autograd leaves ``.grad`` as None and the optimizer skips it (no weight decay, no momentum); one
    backward pass on one sample tells them apart. Eval mode: no dropout draws, no batch statistics.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not named:
        return set()
    model.eval()
    loss = F.cross_entropy(model(x), y)
    if not loss.requires_grad:
        return set()
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {name for (name, _), g in zip(named, grads, strict=True) if g is not None}


def _plain_mlp_layers(model: nn.Module) -> list[str] | None:
    """The names of the Linear layers of a plain MLP (Flatten, then Linear-ReLU pairs, then a Linear
    ``classifier``; no dropout, no eraser), in order; None for any other model."""
    features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
    if type(classifier) is not nn.Linear or not isinstance(features, nn.Sequential) or not len(features):
        return None
    layers = list(features)
    if not isinstance(layers[0], nn.Flatten) or len(layers) % 2 != 1:
        return None
    names = []
    for i in range(1, len(layers), 2):
        if type(layers[i]) is not nn.Linear or type(layers[i + 1]) is not nn.ReLU:
            return None
        names.append(f"features.{i}")
    if list(dict(model.named_buffers())):
        return None
    return [*names, "classifier"]


def _fit_stacked(
    models: list[nn.Module],
    dataset: IndexedDataset,
    config: TrainConfig,
    seeds: list[int],
    dev: torch.device,
    progress: bool | None,
    description: str,
    batched_mlp: bool = False,
) -> list[nn.Module]:
    """The vectorized loop behind :func:`fit_ensemble`; mirrors :func:`fit` step for step.

    ``batched_mlp``: a plain MLP (:func:`_plain_mlp_layers`) runs as batched matmuls (``baddbmm``) with one autograd
    pass over the summed per-model mean losses (each model's slice of the gradient is its own loss's): as fast as
    ``vmap`` over ``grad`` on one CPU thread, faster on two (3.0x against 2.6x over sequential fits for 16 digits
    MLPs, benchmarks/bench_ensemble.py), with weights equal to sequential fits."""
    updated = _parameters_with_gradient(models[0], dataset.x[:1].to(dev), dataset.y[:1].to(dev))
    for model in models:
        model.train()
    params, buffers = torch.func.stack_module_state(models)  # new leaf tensors [n_models, ...]
    if batched_mlp:
        layers = _plain_mlp_layers(models[0])

        def grads_and_losses(p: dict, _b: dict, x: torch.Tensor, y: torch.Tensor):
            with torch.enable_grad():
                h = x.flatten(2)  # [n_models, batch, features]
                for i, name in enumerate(layers):
                    h = torch.baddbmm(p[f"{name}.bias"].unsqueeze(1), h, p[f"{name}.weight"].transpose(1, 2))
                    if i < len(layers) - 1:
                        h = h.relu()
                losses = F.cross_entropy(h.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)
                wanted = [p[k] for k in p]
                grads = torch.autograd.grad(losses.sum(), wanted)
            return dict(zip(p, grads, strict=True)), losses.detach()

        for tensor in params.values():
            tensor.requires_grad_(True)
    else:
        skeleton = copy.deepcopy(models[0]).to("meta")  # only its structure is used; weights come from params

        def loss_of_one(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(torch.func.functional_call(skeleton, (p, b), (x,)), y)  # mean over this batch

        # grad inside vmap: each model's gradient of its own mean loss, the batched backward done by torch.func
        # (faster on CPU than autograd through a vmapped forward, which copies more). randomness="error": a
        # random op inside the model (dropout) cannot match fit's draws, so it fails loudly and sends the models
        # to the sequential fallback.
        grads_and_losses = torch.func.vmap(
            torch.func.grad_and_value(loss_of_one), in_dims=(0, 0, 0, 0), randomness="error"
        )
    n, batch_size = len(dataset), config.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    optimizer = make_optimizer(params.values(), config)
    scheduler = make_schedule(optimizer, config.schedule, config.epochs * steps_per_epoch)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # one batch order per model, as in fit
    bar = tqdm(total=config.epochs * steps_per_epoch, desc=description,
               disable=not show_progress(progress), unit="step", leave=False)
    try:
        for epoch in range(config.epochs):
            # the same draw as batches(): one randperm per epoch from each model's own generator
            orders = torch.stack([torch.randperm(n, generator=gen) for gen in generators])
            total = torch.zeros(len(models))
            for start in range(0, n, batch_size):
                idx = orders[:, start : start + batch_size]  # [n_models, batch]
                x = dataset.x[idx].to(dev, non_blocking=True)
                y = dataset.y[idx].to(dev, non_blocking=True)
                with torch.no_grad():  # grad() differentiates inside; nothing to record outside
                    grads, losses = grads_and_losses(params, buffers, x, y)  # losses: [n_models] means
                if not torch.isfinite(losses).all():
                    bad = int((~torch.isfinite(losses)).nonzero()[0])
                    check_finite(losses[bad], f"at epoch {epoch + 1} of {description} (seed {seeds[bad]})")
                for name, param in params.items():
                    param.grad = grads[name] if name in updated else None
                optimizer.step()
                scheduler.step()
                total += losses.detach().cpu() * idx.shape[1]
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(total.mean()) / n:.4f}")
    finally:
        bar.close()
    with torch.no_grad():
        for i, model in enumerate(models):
            for name, tensor in model.named_parameters():
                tensor.copy_(params[name][i])
            for name, tensor in model.named_buffers():
                tensor.copy_(buffers[name][i])
    return [model.eval() for model in models]
