"""The ``unlearn`` command line: a thin layer over the Python API.

    unlearn demo                                   # digits: train, forget 10%, every method vs retrain
    unlearn train --dataset fashion-mnist --model cnn --epochs 3 --out runs/fm/original
    unlearn forget --checkpoint runs/fm/original --forget class:7 --method gradient-ascent --out runs/fm/ga
    unlearn evaluate --checkpoint runs/fm/ga --forget class:7 --reference runs/fm/retrain --json
    unlearn compare --dataset digits --forget random:0.1 --methods all --json

Errors print one line on stderr (the problem and the fix) and exit with status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from unlearnkit.errors import UnlearnError

app = typer.Typer(
    name="unlearn",
    help="Remove chosen training data from trained PyTorch models and measure how close the result is "
    "to retraining without it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
STATE = {"debug": False}
out_console = Console(width=120, soft_wrap=False)
err_console = Console(stderr=True)

# --- shared options -------------------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="Data source (`unlearn datasets`).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Architecture: mlp, cnn, resnet18, linear, logistic (default: "
                             "per dataset).")
]
DataDirOpt = Annotated[
    str | None, typer.Option("--data-dir", help="Directory with the data files (tabular: the CSV/Parquet file).")
]
SubjectsOpt = Annotated[
    int | None, typer.Option("--subjects", help="Give samples N deterministic pseudo-subjects (for subjects:...).")
]
TrainSizeOpt = Annotated[
    int | None, typer.Option("--train-size", help="Use a deterministic subset of N training samples (quick runs).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds the random forget subset and the method.")]
ForgetOpt = Annotated[
    str,
    typer.Option(
        "--forget", "-f",
        help="What to forget: random:F, class:C[,C], ids:1,2|FILE, subjects:1,2|FILE, attribute:NAME=VALUE.",
    ),
]
ProgressOpt = Annotated[
    bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal only).")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (default: per dataset).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Mini-batch size (default: per dataset).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate (default: per dataset).")]
OptimOpt = Annotated[str | None, typer.Option("--optimizer", help="sgd, adam, or lbfgs (linear/logistic models).")]
ScheduleOpt = Annotated[str | None, typer.Option("--schedule", help="cosine or constant.")]
WdOpt = Annotated[float | None, typer.Option("--weight-decay", help="L2 weight decay.")]


def _emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _save_and_emit(data: dict, save: str | None, as_json: bool) -> bool:
    """Write ``data`` as JSON to ``save`` (if given) and print it with ``--json``; True if it was printed."""
    if save:
        Path(save).parent.mkdir(parents=True, exist_ok=True)
        Path(save).write_text(json.dumps(data, indent=2) + "\n")
    if as_json:
        _emit_json(data)
    return as_json


def _recipe(dataset: str, model: str, seed: int, **overrides):
    from unlearnkit.train import default_recipe

    base = default_recipe(dataset, model)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.with_(seed=seed, **changes)


def _bundle(dataset: str, data_dir, subjects, train_size, **tabular):
    from unlearnkit.data import load_dataset

    return load_dataset(dataset, data_dir=data_dir, subjects=subjects, train_size=train_size, **tabular)


def _model_name(dataset: str, model: str | None) -> str:
    from unlearnkit.data.sources import get_source

    return model or get_source(dataset).default_model


def _parse_params(values: list[str]) -> dict[str, str]:
    params = {}
    for item in values:
        if "=" not in item:
            raise UnlearnError(f"--param {item!r} needs KEY=VALUE, e.g. --param epochs=3")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _status(message: str) -> None:
    err_console.print(f"[dim]· {escape(message)}[/dim]")


# --- commands -------------------------------------------------------------------------------------
@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    STATE["debug"] = debug


@app.command()
def datasets(as_json: JsonOpt = False) -> None:
    """List the data sources, where each reads its files from, and whether they are present here."""
    from unlearnkit.data import SOURCES

    rows = []
    for source in SOURCES.values():
        present = source.embedded or (source.default_dir is not None and Path(source.default_dir).is_dir())
        rows.append({
            "name": source.name, "summary": source.summary, "default_dir": source.default_dir,
            "available": present, "default_model": source.default_model,
            "how_to_get": source.how_to_get or "embedded (scikit-learn)",
        })
    if as_json:
        return _emit_json(rows)
    from rich.table import Table

    table = Table(title="datasets")
    for col in ("name", "summary", "available", "default model"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["summary"], "yes" if r["available"] else "needs --data-dir", r["default_model"])
    out_console.print(table)


@app.command()
def methods(as_json: JsonOpt = False) -> None:
    """List the unlearning methods with their flags and hyperparameters (defaults)."""
    from unlearnkit.methods import METHODS

    rows = [{
        "name": cls.name, "summary": cls.summary, "reference": cls.reference, "exact": cls.exact,
        "certified": cls.certified, "requires": cls.requires, "needs_retain": cls.needs_retain,
        "needs_forget": cls.needs_forget, "params": cls.params(),
    } for cls in METHODS.values()]
    if as_json:
        return _emit_json(rows)
    from rich.table import Table

    table = Table(title="methods")
    for col in ("name", "exact", "summary", "params"):
        table.add_column(col)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        table.add_row(r["name"], "yes" if r["exact"] else "", r["summary"], params)
    out_console.print(table)


@app.command()
def train(
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint path: writes OUT.safetensors + OUT.json.")],
    dataset: DatasetOpt = "digits",
    model: ModelOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    optimizer: OptimOpt = None,
    schedule: ScheduleOpt = None,
    weight_decay: WdOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the initial weights and the batch order.")] = 0,
    data_dir: DataDirOpt = None,
    subjects: SubjectsOpt = None,
    train_size: TrainSizeOpt = None,
    label: Annotated[str | None, typer.Option("--label", help="tabular: the label column.")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="tabular: stable sample ids.")] = None,
    subject_column: Annotated[str | None, typer.Option("--subject-column", help="tabular: data owners.")] = None,
    attribute: Annotated[list[str], typer.Option("--attribute", help="tabular: attribute column (repeat).")] = [],  # noqa: B006
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
    perturbation: Annotated[float | None, typer.Option(
        "--perturbation", help="linear/logistic: std sigma of the random loss term b.w/n that gives certified "
        "removal its (epsilon, delta) guarantee (default 0: none).")] = None,
    features_from: Annotated[str | None, typer.Option(
        "--features-from", help="linear/logistic: train the head on the frozen penultimate features of this "
        "checkpoint's network (same input shape; ideally trained on other, public data).")] = None,
    unit_norm: Annotated[bool, typer.Option(
        "--unit-norm", help="linear/logistic: scale each feature vector to unit L2 norm, as Guo et al. do; makes "
        "the certified removal bound far tighter.")] = False,
    record_updates: Annotated[bool, typer.Option(
        "--record-updates", help="Store each batch's parameter update and ids in OUT.updates/ (for amnesiac).",
    )] = False,
    record_dtype: Annotated[str | None, typer.Option(
        "--record-dtype", help="float32 (default) or float16 (half the storage, rounded updates).")] = None,
    sisa: Annotated[str | None, typer.Option(
        "--sisa", help="Train a SISA ensemble, e.g. shards=5,slices=3; optional keys, comma-joined: "
        "aggregate=vote|softmax, by=ids|subjects, threads=N. Slice weights go to OUT.sisa/ (forget with "
        "--method sisa).")] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="With --sisa: local, or ray (one Ray task per shard).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: an existing Ray cluster (default: start a local Ray).")] = None,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model and save it as a checkpoint (weights + JSON sidecar with data and recipe)."""
    from unlearnkit.errors import ConfigError
    from unlearnkit.runs import refuse_overwrite, save_model, train_model
    from unlearnkit.sisa import SisaSpec, sisa_dir, sisa_state
    from unlearnkit.train import accuracy_on
    from unlearnkit.updates import DTYPES, summary_bytes

    if record_dtype is not None and not record_updates:
        raise ConfigError("--record-dtype applies to recorded updates; add --record-updates or drop --record-dtype")
    if record_dtype is not None and record_dtype not in DTYPES:
        raise ConfigError(f"--record-dtype must be one of {', '.join(DTYPES)}, got {record_dtype!r}")
    sisa_spec = None if sisa is None else SisaSpec.parse(sisa)  # a bad --sisa fails before the data loads
    refuse_overwrite(out, force)
    tabular = {"label": label, "id_column": id_column, "subject_column": subject_column,
               "attribute_columns": attribute} if dataset == "tabular" else {}
    bundle = _bundle(dataset, data_dir, subjects, train_size, **tabular)
    name = _model_name(dataset, model)
    config = _recipe(dataset, name, seed, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                     schedule=schedule, weight_decay=weight_decay)
    if not as_json:
        shards = "" if sisa_spec is None else f" as {sisa_spec.shards} SISA shards x {sisa_spec.slices} slices"
        _status(f"training {name} on {dataset} ({len(bundle.train)} samples, {config.epochs} epochs){shards}")
    head_kwargs = {**({} if perturbation is None else {"perturbation": perturbation}),
                   **({"normalize": True} if unit_norm else {})}
    if (head_kwargs or features_from) and name not in ("linear", "logistic"):
        raise ConfigError("--perturbation, --unit-norm and --features-from apply to the linear and logistic models; "
                          "add --model logistic (or linear)")
    if features_from is not None and (sisa_spec is not None or record_updates):
        raise ConfigError("--features-from trains one linear head; it does not combine with --sisa or --record-updates")
    if features_from is not None:
        trained = _train_head(bundle, name, config, features_from, head_kwargs, device, progress)
    else:
        trained = train_model(bundle, name, config, model_kwargs=head_kwargs, device=device, progress=progress,
                              record_updates=out if record_updates else None, record_dtype=record_dtype or "float32",
                              sisa=sisa_spec, executor=executor, ray_address=ray_address)
    sidecar = save_model(out, trained.model, trained.meta)
    summary = {
        "checkpoint": str(sidecar.with_suffix("")), "dataset": dataset, "model": name,
        "train_accuracy": round(accuracy_on(trained.model, bundle.train), 6),
        "test_accuracy": round(accuracy_on(trained.model, bundle.test), 6),
        "seconds": round(trained.seconds, 3), "train_config": config.to_dict(),
    }
    if trained.updates is not None:
        summary["updates"] = trained.updates.storage()
    if sisa_spec is not None:
        summary["sisa"] = {**sisa_spec.to_dict(), "dir": str(sisa_dir(out)),
                           "shard_sizes": sisa_state(trained.model).assignment.shard_sizes()}
    if as_json:
        return _emit_json(summary)
    out_console.print(
        f"saved {summary['checkpoint']} ({name} on {dataset}): train accuracy {summary['train_accuracy']:.4f}, "
        f"test accuracy {summary['test_accuracy']:.4f}, {summary['seconds']:.1f}s",
        markup=False, soft_wrap=True,
    )
    if trained.updates is not None:
        store = summary["updates"]
        out_console.print(
            f"recorded {store['batches']} batch updates ({store['dtype']}) in {store['dir']}: "
            f"{summary_bytes(store['bytes'])}, {store['ratio_to_model']:g}x the model's "
            f"{summary_bytes(store['model_bytes'])}",
            markup=False, soft_wrap=True,
        )
    if sisa_spec is not None:
        sizes = summary["sisa"]["shard_sizes"]
        out_console.print(
            f"SISA: {sisa_spec.shards} shards ({min(sizes)}-{max(sizes)} samples) x {sisa_spec.slices} slices by "
            f"{sisa_spec.by}, {sisa_spec.aggregate} aggregate; slice weights in {summary['sisa']['dir']}",
            markup=False, soft_wrap=True,
        )


