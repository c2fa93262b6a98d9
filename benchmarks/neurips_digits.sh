#!/usr/bin/env bash
# docs/EVALUATION.md's NeurIPS-2023 figures: `unlearn neurips` on digits with N=32 models per population.
#   bash benchmarks/neurips_digits.sh [SPEC] [METHODS...]     (default: random:0.1; retrain finetune gradient-ascent salun influence)
# Reference models are cached in runs/neurips-cache, so a second run only repeats the unlearning runs.
set -euo pipefail
cd "$(dirname "$0")/.."
UNLEARN=${UNLEARN:-.venv/bin/unlearn}
SPEC=${1:-random:0.1}
shift || true
METHODS=${*:-retrain finetune gradient-ascent salun influence}
OUT=docs/results
RUNS=${RUNS:-runs/neurips}
mkdir -p "$OUT" "$RUNS"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
name=neurips-digits-${SPEC/:/-}
{
  echo "\$ unlearn train --dataset digits --out $RUNS/original"
  $UNLEARN train --dataset digits --out "$RUNS/original" --force --no-progress 2>&1
  for method in $METHODS; do
    echo "\$ unlearn neurips --checkpoint $RUNS/original --forget $SPEC --method $method --models 32"
    $UNLEARN neurips --checkpoint "$RUNS/original" --forget "$SPEC" --method "$method" --models 32 \
      --cache-dir runs/neurips-cache --no-progress --save "$OUT/$name-$method.json" 2>&1
  done
} | tee "$OUT/$name.txt"
