"""Tune method defaults on Fashion-MNIST with the memorising recipe, on a tuning split.

    .venv/bin/python benchmarks/tune_fashion.py --forget random:0.1 --seed 1 \
        --grid '{"finetune": [{}, {"epochs": 1}], "salun": [{}]}'

Trains the original once (cached under runs/tune/), retrains the exact reference once per
(spec, seed) (cached too), then runs every method/parameter combination of the grid and prints
one row each: accuracies, MIA efficacy, gap.average to retrain, seconds and speedup. The seed used
here (1) differs from the one reported in docs/METHODS.md (0), so defaults are not fitted to the
reported split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from unlearnkit.bench.compare import warm_up_optimizers
from unlearnkit.data import load_dataset, select
from unlearnkit.evaluation import evaluate
from unlearnkit.models import checkpoint_exists, load_checkpoint, save_checkpoint
from unlearnkit.models.checkpoint import CheckpointMeta
from unlearnkit.runs import data_meta, train_model
from unlearnkit.train import TrainConfig, default_recipe
from unlearnkit.unlearning import unlearn


def cached_original(dataset: str, model: str, train_size: int | None, config: TrainConfig, root: Path):
    bundle = load_dataset(dataset, train_size=train_size)
    path = root / f"{dataset}-{model}-n{train_size}-e{config.epochs}-s{config.seed}"
    if checkpoint_exists(path):
        ckpt = load_checkpoint(path)
        return bundle, ckpt.model, float(ckpt.meta.get("train_seconds", 0.0))
    trained = train_model(bundle, model, config, progress=False)
    save_checkpoint(path, trained.model, trained.meta)
    return bundle, trained.model, trained.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--forget", default="random:0.1")
    parser.add_argument("--seed", type=int, default=1, help="tuning seed (split and method)")
    parser.add_argument("--grid", default="{}", help="JSON: method -> list of parameter overrides")
    parser.add_argument("--cache", default="runs/tune")
    args = parser.parse_args()

    config = default_recipe(args.dataset, args.model)
    if args.epochs:
        config = config.with_(epochs=args.epochs)
    root = Path(args.cache)
    bundle, original, train_seconds = cached_original(args.dataset, args.model, args.train_size, config, root)
    split = select(bundle.train, args.forget, seed=args.seed)
    warm_up_optimizers()
    ref_path = root / f"retrain-{args.dataset}-n{args.train_size}-e{config.epochs}-{args.forget.replace(':', '-')}" \
        f"-s{args.seed}"
    if checkpoint_exists(ref_path):
        ref_ckpt = load_checkpoint(ref_path)
        reference, retrain_seconds = ref_ckpt.model, float(ref_ckpt.meta["retrain_seconds"])
    else:
        result = unlearn(original, split, "retrain", train_config=config, seed=args.seed, progress=False)
        reference, retrain_seconds = result.model, result.seconds
        save_checkpoint(ref_path, reference, CheckpointMeta(
            args.model, {}, bundle.spec, data_meta(bundle), config.to_dict(),
            extra={"retrain_seconds": retrain_seconds}))
    ref_report = evaluate(reference, split, bundle.test, seed=args.seed)
    orig_report = evaluate(original, split, bundle.test, ref_report, seed=args.seed)
    train_acc, test_acc = orig_report.metrics["retain_accuracy"], orig_report.metrics["test_accuracy"]
    print(f"# {args.dataset}/{args.model} n={len(bundle.train)} epochs={config.epochs} forget={args.forget} "
          f"seed={args.seed}: original train(retain) acc {train_acc:.4f}, test {test_acc:.4f}"
          f", train {train_seconds:.1f}s, retrain {retrain_seconds:.1f}s")
    print("| method | params | forget | retain | test | MIA-eff | gap.avg | sec | speedup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    r = ref_report.metrics
    print(f"| retrain | | {r['forget_accuracy']:.4f} | {r['retain_accuracy']:.4f} | {r['test_accuracy']:.4f} | "
          f"{r['mia_efficacy']:.4f} | 0 | {retrain_seconds:.2f} | 1.0 |")
    o = orig_report
    print(f"| original | | {o.metrics['forget_accuracy']:.4f} | {o.metrics['retain_accuracy']:.4f} | "
          f"{o.metrics['test_accuracy']:.4f} | {o.metrics['mia_efficacy']:.4f} | {o.gap['average']:.4f} | | |")
    for method, variants in json.loads(args.grid).items():
        for params in variants:
            result = unlearn(original, split, method, train_config=config, seed=args.seed, holdout=bundle.test,
                             progress=False, **params)
            rep = evaluate(result.model, split, bundle.test, ref_report, seed=args.seed)
            m = rep.metrics
            print(f"| {method} | {json.dumps(params)} | {m['forget_accuracy']:.4f} | {m['retain_accuracy']:.4f} | "
                  f"{m['test_accuracy']:.4f} | {m['mia_efficacy']:.4f} | {rep.gap['average']:.4f} | "
                  f"{result.seconds:.2f} | {retrain_seconds / result.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
