"""Check every method's claim on a finished defaults-suite bench run (benchmarks/defaults-*.toml).

    OMP_NUM_THREADS=1 unlearn bench benchmarks/defaults-digits.toml --out runs/bench/defaults-digits
    python benchmarks/check_defaults.py benchmarks/defaults-digits.toml runs/bench/defaults-digits [--markdown F]

Two claims, the targets of the defaults issue, per scenario (dataset / model / forget spec), as means over the
config's seeds:
- random or subject forgetting: a method's gap.average to the retrained model is no larger than the untouched
  original's (doing nothing). The original is not a bench cell, so this script evaluates the saved original
  against each split's saved retrained model, exactly as bench evaluates a method.
- class forgetting, for every method whose ``forgets_classes`` flag is set: forget accuracy <= 0.05 and test
  accuracy within 0.05 of the retrained model's.
It prints one table per scenario and a summary line per claim (passes / cases, and the misses by name).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from unlearnkit.bench.config import load_config
from unlearnkit.bench.runner import original_model, short_digest
from unlearnkit.bench.store import ResultStore, default_url
from unlearnkit.data import select
from unlearnkit.evaluation import evaluate
from unlearnkit.methods import METHODS
from unlearnkit.models import load_checkpoint

FORGET_CEILING = 0.05  # class forgetting: forget accuracy at most this (the retrained model's is 0)
TEST_TOLERANCE = 0.05  # class forgetting: test accuracy within this of the retrained model's


def mean(values):
    return statistics.fmean(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--markdown", help="also write the tables to this Markdown file")
    args = parser.parse_args()
    config = load_config(args.config)
    out = Path(args.out)
    rows = ResultStore(default_url(out)).rows()
    lines: list[str] = []
    misses = {"random": [], "class": []}
    counts = {"random": 0, "class": 0}
    for entry in config.datasets:
        current = original_model(entry, out / "models", "cpu")
        bundle = current["bundle"]
        for forget in entry.forget:
            per_method: dict[str, list[dict]] = defaultdict(list)
            original_gaps, retrain_tests = [], []
            whole_classes = None
            for seed in config.seeds:
                split = select(bundle.train, forget, seed=seed)
                whole_classes = split.forgets_whole_classes()
                ref_path = out / "models" / f"retrain-{short_digest(entry.key + forget)}-seed{seed}"
                reference = evaluate(load_checkpoint(ref_path).model, split, bundle.test, seed=seed)
                retrain_tests.append(reference.metrics["test_accuracy"])
                report = evaluate(current["original"], split, bundle.test, reference, seed=seed)
                original_gaps.append(report.gap["average"])
                for r in rows:
                    if r["dataset"] == entry.key and r["forget"] == forget and r["seed"] == seed:
                        per_method[r["method"]].append(r)
            scenario = f"{entry.name} / {entry.model} / {forget}"
            lines += [f"### {scenario} (seeds {list(config.seeds)})", ""]
            if whole_classes:
                retrain_test = mean(retrain_tests)
                lines += [f"retrain test accuracy {retrain_test:.4f}; claim: forget <= {FORGET_CEILING}, test within "
                          f"{TEST_TOLERANCE} of retrain (methods with forgets_classes)", "",
                          "| method | forget | test | gap.avg | claims classes | ok |", "|---|---:|---:|---:|---|---|"]
            else:
                original_gap = mean(original_gaps)
                lines += [f"original (no unlearning) gap.average {original_gap:.4f}; claim: gap <= original's", "",
                          "| method | gap.avg | forget | test | ok |", "|---|---:|---:|---:|---|"]
            for method, rs in sorted(per_method.items(), key=lambda kv: mean([_gap(r) for r in kv[1]])):
                gap = mean([_gap(r) for r in rs])
                forget_acc = mean([r["report"]["forget_accuracy"] for r in rs])
                test_acc = mean([r["report"]["test_accuracy"] for r in rs])
                if method == "retrain":
                    continue
                if whole_classes:
                    claims = METHODS[method].forgets_classes
                    ok = forget_acc <= FORGET_CEILING and abs(test_acc - retrain_test) <= TEST_TOLERANCE
                    if claims:
                        counts["class"] += 1
                        if not ok:
                            misses["class"].append(f"{scenario}: {method} (forget {forget_acc:.3f}, test "
                                                   f"{test_acc:.3f} vs {retrain_test:.3f})")
                    mark = ("yes" if ok else "**no**") if claims else "-"
                    lines.append(f"| {method} | {forget_acc:.4f} | {test_acc:.4f} | {gap:.4f} | "
                                 f"{'yes' if claims else 'no'} | {mark} |")
                else:
                    ok = gap <= original_gap
                    counts["random"] += 1
                    if not ok:
                        misses["random"].append(f"{scenario}: {method} ({gap:.4f} > {original_gap:.4f})")
                    lines.append(f"| {method} | {gap:.4f} | {forget_acc:.4f} | {test_acc:.4f} | "
                                 f"{'yes' if ok else '**no**'} |")
            lines.append("")
    lines += ["## Summary", "",
              f"- random/subject forgetting, gap no larger than the original's: "
              f"{counts['random'] - len(misses['random'])}/{counts['random']} pass",
              *[f"  - miss: {m}" for m in misses["random"]],
              f"- class forgetting (methods that claim it): forget <= {FORGET_CEILING} and test within "
              f"{TEST_TOLERANCE}: {counts['class'] - len(misses['class'])}/{counts['class']} pass",
              *[f"  - miss: {m}" for m in misses["class"]]]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(f"$ python benchmarks/check_defaults.py {args.config} {args.out}\n\n" + text)
    return 0


def _gap(row: dict) -> float:
    return row["report"]["gap"]["average"]


if __name__ == "__main__":
    raise SystemExit(main())
