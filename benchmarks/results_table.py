"""Markdown table of saved `unlearn compare --save FILE.json` results, for the README and docs.

    .venv/bin/python benchmarks/results_table.py docs/results/fm-cnn-class-7.json docs/results/fm-cnn-random-0.1.json \
        --methods retrain,finetune,gradient-ascent

One row per (file, method): forget/retain/test accuracy, MIA efficacy, gap.average to retrain, seconds
and speedup (retrain seconds / method seconds, both measured in the compare process), plus the original
model's row. Without --methods every method in the file is listed, ranked by gap.average.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy")


def rows(path: Path, methods: list[str] | None) -> list[str]:
    data = json.loads(path.read_text())
    spec = data["forget"]
    orig = data["original"]
    out = [f"| {spec} | original | " + " | ".join(f"{orig[c]:.4f}" for c in COLUMNS)
           + f" | {orig['gap']['average']:.4f} | {data['train_seconds']:.1f} (training) | |"]
    names = methods or sorted(data["methods"], key=lambda n: (n != "retrain", data["methods"][n]["gap"]["average"]))
    for name in names:
        if name not in data["methods"]:
            raise SystemExit(f"{path}: no method {name!r}; it has {', '.join(data['methods'])}")
        m = data["methods"][name]
        out.append(f"| {spec} | {name} | " + " | ".join(f"{m[c]:.4f}" for c in COLUMNS)
                   + f" | {m['gap']['average']:.4f} | {m['seconds']:.2f} | {m['speedup']:.1f}x |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--methods", default=None, help="comma list (default: all, ranked by gap.average)")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    print("| forget | method | forget acc | retain acc | test acc | mia_efficacy | gap.average | seconds | speedup |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for path in args.files:
        print("\n".join(rows(path, methods)))


if __name__ == "__main__":
    main()
