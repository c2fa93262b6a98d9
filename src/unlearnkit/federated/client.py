"""What a federated client holds and does: the federation's recipe, its share of the data, and local training.

Everything here is a pure function of a *job* (a JSON-able dict: the data source and options, the model and
:class:`FedConfig`) and a :class:`ClientTask` (the global weights, the round, what to do). The Flower ClientApp
(:mod:`unlearnkit.federated.apps`) and the in-process federation (:mod:`unlearnkit.federated.engine`) both call
:func:`run_task`, so the two give the same numbers.

Local training is plain SGD (momentum, weight decay, constant learning rate; a fresh optimizer every round, as in
FedAvg, McMahan et al. 2017), seeded by (federation seed, round, client, purpose) through
:func:`client_seed`, so a client's update depends on nothing but its data and the weights it receives.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import DatasetBundle, DataSpec, IndexedDataset
from unlearnkit.data.poison import backdoor_rows
from unlearnkit.data.sources import load_dataset
from unlearnkit.errors import ConfigError, TrainingDivergedError
from unlearnkit.federated.partition import parse_partition, partition_ids
from unlearnkit.models.registry import build_model
from unlearnkit.params import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Interval, Options, Params, param
from unlearnkit.train import TrainConfig, accuracy_on, batches, fit

STORE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class FedConfig(Params):
    """The federation's recipe: clients, partition, rounds, local training, the backdoored client, what is stored.

    Defaults: 10 clients, 20 rounds of 2 local epochs at lr 0.05 (the Fashion-MNIST benchmark of docs/FEDERATED.md);
    every client's update stored at every round in float32 (FedEraser's Δt = 1).
    """

    owner = "federated training"

    clients: int = param(10, Interval(int, 2, None))
    rounds: int = param(20, AT_LEAST_ONE)
    partition: str = "iid"
    local_epochs: int = param(2, AT_LEAST_ONE)
    batch_size: int = param(64, AT_LEAST_ONE)
    lr: float = param(0.05, POSITIVE)
    momentum: float = param(0.9, Interval(float, 0, 1, closed="left"))
    weight_decay: float = param(5e-4, NON_NEGATIVE)
    seed: int = 0
    # the client whose data carries a BadNets trigger (None: no backdoor), the share of its non-target samples
    # stamped and relabelled (0.8, as in IBM's federated-unlearning notebook), the target class and patch size
    backdoor_client: int | None = param(None, Interval(int, 0, None))
    backdoor_rate: float = param(0.8, FRACTION)
    backdoor_target: int = param(0, Interval(int, 0, None))
    backdoor_size: int = param(3, AT_LEAST_ONE)
    # clients' updates are stored at rounds 0, Δt, 2Δt, ... and always at the last round (FedEraser's Δt)
    store_every: int = param(1, AT_LEAST_ONE)
    store_dtype: str = param("float32", Options(*STORE_DTYPES))

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_partition(self.partition)
        if self.backdoor_client is not None and self.backdoor_client >= self.clients:
            raise ConfigError(f"--backdoor-client {self.backdoor_client} is not a client of this federation "
                              f"(0..{self.clients - 1})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FedConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown federated setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def stored_rounds(self) -> list[int]:
        """The rounds whose client updates are kept: 0, Δt, 2Δt, ... and the last."""
        return sorted(set(range(0, self.rounds, self.store_every)) | {self.rounds - 1})

    def local_recipe(self, epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, optimizer="sgd", lr=self.lr,
                           momentum=self.momentum, weight_decay=self.weight_decay, schedule="constant", seed=seed)


def client_seed(seed: int, round_: int, client: int, purpose: int = 0) -> int:
    """The seed of one client's local work in one round (purpose: 0 train or calibrate, 2 ascend, 3 post-train)."""
    return int(np.random.SeedSequence([seed, round_, client, purpose]).generate_state(1)[0])


# --- the federation's data --------------------------------------------------------------------------------------
@dataclass
class FederationData:
    """The data of a federation: the bundle (the backdoored client's rows poisoned), and each client's ids."""

    bundle: DatasetBundle
    parts: list[torch.Tensor]

    def client(self, k: int) -> IndexedDataset:
        if not 0 <= k < len(self.parts):
            raise ConfigError(f"client {k} is not in this federation (clients 0..{len(self.parts) - 1})")
        return self.bundle.train.by_ids(self.parts[k])

    def counts(self) -> list[int]:
        return [len(p) for p in self.parts]


_DATA_CACHE: dict[str, FederationData] = {}


def federation_data(data: dict, config: FedConfig) -> FederationData:
    """Rebuild the federation's data from ``data`` (``{"source": ..., "options": ...}``, what a checkpoint records)
    and the config: the same source, partition and backdoor every time. Cached per process (a Flower client
    process serves many rounds)."""
    key = json.dumps([data.get("source"), data.get("options", {}), config.to_dict()], sort_keys=True, default=str)
    if key not in _DATA_CACHE:
        bundle = load_dataset(data["source"], **data.get("options", {}))
        parts = partition_ids(bundle.train, config.clients, config.partition, config.seed)
        if config.backdoor_client is not None:
            rows = torch.nonzero(bundle.train.mask_of(parts[config.backdoor_client])).flatten().numpy()
            backdoor_rows(bundle, rows, rate=config.backdoor_rate, target=config.backdoor_target,
                          size=config.backdoor_size, seed=config.seed)
        _DATA_CACHE.clear()  # one federation per process at a time: Fashion-MNIST is 200 MB as float32
        _DATA_CACHE[key] = FederationData(bundle, parts)
    return _DATA_CACHE[key]


