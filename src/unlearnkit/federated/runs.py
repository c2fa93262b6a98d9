"""Federated checkpoints: train a federation and save it, remove a client, evaluate the removal.

A federated checkpoint is an ordinary checkpoint (the global model; ``unlearn evaluate`` reads it) whose sidecar
has a ``"federated"`` section: the job (data, model, :class:`FedConfig`), the clients' sample counts, the clients
removed so far, what training and removal cost, and ``"dir"``, the store folder ``PATH.fl/``
(:mod:`unlearnkit.federated.store`) when the checkpoint has one. ``fl train`` and ``fl-retrain`` write a store;
the approximate removals do not (a later removal starts from the checkpoint ``fl train`` wrote).

Training writes its store into ``OUT.fl.partial/`` round by round; only when the last round is in does the folder
become ``OUT.fl`` and the sidecar (the commit) appear. A killed run is continued with ``resume=True``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unlearnkit import files
from unlearnkit.data.dataset import DatasetBundle
from unlearnkit.data.select import ForgetSplit
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.evaluation import model_outputs
from unlearnkit.federated.client import FedConfig, FederationData, federation_data, job_model
from unlearnkit.federated.engine import Cost, Federation, State, fedavg, with_federation
from unlearnkit.federated.removal import FL_METHODS, FlRetrain, RemovalTask, storage_needed
from unlearnkit.federated.store import UpdateStore
from unlearnkit.metrics.accuracy import accuracy
from unlearnkit.metrics.mia import mia_auc
from unlearnkit.metrics.poison import attack_success_rate
from unlearnkit.models.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    checkpoint_paths,
    load_checkpoint,
    new_side_folder,
    save_checkpoint,
    side_folder,
)
from unlearnkit.runs import data_meta, refuse_overwrite
from unlearnkit.train import predict_logits

SECTION = "federated"


@dataclass
class FlRun:
    """What ``fl train`` or ``fl forget`` produced: the global model, the sidecar's federated section, the cost."""

    model: nn.Module
    federated: dict
    cost: Cost
    summary: dict = field(default_factory=dict)


def make_job(bundle: DatasetBundle, model_name: str, model_kwargs: dict, config: FedConfig) -> dict:
    """The JSON-able description every client rebuilds the federation from."""
    return {"data": {"source": bundle.source, "options": dict(bundle.options)},
            "model": {"name": model_name, "kwargs": dict(model_kwargs), "spec": bundle.spec.to_dict()},
            "config": config.to_dict(), "device": "cpu"}


def partial_folder(out: str | Path) -> Path:
    stem = checkpoint_paths(out)[1].with_suffix("")
    return stem.with_name(stem.name + ".fl.partial")


def _digest(ids: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids.numpy()).tobytes()).hexdigest()


def _clients_record(fed: FederationData) -> dict:
    return {"counts": fed.counts(), "ids_sha256": [_digest(p) for p in fed.parts]}


