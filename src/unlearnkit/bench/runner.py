"""``unlearn bench``: run every cell of a bench config, store each result as it finishes, resume later.

Cells run in a fixed order: dataset, forget spec, seed, then ``retrain`` (the reference) and every
other method variant. Each dataset's original model is trained once and each (dataset, forget spec,
seed) reference once; both are saved as checkpoints under ``OUT/models`` so a resumed run reuses them.
``speedup`` is the reference's retraining seconds over the method's seconds.

    unlearn bench benchmarks/digits-smoke.toml --out runs/bench/smoke [--resume] [--db URL]
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from unlearnkit.bench.compare import warm_up_optimizers
from unlearnkit.bench.config import BenchConfig, DatasetEntry
from unlearnkit.bench.store import ResultStore, cell_key, default_url
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import CheckpointError, ConfigError, DataError
from unlearnkit.evaluation import evaluate
from unlearnkit.methods import METHODS
from unlearnkit.models import checkpoint_exists, load_checkpoint, save_checkpoint
from unlearnkit.models.checkpoint import CheckpointMeta
from unlearnkit.models.multitask import is_multitask
from unlearnkit.ray_session import ray_session
from unlearnkit.runs import data_meta, train_model
from unlearnkit.train import TrainConfig, default_recipe, show_progress
from unlearnkit.unlearning import unlearn


@dataclass(frozen=True)
class Cell:
    dataset: DatasetEntry
    forget: str
    seed: int
    method: str
    params: dict
    metrics: dict = field(default_factory=dict)  # optional metrics, e.g. {"neurips": {"models": 8, ...}}

    @property
    def key(self) -> str:
        return cell_key(self.dataset.key, self.forget, self.method, self.params, self.seed, self.metrics)

    @property
    def reference(self) -> Cell:
        """The retrain cell of this cell's split (same dataset, forget spec, seed and metrics)."""
        return replace(self, method="retrain", params={})


def plan(config: BenchConfig) -> list[Cell]:
    """Every cell of the config, in the order they run (retrain first within each split)."""
    return [Cell(d, forget, seed, method, params, config.metrics)
            for d in config.datasets for forget in d.forget for seed in config.seeds
            for method, variants in config.methods.items() for params in variants]


def short_digest(text: str) -> str:
    """16 hex digits of sha256: names the saved original and reference models (bench and tune)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class BenchRun:
    ran: int
    skipped: int
    store: ResultStore


def run_bench(
    config: BenchConfig,
    out: str | Path,
    *,
    db: str | None = None,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_step: Callable[[str], None] | None = None,
) -> BenchRun:
    """Run the config's unfinished cells and store each result; returns how many ran and were skipped.

    ``executor="ray"`` runs each split (dataset, forget spec, seed: its retrain cell, then its methods) as
    one Ray task on ``ray.init(address=ray_address)`` (a local Ray when None); the tasks write their cells to
    the same store and read the models from ``OUT/models``, so OUT (and the store) must be reachable from
    every worker. The numbers are those of the local executor: each split's cells run in the same order
    from the same saved original.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = db or default_url(out)
    store = ResultStore(url)
    done = store.finished()
    if done and not resume:
        raise ConfigError(f"the result store for {out} already holds {len(done)} finished cells; pass --resume "
                          "to continue it, or choose another --out")
    say = on_step or (lambda _msg: None)
    cells = plan(config)
    todo = [c for c in cells if c.key not in done]
    bar = tqdm(total=len(todo), desc=f"bench {config.name}", unit="cell", disable=not show_progress(progress))
    try:
        if executor == "local":
            ran = _run_cells(todo, out, url, config.name, device, say, on_cell=lambda: bar.update(1))
        else:
            ran = _run_on_ray(todo, out, url, config.name, device, ray_address, say, bar)
    finally:
        bar.close()
    return BenchRun(ran=ran, skipped=len(cells) - len(todo), store=store)


EXECUTORS = ("local", "ray")


