"""The server side: FedAvg rounds over a :class:`Federation`, which is Flower or an in-process loop.

A federation answers :meth:`Federation.ask` (a list of :class:`ClientTask`, at most one per client) with the
clients' :class:`ClientReply`, sorted by client. Two implementations:

- ``simulation`` (the default): Flower's simulation engine (Ray backend) runs the ClientApp of
  :mod:`unlearnkit.federated.apps` in worker processes and this code inside its ServerApp;
- ``local``: :class:`LocalFederation` calls :func:`~unlearnkit.federated.client.run_task` in this process, one
  client after another (the plain loop the tests compare Flower against, and a quick way to debug).

Both run the same client function on the same seeds, so the same job gives the same weights either way.
:func:`fedavg` aggregates by sample counts, in float64, over the replies sorted by client id, so the order in which
replies arrive never changes the sum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from unlearnkit.errors import ConfigError
from unlearnkit.federated.client import ClientReply, ClientTask, FedConfig, run_task
from unlearnkit.federated.store import UpdateStore

BACKENDS = ("simulation", "local")
T = TypeVar("T")
State = dict[str, torch.Tensor]


class Federation(Protocol):
    """Sends tasks to clients and returns their replies sorted by client."""

    def ask(self, tasks: Sequence[ClientTask]) -> list[ClientReply]: ...


class LocalFederation:
    """Every client in this process, one after another."""

    def __init__(self, job: dict) -> None:
        self.job = job

    def ask(self, tasks: Sequence[ClientTask]) -> list[ClientReply]:
        return sorted((run_task(self.job, t) for t in tasks), key=lambda r: r.client)


def with_federation(job: dict, backend: str | Callable[[dict], Federation], work: Callable[[Federation], T]) -> T:
    """Run ``work(federation)`` on a federation of ``backend`` (``simulation`` or ``local``, or a function that makes
    one from the job: a real deployment's ServerApp passes its Flower grid that way); returns its result."""
    if callable(backend):
        return work(backend(job))
    if backend == "local":
        return work(LocalFederation(job))
    if backend == "simulation":
        from unlearnkit.federated.apps import run_in_simulation

        return run_in_simulation(job, work)
    raise ConfigError(f"unknown federated backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


@dataclass
class Cost:
    """What an operation on the federation spent: client epochs, communication rounds, wall seconds."""

    client_epochs: float = 0.0
    rounds: int = 0
    seconds: float = 0.0
    messages: int = 0
    started: float = field(default_factory=time.perf_counter, repr=False)

    def add(self, replies: Sequence[ClientReply]) -> None:
        self.client_epochs += sum(r.epochs for r in replies)
        self.rounds += 1
        self.messages += len(replies)

    def stop(self) -> Cost:
        self.seconds = time.perf_counter() - self.started
        return self

    def to_json(self) -> dict:
        return {"client_epochs": round(self.client_epochs, 4), "rounds": self.rounds,
                "seconds": round(self.seconds, 3), "messages": self.messages}


def difference(new: State, old: State) -> State:
    return {k: new[k] - old[k] if new[k].is_floating_point() else new[k].clone() for k in old}


def apply_mean(state: State, updates: dict[int, State], counts: dict[int, int]) -> State:
    """``state`` plus the sample-weighted mean of ``updates`` (float64 sums, client order), as ``state``'s dtypes;
    tensors that are not floating point (counters) take the first client's value."""
    total = float(sum(counts[k] for k in updates))
    out: State = {}
    for name, value in state.items():
        if not value.is_floating_point():
            out[name] = next(iter(updates.values()))[name].clone()
            continue
        acc = torch.zeros_like(value, dtype=torch.float64)
        for k in sorted(updates):
            acc += updates[k][name].to(torch.float64) * (counts[k] / total)
        out[name] = (value.to(torch.float64) + acc).to(value.dtype)
    return out


def fedavg(federation: Federation, config: FedConfig, clients: Sequence[int], state: State, rounds: range, *,
           purpose: int = 0, store: UpdateStore | None = None, cost: Cost | None = None,
           progress: bool = False, description: str = "federated rounds") -> State:
    """FedAvg (McMahan et al. 2017) over ``clients`` for ``rounds``, from the global weights ``state``; returns
    the final global weights. With ``store``, the global model after each round is written, and every client's
    update at the rounds ``config.stored_rounds()`` names."""
    stored = set(config.stored_rounds())
    for t in tqdm(rounds, desc=description, disable=not progress, unit="round", leave=False):
        replies = federation.ask([ClientTask(k, "train", state, t, purpose) for k in sorted(clients)])
        if cost is not None:
            cost.add(replies)
        updates = {r.client: difference(r.weights, state) for r in replies}
        counts = {r.client: r.samples for r in replies}
        if store is not None and t in stored:
            store.write_updates(t, updates, config.store_dtype)
        state = apply_mean(state, updates, counts)
        if store is not None:
            store.write_global(t + 1, state)
    return state
