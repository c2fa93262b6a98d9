"""SISA training and exact unlearning (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021).

Sharded, Isolated, Sliced, Aggregated. The training set is cut into S disjoint shards with one model each;
each shard is cut again into R slices, and its model is trained incrementally: slice step r trains on the
shard's slices 1..r for 2E/(R+1) of the recipe's E epochs (the paper's schedule: the R steps cost one training
of the shard; ``slice_epochs=full`` runs all E at every step, (R+1)/2 times that), and the weights are saved
after every step. The ensemble predicts
by majority vote or by mean softmax. Deleting a sample retrains only the shard that holds it, starting from
the weights saved before the sample's slice.

Exactness. Where a sample goes depends on nothing but the sample: its shard and slice come from a seeded hash
of its id (``by="ids"``) or of its subject (``by="subjects"``, so one subject sits in one shard and one
slice). Every member's initial weights and every slice step's batch order come from seeds derived from
(training seed, shard, step), each step trains on the shard's data sorted by id, and each shard trains with a
fixed number of torch threads (BLAS sums in another order with another thread count). So SISA training on the
data without the forgotten samples puts every remaining sample where it was and repeats every step that did
not see them bit for bit; unlearning reuses those steps' saved weights and reruns the rest, and its result
equals that fresh training weight for weight on the CPU.

Files beside a checkpoint ``OUT`` (``OUT.safetensors`` + ``OUT.json``, the ensemble as model
``sisa-ensemble``, loadable by ``load_checkpoint``), written and read by :mod:`unlearnkit.exact.sisa_io`:

    OUT.sisa/assignment.json                   the plan, the ids of every shard and slice, each file's sha256
    OUT.sisa/shard-K/slice-R.safetensors       member K's weights after slice step R

This module turns a :class:`SisaState` into those files' contents and back (:func:`save_sisa`,
:func:`load_sisa`); ``sisa_io`` does the writing, reading and sha256 checks.

From the shell:

    unlearn train --dataset digits --sisa shards=5,slices=3 --out runs/sisa
    unlearn forget --checkpoint runs/sisa --forget ids:3,14,15 --method sisa --out runs/sisa-1 --json
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data.dataset import DataSpec, IndexedDataset
from unlearnkit.data.select import ForgetSplit
from unlearnkit.device import resolve_device
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.exact.sisa_io import (  # noqa: F401  (FORMAT, VERSION, sisa_dir: re-exported for callers)
    FORMAT,
    INDEX,
    VERSION,
    open_progress,
    read_sisa_index,
    read_slice,
    read_steps,
    sisa_dir,
    slice_file,
    write_sisa_files,
    write_step,
)
from unlearnkit.models import build_model, read_sidecar
from unlearnkit.models.architectures import AGGREGATES, ShardEnsemble
from unlearnkit.ray_session import ray_session
from unlearnkit.train import TrainConfig, fit

ENSEMBLE = "sisa-ensemble"  # the registered architecture of a SISA checkpoint's main model
BY = ("ids", "subjects")
EXECUTORS = ("local", "ray")
SPEC_HELP = ("e.g. --sisa shards=5,slices=3[,aggregate=vote|softmax][,by=ids|subjects][,threads=1]"
             "[,slice_epochs=balanced|full]")
SLICE_EPOCHS = ("balanced", "full")


@dataclass(frozen=True)
class SisaSpec:
    """How to shard, slice and aggregate; parsed from ``--sisa shards=S,slices=R,...``."""

    shards: int
    slices: int = 1  # R checkpoints per shard; 1 trains each shard in one go (no slicing)
    aggregate: str = "vote"  # the paper's label vote; "softmax" averages the members' probabilities
    by: str = "ids"  # "subjects": all samples of a data subject share one shard and one slice
    # torch threads per shard, in every executor: BLAS results depend on the thread count, so training,
    # unlearning and a fresh run must use the same one to agree bit for bit. One thread per shard is also
    # what fans out best (S shards on S cores with --executor ray).
    threads: int = 1
    # epochs of each slice step. "balanced" (Bourtoule et al.): 2E/(R+1) epochs on slices 1..r, so that the R steps
    # together pass over the shard E times, the cost of training it once. "full": the whole recipe at every step,
    # (R+1)/2 times that (the schedule of checkpoints saved before issue 19; their sidecars lack the key).
    slice_epochs: str = "balanced"

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"SISA needs shards >= 1, got shards={self.shards}; {SPEC_HELP}")
        if self.slices < 1:
            raise ConfigError(f"SISA needs slices >= 1, got slices={self.slices}; {SPEC_HELP}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"unknown aggregate {self.aggregate!r}; choose one of {', '.join(AGGREGATES)}")
        if self.by not in BY:
            raise ConfigError(f"unknown SISA assignment by={self.by!r}; choose one of {', '.join(BY)}")
        if self.threads < 1:
            raise ConfigError(f"SISA needs threads >= 1, got threads={self.threads}")
        if self.slice_epochs not in SLICE_EPOCHS:
            raise ConfigError(f"unknown slice_epochs={self.slice_epochs!r}; choose one of {', '.join(SLICE_EPOCHS)}")

    @classmethod
    def parse(cls, text: str) -> SisaSpec:
        """``"shards=5,slices=3,aggregate=softmax"`` -> ``SisaSpec(5, 3, "softmax")``."""
        values: dict[str, object] = {}
        for item in (t.strip() for t in text.split(",")):
            if not item:
                continue
            key, sep, value = (t.strip() for t in item.partition("="))
            if not sep or not value:
                raise ConfigError(f"--sisa item {item!r} needs KEY=VALUE; {SPEC_HELP}")
            if key not in ("shards", "slices", "aggregate", "by", "threads", "slice_epochs"):
                raise ConfigError(f"unknown --sisa key {key!r}; use shards, slices, aggregate, by, threads, "
                                  "slice_epochs")
            if key in values:
                raise ConfigError(f"--sisa gives {key} twice; give each key once, {SPEC_HELP[2:]}")
            if key in ("shards", "slices", "threads"):
                try:
                    values[key] = int(value)
                except ValueError as exc:
                    raise ConfigError(f"--sisa {key} must be an integer, got {value!r}; {SPEC_HELP}") from exc
            else:
                values[key] = value
        if "shards" not in values:
            raise ConfigError(f"--sisa needs shards=S; {SPEC_HELP}")
        return cls(**values)

    def to_dict(self) -> dict:
        return {"shards": self.shards, "slices": self.slices, "aggregate": self.aggregate, "by": self.by,
                "threads": self.threads, "slice_epochs": self.slice_epochs}


# --- assignment: a pure function of the sample (or subject) and the seed ------------------------------------
def _hash(seed: int, stream: str, key: int) -> int:
    """64 bits of BLAKE2b over "seed:stream:key": the same for a key whatever else is in the data."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def init_seed(seed: int, shard: int) -> int:
    """Seed of member ``shard``'s initial weights."""
    return _hash(seed, "init", shard) >> 1  # 63 bits: any torch seed


