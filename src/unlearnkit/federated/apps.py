"""The Flower apps (Message API): one ClientApp for every client, a ServerApp per job, and the simulation runner.

- :data:`client_app` answers ``query`` (which partition am I: ``node_config["partition-id"]``) and ``train``
  (a :class:`~unlearnkit.federated.client.ClientTask` in a message: the global weights as an ``ArrayRecord``, the
  job and instruction in a ``ConfigRecord``) by calling :func:`~unlearnkit.federated.client.run_task`: its local
  weights, sample count and epochs come back in the reply.
- :class:`FlowerFederation` is the server's handle on the clients: it waits for the nodes, learns each node's
  partition id, and turns ``ask`` into ``grid.send_and_receive``.
- :func:`run_in_simulation` starts Flower's simulation engine (Ray backend) with one virtual SuperNode per client
  and runs the caller's work inside a ServerApp.
- :data:`server_app` is the same work for a real deployment (``flwr run`` against ``flower-superlink`` and
  ``flower-supernode --node-config "partition-id=K num-partitions=N"``): it reads the run config (see
  docs/FEDERATED.md) and trains and saves a federated checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from unlearnkit.errors import UnlearnError
from unlearnkit.federated.client import ClientReply, ClientTask, run_task

T = TypeVar("T")
NODE_WAIT_SECONDS = 120.0  # how long the server waits for every SuperNode to connect


# --- the client ----------------------------------------------------------------------------------------------
client_app = ClientApp()


@client_app.query()
def _query(message: Message, context: Context) -> Message:
    info = ConfigRecord({"partition": int(context.node_config.get("partition-id", -1)),
                         "partitions": int(context.node_config.get("num-partitions", -1))})
    return Message(RecordDict({"node": info}), reply_to=message)


@client_app.train()
def _train(message: Message, context: Context) -> Message:
    import torch

    torch.set_num_threads(int(os.environ.get("UNLEARNKIT_CLIENT_THREADS", "1")))
    cfg = message.content["task"]
    job = json.loads(str(cfg["job"]))
    epochs = float(cfg["epochs"])
    task = ClientTask(client=int(cfg["client"]), action=str(cfg["action"]),
                      weights=message.content["weights"].to_torch_state_dict(), round=int(cfg["round"]),
                      purpose=int(cfg["purpose"]), epochs=None if epochs < 0 else epochs,
                      reference=(message.content["reference"].to_torch_state_dict()
                                 if "reference" in message.content else None),
                      options=json.loads(str(cfg["options"])))
    reply = run_task(job, task)
    record = ConfigRecord({"client": reply.client, "samples": reply.samples, "epochs": float(reply.epochs),
                           "info": json.dumps(reply.info)})
    return Message(RecordDict({"weights": ArrayRecord(reply.weights), "reply": record}), reply_to=message)


# --- the server's handle ---------------------------------------------------------------------------------------
class FlowerFederation:
    """Clients reached through a Flower ``Grid``, addressed by partition id."""

    def __init__(self, grid: Grid, job: dict, clients: int, *, wait: float = NODE_WAIT_SECONDS) -> None:
        self.grid, self.job_text = grid, json.dumps(job)
        deadline = time.monotonic() + wait
        while len(nodes := list(grid.get_node_ids())) < clients:
            if time.monotonic() > deadline:
                raise UnlearnError(f"only {len(nodes)} of {clients} Flower SuperNodes connected within {wait:.0f} s; "
                                   "start one flower-supernode per client (partition-id=0..N-1)")
            time.sleep(0.05)
        replies = grid.send_and_receive([Message(RecordDict({}), dst_node_id=n, message_type="query")
                                         for n in nodes])
        self.nodes: dict[int, int] = {}
        for reply in replies:
            _raise_on_error(reply, "a SuperNode")
            self.nodes[int(reply.content["node"]["partition"])] = reply.metadata.src_node_id
        missing = sorted(set(range(clients)) - set(self.nodes))
        if missing:
            raise UnlearnError(f"no SuperNode holds partition(s) {missing}; start each flower-supernode with "
                               f"--node-config \"partition-id=K num-partitions={clients}\"")

    def ask(self, tasks: Sequence[ClientTask]) -> list[ClientReply]:
        messages = []
        for t in tasks:
            content = RecordDict({
                "weights": ArrayRecord({k: v.contiguous() for k, v in t.weights.items()}),
                "task": ConfigRecord({"job": self.job_text, "client": t.client, "action": t.action, "round": t.round,
                                      "purpose": t.purpose, "epochs": -1.0 if t.epochs is None else float(t.epochs),
                                      "options": json.dumps(t.options)}),
            })
            if t.reference is not None:
                content["reference"] = ArrayRecord({k: v.contiguous() for k, v in t.reference.items()})
            messages.append(Message(content, dst_node_id=self.nodes[t.client], message_type="train",
                                    group_id=str(t.round)))
        out = []
        for reply in self.grid.send_and_receive(messages):
            _raise_on_error(reply, "a client")
            r = reply.content["reply"]
            out.append(ClientReply(int(r["client"]), reply.content["weights"].to_torch_state_dict(),
                                   int(r["samples"]), float(r["epochs"]), json.loads(str(r["info"]))))
        if len(out) != len(tasks):
            raise UnlearnError(f"{len(tasks) - len(out)} of {len(tasks)} clients did not answer; check the "
                               "SuperNodes' logs")
        return sorted(out, key=lambda r: r.client)


def _raise_on_error(reply: Message, who: str) -> None:
    if reply.has_error():
        reason = str(reply.error.reason).strip().splitlines()
        raise UnlearnError(f"{who} failed: {reason[-1] if reason else 'no reason given'} (Flower error code "
                           f"{reply.error.code})")


# --- simulation ----------------------------------------------------------------------------------------------
def run_in_simulation(job: dict, work: Callable[[FlowerFederation], T], *, cpus: int | None = None) -> T:
    """Run ``work`` in a ServerApp of Flower's simulation engine with one SuperNode per client (Ray backend, one
    CPU per client worker); returns what ``work`` returned and re-raises what it raised."""
    from flwr.simulation import run_simulation

    clients = int(job["config"]["clients"])
    result: dict = {}
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        try:
            result["value"] = work(FlowerFederation(grid, job, clients))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            result["error"] = exc

    cpus = cpus or max(1, min(clients, os.cpu_count() or 1))
    config = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
              "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False, "logging_level": "ERROR",
                            "log_to_driver": False}}
    with _quiet_flower():
        run_simulation(server_app=server, client_app=client_app, num_supernodes=clients, backend_config=config)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise UnlearnError("Flower's simulation ended before the federated job finished; rerun with --debug")
    return result["value"]


class _quiet_flower:
    """Flower's INFO lines and its deprecation notice for ``run_simulation`` kept off the user's terminal."""

    _lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()
        self.logger = logging.getLogger("flwr")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc) -> None:
        self.catch.__exit__(*exc)
        self.logger.setLevel(self.level)
        self._lock.release()
