"""Checkpoint-level operations behind the CLI: train and save, reload a checkpoint with its data,
forget and save, remove an attribute and save (``debias``), evaluate against a reference checkpoint.

Each function works on files (``runs/x.safetensors`` + ``runs/x.json``) and returns plain Python
objects, so the CLI stays a thin layer of argument parsing and printing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data import DatasetBundle, ForgetSplit, IndexedDataset, load_dataset, select
from unlearnkit.data.select import mask_rows
from unlearnkit.device import resolve_device
from unlearnkit.errors import CheckpointError, ConfigError, DataError
from unlearnkit.evaluation import Report, bias_report, evaluate, poison_report
from unlearnkit.exact.linear import PREPARE_MAX_PARAMS, head_parameters, prepare_removal, save_removal_state
from unlearnkit.exact.sisa import ENSEMBLE, SisaSpec, save_sisa, sisa_state, train_sisa
from unlearnkit.exact.updates import DTYPES, UpdateLog, UpdateRecorder, new_updates_dir
from unlearnkit.methods import Method, get_method, methods_of_kind
from unlearnkit.models import MODELS, Checkpoint, CheckpointMeta, build_model, load_checkpoint, save_checkpoint
from unlearnkit.models.architectures import ErasedLinear, LinearHead
from unlearnkit.models.checkpoint import checkpoint_exists, checkpoint_paths
from unlearnkit.models.multitask import MULTITASK_MODELS, is_multitask
from unlearnkit.train import TrainConfig, default_recipe, fit
from unlearnkit.unlearning import UnlearnResult, check_attribute, remove_attribute, unlearn


def refuse_overwrite(out: str | Path, force: bool) -> None:
    """Never silently replace a saved model: an existing checkpoint at ``out`` needs ``force``.

    With ``force`` the replacement itself is safe: :func:`save_model` keeps the old checkpoint loadable until the
    new one is whole (see :mod:`unlearnkit.models.checkpoint`)."""
    if checkpoint_exists(out) and not force:
        weights, sidecar = checkpoint_paths(out)
        existing = sidecar if sidecar.exists() else weights  # a weights file alone also counts
        raise CheckpointError(f"{existing} already exists; choose another --out or pass --force to replace it")


def data_meta(bundle: DatasetBundle) -> dict:
    return {
        "source": bundle.source,
        "options": dict(bundle.options),
        "fingerprint": bundle.train.fingerprint(),
        "train_size": len(bundle.train),
        "test_size": len(bundle.test),
        # poisoned data: the ground truth (kind, poisoned ids), for the record; load_with_data rebuilds it
        **({"poison": bundle.poison.to_json()} if bundle.poison is not None else {}),
    }


@dataclass
class TrainedModel:
    model: nn.Module
    bundle: DatasetBundle
    meta: CheckpointMeta
    seconds: float
    updates: UpdateLog | None = None  # the recorded per-batch updates (record_updates=...), else None


def train_model(
    bundle: DatasetBundle,
    model_name: str | None = None,
    config: TrainConfig | None = None,
    *,
    model_kwargs: dict | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    record_updates: str | Path | None = None,
    record_dtype: str = "float32",
    sisa: SisaSpec | str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    features_from: str | Path | None = None,
    on_warning: Callable[[str], None] | None = None,
    sisa_progress: str | Path | None = None,
) -> TrainedModel:
    """Train a registered architecture on ``bundle.train`` (default model and recipe per dataset).

    ``record_updates``: the checkpoint path the model will be saved under; every step's parameter update and
    batch ids are then written beside it (``PATH.updates/``, see :mod:`unlearnkit.exact.updates`), in ``record_dtype``.
    ``sisa`` (e.g. ``"shards=5,slices=3"``): train a SISA ensemble of ``model_name`` members instead (see
    :mod:`unlearnkit.exact.sisa`), its shards one after another (``executor="local"``) or as Ray tasks (``"ray"``);
    save it with :func:`save_model`, which writes its ``PATH.sisa/`` files. ``sisa_progress``: a folder for the
    finished slice steps (``sisa_io.progress_dir(PATH)``), from which a rerun after a kill continues.
    ``features_from``: train a linear/logistic head on the frozen features of that checkpoint's network
    (:func:`train_head`); ``on_warning`` receives its warnings (default: :func:`warnings.warn`).
    """
    from unlearnkit.data.sources import SOURCES, get_source

    source = get_source(bundle.source)
    model_name = model_name or source.default_model
    config = config or default_recipe(bundle.source, model_name)
    model_kwargs = dict(model_kwargs or {})
    if model_name in MULTITASK_MODELS:
        if not source.tasks:
            multi = ", ".join(n for n, s in SOURCES.items() if s.tasks)
            raise ConfigError(f"{model_name} is a multi-task model and {bundle.source!r} has a single task; train it "
                              f"on a multi-task source ({multi}), or use {model_name.removeprefix('mtl-')}")
        model_kwargs.setdefault("tasks", [list(t) for t in source.tasks])  # the heads, saved with the checkpoint
        if sisa is not None:
            raise ConfigError("--sisa builds single-task ensembles; train a multi-task model without --sisa")
    if features_from is not None:
        if sisa is not None or record_updates is not None:
            raise ConfigError("--features-from trains one linear head; it does not combine with --sisa or "
                              "--record-updates")
        return train_head(bundle, model_name, config, features_from, model_kwargs, device, progress, on_warning)
    if sisa is not None:
        if record_updates is not None:
            raise ConfigError("--sisa and --record-updates do not combine (SISA keeps per-slice weights instead); "
                              "drop one of them")
        return _train_sisa(bundle, model_name, config, sisa, model_kwargs, device, progress, executor, ray_address,
                           sisa_progress, on_warning)
    if executor != "local":
        raise ConfigError(f"--executor {executor} fans out the shards of a SISA ensemble; add --sisa shards=S,... "
                          "or drop --executor")
    model = build_model(model_name, bundle.spec, seed=config.seed, **model_kwargs)
    recorder = None if record_updates is None else UpdateRecorder(model, new_updates_dir(record_updates),
                                                                   dtype=record_dtype)
    start = time.perf_counter()
    try:
        fit(model, bundle.train, config, device=device, progress=progress, description=f"train {model_name}",
            after_step=recorder)
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    log = None if recorder is None else recorder.finish(model)
    _prepare_certified(model, bundle.train, config)
    seconds = time.perf_counter() - start
    extra = {"train_seconds": round(seconds, 3)}
    if log is not None:
        extra["recorded_updates"] = {"dir": log.directory.name, "dtype": log.dtype, "batches": log.steps}
    meta = CheckpointMeta(model_name, model_kwargs, bundle.spec, data_meta(bundle), config.to_dict(), extra=extra)
    return TrainedModel(model, bundle, meta, seconds, log)


def train_head(bundle: DatasetBundle, name: str, config: TrainConfig, features_from: str | Path, head_kwargs: dict,
               device=None, progress: bool | None = None, on_warning: Callable[[str], None] | None = None
               ) -> TrainedModel:
    """A linear/logistic model on the frozen features of the network saved at ``features_from`` (the head's
    checkpoint keeps that network's weights, so it needs nothing else to load, forget or retrain)."""
    source = load_checkpoint(features_from)
    if source.spec.input_shape != bundle.spec.input_shape:
        raise CheckpointError(f"{features_from} reads inputs of shape {source.spec.input_shape}, this data has "
                              f"{bundle.spec.input_shape}; pass a network trained on inputs of the data's shape")
    if source.data.get("fingerprint") == bundle.train.fingerprint():
        (on_warning or warnings.warn)("the feature network was trained on this very training set; certified "
                                      "removal then covers the head, not the features")
    kwargs = {**head_kwargs, "backbone": source.model_name, "backbone_kwargs": source.model_kwargs}
    model = build_model(name, bundle.spec, seed=config.seed, **kwargs)
    model.features.load_network(source.model)
    start = time.perf_counter()
    fit(model, bundle.train, config, device=device, progress=progress, description=f"train {name} head")
    _prepare_certified(model, bundle.train, config)
    seconds = time.perf_counter() - start
    meta = CheckpointMeta(name, kwargs, bundle.spec, data_meta(bundle), config.to_dict(),
                          extra={"train_seconds": round(seconds, 3), "features_from": str(source.path)})
    return TrainedModel(model, bundle, meta, seconds)



def _prepare_certified(model: nn.Module, train: IndexedDataset, config: TrainConfig) -> None:
    """A linear/logistic model trained to the optimum, of at most PREPARE_MAX_PARAMS parameters, gets its Hessian
    factored now (part of its training time), so that its first certified removal is a small solve;
    :func:`save_model` writes the factor beside the checkpoint."""
    if isinstance(model, LinearHead) and config.optimizer == "lbfgs" and \
            head_parameters(model).numel() <= PREPARE_MAX_PARAMS:
        prepare_removal(model, train, config.weight_decay)


def check_train_options(
    model_name: str,
    *,
    sisa: SisaSpec | str | None = None,
    record_updates: bool = False,
    record_dtype: str | None = None,
    perturbation: float | None = None,
    unit_norm: bool = False,
    features_from: str | Path | None = None,
) -> tuple[SisaSpec | None, dict]:
    """Check how the training options combine, before any data loads; returns the parsed SISA spec (or None) and
    the linear/logistic model's keyword arguments (``perturbation``, ``normalize``) from the options."""
    if record_dtype is not None and not record_updates:
        raise ConfigError("--record-dtype applies to recorded updates; add --record-updates or drop --record-dtype")
    if record_dtype is not None and record_dtype not in DTYPES:
        raise ConfigError(f"--record-dtype must be one of {', '.join(DTYPES)}, got {record_dtype!r}")
    sisa_spec = SisaSpec.parse(sisa) if isinstance(sisa, str) else sisa
    head_kwargs = {**({} if perturbation is None else {"perturbation": perturbation}),
                   **({"normalize": True} if unit_norm else {})}
    if (head_kwargs or features_from) and model_name not in ("linear", "logistic"):
        raise ConfigError("--perturbation, --unit-norm and --features-from apply to the linear and logistic models; "
                          "add --model logistic (or linear)")
    if features_from is not None and (sisa_spec is not None or record_updates):
        raise ConfigError("--features-from trains one linear head; it does not combine with --sisa or --record-updates")
    return sisa_spec, head_kwargs


def _train_sisa(bundle: DatasetBundle, model_name: str, config: TrainConfig, spec: SisaSpec | str, model_kwargs: dict,
                device, progress, executor: str, ray_address: str | None, progress_dir: str | Path | None,
                on_warning: Callable[[str], None] | None) -> TrainedModel:
    start = time.perf_counter()
    model = train_sisa(bundle.train, model_name, config, spec, member_kwargs=model_kwargs, device=device,
                       progress=progress, executor=executor, ray_address=ray_address, progress_dir=progress_dir,
                       on_resume=on_warning or warnings.warn)
    seconds = time.perf_counter() - start
    meta = CheckpointMeta(ENSEMBLE, sisa_state(model).ensemble_kwargs(), bundle.spec, data_meta(bundle),
                          config.to_dict(), extra={"train_seconds": round(seconds, 3)})
    return TrainedModel(model, bundle, meta, seconds)


def save_model(out: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    """``save_checkpoint``; a SISA ensemble fresh from training or unlearning also gets its ``OUT.sisa/`` files,
    written first beside any old ones, and the sidecar records their folder and sha256 under ``"sisa"``; saving
    the sidecar is the commit (the old checkpoint, folders included, stays loadable until then). A linear or
    logistic model whose certified-removal factor this process holds gets it in ``OUT.removal.safetensors`` after the
    commit (a cache, named by the weights' digest: a crash before it leaves a checkpoint without one, and a file
    of other weights is ignored). Returns the sidecar path."""
    state = sisa_state(model)
    if state is not None:
        meta = replace(meta, extra={**meta.extra, "sisa": save_sisa(out, state)})
    _, sidecar = save_checkpoint(out, model, meta)
    if isinstance(model, LinearHead):  # the certified-removal factor for these weights, if this process has one
        save_removal_state(out, model)
    return sidecar


def load_with_data(path: str | Path, *, device: str | torch.device | None = None,
                   data_dir: str | None = None, data_options: dict | None = None) -> tuple[Checkpoint, DatasetBundle]:
    """Load a checkpoint and rebuild the exact data it was trained on (fingerprint checked).

    The data is rebuilt from the options stored in the sidecar (``data.options``: subjects, train size, the
    source's data options, ...). ``data_options`` (``--data-option``), when given, is only a check: each must
    equal the stored value, because a checkpoint's data comes from the checkpoint.
    """
    ckpt = load_checkpoint(path, device=resolve_device(device))
    if "source" not in ckpt.data:
        raise CheckpointError(f"{ckpt.path} records no data source (a cached reference model, not a trained "
                              "checkpoint); pass a checkpoint written by unlearn train or unlearn forget")
    options = dict(ckpt.data.get("options", {}))
    if data_options:
        _check_stored_data_options(ckpt, data_options)
    if data_dir is not None:
        options["data_dir"] = data_dir
    bundle = load_dataset(ckpt.data["source"], **options)
    if bundle.train.fingerprint() != ckpt.data.get("fingerprint"):
        raise CheckpointError(
            f"the {ckpt.data['source']!r} training data found now differs from the data {ckpt.path} was trained "
            "on (fingerprint mismatch); point --data-dir at the original files"
        )
    return ckpt, bundle


def _check_stored_data_options(ckpt: Checkpoint, given: dict) -> None:
    """Refuse ``--data-option`` values that differ from the checkpoint's stored ones (one line naming both)."""
    from unlearnkit.data import check_data_options

    name = ckpt.data["source"]
    stored = check_data_options(name, ckpt.data.get("options", {}).get("data_options"))
    wanted = check_data_options(name, given)  # unknown keys and bad values: the usual one-line errors
    # (clean data of an image source records no poison keys: poison=none is implied)
    implied = {"poison": "none"}
    differ = [k for k in given if wanted.get(k, implied.get(k)) != stored.get(k, implied.get(k))]
    if differ:
        got = ", ".join(f"{k}={wanted.get(k, implied.get(k))!r}" for k in differ)
        had = ", ".join(f"{k}={stored.get(k, implied.get(k))!r}" for k in differ)
        raise ConfigError(f"--data-option {got} differs from the data {ckpt.path} was trained on ({had}); a "
                          "checkpoint's data options come from its sidecar: drop --data-option or pass the stored "
                          "values")


def training_set(bundle: DatasetBundle, ckpt: Checkpoint, *, before_last: bool = False) -> IndexedDataset:
    """The samples the checkpoint's model is (or was) trained on: the original training set minus
    every id removed by its forget history (all operations, or all but the last one)."""
    ops = ckpt.history[:-1] if before_last else ckpt.history
    removed = [i for op in ops if not op.get("forget_tasks") for i in op.get("forget_ids", [])]
    train = bundle.train.without(torch.tensor(removed, dtype=torch.int64)) if removed else bundle.train
    for op in ops:  # partial-task operations: those samples' labels for those tasks are gone, the samples stay
        if op.get("forget_tasks"):
            train = mask_rows(train, op.get("forget_ids", []), op["forget_tasks"])
    return train


def forget_checkpoint(
    path: str | Path,
    forget: str,
    method: str,
    *,
    params: dict | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
) -> tuple[UnlearnResult, ForgetSplit, Checkpoint, DatasetBundle]:
    """Forget ``forget`` (a spec) from the checkpoint at ``path`` with ``method``; nothing is saved.

    A method that removes an attribute (kind "attribute") is refused before the data load, pointing at
    :func:`debias_checkpoint` (``unlearn debias``)."""
    check_method_kind(method, "samples")
    ckpt, bundle = load_with_data(path, device=device, data_dir=data_dir)
    current = training_set(bundle, ckpt)
    already = set(ckpt.forgotten_ids())
    kind, _, arg = forget.partition(":")
    if kind.strip().lower() == "ids" and already:  # the kind as select() reads it (case and spaces)
        from unlearnkit.data.select import read_int_list

        repeated = sorted(already.intersection(read_int_list(arg.strip(), "ids")))
        if repeated:
            raise DataError(
                f"{len(repeated)} ids were already forgotten by this checkpoint (first: {repeated[:5]}); "
                "drop them from the request"
            )
    split = select(current, forget, seed=seed)
    config = TrainConfig.from_dict(ckpt.train_config)
    result = unlearn(ckpt.model, split, method, train_config=config, device=device, seed=seed,
                     holdout=bundle.test, progress=progress, checkpoint=ckpt.path, **(params or {}))
    return result, split, ckpt, bundle


def save_unlearned(out: str | Path, result: UnlearnResult, split: ForgetSplit, ckpt: Checkpoint) -> Path:
    """Save the unlearned model with the parent's sidecar plus one more history entry."""
    meta = CheckpointMeta(
        ckpt.model_name, ckpt.model_kwargs, ckpt.spec, {k: v for k, v in ckpt.data.items() if k != "spec"},
        ckpt.train_config, history=[*ckpt.history, {**result.history_entry(split), "parent": str(ckpt.path)}],
    )
    return save_model(out, result.model, meta)


def check_method_kind(method: str, kind: str) -> type[Method]:
    """The registered method ``method``, refused in one line when it removes something else than ``kind``
    ("samples": ``unlearn forget``; "attribute": ``unlearn debias``), with the command that runs it."""
    cls = get_method(method)  # unknown names: the registry's one-line error, listing the methods
    if cls.kind == kind:
        return cls
    if cls.kind == "samples":
        raise ConfigError(f"{cls.name} removes samples, not an attribute; use unlearn forget --forget SPEC "
                          f"--method {cls.name} (attribute methods: {', '.join(methods_of_kind('attribute'))})")
    raise ConfigError(f"{cls.name} removes an attribute, not samples; use unlearn debias --attribute NAME --method "
                      f"{cls.name} (sample methods: `unlearn methods`, kind samples)")


def debias_checkpoint(
    path: str | Path,
    attribute: str,
    method: str,
    *,
    params: dict | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
    progress: bool | None = None,
) -> tuple[UnlearnResult, Checkpoint, DatasetBundle, IndexedDataset]:
    """Remove ``attribute``'s influence from the checkpoint at ``path`` with ``method`` (kind "attribute"); nothing
    is saved (:func:`save_debiased` does). Returns the result, the checkpoint, its data and the training set used.

    The method, its hyperparameters and the attribute are checked before any training. The data are rebuilt from
    the checkpoint's sidecar (as for :func:`forget_checkpoint`); the method trains on the checkpoint's current
    training set (the original one minus every id its forget history removed: ``retrain-balanced`` must not bring
    forgotten samples back), with the checkpoint's recipe, and calibrates on the data's ``val`` split.
    """
    cls = check_method_kind(method, "attribute")
    cls.make_config(**(params or {}))  # unknown or bad hyperparameters fail before the data load
    ckpt, bundle = load_with_data(path, device=device, data_dir=data_dir)
    train = training_set(bundle, ckpt)
    check_attribute(train, attribute)
    # the bundle with the current training set: its val split and counterfactual renderer go with it
    data = replace(bundle, train=train) if train is not bundle.train else bundle
    recipe = TrainConfig.from_dict(ckpt.train_config)
    result = remove_attribute(ckpt.model, data, attribute, method, train_config=recipe, device=device, seed=seed,
                              progress=progress, checkpoint=ckpt.path, **(params or {}))
    return result, ckpt, bundle, train


def save_debiased(out: str | Path, result: UnlearnResult, attribute: str, train: IndexedDataset,
                  ckpt: Checkpoint) -> Path:
    """Save the model an attribute was removed from with the parent's sidecar plus one more history entry (the
    parent's history kept). A model whose output layer carries a concept eraser (``leace``) records the model
    kwarg ``erased=True``, so that it loads again; a plain output layer drops the kwarg."""
    kwargs = ckpt.model_kwargs
    if isinstance(getattr(result.model, "classifier", None), ErasedLinear):
        if "erased" not in MODELS[ckpt.model_name].params():
            raise CheckpointError(f"{result.method} put a concept eraser in front of the output layer, which model "
                                  f"{ckpt.model_name!r} cannot rebuild on load (it takes no 'erased' argument); use "
                                  "an mlp, cnn or resnet18 checkpoint")
        kwargs["erased"] = True
    else:
        kwargs.pop("erased", None)
    entry = {**result.attribute_history_entry(attribute, len(train)), "parent": str(ckpt.path)}
    meta = CheckpointMeta(
        ckpt.model_name, kwargs, ckpt.spec, {k: v for k, v in ckpt.data.items() if k != "spec"},
        ckpt.train_config, history=[*ckpt.history, entry],
    )
    return save_model(out, result.model, meta)


def _same_data_model(path: str | Path | None, ckpt: Checkpoint, device, role: str, fix: str) -> nn.Module | None:
    """The model at ``path`` (None for None), refused if it was trained on other data than ``ckpt``."""
    if path is None:
        return None
    other = load_checkpoint(path, device=resolve_device(device))
    if other.data.get("fingerprint") != ckpt.data.get("fingerprint"):
        raise CheckpointError(f"{role} {other.path} was trained on different data than {ckpt.path}; {fix}")
    return other.model


@dataclass
class Evaluation:
    """What :func:`evaluate_run` measured: the sample-forgetting report and its split (with ``forget``), the bias
    report (with ``attribute``: :func:`unlearnkit.evaluation.bias_report`'s dict), and warnings for the user."""

    report: Report | None = None
    split: ForgetSplit | None = None
    attribute: str | None = None
    bias: dict | None = None
    poison: dict | None = None  # poisoned data: evaluation.poison_report of the model (and "reference" with one)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The sample report's JSON (without ``forget``: nothing), plus with ``attribute`` the keys ``attribute`` and
        ``bias`` (the model's :data:`~unlearnkit.evaluation.BIAS_KEYS`); with a reference, the reference's bias
        values join ``reference`` and their absolute differences join ``gap`` (the names do not overlap with the
        sample metrics; ``gap.average`` stays the sample metrics' average)."""
        out = {} if self.report is None else self.report.to_json()
        if self.poison is not None:
            out["poison"] = self.poison
        if self.bias is not None:
            out["attribute"] = self.attribute
            out["bias"] = dict(self.bias["bias"])
            if "reference" in self.bias:
                out["reference"] = {**out.get("reference", {}), **self.bias["reference"]}
                out["gap"] = {**out.get("gap", {}), **self.bias["gap"]}
        return out


def evaluate_run(
    path: str | Path,
    *,
    forget: str | None = None,
    attribute: str | None = None,
    reference: str | Path | None = None,
    original: str | Path | None = None,
    relearn: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
) -> Evaluation:
    """Evaluate a checkpoint: how well it forgot the split ``forget`` selects (see :func:`evaluate_checkpoint`),
    how much it relies on ``attribute`` (on the test split, :func:`unlearnkit.evaluation.bias_report`), or both.
    ``reference`` (a checkpoint on the same data: ``retrain`` for samples, ``retrain-balanced`` for an attribute)
    adds its values and the gaps to both. The option combinations are checked before the data load.
    """
    if forget is None and attribute is None:
        raise ConfigError("evaluate needs --forget SPEC (how well samples were forgotten), --attribute NAME (how much "
                          "the model relies on an attribute), or both")
    if forget is None and (original is not None or relearn):
        raise ConfigError("--original and --relearn measure sample forgetting; add --forget SPEC (the spec given to "
                          "unlearn forget)")
    if relearn and original is None:
        raise ConfigError("--relearn needs --original PATH: relearning stops at the original model's forget accuracy")
    ckpt, bundle = load_with_data(path, device=device, data_dir=data_dir)
    if attribute is not None:
        check_attribute(bundle.test, attribute)  # before any metric is computed
    ref_model = _same_data_model(reference, ckpt, device, "reference",
                                 "pass a reference derived from the same original checkpoint")
    result = Evaluation(attribute=attribute)
    if forget is not None:
        result.split = select(training_set(bundle, ckpt, before_last=True), forget, seed=seed)
        last = ckpt.history[-1] if ckpt.history else {}
        # an attribute removal (last entry without forget ids) selected no samples to compare with
        if "forget_ids_sha256" in last and last["forget_ids_sha256"] != result.split.ids_digest():
            result.warnings.append(
                f"this forget set differs from the one the checkpoint forgot ({last.get('forget_spec')} with seed "
                f"{last.get('seed')}); pass the same --forget and --seed to compare like with like"
            )
        if original is None and is_multitask(ckpt.model) and last.get("parent") and not relearn:
            # the UIS needs the original: the parent the history records, when it is still there
            parent = Path(last["parent"])
            if all(p.exists() for p in checkpoint_paths(parent)):
                original = parent
                result.warnings.append(f"UIS measured against the parent checkpoint {parent} (from the history); "
                                       "pass --original to choose another")
            else:
                result.warnings.append(f"no UIS: the parent checkpoint {parent} the history records is not there; "
                                       "pass --original PATH")
        orig_model = _same_data_model(original, ckpt, device, "original",
                                      "pass the checkpoint this one was unlearned from")
        result.report = evaluate(ckpt.model, result.split, bundle.test, ref_model, original=orig_model,
                                 relearn=relearn, relearn_config=TrainConfig.from_dict(ckpt.train_config),
                                 device=device, seed=seed)
    if attribute is not None:
        result.bias = bias_report(ckpt.model, bundle, attribute, reference=ref_model, device=device, seed=seed)
    if bundle.poison is not None:
        result.poison = poison_report(ckpt.model, bundle, device=device)
        if ref_model is not None:
            result.poison["reference"] = poison_report(ref_model, bundle, device=device)
    return result


def evaluate_checkpoint(
    path: str | Path,
    forget: str,
    *,
    reference: str | Path | None = None,
    original: str | Path | None = None,
    relearn: bool = False,
    seed: int = 0,
    device: str | torch.device | None = None,
    data_dir: str | None = None,
) -> tuple[Report, ForgetSplit, list[str]]:
    """Evaluate a checkpoint on the split ``forget`` selects; returns the report, the split and warnings.

    The split is drawn from the training set as it was before the checkpoint's last forget operation,
    so ``evaluate`` with the spec and seed given to ``forget`` sees exactly the split ``forget`` used.
    ``original`` (the checkpoint before unlearning) adds the weight distance to it and, with ``relearn``,
    the relearn time, using the checkpoint's own recipe for the relearning optimizer.
    """
    result = evaluate_run(path, forget=forget, reference=reference, original=original, relearn=relearn, seed=seed,
                          device=device, data_dir=data_dir)
    return result.report, result.split, result.warnings