def step_seed(seed: int, shard: int, step: int) -> int:
    """Seed of the batch order (and dropout) of slice step ``step`` (0-based) of member ``shard``."""
    return _hash(seed, f"step:{shard}", step) >> 1


@dataclass
class Assignment:
    """Which sample ids sit in which shard and slice: ``ids[shard][slice]``, each list sorted."""

    ids: list[list[list[int]]]

    @property
    def shards(self) -> int:
        return len(self.ids)

    @property
    def slices(self) -> int:
        return len(self.ids[0])

    def shard_sizes(self) -> list[int]:
        return [sum(len(s) for s in shard) for shard in self.ids]

    def all_ids(self) -> list[int]:
        return sorted(i for shard in self.ids for s in shard for i in s)

    def locate(self, ids: Iterable[int]) -> dict[int, int]:
        """shard -> earliest slice (0-based) among ``ids``, for the shards that hold any of them."""
        where = {i: (k, r) for k, shard in enumerate(self.ids) for r, s in enumerate(shard) for i in s}
        first: dict[int, int] = {}
        for i in ids:
            k, r = where[int(i)]
            first[k] = min(r, first.get(k, r))
        return dict(sorted(first.items()))

    def without(self, ids: Iterable[int]) -> Assignment:
        gone = {int(i) for i in ids}
        return Assignment([[[i for i in s if i not in gone] for s in shard] for shard in self.ids])


