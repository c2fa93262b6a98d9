"""Time ``fit_ensemble`` against one ``fit`` call per seed, on the same data, recipe and seeds.

Trains ``--models`` models (default 16) twice in one process: once together with ``fit_ensemble``
(torch.func: stacked parameters, vmap over functional_call) and once one by one with ``fit``. Prints
both wall and process CPU times (with one thread, CPU time is the steadier measure where other jobs share
the cores), their ratios (target: at least 3x on two CPU cores), the largest absolute weight
difference between the two sets of models (float rounding only: the paths agree to ~1e-15 in float64,
see tests/test_ensemble.py) and how many test predictions agree.

Run (digits MLP with its recipe, ~1 minute on two shared cores):
    nice -n 19 .venv/bin/python benchmarks/bench_ensemble.py
Fashion-MNIST cnn on a 3000-sample subset (needs /usr/share/datasets/fashion-mnist):
    nice -n 19 .venv/bin/python benchmarks/bench_ensemble.py --fashion
Options: ``--models N``, ``--epochs E`` (default: the dataset/model recipe's), ``--train-size K``,
``--hidden 64`` (the digits mlp's hidden widths; default the registry's (256, 128)), ``--threads T``
(torch intra-op threads; default 1: these models are too small to gain from more, and a busy machine
makes extra threads spin).

What to expect on CPU: vectorizing saves the per-step Python and dispatch overhead of each model, not
arithmetic. The digits mlp with hidden (256, 128) is already close to compute-bound one model at a time,
so the gain is modest; with ``--hidden 64`` the overhead dominates and the gain is large. Conv layers
under vmap become grouped convolutions, which are slower on CPU than one model at a time (``--fashion``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from unlearnkit.data import load_dataset
from unlearnkit.models import build_model
from unlearnkit.train import EnsembleFallbackWarning, default_recipe, fit, fit_ensemble, predict_logits

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist installs it


def max_weight_difference(a: list[torch.nn.Module], b: list[torch.nn.Module]) -> float:
    return max(
        (x - y).abs().max().item()
        for ma, mb in zip(a, b, strict=True)
        for x, y in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True)
    )


def timed(run):
    """``run()``, its wall seconds and this process's CPU seconds (steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--fashion", action="store_true", help="Fashion-MNIST cnn instead of the digits mlp")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's epochs")
    parser.add_argument("--train-size", type=int, default=None, help="default: all of digits, 3000 of Fashion-MNIST")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden widths of the digits mlp")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true",
                        help="also profile one epoch of fit_ensemble (torch.profiler, top operators by own time) "
                             "and time the first layer's product as one bmm against one mm per model")
    parser.add_argument("--vmap", action="store_true", help="the vmap path for MLPs too (the path before issue 19; "
                        "by default plain MLPs run as batched matmuls)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.vmap:
        import unlearnkit.train as train_module

        train_module._plain_mlp_layers = lambda model: None

    if args.fashion:
        if not FASHION_DIR.exists():
            raise SystemExit(f"{FASHION_DIR} not found; install dataset-fashion-mnist or drop --fashion")
        source, model_name = "fashion-mnist", "cnn"
        bundle = load_dataset(source, train_size=args.train_size or 3000)
    else:
        source, model_name = "digits", "mlp"
        bundle = load_dataset(source, train_size=args.train_size)
    config = default_recipe(source, model_name)
    if args.epochs is not None:
        config = config.with_(epochs=args.epochs)
    model_kwargs = {} if args.hidden is None or args.fashion else {"hidden": tuple(args.hidden)}
    seeds = list(range(args.models))
    label = f"{source} {model_name}" + (f" {model_kwargs}" if model_kwargs else "")
    print(f"{label}: {len(bundle.train)} samples, {args.models} models, {config}, "
          f"{torch.get_num_threads()} thread(s)")

    def build(seed: int) -> torch.nn.Module:
        return build_model(model_name, bundle.spec, seed=seed, **model_kwargs)

    # one-time costs (torch.func's first transform, first dispatch of each kernel) are timed apart
    start = time.perf_counter()
    warm = bundle.train.subset(torch.arange(min(64, len(bundle.train))))
    fit_ensemble(build, warm, config.with_(epochs=1), 2, device="cpu", progress=False, vectorize=True)
    fit(build(0), warm, config.with_(epochs=1), device="cpu", progress=False)
    print(f"warm-up (once per process, not counted below): {time.perf_counter() - start:.2f} s")

    def train_together() -> list[torch.nn.Module]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", EnsembleFallbackWarning)  # a silent fallback would time fit twice
            return fit_ensemble(build, bundle.train, config, args.models, seeds, device="cpu", progress=False,
                                vectorize=True)

    def train_one_by_one() -> list[torch.nn.Module]:
        return [fit(build(s), bundle.train, config.with_(seed=s), device="cpu", progress=False) for s in seeds]

    together, ensemble_wall, ensemble_cpu = timed(train_together)
    one_by_one, sequential_wall, sequential_cpu = timed(train_one_by_one)
    print(f"{'':20}{'wall s':>9}{'CPU s':>9}")
    print(f"{'fit_ensemble:':20}{ensemble_wall:9.2f}{ensemble_cpu:9.2f}")
    print(f"{f'{args.models} x fit:':20}{sequential_wall:9.2f}{sequential_cpu:9.2f}")
    print(f"{'speed-up:':20}{sequential_wall / ensemble_wall:8.2f}x{sequential_cpu / ensemble_cpu:8.2f}x")
    print(f"{'max |weight diff|:':20}{max_weight_difference(together, one_by_one):9.2e}")
    agree = min(
        float((predict_logits(a, bundle.test).argmax(1) == predict_logits(b, bundle.test).argmax(1)).float().mean())
        for a, b in zip(together, one_by_one, strict=True)
    )
    print(f"{'test predictions:':20}{100 * agree:8.2f}% identical (worst model)")
    if not args.fashion:
        matmul_floor(one_by_one[0], config.batch_size, sequential_wall / (args.models * steps(len(bundle.train),
                                                                                          config)))
    if args.profile:
        profile(build, bundle.train, config, seeds, args.models)


def profile(build, train, config, seeds: list[int], models: int) -> None:
    """One epoch of ``fit_ensemble`` under torch.profiler: the operators that take the time (per step), and the
    first linear layer's product for all models as one ``bmm`` against one ``mm`` per model."""
    one = config.with_(epochs=1)
    with torch.profiler.profile() as prof:
        fit_ensemble(build, train, one, models, seeds, device="cpu", progress=False, vectorize=True)
    per_step = steps(len(train), one)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    print(f"\nprofile of one epoch ({per_step} steps of {models} models; ms per step, own time, profiler on):")
    for event in rows:
        print(f"  {event.key:<32}{event.self_cpu_time_total / 1e3 / per_step:8.2f}")
    print(f"  {'all operators':<32}{total / 1e3 / per_step:8.2f}")
    layer = next(m for m in build(0).modules() if isinstance(m, torch.nn.Linear))
    h = torch.randn(models, config.batch_size, layer.in_features)
    w = torch.randn(models, layer.out_features, layer.in_features)

    def clock(run, repeats: int = 200) -> float:
        for _ in range(10):
            run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return (time.perf_counter() - start) / repeats * 1e6

    batched = clock(lambda: torch.bmm(h, w.transpose(1, 2)))
    looped = clock(lambda: [h[i] @ w[i].T for i in range(models)])
    print(f"first layer's product for {models} models: one bmm {batched:.0f} us, one mm per model {looped:.0f} us")


def steps(n: int, config) -> int:
    return config.epochs * -(-n // config.batch_size)


def matmul_floor(model: torch.nn.Module, batch: int, step_seconds: float, repeats: int = 300) -> None:
    """Where a sequential step's time goes: the MLP's matrix products alone (per linear layer: the forward product
    and the two of the backward pass, at the recipe's batch) against the measured mean step of ``fit``. On a CPU
    thread a vectorised ensemble does the same products, so ``step / products`` bounds its speed-up."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(batch, m.in_features) for m in layers]
    grads = [torch.randn(batch, m.out_features) for m in layers]
    weights = [m.weight.detach().clone() for m in layers]

    def products() -> None:
        for x, g, w in zip(inputs, grads, weights, strict=True):
            x @ w.T, g @ w, g.T @ x  # noqa: B018 - timed for their cost

    for _ in range(20):
        products()
    blocks = []
    for _ in range(5):  # the fastest of five blocks: the lowest floor, so the bound below errs on the high side
        start = time.perf_counter()
        for _ in range(repeats // 5):
            products()
        blocks.append((time.perf_counter() - start) / (repeats // 5))
    floor = min(blocks)
    print(f"{'per step:':20}fit {step_seconds * 1e6:.0f} us, of which its matrix products alone {floor * 1e6:.0f} us "
          f"({100 * floor / step_seconds:.0f}%): a vectorised ensemble that removed every other cost, its batched "
          f"products running at this rate, would be at most {step_seconds / floor:.2f}x faster on "
          f"{torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
