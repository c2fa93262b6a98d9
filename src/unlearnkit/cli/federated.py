"""``unlearn fl``: federated training on Flower and removing a client from the federated model.

    unlearn fl train --dataset fashion-mnist --model mlp --clients 10 --partition dirichlet:0.5 --rounds 20 \
        --backdoor-client 3 --out runs/fl/original
    unlearn fl forget --checkpoint runs/fl/original --client 3 --method fl-retrain --out runs/fl/retrain --json
    unlearn fl forget --checkpoint runs/fl/original --client 3 --method federaser --out runs/fl/federaser --json
    unlearn fl evaluate --checkpoint runs/fl/federaser --client 3 --reference runs/fl/retrain --json
    unlearn fl methods
"""

from __future__ import annotations

from typing import Annotated

import typer

from unlearnkit.cli.common import (
    DataDirOpt,
    DataOptionOpt,
    DatasetOpt,
    JsonOpt,
    ModelOpt,
    ProgressOpt,
    SubjectsOpt,
    TrainSizeOpt,
    emit_json,
    load_bundle,
    out_console,
    parse_params,
    resolve_model_name,
    status,
    warn,
)

fl_app = typer.Typer(help="Federated learning on Flower: train a federation, remove a client, evaluate the removal.",
                     no_args_is_help=True)

BackendOpt = Annotated[str, typer.Option("--backend", help="simulation: Flower's simulation engine (Ray); local: "
                                         "the same clients in this process.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing checkpoint at --out.")]


