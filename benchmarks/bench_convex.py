"""Training the convex models (``logistic``, ``linear``) to their optimum on the shipped datasets, at the defaults.

    OMP_NUM_THREADS=1 python benchmarks/bench_convex.py                  # digits, Fashion-MNIST 3,000 / 12,000 / 60,000
    OMP_NUM_THREADS=1 python benchmarks/bench_convex.py --sizes 12000    # the case of issue 19

For each dataset and training size, the default recipe (``unlearn train --model logistic``: L-BFGS capped at 1,000
iterations, weight decay 1e-3) is solved twice in this process: by L-BFGS alone (the solver before issue 19) and by
L-BFGS handing over to Newton-CG below a gradient norm of 1e-4 (now). Printed: seconds, the final gradient norm of
the mean objective, whether it reaches the optimum certified removal needs (<= 1e-6), the ratio of the seconds,
and the largest difference between the two solutions' weights.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from unlearnkit.data import load_dataset
from unlearnkit.models.convex import AT_OPTIMUM, fit_theta
from unlearnkit.train import default_recipe


def solve(x, y, classes, recipe, newton: bool) -> tuple[torch.Tensor, float, float]:
    start = time.perf_counter()
    theta, grad = fit_theta(x, y, classes, objective="logistic", weight_decay=recipe.weight_decay,
                            max_iter=recipe.epochs, newton=newton)
    return theta, grad, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 12000, 60000],
                        help="Fashion-MNIST training sizes (60000: all)")
    parser.add_argument("--no-digits", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cases = [] if args.no_digits else [("digits", None)]
    cases += [("fashion-mnist", None if n >= 60000 else n) for n in args.sizes]
    print(f"# {' '.join(sys.argv)}")
    print(f"{'data':24s} {'n':>6s} {'L-BFGS s':>9s} {'grad':>9s} {'ok':>3s} {'+Newton s':>9s} {'grad':>9s} {'ok':>3s} "
          f"{'ratio':>6s} {'max |dw|':>9s}")
    for name, size in cases:
        bundle = load_dataset(name, train_size=size)
        x, y = bundle.train.x.flatten(1).double(), bundle.train.y
        recipe = default_recipe(name, "logistic")
        old, g_old, s_old = solve(x, y, bundle.train.num_classes, recipe, newton=False)
        new, g_new, s_new = solve(x, y, bundle.train.num_classes, recipe, newton=True)
        print(f"{name:24s} {len(x):6d} {s_old:9.2f} {g_old:9.2e} {'yes' if g_old <= AT_OPTIMUM else 'no':>3s} "
              f"{s_new:9.2f} {g_new:9.2e} {'yes' if g_new <= AT_OPTIMUM else 'no':>3s} {s_old / s_new:6.2f} "
              f"{float((old - new).abs().max()):9.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
