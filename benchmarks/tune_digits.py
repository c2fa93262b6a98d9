"""Tune gradient-ascent's learning rate on digits (mlp and cnn), seed 1, for random:0.1 and class:3.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tune_gradient_ascent.py \
        | tee docs/results/tuning/digits-gradient-ascent.txt

Each row: model, spec, lr_scale, gap.average to the retrained model, forget and test accuracy (the
retrained model's test accuracy in brackets), seconds, and the method's notes (where the early stop fired).
The Fashion-MNIST side of the same choice is in docs/results/tuning/fm-class-7-grid.md.
"""

from __future__ import annotations

import argparse
import json

import torch

from unlearnkit.data import load_dataset, select
from unlearnkit.evaluation import evaluate
from unlearnkit.models import build_model
from unlearnkit.train import RECIPES, fit
from unlearnkit.unlearning import unlearn

SEED = 1
DEFAULT_GRID = {"gradient-ascent": [{"lr_scale": 0.2}, {"lr_scale": 0.1}, {"lr_scale": 0.05}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=json.dumps(DEFAULT_GRID), help="JSON: method -> list of parameter overrides")
    grid = json.loads(parser.parse_args().grid)
    data = load_dataset("digits")
    for name in ("mlp", "cnn"):
        recipe = RECIPES[("digits", name)]
        model = fit(build_model(name, data.spec, seed=0), data.train, recipe, progress=False)
        for spec in ("random:0.1", "class:3"):
            split = select(data.train, spec, seed=SEED)
            retrained = unlearn(model, split, "retrain", train_config=recipe, seed=SEED, progress=False).model
            ref = evaluate(retrained, split, data.test, seed=SEED)
            for method, variants in grid.items():
                for params in variants:
                    result = unlearn(model, split, method, train_config=recipe, seed=SEED, holdout=data.test,
                                     progress=False, **params)
                    rep = evaluate(result.model, split, data.test, ref, seed=SEED)
                    print(f"{name} {spec} {method} {json.dumps(params)}: gap {rep.gap['average']:.4f} forget "
                          f"{rep.metrics['forget_accuracy']:.4f} test {rep.metrics['test_accuracy']:.4f} "
                          f"(retrained {ref.metrics['test_accuracy']:.4f}) {result.seconds:.3f}s {result.notes}",
                          flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