def _train_head(bundle, name: str, config, features_from: str, head_kwargs: dict, device, progress):
    """A linear/logistic model on the frozen features of the network saved at ``features_from`` (the head's
    checkpoint keeps that network's weights, so it needs nothing else to load, forget or retrain)."""
    import time

    from unlearnkit.errors import CheckpointError
    from unlearnkit.models import CheckpointMeta, build_model, load_checkpoint
    from unlearnkit.runs import TrainedModel, data_meta
    from unlearnkit.train import fit

    source = load_checkpoint(features_from)
    if source.spec.input_shape != bundle.spec.input_shape:
        raise CheckpointError(f"{features_from} reads inputs of shape {source.spec.input_shape}, this data has "
                              f"{bundle.spec.input_shape}; pass a network trained on inputs of the data's shape")
    if source.data.get("fingerprint") == bundle.train.fingerprint():
        err_console.print("warning: the feature network was trained on this very training set; certified removal "
                          "then covers the head, not the features", markup=False, highlight=False, soft_wrap=True)
    kwargs = {**head_kwargs, "backbone": source.model_name, "backbone_kwargs": source.model_kwargs}
    model = build_model(name, bundle.spec, seed=config.seed, **kwargs)
    model.features.load_network(source.model)
    start = time.perf_counter()
    fit(model, bundle.train, config, device=device, progress=progress, description=f"train {name} head")
    seconds = time.perf_counter() - start
    meta = CheckpointMeta(name, kwargs, bundle.spec, data_meta(bundle), config.to_dict(),
                          extra={"train_seconds": round(seconds, 3), "features_from": str(source.path)})
    return TrainedModel(model, bundle, meta, seconds)