@fl_app.command("train")
def fl_train(
    out: Annotated[str, typer.Option("--out", "-o", help="Checkpoint path (the global model; OUT.fl/ holds the "
                                     "stored updates).")],
    dataset: DatasetOpt = "digits",
    model: ModelOpt = None,
    clients: Annotated[int, typer.Option("--clients", help="Number of clients N.")] = 10,
    partition: Annotated[str, typer.Option("--partition", help="iid, dirichlet:ALPHA (label skew) or subject "
                                           "(needs --subjects).")] = "iid",
    rounds: Annotated[int, typer.Option("--rounds", help="FedAvg rounds (every client takes part in each).")] = 20,
    local_epochs: Annotated[int, typer.Option("--local-epochs", help="Local epochs per round (E_loc).")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Local mini-batch size.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Local SGD learning rate.")] = 0.05,
    backdoor_client: Annotated[int | None, typer.Option("--backdoor-client", help="This client's data carries a "
                                                        "BadNets trigger (to prove its removal).")] = None,
    backdoor_rate: Annotated[float, typer.Option("--backdoor-rate", help="Share of that client's non-target "
                                                 "samples stamped and relabelled.")] = 0.8,
    backdoor_target: Annotated[int, typer.Option("--backdoor-target", help="The backdoor's target class.")] = 0,
    store_every: Annotated[int, typer.Option("--store-every", help="Store clients' updates every K rounds "
                                             "(FedEraser's interval; the last round always).")] = 1,
    store_dtype: Annotated[str, typer.Option("--store-dtype", help="float32, or float16 to halve the "
                                             "storage.")] = "float32",
    seed: Annotated[int, typer.Option("--seed", help="Seeds the partition, the initial model and local "
                                      "training.")] = 0,
    backend: BackendOpt = "simulation",
    data_dir: DataDirOpt = None,
    subjects: SubjectsOpt = None,
    train_size: TrainSizeOpt = None,
    data_option: DataOptionOpt = [],  # noqa: B006
    resume: Annotated[bool, typer.Option("--resume", help="Continue a run that was interrupted (same "
                                         "options).")] = False,
    force: ForceOpt = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a model with FedAvg over N clients, each holding a partition of the data, and store what client
    removal needs (global models, clients' updates, sample counts)."""
    from unlearnkit.federated import FedConfig, train_federation
    from unlearnkit.train import accuracy_on, show_progress

    bundle = load_bundle(dataset, data_dir, subjects, train_size, data_option)
    config = FedConfig(clients=clients, rounds=rounds, partition=partition, local_epochs=local_epochs,
                       batch_size=batch_size, lr=lr, seed=seed, backdoor_client=backdoor_client,
                       backdoor_rate=backdoor_rate, backdoor_target=backdoor_target, store_every=store_every,
                       store_dtype=store_dtype)
    name = resolve_model_name(dataset, model)
    if not as_json:
        status(f"FedAvg: {name} on {dataset}, {clients} clients ({partition}), {rounds} rounds, backend {backend}")
    run = train_federation(bundle, name, config, out, backend=backend, force=force, resume=resume,
                           progress=show_progress(progress))
    summary = {"out": out, "model": name, "dataset": dataset, "clients": clients, "partition": partition,
               "rounds": rounds, "backend": backend, "counts": run.federated["counts"],
               "test_accuracy": round(accuracy_on(run.model, bundle.test), 6), **run.cost.to_json(),
               "storage": run.federated["storage"]}
    if "backdoor" in run.federated:
        summary["backdoor"] = run.federated["backdoor"]
    if as_json:
        return emit_json(summary)
    storage = run.federated["storage"]
    out_console.print(f"saved {out}: test accuracy {summary['test_accuracy']:.4f}, {summary['client_epochs']:g} "
                      f"client epochs in {summary['seconds']:.1f} s; stored {storage['total_bytes'] / 1e6:.1f} MB "
                      f"({storage['update_bytes'] / 1e6:.1f} MB of client updates)", markup=False, soft_wrap=True)
    return None


@fl_app.command("forget")
def fl_forget(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="A checkpoint written by unlearn fl train.")],
    client: Annotated[int, typer.Option("--client", help="The client to remove (its partition id).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to save the model without the client.")],
    method: Annotated[str, typer.Option("--method", help="fl-retrain, federaser, fl-gradient-ascent or fedaccum "
                                        "(unlearn fl methods).")] = "federaser",
    param: Annotated[list[str], typer.Option("--param", metavar="KEY=VALUE", help="A method hyperparameter "
                                             "(repeat).")] = [],  # noqa: B006
    reference: Annotated[str | None, typer.Option("--reference", help="An fl-retrain result: its measured seconds "
                                                  "give speedup_seconds.")] = None,
    backend: BackendOpt = "simulation",
    force: ForceOpt = False,
    progress: ProgressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove one client's contribution from a federated model; report the cost (client epochs, rounds, seconds)
    and the speed-ups against fl-retrain."""
    from unlearnkit.federated import forget_client
    from unlearnkit.train import show_progress

    if not as_json:
        status(f"removing client {client} from {checkpoint} with {method}")
    run = forget_client(checkpoint, client, method, out, params=parse_params(param), backend=backend,
                        reference=reference, force=force, progress=show_progress(progress))
    summary = {"out": out, **run.summary}
    if method != "fl-retrain" and (summary["speedup_client_epochs"] or 2.0) < 1:
        warn(f"{method} spent more client epochs ({summary['client_epochs']:g}) than fl-retrain would "
             f"({summary['retrain_client_epochs']:g}): on a federation of {summary['retrain_rounds']} rounds its "
             "fixed costs (e.g. post_rounds) outweigh retraining; prefer fl-retrain or lower its parameters")
    if as_json:
        return emit_json(summary)
    s = summary
    if method == "fl-retrain":
        versus = "the exact reference"
    elif s["speedup_client_epochs"] is None:
        versus = f"no client training; fl-retrain needs {s['retrain_client_epochs']:g} client epochs"
    elif s["speedup_client_epochs"] < 1:
        versus = f"{1 / s['speedup_client_epochs']:.2g}x more client epochs than fl-retrain"
    else:
        versus = f"{s['speedup_client_epochs']:g}x fewer client epochs than fl-retrain"
    out_console.print(f"saved {out}: {method} spent {s['client_epochs']:g} client epochs, {s['rounds']} "
                      f"round(s), {s['seconds']:.1f} s ({versus})", markup=False, soft_wrap=True)
    return None


@fl_app.command("evaluate")
def fl_evaluate(
    checkpoint: Annotated[str, typer.Option("--checkpoint", "-c", help="A federated checkpoint.")],
    client: Annotated[int, typer.Option("--client", help="The (removed) client to measure.")],
    reference: Annotated[str | None, typer.Option("--reference", help="The fl-retrain result to compare "
                                                  "with.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Test accuracy, accuracy and membership inference on the client's data, accuracy on the other clients'
    data, the attack success rate of a backdoored federation, and the gaps to the reference."""
    from unlearnkit.federated import evaluate_client

    result = evaluate_client(checkpoint, client, reference=reference)
    if as_json:
        return emit_json(result)
    from rich.table import Table

    table = Table(title=f"client {client} of {checkpoint}")
    table.add_column("metric")
    table.add_column("model", justify="right")
    if reference is not None:
        table.add_column("reference", justify="right")
        table.add_column("gap", justify="right")
    for key, value in result["metrics"].items():
        row = [key, f"{value:.4f}"]
        if reference is not None:
            row += [f"{result['reference'][key]:.4f}", f"{result['gap'][key]:+.4f}"]
        table.add_row(*row)
    out_console.print(table)
    return None


@fl_app.command("methods")
def fl_methods(as_json: JsonOpt = False) -> None:
    """List the client-removal methods: what each needs stored, and its hyperparameters (defaults)."""
    from dataclasses import fields

    from unlearnkit.federated import FL_METHODS

    rows = [{"name": cls.name, "kind": cls.kind, "summary": cls.summary, "reference": cls.reference,
             "needs": cls.needs, "contacts_clients": cls.contacts_clients,
             "params": {f.name: f.default for f in fields(cls.Config)}} for cls in FL_METHODS.values()]
    if as_json:
        return emit_json(rows)
    from rich.table import Table

    table = Table(title="client-removal methods")
    for col in ("name", "summary", "needs", "params"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["summary"], r["needs"],
                      ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items())
                      or "-")
    out_console.print(table)
    return None
