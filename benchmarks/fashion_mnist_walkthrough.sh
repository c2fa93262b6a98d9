#!/usr/bin/env bash
# The README's Fashion-MNIST walkthrough, run end to end; writes every output to docs/results/.
#   bash benchmarks/fashion_mnist_walkthrough.sh [walkthrough] [tables]   (default: both)
# (needs: apt-get install -y dataset-fashion-mnist). About 3 + 2 x 5 minutes on 2 CPU cores.
# Figures in the README and docs/METHODS.md come from these files.
# The tables run single-threaded (OMP_NUM_THREADS=1, unless set): on a 2-core machine shared with
# anything else, one thread measures steadier seconds, and speedups are ratios within one process.
set -euo pipefail
cd "$(dirname "$0")/.."
UNLEARN=${UNLEARN:-.venv/bin/unlearn}
OUT=docs/results
RUNS=${RUNS:-runs/fm}
mkdir -p "$OUT" "$RUNS"
log() { echo "\$ $*" ; }
PARTS=${*:-walkthrough tables}
if [[ " $PARTS " == *" walkthrough "* ]]; then
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
fi
[[ " $PARTS " == *" tables "* ]] || exit 0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
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
