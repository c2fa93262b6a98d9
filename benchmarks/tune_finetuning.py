"""Tune the fine-tuning family's defaults on digits: neggrad-plus, random-label, boundary-shrink,
l1-sparse, salun, unsir.

For each method a small grid of hyperparameters runs on the digits MLP (the real digits recipe,
TrainConfig(epochs=30)) for the two standard forget specs, ``random:0.1`` and ``class:3``, with the
tuning seed 1 (forget split and method). Each row gives ``gap.average`` (mean |difference| to the
model retrained without the forget set over forget/retain/test accuracy and MIA efficacy; lower is
better), the unlearned model's forget/retain/test accuracy and MIA efficacy, the speedup over
retraining (retrain CPU seconds / method CPU seconds, each the fastest of ``--repeats`` runs), and
``mean``, gap.average averaged over both specs. ``*`` marks the best row with a speedup of at least 5x
on both specs; ``!`` marks rows under 5x.

Then the ``--robust`` best rows are re-run on EXTRA_CASES (other forgotten classes, another random
split, another method seed, the 10-epoch model the tests use); ``PICK``, the lowest mean gap over all
eight cases, is the method's default. This guards against settings that win on the tuning split by
luck (neggrad-plus is the method where that matters).

Run (about 10 CPU minutes; 20-30 wall minutes on a busy 2-core machine):
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tune_finetuning.py
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tune_finetuning.py --methods salun unsir"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from unlearnkit.data import load_dataset, select
from unlearnkit.evaluation import evaluate
from unlearnkit.models import build_model
from unlearnkit.train import TrainConfig, fit
from unlearnkit.unlearning import unlearn

RECIPE = TrainConfig(epochs=30, batch_size=64, lr=0.05)  # the digits/mlp recipe (train.RECIPES)
SPECS = ("random:0.1", "class:3")
SEED = 1
MIN_SPEEDUP = 5.0

# method -> {parameter: values}; every combination is one row.
GRIDS: dict[str, dict[str, list]] = {
    "neggrad-plus": {"epochs": [1, 2], "lr_scale": [0.6, 1.0, 2.0, 3.0], "alpha": [0.9, 0.95, 0.97],
                     "clip_grad": [0.5, 1.0], "schedule": ["constant", "cosine"]},
    "random-label": {"epochs": [1, 2, 3], "lr_scale": [0.05, 0.1, 0.2, 0.4]},
    "boundary-shrink": {"epsilon": [0.1, 0.5], "epochs": [2, 5, 10], "lr_scale": [0.01, 0.02, 0.05]},
    "l1-sparse": {"epochs": [2, 3, 5], "lr_scale": [0.4, 1.0, 2.0], "l1": [1e-3, 2e-3, 5e-3, 1e-2]},
    "salun": {"epochs": [1, 2, 3], "lr_scale": [0.05, 0.1, 0.2, 0.4]},
    "unsir": {"noise_size": [8, 16, 32], "noise_copies": [1, 4], "impair_lr_scale": [1.0, 2.0, 3.0],
              "repair_lr_scale": [0.5, 1.0]},
}

# Robustness check of the best rows: (model's training epochs, forget spec, split seed, method seed).
# Other forgotten classes, another random split, and the 10-epoch model the test suite uses.
EXTRA_CASES = [(30, "class:5", SEED, SEED), (30, "class:8", SEED, SEED), (30, "random:0.1", 2, SEED),
               (30, "class:3", SEED, 2), (10, "class:3", 0, 0), (10, "random:0.1", 0, 0)]


def timed(fn, repeats: int):
    """(result of the last call, fewest CPU seconds over ``repeats`` calls).

    CPU time of this single-threaded process, not wall time: on a shared machine wall time swings
    with other people's jobs, CPU time does not, and with one thread it is what the wall time would
    be on an idle core.
    """
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="*", default=list(GRIDS))
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats (fastest counts)")
    parser.add_argument("--robust", type=int, default=6, help="re-check this many best rows on EXTRA_CASES")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("digits")
    model = fit(build_model("mlp", data.spec, seed=0), data.train, RECIPE, progress=False)
    splits = {spec: select(data.train, spec, seed=SEED) for spec in SPECS}
    refs, retrain_seconds = {}, {}

    def time_retrain() -> None:  # run at the start and the end; the fastest run counts
        for spec, split in splits.items():
            result, seconds = timed(lambda s=split: unlearn(model, s, "retrain", train_config=RECIPE,
                                                            progress=False, seed=0), args.repeats + 1)
            refs[spec] = evaluate(result.model, split, data.test)
            retrain_seconds[spec] = min(seconds, retrain_seconds.get(spec, float("inf")))

    time_retrain()
    models = {RECIPE.epochs: model}
    extra_refs = {}

    def extra_gap(case: tuple, name: str, params: dict) -> float:
        epochs, spec, split_seed, method_seed = case
        recipe = RECIPE.with_(epochs=epochs)
        if epochs not in models:
            models[epochs] = fit(build_model("mlp", data.spec, seed=0), data.train, recipe, progress=False)
        split = select(data.train, spec, seed=split_seed)
        key = (epochs, spec, split_seed)
        if key not in extra_refs:
            extra_refs[key] = evaluate(unlearn(models[epochs], split, "retrain", train_config=recipe,
                                               progress=False).model, split, data.test)
        result = unlearn(models[epochs], split, name, train_config=recipe, holdout=data.test, progress=False,
                         seed=method_seed, **params)
        return evaluate(result.model, split, data.test, reference=extra_refs[key]).gap["average"]

    results = {}
    for name in args.methods:
        grid = GRIDS[name]
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            for spec, split in splits.items():
                result, seconds = timed(lambda s=split, n=name, p=params: unlearn(
                    model, s, n, train_config=RECIPE, holdout=data.test, progress=False, seed=SEED, **p),
                    args.repeats)
                results[name, tuple(values), spec] = (evaluate(result.model, split, data.test,
                                                                reference=refs[spec]), seconds)
    time_retrain()

    for spec, split in splits.items():
        ref = refs[spec].metrics
        orig = evaluate(model, split, data.test, reference=refs[spec])
        print(f"retrain {spec}: {retrain_seconds[spec]:.3f}s forget {ref['forget_accuracy']:.4f} "
              f"retain {ref['retain_accuracy']:.4f} test {ref['test_accuracy']:.4f} "
              f"mia_eff {ref['mia_efficacy']:.4f}; the original model's gap.average {orig.gap['average']:.4f}")
    head = f"{'method':16} {'config':48} {'spec':10} {'gap':>6} {'forget':>6} {'retain':>6} {'test':>6} " \
           f"{'mia':>6} {'speed':>6} {'mean':>6}"
    for name in args.methods:
        grid = GRIDS[name]
        print(f"\n{head}")
        rows = []
        for values in itertools.product(*grid.values()):
            cells = [(spec, *results[name, tuple(values), spec]) for spec in SPECS]
            cells = [(spec, report, retrain_seconds[spec] / seconds) for spec, report, seconds in cells]
            mean = sum(r.gap["average"] for _, r, _ in cells) / len(cells)
            ok = all(speed >= MIN_SPEEDUP for _, _, speed in cells)
            rows.append((mean, ok, dict(zip(grid, values, strict=True)), cells))
        best = min((r for r in rows if r[1]), key=lambda r: r[0], default=None)
        for row in rows:
            mean, ok, params, cells = row
            config = " ".join(f"{k}={v}" for k, v in params.items())
            mark = "*" if row is best else ("!" if not ok else " ")
            for spec, r, speed in cells:
                m = r.metrics
                print(f"{name:16} {config:48} {spec:10} {r.gap['average']:6.4f} {m['forget_accuracy']:6.3f} "
                      f"{m['retain_accuracy']:6.3f} {m['test_accuracy']:6.3f} {m['mia_efficacy']:6.3f} "
                      f"{speed:6.1f} {mean:6.4f}{mark}")
        finalists = sorted((r for r in rows if r[1]), key=lambda r: r[0])[:args.robust]
        if finalists:
            print(f"robustness of the {len(finalists)} best rows over the 2 tuning cases and {len(EXTRA_CASES)} more "
                  "(epochs/spec/split seed/method seed: gap); pick = lowest mean")
            checked = []
            for mean, _, params, _ in finalists:
                gaps = [mean] * len(SPECS)  # the tuning cases' mean counts once per case
                cells = []
                for case in EXTRA_CASES:
                    gap = extra_gap(case, name, params)
                    gaps.append(gap)
                    cells.append(f"{case[0]}/{case[1]}/{case[2]}/{case[3]}: {gap:.3f}")
                checked.append((sum(gaps) / len(gaps), max(gaps), params, cells))
            pick = min(checked, key=lambda c: c[0])
            for c in checked:
                config = " ".join(f"{k}={v}" for k, v in c[2].items())
                print(f"  {config:48} mean {c[0]:.4f} max {c[1]:.3f}{' PICK' if c is pick else ''} | "
                      + " | ".join(c[3]))


if __name__ == "__main__":
    main()