def _run_cells(cells: list[Cell], out: Path, url: str, bench: str, device, say: Callable[[str], None],
               on_cell: Callable[[], None] | None = None) -> int:
    """Run ``cells`` in order, sharing each dataset's original and each split's reference, storing every
    cell as it finishes. The same code runs in the driver (local executor) and in each Ray task."""
    store = ResultStore(url)
    models_dir = out / "models"
    warm_up_optimizers()  # once per process (the driver or a Ray worker), before any timed cell
    current: dict[str, object] = {}  # the dataset, original, split and reference the next cells share
    ran = 0
    for cell in cells:
        if current.get("dataset") != cell.dataset.key:
            say(f"original: {cell.dataset.model} on {cell.dataset.name}")
            current = {"dataset": cell.dataset.key, **original_model(cell.dataset, models_dir, device)}
            current["has_conv"] = any(isinstance(m, torch.nn.Conv2d) for m in current["original"].modules())
        if is_multitask(current["original"]) and not METHODS[cell.method].multitask:
            # likewise: a method that does not serve multi-task models is left out on a multi-task original
            say(f"{cell.dataset.name} / {cell.dataset.model}: skipped {cell.method} (does not serve multi-task "
                "models)")
            continue
        if METHODS[cell.method].needs_conv and not current["has_conv"]:
            # as compare does: a conv-only method on a model without conv layers is left out, not an error, so one
            # methods table can serve an mlp and a cnn; nothing is stored, so it is skipped again on --resume
            say(f"{cell.dataset.name} / {cell.dataset.model}: skipped {cell.method} (needs conv layers; the model has "
                "none)")
            continue
        split_id = (cell.forget, cell.seed)
        if current.get("split_id") != split_id:
            current["split_id"] = split_id
            current["split"] = select(current["bundle"].train, cell.forget, seed=cell.seed)
            current["reference"] = None
        if cell.method != "retrain" and current["reference"] is None:
            current["reference"], current["retrain_seconds"] = _reference(cell, current, store, models_dir, device,
                                                                          say)
        say(f"{cell.dataset.name} {cell.forget} seed {cell.seed}: {cell.method} {cell.params or ''}")
        result = unlearn(current["original"], current["split"], cell.method, train_config=current["config"],
                         device=device, seed=cell.seed, holdout=current["bundle"].test, progress=False,
                         **cell.params)
        if cell.method == "retrain":
            save_checkpoint(_reference_path(cell, models_dir), result.model, current["meta"])
            reference = evaluate(result.model, current["split"], current["bundle"].test, device=device,
                                 seed=cell.seed)
            current["reference"], current["retrain_seconds"] = reference, result.seconds
        report = evaluate(result.model, current["split"], current["bundle"].test, current["reference"],
                          device=device, seed=cell.seed).to_json()
        if "neurips" in cell.metrics:
            say(f"  neurips: {cell.metrics['neurips']['models']} unlearned vs retrained models")
            report["neurips"] = _neurips(cell, current, models_dir, device)
        store.add(key=cell.key, bench=bench, dataset=cell.dataset.key, forget=cell.forget,
                  method=cell.method, params=cell.params, seed=cell.seed, seconds=result.seconds,
                  speedup=current["retrain_seconds"] / max(result.seconds, 1e-9), report=report,
                  notes=result.notes)
        ran += 1
        if on_cell is not None:
            on_cell()
    return ran


def _run_on_ray(cells: list[Cell], out: Path, url: str, bench: str, device, address: str | None,
                say: Callable[[str], None], bar) -> int:
    # originals first, in the driver: two tasks must not train the same one at once
    for entry in {c.dataset.key: c.dataset for c in cells}.values():
        say(f"original: {entry.model} on {entry.name}")
        original_model(entry, out / "models", device)
    splits: dict[tuple, list[Cell]] = {}
    for cell in cells:
        splits.setdefault((cell.dataset.key, cell.forget, cell.seed), []).append(cell)
    with ray_session(address) as ray:
        task = ray.remote(num_cpus=1)(_run_cells)
        pending = {task.remote(group, out, url, bench, device, lambda _msg: None): len(group)
                   for group in splits.values()}
        say(f"{len(pending)} splits as Ray tasks")
        ran = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ran += ray.get(ready[0])
            bar.update(pending.pop(ready[0]))
        return ran