def train_federation(bundle: DatasetBundle, model_name: str, config: FedConfig, out: str | Path, *,
                     model_kwargs: dict | None = None, backend: str | Callable[[dict], Federation] = "simulation",
                     force: bool = False, resume: bool = False, progress: bool = False) -> FlRun:
    """Train ``model_name`` with FedAvg over ``config.clients`` clients of ``bundle`` and save the checkpoint ``out``
    (global model + store). ``backend``: ``simulation``, ``local`` or a function making a federation from the job
    (:func:`~unlearnkit.federated.engine.with_federation`). ``resume`` continues a run that was killed (same
    arguments)."""
    refuse_overwrite(out, force)
    job = make_job(bundle, model_name, model_kwargs or {}, config)
    fed = federation_data(job["data"], config)  # a bad partition or backdoor fails here, before Flower starts
    job_model(job)  # and an unknown model or kwargs
    partial = partial_folder(out)
    store = UpdateStore(partial)
    record = {"job": job, **_clients_record(fed)}
    if partial.exists():
        if not resume:
            raise CheckpointError(f"{partial} holds an interrupted federated run; pass --resume to continue it, or "
                                  "delete the folder to start over")
        if store.job() != record:
            raise CheckpointError(f"{partial} was started with other settings; rerun with the same options to "
                                  "resume, or delete the folder to start over")
        done = store.global_rounds()
        start_round = done[-1] if done else 0
    else:
        if resume:
            raise CheckpointError(f"nothing to resume: {partial} does not exist; run without --resume")
        store.write_job(record)
        start_round = 0
    state = (job_model(job).state_dict() if start_round == 0 and not store.global_rounds()
             else store.global_model(start_round))
    if start_round == 0:
        store.write_global(0, state)
    cost = Cost()

    def work(federation) -> State:
        return fedavg(federation, config, range(config.clients), state, range(start_round, config.rounds),
                      store=store, cost=cost, progress=progress, description="federated training")

    final = with_federation(job, backend, work) if start_round < config.rounds else state
    cost.stop()
    section = {"job": job, **_clients_record(fed), "removed": [], "backend": backend if isinstance(backend, str)
               else "deployment",
               "train_cost": {**cost.to_json(), "resumed_from_round": start_round},
               "storage": store.storage()}
    if config.backdoor_client is not None:
        section["backdoor"] = {"client": config.backdoor_client, "n_poisoned": len(fed.bundle.poison.ids)}
    model = _save(out, job, final, section, partial, bundle_meta=data_meta(bundle), history=[],
                  train_seconds=cost.seconds)
    return FlRun(model, section, cost)


def _save(out: str | Path, job: dict, state: State, section: dict, store_dir: Path | None, *, bundle_meta: dict,
          history: list[dict], train_seconds: float) -> nn.Module:
    """Write the global model and sidecar; a store folder becomes ``OUT.fl`` (named in the sidecar) first."""
    model = job_model(job)
    model.load_state_dict(state)
    if store_dir is not None:
        target = new_side_folder(out, SECTION)
        files.replace(store_dir, target)
        section = {**section, "dir": target.name}
    config = FedConfig.from_dict(job["config"])
    meta = CheckpointMeta(job["model"]["name"], job["model"]["kwargs"], _spec(job), bundle_meta,
                          config.local_recipe(config.local_epochs, config.seed).to_dict(), history=history,
                          extra={SECTION: section, "train_seconds": round(train_seconds, 3)})
    save_checkpoint(out, model, meta)
    return model.eval()


def _spec(job: dict):
    from unlearnkit.data.dataset import DataSpec

    return DataSpec.from_dict(job["model"]["spec"])


# --- loading ---------------------------------------------------------------------------------------------------
def load_federated(path: str | Path) -> tuple[Checkpoint, dict]:
    """A federated checkpoint and its ``"federated"`` section; anything else is a one-line error."""
    ckpt = load_checkpoint(path)
    section = ckpt.meta.get(SECTION)
    if not isinstance(section, dict) or "job" not in section:
        raise CheckpointError(f"{ckpt.path} is not a federated checkpoint; train one with unlearn fl train")
    return ckpt, section


def _check_client(section: dict, client: int) -> list[int]:
    clients = int(section["job"]["config"]["clients"])
    removed = [int(k) for k in section.get("removed", [])]
    active = [k for k in range(clients) if k not in removed]
    if client in removed:
        raise ConfigError(f"client {client} was already removed from this model; active clients: "
                          f"{', '.join(map(str, active))}")
    if client not in active:
        raise ConfigError(f"client {client} is not in this federation; clients are 0..{clients - 1}")
    if len(active) < 2:
        raise ConfigError("removing the last client would leave no federation; train a new one instead")
    return active


