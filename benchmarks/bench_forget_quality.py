"""Time the vectorised forget_quality against the slow per-example reference, in one process.

The reference is ``reference_forget_quality`` from ``tests/test_forget_quality.py`` (a Python loop
over examples and right thresholds, numpy over the left ones), so it exists once. Both run on the
same seeded confidences of 2,000 examples x 128 models (shaped like logit-scaled confidences:
a per-example centre and spread, the retrained sample shifted a little), single-threaded. The
reference takes ~0.1 s per example, so it runs on the first ``--subset`` examples and its time is
extrapolated linearly to all of them (the script says so when it does); the two must agree on
every epsilon of that subset.

Run (about a minute on a shared CPU core):
    nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_forget_quality.py
Options: ``--examples``, ``--models``, ``--subset`` (0 = all examples), ``--seed``, ``--device cuda``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.test_forget_quality

from tests.test_forget_quality import reference_forget_quality  # noqa: E402

from unlearnkit.metrics.forget_quality import forget_quality  # noqa: E402


def confidences(n_models: int, n_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(unlearned, retrained)`` confidences of shape ``(n_models, n_examples)``."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(2.0, 2.0, size=n_examples)
    spread = rng.uniform(0.5, 2.0, size=n_examples)
    unlearned = centre + spread * rng.normal(size=(n_models, n_examples))
    retrained = centre + rng.normal(0.0, 0.5, size=n_examples) + spread * rng.normal(size=(n_models, n_examples))
    return unlearned, retrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--models", type=int, default=128)
    parser.add_argument("--subset", type=int, default=100, help="examples the reference runs on; 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the numpy reference is single-threaded too

    unlearned, retrained = confidences(args.models, args.examples, args.seed)
    u = torch.from_numpy(unlearned).to(args.device)
    r = torch.from_numpy(retrained).to(args.device)
    forget_quality(u[:, :4], r[:, :4])  # warm-up: first-call overheads are not what is measured

    start = time.perf_counter()
    fast = forget_quality(u, r)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    fast_s = time.perf_counter() - start

    subset = args.examples if args.subset <= 0 else min(args.subset, args.examples)
    start = time.perf_counter()
    ref_score, ref_eps = reference_forget_quality(unlearned[:, :subset], retrained[:, :subset])
    ref_subset_s = time.perf_counter() - start
    ref_s = ref_subset_s * args.examples / subset

    agree = np.allclose(fast.epsilons[:subset], ref_eps, rtol=1e-12, atol=1e-12)
    sub_fast = forget_quality(unlearned[:, :subset], retrained[:, :subset])
    agree = agree and abs(sub_fast.score - ref_score) <= 1e-12
    print(f"forget_quality on {args.examples} examples x {args.models} models, seed {args.seed}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"  vectorised: {fast_s:8.2f} s   score {fast.score:.6f}")
    if subset < args.examples:
        print(f"  reference:  {ref_s:8.2f} s   EXTRAPOLATED linearly from {ref_subset_s:.2f} s on the first "
              f"{subset} examples")
    else:
        print(f"  reference:  {ref_s:8.2f} s   score {ref_score:.6f}")
    print(f"  speed-up:   {ref_s / fast_s:8.1f}x")
    print(f"  agreement on {subset} examples (epsilons within 1e-12, same score): {'yes' if agree else 'NO'}")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
