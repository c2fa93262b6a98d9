#!/usr/bin/env bash
# The Fashion-MNIST tuning runs behind the method defaults (docs/METHODS.md), on the tuning seed 1:
# every method at its defaults, then the grids that moved a default. Tables go to docs/results/tuning/.
#   bash benchmarks/tune_fashion_grids.sh        (needs: apt-get install -y dataset-fashion-mnist; ~20 min on 2 cores)
# The original (10,000 images, 20 epochs: compare's memorising default) and each retrained reference are
# cached under runs/tune/, so a second run only repeats the method runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=docs/results/tuning
mkdir -p "$OUT"
tune() {  # tune SPEC NAME GRID
  echo "\$ python benchmarks/tune_fashion.py --train-size 10000 --epochs 20 --forget $1 --seed 1 --grid '$3'"
  OMP_NUM_THREADS=1 $PY benchmarks/tune_fashion.py --train-size 10000 --epochs 20 --forget "$1" --seed 1 --grid "$3"
}
ALL=$($PY -c "import json; from unlearnkit.methods import METHODS; print(json.dumps({m: [{}] for m in METHODS if m != 'retrain'}))")
for spec in class:7 random:0.1; do
  tune "$spec" defaults "$ALL" | tee "$OUT/fm-${spec/:/-}-defaults.md"
done
tune class:7 grid '{"gradient-ascent": [{"lr_scale": 0.2}, {"lr_scale": 0.1}, {"lr_scale": 0.05}, {"lr_scale": 0.2, "retain_weight": 0.5}],
  "boundary-shrink": [{"epochs": 2}, {"epochs": 3, "lr_scale": 0.02}],
  "influence": [{"fisher_samples": 512}, {"fisher_samples": 512, "scale": 0.5}, {"scale": 0.7}, {"scale": 0.5}]}' \
  | tee "$OUT/fm-class-7-grid.md"
tune random:0.1 grid '{"influence": [{"fisher_samples": 512}, {"fisher_samples": 512, "scale": 0.5}, {"fisher_samples": 1024},
  {"fisher_samples": 4096}, {"scale": 1.2}, {"damping": 0.005, "scale": 0.8},
  {"fisher_samples": 512, "repair_epochs": 1, "repair_lr_scale": 0.02}, {"repair_epochs": 1, "repair_lr_scale": 0.02}],
  "noise-reinit": [{"noise_std": 1.0}, {"noise_std": 1.0, "lr_scale": 2.0}],
  "targeted-reinit": [{"epochs": 1}, {"epochs": 2}], "neggrad-plus": [{"alpha": 0.98}],
  "finetune": [{"lr_scale": 2.0}], "ssd": [{"alpha": 1.0}], "eu-k": [{"k": 2, "epochs": 2}]}' \
  | tee "$OUT/fm-random-0.1-grid.md"
# scrub, neggrad-plus and prune-reinit: their digits defaults lose utility on the Fashion-MNIST cnn
for spec in class:7 random:0.1; do
  tune "$spec" grid '{"scrub": [{"lr_scale": 0.2}, {"lr_scale": 0.1}, {"lr_scale": 0.2, "max_epochs": 1}, {"lr_scale": 0.1, "max_epochs": 1}], "neggrad-plus": [{"lr_scale": 1.0}, {"lr_scale": 0.5}, {"lr_scale": 1.0, "alpha": 0.98}, {"lr_scale": 0.5, "alpha": 0.98}], "prune-reinit": [{"lr_scale": 1.0}, {"lr_scale": 0.5}, {"lr_scale": 1.0, "prune_fraction": 0.9}, {"lr_scale": 0.5, "prune_fraction": 0.9}]}' | tee "$OUT/fm-${spec/:/-}-scrub-neggrad-prune.md"
done