def assign(dataset: IndexedDataset, spec: SisaSpec, seed: int) -> Assignment:
    """Shard and slice of every sample: ``hash(seed, key) mod S`` and ``hash'(seed, key) mod R``, where the key
    is the sample's id, or its subject with ``by="subjects"``.

    Shards come out balanced in expectation, not exactly: the price of an assignment that never moves a
    sample when others are added or removed.
    """
    if spec.by == "subjects":
        if dataset.subjects is None:
            raise ConfigError("--sisa by=subjects needs data subjects; load the data with --subjects N "
                              "(pseudo-subjects) or a --subject-column")
        keys, what = dataset.subjects, "subjects"
    else:
        keys, what = dataset.ids, "samples"
    unique = sorted({int(k) for k in keys.tolist()})
    if spec.shards > len(unique):
        raise ConfigError(f"--sisa shards={spec.shards} is more than the {len(unique)} {what} to split; "
                          f"use at most {len(unique)} shards")
    place = {k: (_hash(seed, "shard", k) % spec.shards, _hash(seed, "slice", k) % spec.slices) for k in unique}
    ids: list[list[list[int]]] = [[[] for _ in range(spec.slices)] for _ in range(spec.shards)]
    for sample, key in zip(dataset.ids.tolist(), keys.tolist(), strict=True):
        k, r = place[key]
        ids[k][r].append(sample)
    return Assignment([[sorted(s) for s in shard] for shard in ids])


# --- one shard's training: plain data in, weights out (runs locally or in a Ray task) -----------------------
@dataclass
class ShardJob:
    """What (re)training one shard needs. ``data`` is the shard's samples sorted by id, ``slice_of`` each
    sample's slice; steps ``start`` .. R-1 are trained, from ``start_state`` (the weights after step
    ``start - 1``) or, for ``start == 0``, from the member's seeded initial weights."""

    shard: int
    member: str
    member_kwargs: dict
    spec: DataSpec
    config: TrainConfig
    seed: int
    slices: int
    threads: int
    slice_epochs: str
    data: IndexedDataset
    slice_of: torch.Tensor
    start: int = 0
    start_state: dict[str, torch.Tensor] | None = None
    save_dir: str | None = None  # write each finished step's weights there (sisa_io.write_step), for a resume


def train_shard(job: ShardJob, device: str | torch.device | None = None,
                progress: bool | None = None) -> list[dict[str, torch.Tensor]]:
    """Run slice steps ``job.start`` .. R-1 of one shard; returns the member's CPU weights after each step.

    Step r trains the model it has so far on the shard's slices 0..r (in id order) for :func:`slice_steps`
    optimizer steps, with a fresh optimizer and schedule seeded by :func:`step_seed`, as the paper's incremental
    slice training does. A step with no data so far leaves the weights as they are.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        model = build_model(job.member, job.spec, seed=init_seed(job.seed, job.shard), **job.member_kwargs)
        if job.start_state is not None:
            model.load_state_dict(job.start_state)
        states = []
        for step in range(job.start, job.slices):
            data = job.data.subset(job.slice_of <= step)
            if len(data):
                fit(model, data, job.config.with_(seed=step_seed(job.seed, job.shard, step)), device=device,
                    progress=progress, description=f"shard {job.shard} slice {step + 1}/{job.slices}",
                    steps=slice_steps(job.config, len(data), job.slices, job.slice_epochs))
            states.append({k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()})
            if job.save_dir is not None:
                write_step(job.save_dir, job.shard, step, states[-1])
        return states
    finally:
        torch.set_num_threads(previous)


def slice_steps(config: TrainConfig, n: int, slices: int, schedule: str) -> int | None:
    """Optimizer steps of one slice step on ``n`` samples: ``full`` runs the recipe (None: its epochs);
    ``balanced`` runs 2E/(R+1) epochs of it, rounded to whole mini-batches (at least one)."""
    if schedule == "full" or slices == 1:
        return None
    per_epoch = -(-n // config.batch_size)
    return max(1, round(2 * config.epochs / (slices + 1) * per_epoch))


def run_shards(jobs: list[ShardJob], *, executor: str = "local", ray_address: str | None = None,
               device: str | torch.device | None = None, progress: bool | None = None,
               ) -> list[list[dict[str, torch.Tensor]]]:
    """Train ``jobs`` one after another (``local``) or as one Ray task each (``ray``); same weights either way."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "local" or not jobs:
        return [train_shard(job, device, progress) for job in jobs]
    return _run_on_ray(jobs, ray_address, resolve_device(device))