def original_model(entry: DatasetEntry, models_dir: Path, device) -> dict:
    """The dataset entry's data and original model (loaded from ``models_dir``, or trained and saved there):
    ``{"bundle", "original", "config", "meta"}``. Shared by bench's cells and tune's cases."""
    try:
        bundle = load_dataset(entry.name, data_dir=entry.data_dir, train_size=entry.train_size,
                              subjects=entry.subjects, data_options=entry.options)
    except DataError as exc:  # the source's hint names --data-dir; in a config it is the data_dir key
        raise DataError(f"[[datasets]] {entry.name}: {exc} (in a bench config: data_dir = \"DIR\")") from exc
    config = default_recipe(entry.name, entry.model).with_(seed=0, **entry.recipe)
    path = models_dir / f"original-{entry.name}-{entry.model}-{short_digest(entry.key)}"
    if checkpoint_exists(path):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:  # damaged outside unlearnkit: training it again (seed 0) gives the same model
            warnings.warn(f"original {path.name} is unreadable ({exc}); training it again", stacklevel=2)
        else:
            return {"bundle": bundle, "original": ckpt.model, "config": TrainConfig.from_dict(ckpt.train_config),
                    "meta": CheckpointMeta(ckpt.model_name, ckpt.model_kwargs, ckpt.spec, data_meta(bundle),
                                           ckpt.train_config)}
    trained = train_model(bundle, entry.model, config, device=device, progress=False)
    save_checkpoint(path, trained.model, trained.meta)
    return {"bundle": bundle, "original": trained.model, "config": config, "meta": trained.meta}


NEURIPS_KEYS = ("forget_quality", "neurips_score", "retain_ratio", "test_ratio", "calibration_forget_quality",
                "u_lira", "epsilons", "models")  # no seconds: the row has them, and reports must be reproducible


def _neurips(cell: Cell, current: dict, models_dir: Path, device) -> dict:
    """The NeurIPS-2023 forgetting quality of this cell's method on its split: N runs of the method (seeds
    0..N-1) against N retrained models, cached under OUT/models/references and shared by the split's cells."""
    from unlearnkit.bench.neurips import neurips_evaluation

    options = cell.metrics["neurips"]
    result = neurips_evaluation(
        current["original"], current["bundle"].train, current["split"], current["bundle"].test, cell.method,
        train_config=current["config"], model_name=current["meta"].model_name,
        model_kwargs=current["meta"].model_kwargs, n_models=options["models"], params=cell.params,
        calibration=options["calibration"], cache_dir=str(models_dir / "references"), device=device, progress=False,
    ).to_json()
    return {k: result[k] for k in NEURIPS_KEYS}


def _reference_path(cell: Cell, models_dir: Path) -> Path:
    return models_dir / f"retrain-{short_digest(cell.dataset.key + cell.forget)}-seed{cell.seed}"


def _reference(cell: Cell, current: dict, store: ResultStore, models_dir: Path, device,
               say: Callable[[str], None]):
    """The finished retrain cell of this split (a resumed run): its saved model's report and its seconds.

    A missing or unreadable reference checkpoint (deleted, or damaged outside unlearnkit) is retrained on its own,
    with the retrain cell's seed, which gives the same model; the finished cells are kept."""
    row = next((r for r in store.rows() if r["key"] == cell.reference.key), None)
    if row is None:
        raise ConfigError(f"the retrain cell of {cell.dataset.name} {cell.forget} seed {cell.seed} is missing from "
                          f"the result store although later cells of its split are planned; rerun the same "
                          f"command with --resume (the retrain cell runs first)")
    path = _reference_path(cell, models_dir)
    model = None
    if checkpoint_exists(path):
        try:
            model = load_checkpoint(path).model
        except CheckpointError as exc:
            say(f"reference {path.name} is unreadable ({exc}); retraining only it")
    else:
        say(f"reference {path.name} is missing from {models_dir}; retraining only it")
    if model is None:
        model = unlearn(current["original"], current["split"], "retrain", train_config=current["config"],
                        device=device, seed=cell.seed, holdout=current["bundle"].test, progress=False).model
        save_checkpoint(path, model, current["meta"])
    return evaluate(model, current["split"], current["bundle"].test, device=device, seed=cell.seed), row["seconds"]
