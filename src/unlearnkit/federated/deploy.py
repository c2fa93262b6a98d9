"""The ServerApp of a real Flower deployment: ``fl train`` driven by ``flwr run`` against a running SuperLink.

The simulation engine (``unlearn fl train``'s default) runs the same ClientApp and the same training code; here
the clients are ``flower-supernode`` processes, each started with ``--node-config "partition-id=K
num-partitions=N"`` and holding the dataset locally. The run config (``[tool.flwr.app.config]`` of the Flower app's
pyproject.toml, or ``flwr run --run-config``) names the job; see docs/FEDERATED.md for the whole walk-through:

    out = "runs/fl/original"   dataset = "digits"   model = "mlp"   clients = 3   partition = "iid"   rounds = 20
    local-epochs = 2   batch-size = 64   lr = 0.05   seed = 0   backdoor-client = -1   backdoor-rate = 0.8
    store-every = 1   store-dtype = "float32"   data-dir = ""   force = false
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from unlearnkit.data.sources import load_dataset
from unlearnkit.errors import ConfigError
from unlearnkit.federated.apps import FlowerFederation
from unlearnkit.federated.client import FedConfig
from unlearnkit.federated.runs import train_federation

server_app = ServerApp()

DEFAULTS = {"dataset": "digits", "model": "mlp", "clients": 3, "partition": "iid", "rounds": 20, "local-epochs": 2,
            "batch-size": 64, "lr": 0.05, "seed": 0, "backdoor-client": -1, "backdoor-rate": 0.8, "store-every": 1,
            "store-dtype": "float32", "data-dir": "", "force": False}


def job_settings(run_config: dict) -> dict:
    """The run config with defaults filled in; unknown keys are a one-line error."""
    unknown = set(run_config) - set(DEFAULTS) - {"out"}
    if unknown:
        raise ConfigError(f"unknown run-config key(s) {sorted(unknown)}; known: out, {', '.join(sorted(DEFAULTS))}")
    if "out" not in run_config:
        raise ConfigError("the run config needs out = \"PATH\": where the SuperLink's ServerApp saves the checkpoint")
    return {**DEFAULTS, **run_config}


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    s = job_settings(dict(context.run_config))
    config = FedConfig(clients=int(s["clients"]), rounds=int(s["rounds"]), partition=str(s["partition"]),
                       local_epochs=int(s["local-epochs"]), batch_size=int(s["batch-size"]), lr=float(s["lr"]),
                       seed=int(s["seed"]),
                       backdoor_client=None if int(s["backdoor-client"]) < 0 else int(s["backdoor-client"]),
                       backdoor_rate=float(s["backdoor-rate"]), store_every=int(s["store-every"]),
                       store_dtype=str(s["store-dtype"]))
    bundle = load_dataset(str(s["dataset"]), data_dir=str(s["data-dir"]) or None)
    train_federation(bundle, str(s["model"]), config, str(s["out"]), force=bool(s["force"]),
                     backend=lambda job: FlowerFederation(grid, job, config.clients))
