"""Commands on single models and checkpoints: ``datasets``, ``methods``, ``train``, ``forget``, ``debias``,
``evaluate``.

    unlearn train --dataset fashion-mnist --model cnn --epochs 3 --out runs/fm/original
    unlearn forget --checkpoint runs/fm/original --forget class:7 --method gradient-ascent --out runs/fm/ga
    unlearn evaluate --checkpoint runs/fm/ga --forget class:7 --reference runs/fm/retrain --json
    unlearn train --dataset colored-digits --out runs/cd/original
    unlearn debias --checkpoint runs/cd/original --attribute color --method dfr --out runs/cd/dfr
    unlearn evaluate --checkpoint runs/cd/dfr --attribute color --reference runs/cd/balanced --json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from unlearnkit.cli.common import (
    AttributeOpt,
    BatchOpt,
    DataDirOpt,
    DataOptionOpt,
    DatasetOpt,
    DeviceOpt,
    EpochsOpt,
    ForgetOpt,
    JsonOpt,
    LrOpt,
    MaybeForgetOpt,
    ModelOpt,
    OptimOpt,
    ProgressOpt,
    ScheduleOpt,
    SeedOpt,
    SubjectsOpt,
    TrainSizeOpt,
    WdOpt,
    emit_json,
    load_bundle,
    out_console,
    parse_params,
    resolve_model_name,
    status,
    train_recipe,
    warn,
)
from unlearnkit.errors import ConfigError


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
            "options": [option.to_json() for option in source.declared_options()],  # its --data-option keys
            "attributes": list(source.attributes),  # per-sample attributes (attribute:NAME=VALUE, removal)
            # multi-task sources: the label columns (name, classes) a multi-task model gets one head each for
            "tasks": [{"name": name, "classes": classes} for name, classes in source.tasks],
        })
    if as_json:
        return emit_json(rows)
    from rich.table import Table

    table = Table(title="datasets")
    from unlearnkit.data.sources import POISON_KEYS

    for col in ("name", "summary", "available", "default model", "attributes / tasks", "--data-option (default)"):
        table.add_column(col)
    for r in rows:
        own = [o for o in r["options"] if o["name"] not in POISON_KEYS]
        options = "\n".join(  # defaults as --data-option takes them (flip=false)
            f"{o['name']}={str(o['default']).lower() if o['type'] == 'bool' else o['default']} "
            f"({o['type']}; {o['valid']}): {o['help']}" for o in own)
        if len(own) < len(r["options"]):  # an image source: the poison keys, spelled out in --json and POISON.md
            options += ("\n" if options else "") + "poison (none, badnets, label-flip), poison_rate, poison_target, " \
                "poison_size, poison_classes (docs/POISON.md)"
        options = options or "-"
        table.add_row(escape(r["name"]), escape(r["summary"]), "yes" if r["available"] else "needs --data-dir",
                      r["default_model"], escape(", ".join([*r["attributes"], *(f"task {t['name']} ({t['classes']})"
                                                                   for t in r["tasks"])]) or "-"), escape(options))
    out_console.print(table)



def methods(as_json: JsonOpt = False) -> None:
    """List the unlearning methods with their flags and hyperparameters (defaults)."""
    from unlearnkit.methods import METHODS

    rows = [{
        "name": cls.name, "summary": cls.summary, "reference": cls.reference, "exact": cls.exact,
        "certified": cls.certified, "requires": cls.requires, "needs_retain": cls.needs_retain,
        "needs_forget": cls.needs_forget, "kind": cls.kind, "multitask": cls.multitask, "params": cls.params(),
        "constraints": cls.constraints(),  # name -> the declared constraint in words
        "auto": cls.auto_rules(),  # name -> the rule that picks its default from what is forgotten
        "forgets_classes": cls.forgets_classes,
    } for cls in METHODS.values()]
    if as_json:
        return emit_json(rows)
    from rich.table import Table

    table = Table(title="methods")
    for col in ("name", "exact", "summary", "params"):
        table.add_column(col)
    for r in rows:
        params = ", ".join(f"{k}=auto" if k in r["auto"] else f"{k}={v}" for k, v in r["params"].items()) or "-"
        table.add_row(r["name"], "yes" if r["exact"] else "", r["summary"], params)
    out_console.print(table)



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
    data_option: DataOptionOpt = [],  # noqa: B006
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
        "--method sisa); while training, finished slice steps go to OUT.sisa.partial/, and the same command run "
        "again after a kill continues from them.")] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help="With --sisa: local, or ray (one Ray task per shard).")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="With --executor ray: an existing Ray cluster (default: start a local Ray).")] = None,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model and save it as a checkpoint (weights + JSON sidecar with data and recipe)."""
    from unlearnkit.exact.sisa import sisa_dir, sisa_state
    from unlearnkit.exact.sisa_io import progress_dir
    from unlearnkit.exact.updates import summary_bytes
    from unlearnkit.files import remove_tree
    from unlearnkit.models.multitask import is_multitask
    from unlearnkit.runs import check_train_options, refuse_overwrite, save_model, train_model
    from unlearnkit.train import accuracy_on, per_task_accuracy

    sisa_spec, head_kwargs = check_train_options(
        resolve_model_name(dataset, model), sisa=sisa, record_updates=record_updates, record_dtype=record_dtype,
        perturbation=perturbation, unit_norm=unit_norm, features_from=features_from,
    )  # bad flags fail before the data loads
    refuse_overwrite(out, force)
    tabular = {"label": label, "id_column": id_column, "subject_column": subject_column,
               "attribute_columns": attribute} if dataset == "tabular" else {}
    bundle = load_bundle(dataset, data_dir, subjects, train_size, data_option, **tabular)
    name = resolve_model_name(dataset, model)
    config = train_recipe(dataset, name, seed, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                          schedule=schedule, weight_decay=weight_decay)
    if not as_json:
        shards = "" if sisa_spec is None else f" as {sisa_spec.shards} SISA shards x {sisa_spec.slices} slices"
        status(f"training {name} on {dataset} ({len(bundle.train)} samples, {config.epochs} epochs){shards}")
    partial = None if sisa_spec is None else progress_dir(out)
    trained = train_model(bundle, name, config, model_kwargs=head_kwargs, device=device, progress=progress,
                          record_updates=out if record_updates else None, record_dtype=record_dtype or "float32",
                          sisa=sisa_spec, executor=executor, ray_address=ray_address, features_from=features_from,
                          on_warning=warn, sisa_progress=partial)
    sidecar = save_model(out, trained.model, trained.meta)
    if partial is not None:
        remove_tree(partial)  # the saved checkpoint holds every slice step now
    summary = {
        "checkpoint": str(sidecar.with_suffix("")), "dataset": dataset, "model": name,
        "train_accuracy": round(accuracy_on(trained.model, bundle.train), 6),
        "test_accuracy": round(accuracy_on(trained.model, bundle.test), 6),
        "seconds": round(trained.seconds, 3), "train_config": config.to_dict(),
    }
    if bundle.options.get("data_options"):
        summary["data_options"] = bundle.options["data_options"]  # all of the source's options, defaults filled
    if is_multitask(trained.model):  # the accuracies above are over every (sample, task) label; per task here
        summary["tasks"] = {t: {"test_accuracy": round(v, 6)} for t, v in per_task_accuracy(trained.model,
                                                                                             bundle.test).items()}
    if trained.updates is not None:
        summary["updates"] = trained.updates.storage()
    if sisa_spec is not None:
        summary["sisa"] = {**sisa_spec.to_dict(), "dir": str(sisa_dir(out)),
                           "shard_sizes": sisa_state(trained.model).assignment.shard_sizes()}
    if as_json:
        return emit_json(summary)
    per_task = "" if "tasks" not in summary else " (" + ", ".join(
        f"{t} {v['test_accuracy']:.4f}" for t, v in summary["tasks"].items()) + ")"
    out_console.print(
        f"saved {summary['checkpoint']} ({name} on {dataset}): train accuracy {summary['train_accuracy']:.4f}, "
        f"test accuracy {summary['test_accuracy']:.4f}{per_task}, {summary['seconds']:.1f}s",
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
    params = parse_params(param)
    # the method's own executor / ray_address parameters; a method without them refuses them by name
    params.update({k: v for k, v in (("executor", executor), ("ray_address", ray_address)) if v is not None})
    if not as_json:
        status(f"forgetting {forget_spec} from {checkpoint} with {method}")
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
        return emit_json(summary)
    out_console.print(
        f"saved {summary['checkpoint']}: {result.method} forgot {len(split.forget)} samples in "
        f"{result.seconds:.2f}s; forget/retain/test accuracy {summary['forget_accuracy']:.4f} / "
        f"{summary['retain_accuracy']:.4f} / {summary['test_accuracy']:.4f}",
        markup=False, soft_wrap=True,
    )
    for note in result.notes:
        out_console.print(f"  note: {note}", markup=False, soft_wrap=True)



def debias(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The trained model to remove the attribute "
                                            "from.")],
    attribute: Annotated[str, typer.Option("--attribute", help="The attribute to remove, e.g. color (`unlearn "
                                           "datasets` lists each source's attributes).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to save the debiased checkpoint.")],
    method: Annotated[str, typer.Option("--method", help="Attribute-removal method (`unlearn methods`, kind "
                                        "attribute): retrain-balanced (the reference), dfr, leace, ...")],
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="Method hyperparameter KEY=VALUE (repeat).")
    ] = [],  # noqa: B006
    seed: Annotated[int, typer.Option("--seed", help="Seeds the method.")] = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")] = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an attribute's influence (a bias, a spurious feature) from a checkpoint and save the result.

    The data come from the checkpoint; the method trains with its recipe and calibrates on the data's val split.
    """
    from unlearnkit.runs import debias_checkpoint, refuse_overwrite, save_debiased
    from unlearnkit.train import accuracy_on

    refuse_overwrite(out, force)
    if not as_json:
        status(f"removing attribute {attribute} from {checkpoint} with {method}")
    result, ckpt, bundle, train = debias_checkpoint(
        checkpoint, attribute, method, params=parse_params(param), seed=seed, device=device, data_dir=data_dir,
        progress=progress,
    )
    sidecar = save_debiased(out, result, attribute, train, ckpt)
    summary = {
        "checkpoint": str(sidecar.with_suffix("")), "method": result.method, "config": result.config,
        "attribute": attribute, "seed": seed, "n_train": len(train), "seconds": round(result.seconds, 4),
        "notes": result.notes, **result.info,
        "test_accuracy": round(accuracy_on(result.model, bundle.test), 6),
    }
    if as_json:
        return emit_json(summary)
    out_console.print(
        f"saved {summary['checkpoint']}: {result.method} removed attribute {attribute!r} in {result.seconds:.2f}s "
        f"({len(train)} training samples); test accuracy {summary['test_accuracy']:.4f} (`unlearn evaluate "
        f"--attribute {attribute}` for the bias metrics)",
        markup=False, soft_wrap=True,
    )
    for note in result.notes:
        out_console.print(f"  note: {note}", markup=False, soft_wrap=True)



def evaluate(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="The model to judge.")],
    forget_spec: MaybeForgetOpt = None,
    attribute: AttributeOpt = None,
    reference: Annotated[
        str | None, typer.Option("--reference", "-r", help="Reference checkpoint to compare against (retrain for "
                                 "--forget, retrain-balanced for --attribute).")
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
    force: Annotated[bool, typer.Option("--force", help="Replace the --per-sample file if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure forget/retain/test accuracy and membership inference (--forget), or bias metrics (--attribute), and
    the gap to a reference."""
    from unlearnkit.files import refuse_overwrite, write_json_atomic
    from unlearnkit.runs import evaluate_run

    if per_sample and forget_spec is None:
        raise ConfigError("--per-sample writes per-sample forgetting values; add --forget SPEC")
    refuse_overwrite(per_sample, force)  # before the evaluation runs
    result = evaluate_run(
        checkpoint, forget=forget_spec, attribute=attribute, reference=reference, original=original, relearn=relearn,
        seed=seed, device=device, data_dir=data_dir,
    )
    for warning in result.warnings:
        warn(warning)
    report, split = result.report, result.split
    if per_sample and report is not None:
        full = report.to_json(per_sample=True)
        write_json_atomic(per_sample, {
            **full["per_sample"], "had_reference": full["had_reference"], "not_computed": full["not_computed"],
        }, force=force, indent=None)
    if as_json:
        return emit_json(result.to_json())
    if markdown:
        if report is not None:
            sys.stdout.write(report.to_markdown())
        if result.bias is not None:
            sys.stdout.write(("\n" if report is not None else "") + _bias_markdown(result.bias))
        if result.poison is not None:
            sys.stdout.write("\n" + _poison_line(result.poison) + "\n")
        return
    if report is not None:
        title = f"{escape(checkpoint)} / forget {escape(split.spec)} ({len(split.forget)} samples)"
        out_console.print(report.rich_table(title=title))
    if result.bias is not None:
        out_console.print(_bias_table(result.bias, f"{escape(checkpoint)} / attribute {escape(attribute)}"))
    if result.poison is not None:
        out_console.print(_poison_line(result.poison), markup=False, soft_wrap=True)


