"""Certified removal (Guo et al., ICML 2020) against retraining, on digits and Fashion-MNIST.

Scenarios: digits on its 64 raw pixels, and Fashion-MNIST on the frozen penultimate features (128) of a cnn
trained in this process on the first half of the training set (the "public" data of the paper's recipe); the
linear heads are trained on the second half, the part subject to removal. ``--fashion-raw`` adds Fashion-MNIST on
its 784 raw pixels (slow: the multinomial Hessian has (10 x 785)^2 entries). For each scenario and model
(``linear``: ridge regression, ``logistic``: multinomial logistic regression, both to the optimum with L-BFGS in
float64, on feature vectors scaled to unit norm as in the paper unless ``--no-unit-norm``; ``logistic`` once
per loss perturbation sigma in ``--sigmas``) the script prints:

- removal of 1 and of 10 random samples: seconds of ``unlearn(..., "certified")`` (one Newton step) and of
  ``unlearn(..., "retrain")`` in the same process, their ratio (speedup = retrain / update), the share of test
  predictions on which the two models agree, the largest weight difference, the gradient-residual bound the
  method reports and the residual measured on the updated model; each twice: ``cold`` (only the features cached)
  and ``prepared`` (the Hessian factored beforehand by ``prepare_removal``, whose time is printed with the model);
- ``--in-a-row N`` removals of one sample each from the previous result, cold and prepared, against retraining;
- successive removals of 1 (and of 10) samples, the running bound summed as the checkpoint history sums it: how
  many requests pass before the total exceeds the budget ``sigma * epsilon / c`` and forces retraining (capped
  at ``--max-removals``; least squares never does, its bound is 0), and the mean seconds per update.

Run (about 15 minutes on two cores, most of it the successive Fashion-MNIST removals; the figures in
docs/exact/certified.md come from this exact command):
    nice -n 19 .venv/bin/python benchmarks/bench_certified.py
Check that it runs (small data, seconds):
    nice -n 19 .venv/bin/python benchmarks/bench_certified.py --quick
Options: ``--sigmas 1,10`` (the default), ``--epsilon E`` (1), ``--delta D`` (1e-4), ``--weight-decay L``
(1e-3), ``--max-removals N`` (100), ``--no-unit-norm``, ``--fm-train-size N`` (all 60000), ``--cnn-epochs E``
(5), ``--fashion-raw``, ``--datasets digits,fashion-mnist``, ``--threads T`` (torch threads, default 1),
``--device``, ``--seed``.
Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unlearnkit.data import IndexedDataset, load_dataset, select
from unlearnkit.exact.linear import (
    FEATURES,
    REMOVAL_CACHE,
    epsilon_spent,
    frozen_features,
    gradient_residual,
    head_parameters,
    newton_removal,
    prepare_removal,
    residual_budget,
    set_head_parameters,
)
from unlearnkit.models import CheckpointMeta, build_model, load_checkpoint, save_checkpoint
from unlearnkit.runs import save_unlearned
from unlearnkit.train import TrainConfig, accuracy_on, default_recipe, fit, predict_logits
from unlearnkit.unlearning import unlearn


def random_ids(data: IndexedDataset, count: int, seed: int) -> str:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count]
    return "ids:" + ",".join(str(int(i)) for i in data.ids[order])


def successive_removals(model, train: IndexedDataset, recipe: TrainConfig, budget: float | None, per_request: int,
                        cap: int, seed: int) -> tuple[int | None, float, float, float]:
    """Newton removals of ``per_request`` random samples at a time, each from the previous result, summing the
    bounds as the checkpoint history does. Returns (requests certified before the total passed the budget, None if
    the cap came first; the total after those requests; the first request's bound; mean seconds per update)."""
    feats = frozen_features(model, train)
    theta, x, y = head_parameters(model), feats.x, feats.y
    total = gradient_residual(theta, x, y, objective=model.objective, weight_decay=recipe.weight_decay,
                              noise=model.noise)
    gen = torch.Generator().manual_seed(seed)
    seconds, bounds = [], []
    for request in range(cap):
        out = torch.zeros(len(y), dtype=torch.bool)
        out[torch.randperm(len(y), generator=gen)[:per_request]] = True
        start = time.perf_counter()
        step = newton_removal(theta, x[~out], y[~out], x[out], y[out], objective=model.objective,
                              weight_decay=recipe.weight_decay)
        seconds.append(time.perf_counter() - start)
        bounds.append(step.residual_bound)
        if budget is not None and total + step.residual_bound > budget:
            return request, total, bounds[0], sum(seconds) / len(seconds)
        theta, x, y, total = step.theta, x[~out], y[~out], total + step.residual_bound
    return None, total, bounds[0], sum(seconds) / len(seconds)


def bench_model(label: str, name: str, kwargs: dict, prepare: Callable[[torch.nn.Module], None],
                train: IndexedDataset, test: IndexedDataset, args, device: str, workdir: Path) -> None:
    recipe = TrainConfig(optimizer="lbfgs", epochs=1000, weight_decay=args.weight_decay)
    model = build_model(name, train.spec, seed=0, **kwargs)
    prepare(model)
    start = time.perf_counter()
    fit(model, train, recipe, device=device)
    train_seconds = time.perf_counter() - start
    # certified reads the running bound from the checkpoint's history (a fresh one here: none yet)
    path = workdir / f"{label}-{name}".replace(" ", "-")
    save_checkpoint(path, model, CheckpointMeta(name, kwargs, train.spec, {"source": label}, recipe.to_dict()))
    sigma = model.perturbation
    budget = residual_budget(sigma, args.epsilon, args.delta) if sigma > 0 else None
    REMOVAL_CACHE.clear()
    start = time.perf_counter()
    prepare_removal(model, train, recipe.weight_decay)
    prepare_seconds = time.perf_counter() - start
    print(f"\n### {label}, {name}: {len(train)} training samples, {model.classifier.in_features + 1} x "
          f"{train.num_classes} parameters, lambda {args.weight_decay:g}, sigma {sigma:g}, budget "
          f"{'none' if budget is None else f'{budget:.4g}'}; trained in {train_seconds:.2f}s, test accuracy "
          f"{accuracy_on(model, test):.4f}; removal cache prepared in {prepare_seconds:.2f}s (once per model, "
          "before the first request: prepare_removal)\n")
    print("cache: `cold` = nothing cached but the features (a single request to a model just loaded); `prepared` = "
          "the Hessian factored beforehand; `direct` (logistic) = the step as it was before issue 19, the Hessian "
          "built on the remaining data and factored per request (newton_removal(solver='direct') alone, on the "
          "cached features: less than that whole path cost)\n")
    print("| removed | cache | update s | retrain s | speedup | agreement | max abs dw | bound | within budget | "
          "measured residual |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    # the Newton step alone (a budget that never triggers); the column "within budget" says whether the default
    # budget sigma * epsilon / c would have let it stand or retrained instead
    params = {"epsilon": args.epsilon, "delta": args.delta, "removal_budget": 1e30}
    for count, cache in ((1, "cold"), (1, "prepared"), (10, "cold"), (10, "prepared")):
        split = select(train, random_ids(train, count, args.seed + count), seed=0)
        # the first request after training: the head's features are cached (training computed them, and retraining
        # below reads them too: both are "the head on cnn features"); the Hessian only if prepared
        REMOVAL_CACHE.clear()
        if cache == "prepared":
            prepare_removal(model, train, recipe.weight_decay)
        update = unlearn(model, split, "certified", train_config=recipe, checkpoint=path, device=device,
                         progress=False, **params)
        if cache == "cold":
            retrain = unlearn(model, split, "retrain", train_config=recipe, device=device, progress=False)
        agree = (predict_logits(update.model, test).argmax(1) == predict_logits(retrain.model, test).argmax(1))
        dw = (head_parameters(update.model) - head_parameters(retrain.model)).abs().max()
        feats = frozen_features(update.model, split.retain)
        measured = gradient_residual(head_parameters(update.model), feats.x, feats.y, objective=model.objective,
                                     weight_decay=recipe.weight_decay, noise=update.model.noise)
        bound = update.info["cumulative_bound"]
        within = "no budget" if budget is None else ("yes" if bound <= budget else "no: retrains")
        print(f"| {count} | {cache} | {update.seconds:.3f} | {retrain.seconds:.3f} | "
              f"{retrain.seconds / update.seconds:.1f}x | {agree.float().mean():.4f} | {dw:.2e} | {bound:.3g} | "
              f"{within} | {measured:.3g} |")
        if cache == "cold" and model.objective == "logistic":
            direct_row(model, split, recipe, retrain, test, count)
    if args.in_a_row:
        retrain_each = None
        for cache in ("cold", "prepared"):
            retrain_each = in_a_row(model, train, recipe, path, params, args, device, cache, retrain_each)
    if model.objective == "squared":
        print("\nsuccessive removals: never retrains (least squares: the Newton step is exact, bound 0)")
        return
    for count in (1, 10):
        passed, total, first, seconds = successive_removals(model, train, recipe, budget, count,
                                                            args.max_removals, args.seed)
        eps = "" if sigma <= 0 else f", epsilon spent {epsilon_spent(total, sigma, args.delta):.3g}"
        what = f">= {args.max_removals} (cap)" if passed is None else str(passed)
        print(f"\nsuccessive removals of {count}: {what} requests before the budget forces retraining (first "
              f"request's bound {first:.3g}); summed bound then {total:.4g}{eps}; {seconds:.3f}s per update")


def direct_row(model, split, recipe: TrainConfig, retrain, test: IndexedDataset, count: int) -> None:
    """The removal step as issue 19 found it, timed alone: the Hessian on the remaining data, built and factored
    for the request (``solver="direct"``), on the features the cache already holds."""
    retain, forget = FEATURES(model, split.retain), FEATURES(model, split.forget)  # the rows the update reads
    start = time.perf_counter()
    step = newton_removal(head_parameters(model), retain.x, retain.y, forget.x, forget.y,
                          objective=model.objective, weight_decay=recipe.weight_decay, solver="direct")
    seconds = time.perf_counter() - start
    updated = copy.deepcopy(model)
    set_head_parameters(updated, step.theta)
    agree = (predict_logits(updated, test).argmax(1) == predict_logits(retrain.model, test).argmax(1))
    dw = (step.theta - head_parameters(retrain.model)).abs().max()
    print(f"| {count} | direct | {seconds:.3f} | {retrain.seconds:.3f} | {retrain.seconds / seconds:.1f}x | "
          f"{agree.float().mean():.4f} | {dw:.2e} | (step only) {step.residual_bound:.3g} | | |")


def in_a_row(model, train: IndexedDataset, recipe: TrainConfig, path: Path, params: dict, args, device: str,
             cache: str, retrain_each: float | None) -> float:
    """``--in-a-row N`` requests of one random sample each through ``unlearn(..., "certified")``, each from the
    previous result, against ``--retrains K`` retrainings of the head from scratch on the same shrinking data
    (their mean stands for each of the N; retraining costs the same for every request; timed once, on the first
    call, and returned). ``cache``: ``cold`` (the second request factors the Hessian, the rest reuse it) or
    ``prepared`` (factored before the first request, not counted; its time is printed with the model)."""
    REMOVAL_CACHE.clear()
    if cache == "prepared":
        prepare_removal(model, train, recipe.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    current, retain, seconds, retrain_seconds, base = model, train, [], [], path
    for request in range(args.in_a_row):
        pick = retain.ids[torch.randperm(len(retain), generator=gen)[:1]]
        split = select(retain, "ids:" + ",".join(str(int(i)) for i in pick), seed=0)
        update = unlearn(current, split, "certified", train_config=recipe, checkpoint=path, device=device,
                         progress=False, **params)
        seconds.append(update.seconds)
        if retrain_each is None and request < args.retrains:
            retrain_seconds.append(unlearn(current, split, "retrain", train_config=recipe, device=device,
                                           progress=False).seconds)
        # the chain of checkpoints a user's requests leave (not timed): each carries the running bound
        chained = base.with_name(f"{base.name}-{cache}-{request}")
        current, retain = update.model, split.retain
        path = save_unlearned(chained, update, split, load_checkpoint(path))
    if retrain_each is None:
        retrain_each = sum(retrain_seconds) / len(retrain_seconds)
    total = sum(seconds)
    print(f"\n{args.in_a_row} removals in a row, cache {cache}: {total:.2f}s in all (first {seconds[0]:.3f}s, then "
          f"{sum(seconds[1:]) / max(1, len(seconds) - 1):.3f}s each); a retraining takes {retrain_each:.2f}s (mean of "
          f"{args.retrains}), so {args.in_a_row} retrainings {retrain_each * args.in_a_row:.1f}s: "
          f"{retrain_each * args.in_a_row / total:.1f}x")
    return retrain_each


def digits_scenario(args):
    bundle = load_dataset("digits")
    return [("digits pixels", {}, lambda model: None, bundle.train, bundle.test)]


def fashion_scenarios(args, device: str):
    bundle = load_dataset("fashion-mnist", train_size=args.fm_train_size)
    half = len(bundle.train) // 2
    public, private = bundle.train.subset(torch.arange(half)), bundle.train.subset(torch.arange(half, 2 * half))
    cnn_recipe = default_recipe("fashion-mnist", "cnn").with_(epochs=args.cnn_epochs)
    start = time.perf_counter()
    cnn = fit(build_model("cnn", bundle.spec, seed=0), public, cnn_recipe, device=device, progress=False)
    print(f"\nfeature network: cnn trained on the first {half} Fashion-MNIST images ({args.cnn_epochs} epochs, "
          f"{time.perf_counter() - start:.0f}s), test accuracy {accuracy_on(cnn, bundle.test):.4f}; the heads "
          f"below train on the other {half}")

    head = {"backbone": "cnn", "backbone_kwargs": {}}
    scenarios = [("fashion-mnist cnn features", head, lambda model: model.features.load_network(cnn), private,
                  bundle.test)]
    if args.fashion_raw:
        scenarios.append(("fashion-mnist pixels", {}, lambda model: None, private,
                          bundle.test))
    return scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="digits,fashion-mnist")
    parser.add_argument("--sigmas", default="1,10", help="stds of the loss perturbation b (comma list)")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-3, help="lambda")
    parser.add_argument("--max-removals", type=int, default=100)
    parser.add_argument("--no-unit-norm", action="store_true", help="heads on the features as they are")
    parser.add_argument("--fm-train-size", type=int, default=None)
    parser.add_argument("--cnn-epochs", type=int, default=5)
    parser.add_argument("--fashion-raw", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small data and caps: check that the script runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-a-row", type=int, default=50, help="removals of 1 sample in a row (0: skip)")
    parser.add_argument("--retrains", type=int, default=3, help="retrainings timed for the in-a-row comparison")
    args = parser.parse_args()
    if args.quick:
        args.fm_train_size, args.cnn_epochs, args.max_removals = args.fm_train_size or 4000, 1, 5
    torch.set_num_threads(args.threads)
    print(f"# certified removal vs retraining (sigmas {args.sigmas}, epsilon {args.epsilon:g}, delta {args.delta:g}, "
          f"lambda {args.weight_decay:g}, {'raw' if args.no_unit_norm else 'unit-norm'} features, {args.threads} "
          f"thread(s), {args.device})")
    scenarios = []
    names = args.datasets.split(",")
    if "digits" in names:
        scenarios += digits_scenario(args)
    if "fashion-mnist" in names:
        scenarios += fashion_scenarios(args, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs, prepare, train, test in scenarios:
            sigmas = [float(v) for v in args.sigmas.split(",")]
            runs = [("linear", sigmas[0])] + [("logistic", sigma) for sigma in sigmas]  # linear: bound 0 anyway
            for name, sigma in runs:
                kwargs = {**kwargs, "perturbation": sigma, "normalize": not args.no_unit_norm}
                bench_model(label, name, kwargs, prepare, train, test, args, args.device, Path(tmp))


if __name__ == "__main__":
    main()
