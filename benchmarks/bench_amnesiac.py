"""Amnesiac unlearning against retraining: storage, time, and accuracies, on digits and Fashion-MNIST.

For each dataset the script trains one original model in this process plainly (after a warm-up run),
recording float32 updates and recording float16 updates (``unlearn train --record-updates``), and reports

- storage: MB on disk of the recorded updates, and their ratio to the model's weights, float32 vs float16,
  and what recording costs in training time (ratio to the plain run);
- for each forget set (a random 1% and one class): the time of ``amnesiac`` (subtraction + the default
  repair) as a ratio to full retraining on the retain set (``retrain``, the exact reference, timed here);
  the share of training steps subtracted; forget / retain / test accuracy of retrain, of amnesiac with the
  default repair, of the bare subtraction (``repair_epochs=0``) and of amnesiac from float16 updates;
- the effect of float16 on exactness: the largest weight difference between the bare subtraction from
  float16 updates and from float32 updates.

Run (digits mlp with 10 epochs, Fashion-MNIST cnn on 3000 images for 5 epochs; a few minutes on two cores):
    nice -n 19 .venv/bin/python benchmarks/bench_amnesiac.py
Options: ``--datasets digits,fashion-mnist``, ``--fm-train-size N``, ``--fm-epochs E``, ``--digits-epochs E``,
``--seed S`` (forget-set seed), ``--threads T`` (torch intra-op threads, default 1), ``--device``.
Fashion-MNIST is read from /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from unlearnkit.data import load_dataset, select
from unlearnkit.models import save_checkpoint
from unlearnkit.runs import train_model
from unlearnkit.train import accuracy_on, default_recipe
from unlearnkit.unlearning import unlearn

SETUPS = {  # dataset -> (model, forgotten class)
    "digits": ("mlp", 3),
    "fashion-mnist": ("cnn", 7),
}


def accuracies(model, split, test) -> str:
    return " / ".join(f"{accuracy_on(model, d):.3f}" for d in (split.forget, split.retain, test))


def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((x.double() - y.double()).abs().max().item()
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def bench(dataset: str, epochs: int, train_size: int | None, seed: int, device: str, workdir: Path) -> None:
    model_name, forget_class = SETUPS[dataset]
    bundle = load_dataset(dataset, train_size=train_size)
    config = default_recipe(dataset, model_name).with_(epochs=epochs)
    print(f"\n## {dataset} {model_name}: {len(bundle.train)} training samples, {epochs} epochs, "
          f"batch {config.batch_size}\n")

    train_model(bundle, model_name, config, device=device, progress=False)  # warm-up: first-call overheads
    plain = train_model(bundle, model_name, config, device=device, progress=False)  # the original, timed
    paths, logs = {}, {}
    print("| updates | MB | ratio to model | batches | train time ratio to plain training |")
    print("|---|---|---|---|---|")
    for dtype in ("float32", "float16"):
        path = workdir / f"{dataset}-{dtype}"
        trained = train_model(bundle, model_name, config, device=device, progress=False, record_updates=path,
                              record_dtype=dtype)
        save_checkpoint(path, trained.model, trained.meta)
        paths[dtype], logs[dtype] = path, trained.updates
        store = trained.updates.storage()
        print(f"| {dtype} | {store['bytes'] / 1e6:.1f} | {store['ratio_to_model']:.1f} | {store['batches']} | "
              f"{trained.seconds / plain.seconds:.2f} |")
    print(f"\nmodel weights: {logs['float32'].index['model_bytes'] / 1e6:.2f} MB\n")

    print("| forget | steps subtracted | retrain s | amnesiac s | speed-up (retrain / amnesiac) | "
          "retrain f/r/t | amnesiac f/r/t | bare subtraction f/r/t | amnesiac float16 f/r/t | "
          "float16 vs float32 max weight diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec in ("random:0.01", f"class:{forget_class}"):
        split = select(bundle.train, spec, seed=seed)
        run = {"train_config": config, "device": device, "seed": seed, "progress": False}
        retrained = unlearn(plain.model, split, "retrain", **run)
        amnesiac = unlearn(plain.model, split, "amnesiac", checkpoint=paths["float32"], **run)
        bare = unlearn(plain.model, split, "amnesiac", checkpoint=paths["float32"], repair_epochs=0, **run)
        half = unlearn(plain.model, split, "amnesiac", checkpoint=paths["float16"], **run)
        bare_half = unlearn(plain.model, split, "amnesiac", checkpoint=paths["float16"], repair_epochs=0, **run)
        print(f"| {spec} ({len(split.forget)}) | {amnesiac.info['subtracted_fraction']:.1%} | "
              f"{retrained.seconds:.2f} | {amnesiac.seconds:.2f} | {retrained.seconds / amnesiac.seconds:.1f}x | "
              f"{accuracies(retrained.model, split, bundle.test)} | {accuracies(amnesiac.model, split, bundle.test)} | "
              f"{accuracies(bare.model, split, bundle.test)} | {accuracies(half.model, split, bundle.test)} | "
              f"{max_weight_difference(bare.model, bare_half.model):.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits,fashion-mnist")
    parser.add_argument("--digits-epochs", type=int, default=10)
    parser.add_argument("--fm-epochs", type=int, default=5)
    parser.add_argument("--fm-train-size", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), device {args.device}; "
          "f/r/t = forget / retain / test accuracy")
    with tempfile.TemporaryDirectory(prefix="bench-amnesiac-") as tmp:
        for dataset in args.datasets.split(","):
            if dataset not in SETUPS:
                parser.error(f"unknown dataset {dataset!r}; choose from {', '.join(SETUPS)}")
            small = dataset == "fashion-mnist"
            bench(dataset, args.fm_epochs if small else args.digits_epochs, args.fm_train_size if small else None,
                  args.seed, args.device, Path(tmp))


if __name__ == "__main__":
    main()
