"""Commands that compare methods with retraining: compare, demo, neurips, bench, tune, report.

    unlearn demo                                   # digits: train, forget 10%, every method vs retrain
    unlearn compare --dataset digits --forget random:0.1 --methods all --json
    unlearn compare --dataset colored-digits --attribute color --methods all --json
    unlearn bench benchmarks/digits-smoke.toml --out runs/smoke && unlearn report runs/smoke
"""

from __future__ import annotations

import sys
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
    ProgressOpt,
    SeedOpt,
    SubjectsOpt,
    TrainSizeOpt,
    emit_json,
    load_bundle,
    out_console,
    parse_params,
    resolve_model_name,
    save_and_emit,
    status,
    train_recipe,
)
from unlearnkit.errors import ConfigError
from unlearnkit.files import refuse_overwrite

ForceSaveOpt = Annotated[bool, typer.Option("--force", help="Replace the --save file if it exists.")]


def run_compare_cli(dataset, model, forget_spec, methods_arg, seed, data_dir, subjects, train_size, device,
                 progress, quiet, epochs=None, data_option=(), attribute=None, **recipe):
    """compare's shared body: sample forgetting (``forget_spec``; None: random:0.1) or, with ``attribute``,
    attribute removal (``compare_attribute``); returns the comparison."""
    from unlearnkit.bench import apply_compare_defaults
    from unlearnkit.bench import compare as run_compare
    from unlearnkit.bench.compare import compare_attribute, resolve_attribute_methods, resolve_methods

    if attribute is not None and forget_spec is not None:
        raise ConfigError("compare takes --forget SPEC (methods that remove samples) or --attribute NAME (methods "
                          "that remove an attribute), not both; run compare once for each")
    (resolve_methods if attribute is None else resolve_attribute_methods)(methods_arg)  # bad names: before the data
    bundle, epochs = apply_compare_defaults(load_bundle(dataset, data_dir, subjects, train_size, data_option),
                                            train_size=train_size, epochs=epochs)
    name = resolve_model_name(dataset, model)
    config = train_recipe(dataset, name, 0, epochs=epochs, **recipe)
    if not quiet:
        status(f"original: {name} on {len(bundle.train)} {dataset} training samples, {config.epochs} epochs")
    if attribute is not None:
        return compare_attribute(bundle, attribute=attribute, methods=methods_arg, model=name, config=config,
                                 seed=seed, device=device, progress=progress, on_step=None if quiet else status)
    return run_compare(bundle, forget=forget_spec or "random:0.1", methods=methods_arg, model=name, config=config,
                       seed=seed, device=device, progress=progress, on_step=None if quiet else status)