def _run_on_ray(jobs: list[ShardJob], address: str | None, device: torch.device
                ) -> list[list[dict[str, torch.Tensor]]]:
    with ray_session(address) as ray:
        cpus = ray.cluster_resources().get("CPU", 0)
        threads = max(job.threads for job in jobs)
        if threads > cpus:
            raise ConfigError(f"each SISA shard asks for {threads} CPUs (threads={threads}) but the Ray cluster has "
                              f"{cpus:g}; lower threads in --sisa")
        task = ray.remote(train_shard)
        # A task gets the GPU only if it asks Ray for a share of one; all shards then share it.
        gpus = {"num_gpus": 1 / len(jobs)} if device.type == "cuda" else {}
        refs = [task.options(num_cpus=job.threads, **gpus).remote(job, str(device), False) for job in jobs]
        return ray.get(refs)


# --- the whole ensemble --------------------------------------------------------------------------------------
@dataclass
class SisaState:
    """A SISA model's training record: the plan, the current assignment, and every member's weights after
    every slice step (``states[shard][step]``; the last step's are the member in the ensemble)."""

    spec: SisaSpec
    seed: int
    member: str
    member_kwargs: dict
    data_spec: DataSpec
    train_config: TrainConfig
    assignment: Assignment
    states: list[list[dict[str, torch.Tensor]]] = field(repr=False)

    def ensemble_kwargs(self) -> dict:
        """The ``sisa-ensemble`` kwargs a checkpoint sidecar records."""
        return {"member": self.member, "member_kwargs": dict(self.member_kwargs), "shards": self.spec.shards,
                "aggregate": self.spec.aggregate}

    def job(self, shard: int, data: IndexedDataset, start: int = 0) -> ShardJob:
        """The job that trains ``shard`` from step ``start`` on its samples in ``data``."""
        ids = [i for s in self.assignment.ids[shard] for i in s]
        rows = data.by_ids(torch.tensor(ids, dtype=torch.int64))
        rows = rows.subset(torch.argsort(rows.ids))
        slice_at = {i: r for r, s in enumerate(self.assignment.ids[shard]) for i in s}
        slice_of = torch.tensor([slice_at[i] for i in rows.ids.tolist()], dtype=torch.int64)
        return ShardJob(shard, self.member, dict(self.member_kwargs), self.data_spec, self.train_config, self.seed,
                        self.spec.slices, self.spec.threads, self.spec.slice_epochs, rows, slice_of, start,
                        None if start == 0 else self.states[shard][start - 1])


# Models fresh from train_sisa / forget_sisa carry their SisaState until saved. A weak map rather than an
# attribute: a deep copy (what other unlearning methods start from) does not inherit SISA files it no longer
# matches.
_STATES: weakref.WeakKeyDictionary[nn.Module, SisaState] = weakref.WeakKeyDictionary()


def sisa_state(model: nn.Module) -> SisaState | None:
    """The SISA record of a model returned by :func:`train_sisa` or :func:`forget_sisa`, else None."""
    return _STATES.get(model)


def ensemble(state: SisaState, device: str | torch.device | None = None) -> nn.Module:
    """The ensemble whose members hold each shard's last weights; members of empty shards are inactive."""
    model = build_model(ENSEMBLE, state.data_spec, **state.ensemble_kwargs())
    for member, steps in zip(model.members, state.states, strict=True):
        member.load_state_dict(steps[-1])
    model.active.copy_(torch.tensor([float(n > 0) for n in state.assignment.shard_sizes()]))
    model = model.to(resolve_device(device)).eval()
    _STATES[model] = state
    return model


