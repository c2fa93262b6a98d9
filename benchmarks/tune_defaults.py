"""Grid-search a method's defaults against the claims of the defaults suite, on a finished suite run.

    OMP_NUM_THREADS=1 unlearn bench benchmarks/defaults-digits.toml --out runs/bench/defaults-digits
    python benchmarks/tune_defaults.py benchmarks/defaults-digits.toml runs/bench/defaults-digits \\
        --method neggrad-plus --target samples --grid lr_scale=0.5,1,2 --grid epochs=1,2

Reuses the run's saved originals and retrained references (nothing retrains). For every grid point it runs the
method on every split of the target kind (``samples``: the random and subject forget specs; ``classes``: the
class specs) and checks the claims of benchmarks/check_defaults.py per scenario, as means over the seeds:
samples, gap.average no larger than the untouched original's; classes, forget accuracy <= 0.05 and test
accuracy within 0.05 of retraining's. Prints one row per grid point (mean gap per scenario, the claim per
scenario, the mean speedup over retraining), points that pass everything first, by mean gap.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

from check_defaults import FORGET_CEILING, TEST_TOLERANCE  # the claims' bounds, declared once (same folder)

from unlearnkit.bench.config import load_config
from unlearnkit.bench.runner import original_model, short_digest
from unlearnkit.bench.store import ResultStore, default_url
from unlearnkit.data import select
from unlearnkit.evaluation import evaluate
from unlearnkit.methods import METHODS
from unlearnkit.models import load_checkpoint
from unlearnkit.unlearning import unlearn


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key] = [v for v in values.split(",") if v]
    return grid


def splits(config, out: Path, target: str, models: set[str] | None):
    """(scenario name, seed, original, split, test set, reference report, original gap, retrain seconds)."""
    store = ResultStore(default_url(out))
    seconds = {(r["dataset"], r["forget"], r["seed"]): r["seconds"] for r in store.rows() if r["method"] == "retrain"}
    for entry in config.datasets:
        if models and entry.model not in models:
            continue
        current = original_model(entry, out / "models", "cpu")
        for forget in entry.forget:
            for seed in config.seeds:
                split = select(current["bundle"].train, forget, seed=seed)
                if split.forgets_whole_classes() != (target == "classes"):
                    break
                ref = load_checkpoint(out / "models" / f"retrain-{short_digest(entry.key + forget)}-seed{seed}")
                reference = evaluate(ref.model, split, current["bundle"].test, seed=seed)
                original_gap = evaluate(current["original"], split, current["bundle"].test, reference,
                                        seed=seed).gap["average"]
                yield (f"{entry.model} {forget[:12]}", seed, current, split, reference, original_gap,
                       seconds[(entry.key, forget, seed)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--method", required=True)
    parser.add_argument("--target", choices=("samples", "classes"), required=True)
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeat)")
    parser.add_argument("--models", help="comma list of the config's models to use (default: all)")
    args = parser.parse_args()
    config = load_config(args.config)
    cls = METHODS.get(args.method)
    grid = parse_grid(args.grid)
    cases = list(splits(config, Path(args.out), args.target, set(args.models.split(",")) if args.models else None))
    scenarios = sorted({c[0] for c in cases})
    rows = []
    for values in itertools.product(*grid.values()) if grid else [()]:
        params = dict(zip(grid, values, strict=True))
        per: dict[str, dict[str, list[float]]] = {s: {"gap": [], "orig": [], "forget": [], "test": [], "rtest": [],
                                                     "speed": []} for s in scenarios}
        for name, seed, current, split, reference, original_gap, retrain_seconds in cases:
            if cls.needs_conv and not any(m.__class__.__name__ == "Conv2d" for m in current["original"].modules()):
                continue
            result = unlearn(current["original"], split, args.method, train_config=current["config"], device="cpu",
                             seed=seed, holdout=current["bundle"].test, progress=False, **params)
            report = evaluate(result.model, split, current["bundle"].test, reference, seed=seed)
            d = per[name]
            d["gap"].append(report.gap["average"])
            d["orig"].append(original_gap)
            d["forget"].append(report.metrics["forget_accuracy"])
            d["test"].append(report.metrics["test_accuracy"])
            d["rtest"].append(reference.metrics["test_accuracy"])
            d["speed"].append(retrain_seconds / max(result.seconds, 1e-9))
        cells, passes, gaps, speeds = [], [], [], []
        for s in scenarios:
            d = per[s]
            if not d["gap"]:
                continue
            m = {k: statistics.fmean(v) for k, v in d.items()}
            ok = (m["gap"] <= m["orig"]) if args.target == "samples" else (
                m["forget"] <= FORGET_CEILING and abs(m["test"] - m["rtest"]) <= TEST_TOLERANCE)
            passes.append(ok)
            gaps.append(m["gap"])
            speeds.append(m["speed"])
            detail = f"{m['gap']:.4f}/{m['orig']:.4f}" if args.target == "samples" else \
                f"f{m['forget']:.3f} t{m['test'] - m['rtest']:+.3f}"
            cells.append(f"{detail}{'' if ok else '!'}")
        rows.append((all(passes), statistics.fmean(gaps), params, cells, statistics.fmean(speeds)))
        print(f"{'PASS' if all(passes) else 'miss'} gap {statistics.fmean(gaps):.4f} x{statistics.fmean(speeds):.1f} "
              f"{params}: " + "  ".join(cells), file=sys.stderr, flush=True)
    print(f"# {args.method}, target {args.target}; scenarios: {', '.join(scenarios)}")
    print("# per scenario: " + ("mean gap / original's gap" if args.target == "samples" else
                                "forget accuracy, test accuracy minus retrain's") + "; '!' marks a missed claim")
    for ok, gap, params, cells, speed in sorted(rows, key=lambda r: (not r[0], r[1])):
        print(f"{'PASS' if ok else 'miss'}  gap {gap:.4f}  x{speed:5.1f}  {params}  " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