@app.command()
def forget(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The trained model to unlearn from.")],
    forget_spec: ForgetOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Where to save the unlearned checkpoint.")],
    method: Annotated[str, typer.Option("--method", help="Unlearning method (`unlearn methods`).")] = "finetune",
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE (repeat).")
    ] = [],  # noqa: B006
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
    executor: Annotated[str | None, typer.Option(
        "--executor", help="Methods that fan out (sisa): local, or ray (one Ray task per shard).")] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: an existing Ray cluster (default: start a local Ray).")] = None,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the forget set's influence from a checkpoint and save the result (with its history)."""
    from unlearnkit.runs import forget_checkpoint, refuse_overwrite, save_unlearned
    from unlearnkit.train import accuracy_on

    refuse_overwrite(out, force)
    params = _parse_params(param)
    # the method's own executor / ray_address parameters; a method without them refuses them by name
    params.update({k: v for k, v in (("executor", executor), ("ray_address", ray_address)) if v is not None})
    if not as_json:
        _status(f"forgetting {forget_spec} from {checkpoint} with {method}")
    result, split, ckpt, bundle = forget_checkpoint(
        checkpoint, forget_spec, method, params=params, seed=seed, device=device,
        data_dir=data_dir, progress=progress,
    )
    sidecar = save_unlearned(out, result, split, ckpt)
    summary = {
        "checkpoint": str(sidecar.with_suffix("")), "method": result.method, "config": result.config,
        "forget": split.spec, "seed": seed, "n_forget": len(split.forget), "n_retain": len(split.retain),
        "seconds": round(result.seconds, 4), "notes": result.notes, **result.info,
        "forget_accuracy": round(accuracy_on(result.model, split.forget), 6),
        "retain_accuracy": round(accuracy_on(result.model, split.retain), 6),
        "test_accuracy": round(accuracy_on(result.model, bundle.test), 6),
    }
    if as_json:
        return _emit_json(summary)
    out_console.print(
        f"saved {summary['checkpoint']}: {result.method} forgot {len(split.forget)} samples in "
        f"{result.seconds:.2f}s; forget/retain/test accuracy {summary['forget_accuracy']:.4f} / "
        f"{summary['retain_accuracy']:.4f} / {summary['test_accuracy']:.4f}",
        markup=False, soft_wrap=True,
    )
    for note in result.notes:
        out_console.print(f"  note: {note}", markup=False, soft_wrap=True)


