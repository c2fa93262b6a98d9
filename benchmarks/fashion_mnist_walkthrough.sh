#!/usr/bin/env bash
# The README's Fashion-MNIST walkthrough, run end to end; writes every output to docs/results/.
#   bash benchmarks/fashion_mnist_walkthrough.sh        (needs: apt-get install -y dataset-fashion-mnist)
# Takes about 15 minutes on 2 CPU cores. Figures in the README come from these files.
set -euo pipefail
cd "$(dirname "$0")/.."
UNLEARN=${UNLEARN:-.venv/bin/unlearn}
OUT=docs/results
RUNS=${RUNS:-runs/fm}
mkdir -p "$OUT" "$RUNS"
log() { echo "\$ $*" ; }
{
  log unlearn train --dataset fashion-mnist --model cnn --epochs 3 --seed 0 --out $RUNS/original
  $UNLEARN train --dataset fashion-mnist --model cnn --epochs 3 --seed 0 --out $RUNS/original --force --no-progress 2>&1
  for method in gradient-ascent retrain finetune; do
    log unlearn forget --checkpoint $RUNS/original --forget class:7 --method $method --out $RUNS/$method
    $UNLEARN forget --checkpoint $RUNS/original --forget class:7 --method $method --out $RUNS/$method --force \
      --no-progress 2>&1
  done
  log unlearn evaluate --checkpoint $RUNS/gradient-ascent --forget class:7 --reference $RUNS/retrain --json
  $UNLEARN evaluate --checkpoint $RUNS/gradient-ascent --forget class:7 --reference $RUNS/retrain --json 2>&1
} | tee "$OUT/fm-walkthrough.txt"
# The method-suite tables (docs/METHODS.md): every method, compare's memorising default original
# (10,000 training images, 20 epochs), seed 0 (the defaults were tuned with seed 1).
for spec in class:7 random:0.1; do
  name=fm-cnn-${spec/:/-}
  {
    log unlearn compare --dataset fashion-mnist --model cnn --forget $spec --methods all --markdown
    $UNLEARN compare --dataset fashion-mnist --model cnn --forget "$spec" --methods all --markdown \
      --save "$OUT/$name.json" --no-progress 2>&1
  } | tee "$OUT/$name.md"
done