def train_sisa(
    train: IndexedDataset,
    member: str,
    config: TrainConfig,
    spec: SisaSpec | str,
    *,
    member_kwargs: dict | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    progress_dir: str | Path | None = None,
    on_resume: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train a SISA ensemble of ``member`` models on ``train``; the seed is ``config.seed``.

    Returns the ensemble (an ``nn.Module`` predicting by ``spec.aggregate``); :func:`sisa_state` gives its
    record, which :func:`save_sisa` (or ``runs.save_model``) writes beside a checkpoint.

    ``progress_dir``: write every finished slice step's weights there and, when it already holds steps of the
    same training (same data, plan, member and recipe), start each shard after its last saved step. Every step
    trains from the previous step's weights with its own seeded optimizer, so a resumed ensemble equals an
    uninterrupted one. ``on_resume`` hears how many steps were reused. The caller removes the folder once the
    ensemble is saved.

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> data = load_dataset("digits")
        >>> model = train_sisa(data.train, "mlp", TrainConfig(epochs=2), "shards=3,slices=2", progress=False)
    """
    spec = SisaSpec.parse(spec) if isinstance(spec, str) else spec
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    kwargs = dict(member_kwargs or {})
    build_model(member, train.spec, **kwargs)  # an unknown member or kwargs fail here, before any training
    assignment = assign(train, spec, config.seed)
    state = SisaState(spec, config.seed, member, kwargs, train.spec, config, assignment, states=[])
    if progress_dir is None:
        jobs = [state.job(k, train) for k in range(spec.shards)]
        state.states = run_shards(jobs, executor=executor, ray_address=ray_address, device=device, progress=progress)
        return ensemble(state, device)
    folder = Path(progress_dir)
    key = hashlib.sha256(json.dumps({
        "spec": spec.to_dict(), "seed": config.seed, "member": member, "member_kwargs": kwargs,
        "data": train.fingerprint(), "train_config": config.to_dict(),
    }, sort_keys=True, default=str).encode()).hexdigest()
    open_progress(folder, key, f"{spec.shards} shards x {spec.slices} slices of {member}, seed {config.seed}")
    state.states = [read_steps(folder, k, spec.slices) for k in range(spec.shards)]
    reused = sum(len(steps) for steps in state.states)
    if reused and on_resume is not None:
        on_resume(f"continuing from {reused} of {spec.shards * spec.slices} slice steps saved in {folder}")
    jobs = [replace(state.job(k, train, start=len(steps)), save_dir=str(folder))
            for k, steps in enumerate(state.states) if len(steps) < spec.slices]
    for job, steps in zip(jobs, run_shards(jobs, executor=executor, ray_address=ray_address, device=device,
                                           progress=progress), strict=True):
        state.states[job.shard] = state.states[job.shard] + steps
    return ensemble(state, device)


@dataclass
class SisaForget:
    """The result of :func:`forget_sisa`: the new ensemble and what was retrained."""

    model: nn.Module
    retrained_shards: list[int]
    retrained_slices: int  # slice steps trained again, summed over the retrained shards
    first_slice: dict[int, int]  # retrained shard -> the first slice (1-based) trained again


def forget_sisa(
    state: SisaState,
    split: ForgetSplit,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> SisaForget:
    """Remove ``split.forget`` exactly: retrain each shard that holds a forget id from the weights saved before
    its earliest affected slice, on ``split.retain``; every other shard and step is kept as saved.

    ``split.forget`` and ``split.retain`` together must be the samples the ensemble is trained on now.
    """
    present = sorted(torch.cat([split.forget.ids, split.retain.ids]).tolist())
    if present != state.assignment.all_ids():
        raise CheckpointError(
            f"the SISA assignment holds {len(state.assignment.all_ids())} samples but this training set has "
            f"{len(present)} (or other ids); it belongs to another checkpoint - keep OUT.sisa/ with its OUT"
        )
    first = state.assignment.locate(split.forget.ids.tolist())
    new = replace(state, assignment=state.assignment.without(split.forget.ids.tolist()),
                  states=[list(steps) for steps in state.states])
    jobs = [new.job(k, split.retain, start=r) for k, r in first.items()]
    for job, steps in zip(jobs, run_shards(jobs, executor=executor, ray_address=ray_address, device=device,
                                           progress=progress), strict=True):
        new.states[job.shard] = new.states[job.shard][: job.start] + steps
    return SisaForget(ensemble(new, device), list(first), sum(state.spec.slices - r for r in first.values()),
                      {k: r + 1 for k, r in first.items()})


# --- saving and loading (the files themselves: unlearnkit.exact.sisa_io) ----------------------------------------
def save_sisa(path: str | Path, state: SisaState) -> dict:
    """Write a new SISA folder for the checkpoint at ``path`` (beside the old one, which stays whole); returns the
    summary the checkpoint sidecar keeps under ``"sisa"``, whose ``dir`` and sha256 tie the two together.

    The folder becomes the checkpoint's when a sidecar naming it is saved (``runs.save_model`` does both).
    """
    doc = {
        **state.spec.to_dict(), "seed": state.seed,
        "member": {"name": state.member, "kwargs": state.member_kwargs}, "spec": state.data_spec.to_dict(),
        "train_config": state.train_config.to_dict(), "shard_sizes": state.assignment.shard_sizes(),
        "assignment": state.assignment.ids,
    }
    written = write_sisa_files(path, doc, state.states)
    return {"dir": written["dir"], **state.spec.to_dict(), "shard_sizes": state.assignment.shard_sizes(),
            "assignment_sha256": written["assignment_sha256"]}


def load_sisa(path: str | Path) -> SisaState:
    """The SISA record saved beside the checkpoint at ``path``, every file checked against its sha256."""
    meta = read_sidecar(path)
    if "sisa" not in meta or meta["model"]["name"] != ENSEMBLE:
        raise ConfigError(f"{Path(path)} is not a SISA checkpoint; method 'sisa' needs one trained with "
                          "unlearn train --sisa shards=S,slices=R")
    folder, doc = read_sisa_index(path, meta["sisa"]["assignment_sha256"])
    try:
        spec = SisaSpec(**{k: doc[k] for k in ("shards", "slices", "aggregate", "by", "threads")},
                        slice_epochs=doc.get("slice_epochs", "full"))  # folders saved before the key: full
        assignment = Assignment(doc["assignment"])
        state = SisaState(spec, int(doc["seed"]), doc["member"]["name"], _tuples(doc["member"]["kwargs"]),
                          DataSpec.from_dict(doc["spec"]), TrainConfig.from_dict(doc["train_config"]), assignment,
                          states=[])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / INDEX} is damaged ({type(exc).__name__}: {exc}); restore it, or train "
                              "again with --sisa") from exc
    state.states = [[read_slice(folder, doc, k, r) for r in range(spec.slices)] for k in range(spec.shards)]
    return state


def check_matches(model: nn.Module, state: SisaState, path: str | Path) -> None:
    """Refuse a checkpoint whose ensemble weights are not the last slice weights of its .sisa folder."""
    members = getattr(model, "members", None)
    if not isinstance(model, ShardEnsemble) or members is None or len(members) != len(state.states):
        raise CheckpointError(f"the model in {Path(path)} is not the {state.spec.shards}-shard ensemble its "
                              f"{sisa_dir(path).name}/ describes; restore the files saved together")
    for k, (member, steps) in enumerate(zip(members, state.states, strict=True)):
        saved = member.state_dict()
        if saved.keys() != steps[-1].keys() or not all(
                torch.equal(saved[n].cpu(), steps[-1][n]) for n in saved):
            raise CheckpointError(f"member {k} of {Path(path)} differs from {sisa_dir(path).name}/"
                                  f"{slice_file(k, state.spec.slices - 1)}; restore the files saved together")


def _tuples(kwargs: dict) -> dict:
    """JSON turns tuples into lists; architectures take tuples (e.g. ``hidden``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