# --- removing a client -----------------------------------------------------------------------------------------
def forget_client(checkpoint: str | Path, client: int, method: str, out: str | Path, *, params: dict | None = None,
                  backend: str = "simulation", reference: str | Path | None = None, force: bool = False,
                  progress: bool = False) -> FlRun:
    """Remove ``client`` from the federated checkpoint with ``method``; save the result to ``out``. The summary has
    the cost and the speed-ups against ``fl-retrain`` (measured by ``reference``, an fl-retrain result, when given;
    else estimated from the training run: its seconds scaled by the remaining clients' share of the samples)."""
    cls = FL_METHODS.get(method)
    instance = cls(**(params or {}))
    ckpt, section = load_federated(checkpoint)
    if "dir" not in section:
        raise CheckpointError(f"{ckpt.path} keeps no stored client updates (it is the result of an approximate "
                              "removal); remove clients from the checkpoint unlearn fl train wrote, or from an "
                              "fl-retrain result")
    active = _check_client(section, client)
    refuse_overwrite(out, force)
    store = UpdateStore(side_folder(checkpoint, SECTION))
    job = section["job"]
    config = FedConfig.from_dict(job["config"])
    counts = {k: int(section["counts"][k]) for k in active}
    task = RemovalTask(job, config, store, client, active, counts, None, progress)
    cost = Cost()
    new_store = None
    if isinstance(instance, FlRetrain):
        partial = partial_folder(out)
        if partial.exists():
            if not force:
                raise CheckpointError(f"{partial} holds an interrupted federated run; pass --force to discard it, or "
                                      "choose another --out")
            files.remove_tree(partial)
        new_store = UpdateStore(partial)
        new_store.write_job(store.job())
        new_store.write_global(0, store.global_model(0))

    def work(federation) -> State:
        task.federation = federation
        if new_store is not None:
            return instance.run(task, cost, store=new_store)
        return instance.run(task, cost)

    state = with_federation(job, backend, work) if instance.contacts_clients else work(None)
    cost.stop()
    fed = federation_data(job["data"], config)
    ids = fed.parts[client]
    info = {"client": client, **cost.to_json(), **instance.info}
    entry = {"method": method, "forget_spec": f"client:{client}", "n_train": int(sum(counts.values())),
             "n_forget": len(ids), "forget_ids": ids.tolist(), "seed": config.seed,
             "config": asdict(instance.config),
             "seconds": round(cost.seconds, 3), "parent": str(ckpt.path), "info": info}
    new_section = {k: v for k, v in section.items() if k not in ("dir", "storage", "train_cost")}
    new_section["removed"] = [*section.get("removed", []), client]
    new_section["removal_cost"] = cost.to_json()
    if new_store is not None:
        new_section["storage"] = new_store.storage()
        new_section["train_cost"] = cost.to_json()
    model = _save(out, job, state, new_section, new_store.directory if new_store is not None else None,
                  bundle_meta=dict(ckpt.data), history=[*ckpt.history, entry],
                  train_seconds=cost.seconds if new_store is not None else float(ckpt.meta.get("train_seconds", 0)))
    summary = _removal_summary(method, cost, section, config, active, client, reference)
    summary["storage_bytes"] = storage_needed(instance, task)
    return FlRun(model, new_section, cost, summary)