@app.command()
def evaluate(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The model to judge.")],
    forget_spec: ForgetOpt,
    reference: Annotated[
        str | None, typer.Option("--reference", "-r", help="Retrained checkpoint to compare against.")
    ] = None,
    original: Annotated[
        str | None, typer.Option("--original", help="The checkpoint before unlearning: adds the weight distance to it.")
    ] = None,
    relearn: Annotated[
        bool, typer.Option("--relearn", help="Also measure relearn time on the forget set (needs --original).")
    ] = False,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    per_sample: Annotated[
        str | None, typer.Option("--per-sample", help="Also write per-sample values (JSON) to this file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure forget/retain/test accuracy and membership inference, and the gap to a retrained reference."""
    from unlearnkit.runs import evaluate_checkpoint

    report, split, warnings = evaluate_checkpoint(
        checkpoint, forget_spec, reference=reference, original=original, relearn=relearn, seed=seed, device=device,
        data_dir=data_dir,
    )
    for warning in warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if per_sample:
        Path(per_sample).parent.mkdir(parents=True, exist_ok=True)
        full = report.to_json(per_sample=True)
        Path(per_sample).write_text(json.dumps({
            **full["per_sample"], "had_reference": full["had_reference"], "not_computed": full["not_computed"],
        }) + "\n")
    if as_json:
        return _emit_json(report.to_json())
    if markdown:
        sys.stdout.write(report.to_markdown())
        return
    title = f"{escape(checkpoint)} / forget {escape(split.spec)} ({len(split.forget)} samples)"
    out_console.print(report.rich_table(title=title))


def _run_compare(dataset, model, forget_spec, methods_arg, seed, data_dir, subjects, train_size, device,
                 progress, quiet, epochs=None, **recipe):
    from unlearnkit.bench import apply_compare_defaults
    from unlearnkit.bench import compare as run_compare

    bundle, epochs = apply_compare_defaults(_bundle(dataset, data_dir, subjects, train_size),
                                            train_size=train_size, epochs=epochs)
    name = _model_name(dataset, model)
    config = _recipe(dataset, name, 0, epochs=epochs, **recipe)
    if not quiet:
        _status(f"original: {name} on {len(bundle.train)} {dataset} training samples, {config.epochs} epochs")
    return run_compare(bundle, forget=forget_spec, methods=methods_arg, model=name, config=config, seed=seed,
                       device=device, progress=progress, on_step=None if quiet else _status)


@app.command()
def compare(
    dataset: DatasetOpt = "digits",
    model: ModelOpt = None,
    forget_spec: ForgetOpt = "random:0.1",
    methods_arg: Annotated[str, typer.Option("--methods", help="'all' or a comma list of methods.")] = "all",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    subjects: SubjectsOpt = None,
    train_size: TrainSizeOpt = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    save: Annotated[str | None, typer.Option("--save", help="Also write the JSON result to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train an original model, retrain without the forget set, run methods, and rank them against retraining.

    On fashion-mnist the original is trained on 10,000 images for 20 epochs by default, so that it memorises.

    Random forgetting then has something to remove; --train-size and --epochs override those defaults.
    """
    result = _run_compare(dataset, model, forget_spec, methods_arg, seed, data_dir, subjects, train_size, device,
                          progress, as_json, epochs=epochs, batch_size=batch_size, lr=lr)
    if _save_and_emit(result.to_json(), save, as_json):
        return
    if markdown:
        sys.stdout.write(result.to_markdown())
        return
    out_console.print(result.rich_table())
    for name, why in result.skipped.items():
        out_console.print(f"skipped {name}: {why}", markup=False, soft_wrap=True)


@app.command()
def demo(
    forget_spec: ForgetOpt = "random:0.1",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """End-to-end demo on the embedded digits data: train, forget, run every method, compare to retraining."""
    # the cnn (not the digits default mlp) so that the conv-only methods run too
    result = _run_compare("digits", "cnn", forget_spec, "all", seed, None, None, None, device, None, False)
    out_console.print(result.rich_table())
    out_console.print(
        "forget/retain/test = accuracies; MIA-eff = share of forget samples a membership attack calls non-members; "
        "gap.avg = mean |difference| to retrain over forget, retain, test accuracy and MIA-eff; "
        "JS = Jensen-Shannon divergence to retrain's predictions on the forget set (bits); "
        "speedup = retrain seconds / method seconds."
    )


@app.command()
def neurips(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The original trained model.")],
    forget_spec: ForgetOpt,
    method: Annotated[str, typer.Option("--method", help="Unlearning method (`unlearn methods`).")],
    models: Annotated[int, typer.Option("--models", "-n", help="N: models per population (the challenge: 512).")] = 32,
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE (repeat).")
    ] = [],  # noqa: B006
    seed: Annotated[int, typer.Option("--seed", help="Selects the random forget subset.")] = 0,
    calibration: Annotated[
        bool, typer.Option("--calibration/--no-calibration",
                           help="Also train N more retrained models and report retrain-vs-retrain F (the ceiling).")
    ] = True,
    cache_dir: Annotated[
        str | None, typer.Option("--cache-dir", help="Reference-model cache (default: $UNLEARNKIT_CACHE/references "
                                 "or ~/.cache/unlearnkit/references).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Retrain the references; cache nothing.")] = False,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    save: Annotated[str | None, typer.Option("--save", help="Also write the JSON result to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The NeurIPS-2023 challenge's score: N unlearned vs N retrained models, per forget example.

    Retrains N reference models (cached) and runs the method N times with seeds 0..N-1.

    Reports the forgetting quality F, the score F x retain ratio x test ratio, and one epsilon per example.
    """
    import numpy as np

    from unlearnkit.bench.neurips import neurips_evaluation
    from unlearnkit.data import select
    from unlearnkit.references import default_cache_dir
    from unlearnkit.runs import load_with_data, training_set
    from unlearnkit.train import TrainConfig

    ckpt, bundle = load_with_data(checkpoint, device=device, data_dir=data_dir)
    train_set = training_set(bundle, ckpt)
    split = select(train_set, forget_spec, seed=seed)
    cache = None if no_cache else str(cache_dir or default_cache_dir())
    result = neurips_evaluation(
        ckpt.model, train_set, split, bundle.test, method, train_config=TrainConfig.from_dict(ckpt.train_config),
        model_name=ckpt.model_name, model_kwargs=ckpt.model_kwargs, n_models=models, params=_parse_params(param),
        calibration=calibration, cache_dir=cache, device=device, progress=progress,
        on_step=None if as_json else _status,
    )
    if _save_and_emit(result.to_json(), save, as_json):
        return
    calib = "" if result.calibration_forget_quality is None else \
        f" (retrain vs retrain: {result.calibration_forget_quality:.4f}, the ceiling)"
    lines = [
        f"{method} on {split.spec} ({len(split.forget)} forget samples), N = {models} models per population",
        f"forget quality F   {result.forget_quality:.4f}{calib}",
        f"retain ratio       {result.retain_ratio:.4f}  (unlearned {result.accuracies['unlearned']['retain']:.4f} / "
        f"retrained {result.accuracies['retrained']['retain']:.4f})",
        f"test ratio         {result.test_ratio:.4f}  (unlearned {result.accuracies['unlearned']['test']:.4f} / "
        f"retrained {result.accuracies['retrained']['test']:.4f})",
        f"NeurIPS score      {result.neurips_score:.4f}  (F x retain ratio x test ratio)",
        f"epsilons           median {float(np.median(result.epsilons)):.3f}, max {float(result.epsilons.max()):.3f}",
        *([] if result.u_lira is None else [
            f"U-LiRA             accuracy {result.u_lira['accuracy']:.4f}, AUC {result.u_lira['auc']:.4f} "
            "(unlearned vs retrained models per example; 0.5 = indistinguishable)"]),
        f"seconds            {result.seconds:.1f} in all; {result.unlearn_seconds:.2f} per unlearning run",
    ]
    for line in lines:
        out_console.print(line, markup=False, soft_wrap=True)


@app.command()
def bench(
    config_path: Annotated[str, typer.Argument(metavar="CONFIG", help="Bench config (TOML), e.g. "
                                               "benchmarks/digits-smoke.toml.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Directory for results.sqlite and the models.")],
    resume: Annotated[bool, typer.Option("--resume", help="Skip the cells already finished in --out.")] = False,
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the result store "
                                           "(default: sqlite:///OUT/results.sqlite).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local, or ray: one Ray task per split.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Existing Ray cluster (default: start a local Ray).")
    ] = None,
    overlay: Annotated[
        list[str], typer.Option("--overlay", help="TOML overlay whose methods-table entries replace the config's, "
                                "as `unlearn tune` writes it (repeat; later ones win).")
    ] = [],  # noqa: B006
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run every cell of a bench config (datasets x forget specs x seeds x methods) into a result store.

    The config is validated before anything trains; each finished cell is stored at once, so an interrupted
    run loses at most the cell in flight and --resume continues it.
    """
    from unlearnkit.bench.config import load_config
    from unlearnkit.bench.report import aggregate
    from unlearnkit.bench.runner import run_bench

    config = load_config(config_path, overlay)
    result = run_bench(config, out, db=db, resume=resume, executor=executor, ray_address=ray_address, device=device,
                       progress=progress, on_step=None if as_json else _status)
    rows = [{"scenario": dataset, "forget": forget, **{k: v for k, v in entry.items() if k != "epsilons"}}
            for (dataset, forget), entries in aggregate(result.store.rows()).items() for entry in entries]
    if as_json:
        return _emit_json({"ran": result.ran, "skipped": result.skipped, "summary": rows})
    from rich.table import Table

    table = Table(title=f"{escape(config.name)}: {result.ran} cells run, {result.skipped} already finished; "
                        f"mean±std over {len(config.seeds)} seeds, ranked by gap.avg")
    for col in ("dataset", "forget", "method", "gap.avg", "forget acc", "test acc", "speedup"):
        table.add_column(col, justify="left" if col in ("dataset", "forget", "method") else "right",
                         overflow="fold")
    for r in rows:
        stats = r["stats"]
        table.add_row(escape(r["scenario"]), escape(r["forget"]), escape(r["label"]),
                      *(f"{stats[k][0]:.4f}±{stats[k][1]:.4f}" if k in stats else ""
                        for k in ("gap.average", "forget_accuracy", "test_accuracy")),
                      f"{stats['speedup'][0]:.1f}x")
    out_console.print(table)


@app.command()
def tune(
    method: Annotated[str, typer.Option("--method", help="The method to tune (`unlearn methods`).")],
    config_path: Annotated[str, typer.Option("--config", help="Bench config (TOML): its datasets and forget specs "
                                             "are the tuning cases; its methods-table entry can fix parameters.")],
    trials: Annotated[int, typer.Option("--trials", help="Optuna trials to run (added to a study already in "
                                        "--out); the first is the method's defaults.")] = 20,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Directory for tune.db (the Optuna study), the "
                                            "models and the overlay (default: runs/tune/BENCH-METHOD).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Tuning seed for the forget sets and the method; must "
                                             "differ from the config's seeds (default: largest + 1000).")] = None,
    write: Annotated[str | None, typer.Option("--write", help="Where to write the overlay "
                                              "(default: OUT/METHOD.toml).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Start no trial after this many seconds.")] = None,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune a method's hyperparameters with Optuna: minimise the gap to retraining on a tuning split.

    Writes the best parameters as a TOML overlay that `unlearn bench CONFIG --overlay FILE` accepts.
    """
    import shlex
    import sys

    from unlearnkit.bench.config import load_config
    from unlearnkit.bench.tune import tune as run_tune

    config = load_config(config_path)
    directory = out or f"runs/tune/{config.name}-{method}"
    command = "unlearn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_tune(config, method, trials, directory, tuning_seed=seed, overlay_path=write, timeout=timeout,
                      device=device, progress=progress, on_step=None if as_json else _status, command=command)
    if as_json:
        return _emit_json(result.to_json())
    default = "not tried" if result.default_value is None else f"{result.default_value:.4f}"
    for line in (f"{method}: best gap.average {result.best_value:.4f} (defaults {default}) after {result.trials} "
                 f"trials ({result.failed} failed), tuning seed {result.tuning_seed}",
                 f"best parameters: {result.best_params}",
                 f"wrote {result.overlay_path}; use: unlearn bench {config_path} --overlay {result.overlay_path}"):
        out_console.print(line, markup=False, soft_wrap=True)


@app.command()
def report(
    out: Annotated[str, typer.Argument(metavar="DIR", help="The --out directory of `unlearn bench`.")],
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the result store "
                                           "(default: sqlite:///DIR/results.sqlite).")] = None,
) -> None:
    """Write DIR/report.md and a self-contained DIR/report.html: ranked tables (mean ± std over seeds) and plots."""
    from unlearnkit.bench.report import write_report

    md_path, html_path = write_report(out, db=db)
    out_console.print(f"wrote {md_path} and {html_path}", markup=False, soft_wrap=True)


def main() -> None:
    """Console entry point: one-line errors, non-zero exit, traceback only with --debug."""
    try:
        app()
    except UnlearnError as exc:
        if STATE["debug"]:
            raise
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was saved for the step in progress")
        sys.exit(130)


if __name__ == "__main__":
    main()
