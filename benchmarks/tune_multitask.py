"""Settings of a method on one trained original, scenario by scenario: how the multi-task defaults were chosen.

    OMP_NUM_THREADS=2 python benchmarks/tune_multitask.py --dataset multi-fashion-mnist --train-size 6000 \\
        --method interference-aware --grid '{}' '{"lr_scale": 0.2}' '{"retain_weight": 0}'
    OMP_NUM_THREADS=2 python benchmarks/tune_multitask.py --dataset digits --specs random:0.1,class:5 \\
        --method pcgrad --grid '{"forget_weight": 1.0}' '{"forget_weight": 0.5}'

Trains the source's default model with its default recipe (``--seed``), retrains the exact reference once per
scenario, then runs the method with each ``--grid`` setting (a JSON object of parameters; ``{}``: the defaults) and
prints, per run: speedup against that retrain, seconds, and for a multi-task model the UIS with its per-task parts,
for a single-task one the test accuracy and gap.average to retrain beside the untouched original's.
"""

from __future__ import annotations

import argparse
import json

from unlearnkit.bench.compare import warm_up_optimizers
from unlearnkit.data import load_dataset, select
from unlearnkit.data.sources import get_source
from unlearnkit.evaluation import evaluate
from unlearnkit.models.multitask import is_multitask
from unlearnkit.runs import train_model
from unlearnkit.train import default_recipe
from unlearnkit.unlearning import unlearn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="multi-digits")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="interference-aware")
    parser.add_argument("--specs", default="", help="comma list of forget specs (default: random 5% and class 3, "
                        "full-task and on the first task)")
    parser.add_argument("--grid", nargs="+", default=["{}"], help="JSON objects of parameters, one run each")
    args = parser.parse_args(argv)
    bundle = load_dataset(args.dataset, train_size=args.train_size)
    source = get_source(args.dataset)
    recipe = default_recipe(args.dataset, source.default_model).with_(seed=args.seed)
    original = train_model(bundle, source.default_model, recipe, progress=False).model
    multi = is_multitask(original)
    first = source.tasks[0][0] if multi else None
    specs = [s for s in args.specs.split(",") if s] or (
        ["random:0.05", f"random:0.05@{first}", "class:3", f"class:3@{first}"] if multi else ["random:0.1", "class:3"])
    against = {"original": original} if multi else {}
    warm_up_optimizers()
    for spec in specs:
        split = select(bundle.train, spec, seed=args.seed)
        ref = unlearn(original, split, "retrain", train_config=recipe, seed=args.seed)
        ref_report = evaluate(ref.model, split, bundle.test, seed=args.seed, **against)
        untouched = evaluate(original, split, bundle.test, ref_report, seed=args.seed, **against)
        head = f"UIS {untouched.uis:.4f}, retrain UIS {ref_report.uis:.4f}" if multi else \
            f"gap {untouched.gap['average']:.4f}, test {untouched.metrics['test_accuracy']:.4f}"
        print(f"{spec}: original {head}; retrain {ref.seconds:.1f}s", flush=True)
        for setting in args.grid:
            params = json.loads(setting)
            result = unlearn(original, split, args.method, train_config=recipe, seed=args.seed, holdout=bundle.test,
                             **params)
            report = evaluate(result.model, split, bundle.test, ref_report, seed=args.seed, **against)
            if multi:
                parts = {k: round(v, 4) for k, v in report.uis_components.items()
                         if k.endswith(".uis") or k == "interference"}
                figures = f"UIS {report.uis:.4f} {parts}"
            else:
                figures = f"gap {report.gap['average']:.4f}, test {report.metrics['test_accuracy']:.4f}"
            print(f"  {args.method} {params}: x{ref.seconds / max(result.seconds, 1e-9):.1f} ({result.seconds:.1f}s) "
                  f"{figures}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