def _removal_summary(method: str, cost: Cost, section: dict, config: FedConfig, active: list[int], client: int,
                     reference: str | Path | None) -> dict:
    counts = section["counts"]
    remaining = [k for k in active if k != client]
    retrain_epochs = config.rounds * config.local_epochs * len(remaining)
    retrain_rounds = config.rounds
    if method == "fl-retrain":
        retrain_seconds, source = cost.seconds, "this run"
    elif reference is not None:
        _, ref = load_federated(reference)
        spent = ref.get("removal_cost") or {}
        if not spent or ref.get("removed", [])[-1:] != [client]:
            raise ConfigError(f"--reference {reference} is not an fl-retrain removal of client {client}; pass the "
                              "checkpoint unlearn fl forget --method fl-retrain wrote")
        retrain_seconds, source = float(spent["seconds"]), f"measured: {reference}"
    else:
        share = sum(counts[k] for k in remaining) / sum(counts[k] for k in active)
        trained = float(section.get("train_cost", {}).get("seconds", 0.0))
        retrain_seconds, source = trained * share, "estimated: the training run's seconds x the remaining share"
    return {
        "method": method, "client": client, "seconds": round(cost.seconds, 3),
        "client_epochs": round(cost.client_epochs, 4), "rounds": cost.rounds,
        "retrain_client_epochs": retrain_epochs, "retrain_rounds": retrain_rounds,
        "retrain_seconds": round(retrain_seconds, 3), "retrain_seconds_source": source,
        "speedup_client_epochs": _ratio(retrain_epochs, cost.client_epochs),
        "speedup_rounds": _ratio(retrain_rounds, cost.rounds),
        "speedup_seconds": _ratio(retrain_seconds, cost.seconds),
    }


def _ratio(a: float, b: float) -> float | None:
    """a / b, rounded; None when b is 0 (a method that spent none of it: no finite ratio)."""
    return round(a / b, 3) if b > 0 else None


# --- evaluating ----------------------------------------------------------------------------------------------
def _measure(model: nn.Module, fed: FederationData, client: int, active: list[int], seed: int) -> dict:
    """The client's data as the forget set, the other active clients' as the retain set: one pass over each."""
    others = torch.cat([fed.parts[k] for k in active if k != client])
    split = ForgetSplit(fed.client(client), fed.bundle.train.by_ids(others), f"client:{client}", seed)
    test = fed.bundle.test
    out = model_outputs(model, split, test)
    values = {"test_accuracy": accuracy(out.logits["test"].numpy(), test.y.numpy()),
              "client_accuracy": accuracy(out.logits["forget"].numpy(), split.forget.y.numpy()),
              "client_mia_auc": mia_auc(out.losses["forget"], out.losses["test"], seed=seed),
              "remaining_accuracy": accuracy(out.logits["retain"].numpy(), split.retain.y.numpy())}
    poison = fed.bundle.poison
    if poison is not None:
        triggered = predict_logits(model, poison.triggered).argmax(1).numpy()
        values["attack_success_rate"] = attack_success_rate(triggered, poison.target)
    return values


def evaluate_client(checkpoint: str | Path, client: int, *, reference: str | Path | None = None) -> dict:
    """Test accuracy, accuracy and membership inference (loss attack, AUC against test samples) on ``client``'s
    data, accuracy on the other clients' data, and with a backdoored federation the attack success rate; with
    ``reference`` its values and the gaps (model minus reference)."""
    ckpt, section = load_federated(checkpoint)
    job = section["job"]
    config = FedConfig.from_dict(job["config"])
    if not 0 <= client < config.clients:
        raise ConfigError(f"client {client} is not in this federation; clients are 0..{config.clients - 1}")
    fed = federation_data(job["data"], config)
    active = [k for k in range(config.clients) if k not in section.get("removed", []) or k == client]
    models = {"model": ckpt.model}
    if reference is not None:
        ref_ckpt, ref_section = load_federated(reference)
        if ref_section["job"] != job:
            raise ConfigError(f"--reference {reference} belongs to another federation (other data, model or "
                              "settings); pass an fl-retrain result of this checkpoint's federation")
        models["reference"] = ref_ckpt.model
    out: dict = {"checkpoint": str(checkpoint), "client": client, "removed": section.get("removed", []),
                 "backdoored": config.backdoor_client == client}
    for role, model in models.items():
        values = _measure(model, fed, client, active, config.seed)
        out[role if role == "reference" else "metrics"] = {k: round(v, 6) for k, v in values.items()}
    if reference is not None:
        out["gap"] = {k: round(out["metrics"][k] - out["reference"][k], 6) for k in out["metrics"]}
    return out