def job_model(job: dict) -> nn.Module:
    """A fresh model of the job's architecture (weights from the federation's seed: the initial global model)."""
    spec = DataSpec.from_dict(job["model"]["spec"])
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in job["model"].get("kwargs", {}).items()}
    return build_model(job["model"]["name"], spec, seed=job["config"]["seed"], **kwargs)


# --- what a client is asked to do ------------------------------------------------------------------------------
ACTIONS = ("train", "ascend")
ASCENT_CHECK_SAMPLES = 512  # the early-stopping check of projected ascent runs on this many client samples


@dataclass
class ClientTask:
    """One instruction to one client: start from ``weights`` and ``train`` (``epochs`` passes, fractions allowed,
    or the federation's local epochs when None) or ``ascend`` (projected gradient ascent, ``options``)."""

    client: int
    action: str
    weights: dict[str, torch.Tensor]
    round: int
    purpose: int = 0
    epochs: float | None = None
    reference: dict[str, torch.Tensor] | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ClientReply:
    """A client's answer: its new local weights, how many samples it holds, and the epochs it spent."""

    client: int
    weights: dict[str, torch.Tensor]
    samples: int
    epochs: float
    info: dict = field(default_factory=dict)


def run_task(job: dict, task: ClientTask) -> ClientReply:
    """Do ``task`` as client ``task.client`` of the federation ``job``; deterministic on CPU."""
    if task.action not in ACTIONS:
        raise ConfigError(f"unknown client action {task.action!r}; known: {', '.join(ACTIONS)}")
    config = FedConfig.from_dict(job["config"])
    data = federation_data(job["data"], config).client(task.client)
    model = job_model(job)
    model.load_state_dict(task.weights)
    seed = client_seed(config.seed, task.round, task.client, task.purpose)
    device = job.get("device", "cpu")
    if task.action == "train":
        epochs = local_train(model, data, config, seed=seed, epochs=task.epochs, device=device)
        info: dict = {}
    else:
        epochs, info = projected_ascent(model, data, task.reference, seed=seed, batch_size=config.batch_size,
                                        device=device, **task.options)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    return ClientReply(task.client, state, len(data), epochs, info)


def local_train(model: nn.Module, data: IndexedDataset, config: FedConfig, *, seed: int,
                epochs: float | None = None, device: str = "cpu") -> float:
    """Train ``model`` in place on ``data`` for ``epochs`` passes (``config.local_epochs`` when None; a fraction
    runs that share of the mini-batches, at least one). Returns the epochs spent (steps / batches per epoch)."""
    per_epoch = math.ceil(len(data) / config.batch_size)
    steps = config.local_epochs * per_epoch if epochs is None else max(1, round(epochs * per_epoch))
    fit(model, data, config.local_recipe(math.ceil(steps / per_epoch), seed), device=device, progress=False,
        description="local training", steps=steps)
    return steps / per_epoch


def projected_ascent(model: nn.Module, data: IndexedDataset, reference: dict[str, torch.Tensor] | None, *,
                     radius: float, lr: float, epochs: int, clip: float, stop_accuracy: float, seed: int,
                     batch_size: int, device: str = "cpu") -> tuple[float, dict]:
    """Halimi et al. (2022): gradient *ascent* on the client's own loss, each step projected back onto the ℓ2
    ball of ``radius`` around ``reference`` (the model without this client), stopping early once the model's
    accuracy on the client's data falls below ``stop_accuracy`` (checked after every step on a seeded sample of at
    most :data:`ASCENT_CHECK_SAMPLES` of its samples). Returns the epochs spent and what happened."""
    if reference is None:
        raise ConfigError("projected gradient ascent needs the reference model w_ref")
    model.to(device).train()
    names = [n for n, _ in model.named_parameters()]
    center = torch.cat([reference[n].to(device).flatten().float() for n in names])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    check = data.subset(torch.randperm(len(data), generator=gen)[:ASCENT_CHECK_SAMPLES])
    per_epoch = math.ceil(len(data) / batch_size)
    steps, stopped = 0, False
    for _ in range(epochs):
        if stopped:
            break
        for x, y in batches(data, batch_size, generator=gen):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"loss became {loss.item()} during gradient ascent; lower --param lr")
            optimizer.zero_grad(set_to_none=True)
            (-loss).backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            steps += 1
            with torch.no_grad():
                flat = torch.nn.utils.parameters_to_vector(model.parameters())
                gap = flat - center
                norm = float(gap.norm())
                if norm > radius:
                    torch.nn.utils.vector_to_parameters(center + gap * (radius / norm), model.parameters())
            accuracy = accuracy_on(model.eval(), check, device=device)
            model.train()
            if accuracy < stop_accuracy:
                stopped = True
                break
    model.eval()
    return steps / per_epoch, {"ascent_steps": steps, "stopped_early": stopped,
                               "client_accuracy_after": round(accuracy_on(model, data, device=device), 6)}