def compare(
    dataset: DatasetOpt = "digits",
    model: ModelOpt = None,
    forget_spec: MaybeForgetOpt = None,
    attribute: AttributeOpt = None,
    methods_arg: Annotated[str, typer.Option("--methods", help="'all' or a comma list of methods (of the kind that "
                                             "--forget or --attribute asks for).")] = "all",
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    subjects: SubjectsOpt = None,
    train_size: TrainSizeOpt = None,
    data_option: DataOptionOpt = [],  # noqa: B006
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    save: Annotated[str | None, typer.Option("--save", help="Also write the JSON result to this file.")] = None,
    force: ForceSaveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train an original model, retrain without the forget set, run methods, and rank them against retraining.

    --forget (default random:0.1) compares the methods that remove samples against retrain; --attribute NAME instead
    compares the methods that remove an attribute against retrain-balanced, by their bias metrics.

    On fashion-mnist the original is trained on 10,000 images for 20 epochs by default, so that it memorises.

    Random forgetting then has something to remove; --train-size and --epochs override those defaults.
    """
    refuse_overwrite(save, force)  # before the models train
    result = run_compare_cli(dataset, model, forget_spec, methods_arg, seed, data_dir, subjects, train_size, device,
                             progress, as_json, epochs=epochs, data_option=data_option, attribute=attribute,
                             batch_size=batch_size, lr=lr)
    if save_and_emit(result.to_json(), save, as_json, force):
        return
    if markdown:
        sys.stdout.write(result.to_markdown())
        return
    out_console.print(result.rich_table())
    for name, why in result.skipped.items():
        out_console.print(f"skipped {name}: {why}", markup=False, soft_wrap=True)



def demo(
    forget_spec: ForgetOpt = "random:0.1",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """End-to-end demo on the embedded digits data: train, forget, run every method, compare to retraining."""
    # the cnn (not the digits default mlp) so that the conv-only methods run too
    result = run_compare_cli("digits", "cnn", forget_spec, "all", seed, None, None, None, device, None, False)
    out_console.print(result.rich_table())
    out_console.print(
        "forget/retain/test = accuracies; MIA-eff = share of forget samples a membership attack calls non-members; "
        "gap.avg = mean |difference| to retrain over forget, retain, test accuracy and MIA-eff; "
        "JS = Jensen-Shannon divergence to retrain's predictions on the forget set (bits); "
        "speedup = retrain seconds / method seconds."
    )



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
    data_option: Annotated[list[str], typer.Option(
        "--data-option", metavar="KEY=VALUE", help="Check that the checkpoint's data has this option value (repeat); "
        "the data options themselves come from the checkpoint.")] = [],  # noqa: B006
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    save: Annotated[str | None, typer.Option("--save", help="Also write the JSON result to this file.")] = None,
    force: ForceSaveOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """The NeurIPS-2023 challenge's score: N unlearned vs N retrained models, per forget example.

    Retrains N reference models (cached) and runs the method N times with seeds 0..N-1.

    Reports the forgetting quality F, the score F x retain ratio x test ratio, and one epsilon per example.
    """
    import numpy as np

    from unlearnkit.bench.neurips import neurips_evaluation
    from unlearnkit.bench.references import default_cache_dir
    from unlearnkit.cli.common import parse_data_options
    from unlearnkit.data import select
    from unlearnkit.runs import load_with_data, training_set
    from unlearnkit.train import TrainConfig

    refuse_overwrite(save, force)  # before the models train
    ckpt, bundle = load_with_data(checkpoint, device=device, data_dir=data_dir,
                                  data_options=parse_data_options(data_option))
    train_set = training_set(bundle, ckpt)
    split = select(train_set, forget_spec, seed=seed)
    cache = None if no_cache else str(cache_dir or default_cache_dir())
    result = neurips_evaluation(
        ckpt.model, train_set, split, bundle.test, method, train_config=TrainConfig.from_dict(ckpt.train_config),
        model_name=ckpt.model_name, model_kwargs=ckpt.model_kwargs, n_models=models, params=parse_params(param),
        calibration=calibration, cache_dir=cache, device=device, progress=progress,
        on_step=None if as_json else status,
    )
    if save_and_emit(result.to_json(), save, as_json, force):
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
                       progress=progress, on_step=None if as_json else status)
    rows = [{"scenario": dataset, "forget": forget, **{k: v for k, v in entry.items() if k != "epsilons"}}
            for (dataset, forget), entries in aggregate(result.store.rows()).items() for entry in entries]
    if as_json:
        return emit_json({"ran": result.ran, "skipped": result.skipped, "summary": rows})
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --write file (the default overlay "
                                        "in --out follows its study without it).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run: count the study's "
                                         "finished trials toward --trials and run only the missing ones.")] = False,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune a method's hyperparameters with Optuna: minimise the gap to retraining on a tuning split.

    Writes the best parameters as a TOML overlay that `unlearn bench CONFIG --overlay FILE` accepts. Every finished
    trial is in OUT/tune.db at once; after a kill, the same command with --resume ends with --trials finished
    trials (a trial the kill cut short is marked failed and not counted).
    """
    import shlex
    import sys

    from unlearnkit.bench.config import load_config
    from unlearnkit.bench.tune import tune as run_tune

    config = load_config(config_path)
    directory = out or f"runs/tune/{config.name}-{method}"
    command = "unlearn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = run_tune(config, method, trials, directory, tuning_seed=seed, overlay_path=write, timeout=timeout,
                      device=device, progress=progress, on_step=None if as_json else status, command=command,
                      force=force, resume=resume)
    if as_json:
        return emit_json(result.to_json())
    default = "not tried" if result.default_value is None else f"{result.default_value:.4f}"
    for line in (f"{method}: best gap.average {result.best_value:.4f} (defaults {default}) after {result.trials} "
                 f"trials ({result.failed} failed), tuning seed {result.tuning_seed}",
                 f"best parameters: {result.best_params}",
                 f"wrote {result.overlay_path}; use: unlearn bench {config_path} --overlay {result.overlay_path}"):
        out_console.print(line, markup=False, soft_wrap=True)



def report(
    out: Annotated[str, typer.Argument(metavar="DIR", help="The --out directory of `unlearn bench` or of "
                                       "`unlearn stream`.")],
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the result store "
                                           "(default: sqlite:///DIR/results.sqlite).")] = None,
) -> None:
    """Write DIR/report.md and a self-contained DIR/report.html: for a bench, ranked tables (mean ± std over seeds)
    and plots; for a stream (DIR/stream.json), the accuracy trajectory over versions with fallbacks marked."""
    from pathlib import Path

    from unlearnkit.bench.report import write_report

    if db is None and (Path(out) / "stream.json").is_file():
        from unlearnkit.stream.report import write_stream_report

        md_path, html_path = write_stream_report(out)
    else:
        md_path, html_path = write_report(out, db=db)
    out_console.print(f"wrote {md_path} and {html_path}", markup=False, soft_wrap=True)

