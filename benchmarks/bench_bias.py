"""Attribute removal on biased data: every attribute method against the original and retrain-balanced.

    OMP_NUM_THREADS=1 python benchmarks/bench_bias.py --dataset colored-fashion-mnist --rho 0.99 --seeds 0 1 2 \\
        --train-size 10000 --out docs/results/bias/cfm-0.99.json
    OMP_NUM_THREADS=1 python benchmarks/bench_bias.py --dataset biased-tabular --rho 0.9 --seeds 0 1 2 \\
        --out docs/results/bias/tabular-0.9.json
    OMP_NUM_THREADS=1 python benchmarks/bench_bias.py --dataset colored-fashion-mnist --rho 0.99 --seeds 0 1 2 3 4 \\
        --train-size 10000 --methods grl --stability --no-reference --out docs/results/bias/grl-stability.json

For each seed: the data (the source's ``seed`` option and ``rho``), the original trained on it with the dataset's
default recipe (seeded), ``retrain-balanced`` (the reference) and every attribute method at its defaults, each
through ``remove_attribute`` with the bundle's validation split; then ``bias_report`` on the test split (attribute
independent of the label). Prints one table (mean ± std over seeds) with every bias metric, the seconds and the
speedup against ``retrain-balanced`` (both timed in this process), and writes every row to ``--out`` as JSON.
``--stability`` also runs each method with ``stabilise=false`` (grl's stabilisers off) and reports both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

from unlearnkit.data import load_dataset
from unlearnkit.evaluation import BIAS_KEYS, bias_report
from unlearnkit.methods import methods_of_kind
from unlearnkit.runs import train_model
from unlearnkit.train import default_recipe
from unlearnkit.unlearning import remove_attribute

COLUMNS = ("unbiased_accuracy", "bias_aligned_accuracy", "bias_conflicting_accuracy", "worst_group_accuracy",
           "leakage", "counterfactual_flip_rate", "demographic_parity_difference", "equalized_odds_difference")
SHORT = {"unbiased_accuracy": "unbiased", "bias_aligned_accuracy": "aligned", "bias_conflicting_accuracy": "conflict",
         "worst_group_accuracy": "worst grp", "leakage": "leakage", "counterfactual_flip_rate": "flip",
         "demographic_parity_difference": "DP diff", "equalized_odds_difference": "EO diff"}


def run_seed(dataset: str, rho: float, seed: int, train_size: int | None, methods: list[str], stability: bool,
             attribute: str, reference: bool = True) -> list[dict]:
    options = {"rho": rho, "seed": seed}
    bundle = load_dataset(dataset, data_options=options, train_size=train_size)
    model_name = "cnn" if dataset == "colored-fashion-mnist" else "mlp"
    recipe = default_recipe(dataset, model_name).with_(seed=seed)
    start = time.perf_counter()
    original = train_model(bundle, model_name, recipe, progress=False).model
    rows = [{"method": "original", "seed": seed, "seconds": time.perf_counter() - start,
             **bias_report(original, bundle, attribute, seed=seed)["bias"]}]
    ref_seconds = None
    if reference:
        result = remove_attribute(original, bundle, attribute, "retrain-balanced", train_config=recipe, seed=seed,
                                  progress=False)
        ref_seconds = result.seconds
        rows.append({"method": "retrain-balanced", "seed": seed, "seconds": ref_seconds, "speedup": 1.0,
                     **bias_report(result.model, bundle, attribute, seed=seed)["bias"]})
    variants = [(m, {}) for m in methods] + ([(m, {"stabilise": False}) for m in methods if m == "grl"]
                                             if stability else [])
    for row in rows:
        print(f"  seed {seed} {row['method']}: {row['seconds']:.1f}s, unbiased {row['unbiased_accuracy']:.4f}",
              file=sys.stderr, flush=True)
    for method, params in variants:
        result = remove_attribute(original, bundle, attribute, method, train_config=recipe, seed=seed,
                                  progress=False, **params)
        label = method + ("" if not params else " " + ",".join(f"{k}={v}" for k, v in params.items()))
        rows.append({"method": label, "seed": seed, "seconds": result.seconds,
                     "speedup": None if ref_seconds is None else ref_seconds / max(result.seconds, 1e-9),
                     "notes": result.notes,
                     **bias_report(result.model, bundle, attribute, seed=seed)["bias"]})
        print(f"  seed {seed} {label}: {result.seconds:.1f}s, unbiased {rows[-1]['unbiased_accuracy']:.4f}, "
              f"worst group {rows[-1]['worst_group_accuracy']:.4f}, leakage {rows[-1]['leakage']:.4f}",
              file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    head = "| method | seeds | " + " | ".join(SHORT[c] for c in COLUMNS) + " | seconds | speedup |"
    lines = [head, "|---|---:|" + "---:|" * (len(COLUMNS) + 2)]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]

        def cell(key: str, mine: list[dict] = mine) -> str:
            values = [r[key] for r in mine if r.get(key) is not None]
            if not values:
                return "–"
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.fmean(values):.4f} ± {sd:.4f}"

        speed = cell("speedup") if method != "original" else ""
        lines.append(f"| {method} | {len(mine)} | " + " | ".join(cell(c) for c in COLUMNS) +
                     f" | {cell('seconds')} | {speed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="colored-fashion-mnist")
    parser.add_argument("--rho", type=float, default=0.99)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--methods", default="all", help="comma list of attribute methods, or all")
    parser.add_argument("--stability", action="store_true", help="also grl with stabilise=false")
    parser.add_argument("--no-reference", action="store_true", help="skip retrain-balanced (no speedups)")
    parser.add_argument("--out", default=None, help="write every row here (JSON)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # fairlearn's empty-group warnings on tiny groups
    attribute = "sensitive" if args.dataset == "biased-tabular" else "color"
    methods = [m for m in methods_of_kind("attribute") if m != "retrain-balanced"] if args.methods == "all" else \
        args.methods.split(",")
    rows = []
    for seed in args.seeds:
        rows += run_seed(args.dataset, args.rho, seed, args.train_size, methods, args.stability, attribute,
                         reference=not args.no_reference)
    command = "python benchmarks/bench_bias.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# {command}")
    print(f"# {args.dataset}, rho {args.rho}, attribute {attribute}, train size {args.train_size or 'all'}, "
          f"seeds {args.seeds}; metrics on the test split (attribute independent of the label)")
    print(table(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"command": command, "keys": list(BIAS_KEYS), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