def _poison_line(poison: dict) -> str:
    """One line of poisoning metrics (and the reference's in brackets when there is one)."""
    from unlearnkit.evaluation import POISON_KEYS

    ref = poison.get("reference", {})
    cells = [f"{k} {poison[k]:.4f}" + (f" (reference {ref[k]:.4f})" if k in ref else "") for k in POISON_KEYS
             if k in poison]
    what = f"target {poison['target']}" if "target" in poison else f"classes {poison['classes']}"
    return f"poison ({poison['kind']}, {what}): " + ", ".join(cells)


def _bias_cells(bias: dict) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a bias report (:func:`unlearnkit.evaluation.bias_report`'s dict): one row per key, the
    reference's value and the gap beside it when there is a reference."""
    from unlearnkit.evaluation import BIAS_KEYS

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    with_ref = "reference" in bias
    headers = ["metric", "value", *(["reference", "gap"] if with_ref else [])]
    rows = [[key, cell(bias["bias"][key]),
             *([cell(bias["reference"][key]), cell(bias["gap"].get(key))] if with_ref else [])] for key in BIAS_KEYS]
    return headers, rows


def _bias_table(bias: dict, title: str):
    from rich.table import Table

    headers, rows = _bias_cells(bias)
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="left" if h == "metric" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _bias_markdown(bias: dict) -> str:
    headers, rows = _bias_cells(bias)
    lines = ["| " + " | ".join(headers) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"
