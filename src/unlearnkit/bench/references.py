"""Retrained reference models: the gold standard, many seeds of it, trained together and cached on disk.

A reference model is what a user would get by training the architecture from scratch on the retain set
(the training set without the forgotten ids) with the original recipe. Metrics such as the NeurIPS-2023
forgetting quality need many of them, one per seed; :func:`retrained_models` trains the missing ones
together with :func:`unlearnkit.train.fit_ensemble` and keeps each as an ordinary checkpoint, so a later
call with the same inputs loads them instead of training again.

Cache layout: one checkpoint per model, ``CACHE_DIR/retrain-MODEL-seedS-KEY.{safetensors,json}``, where
KEY is the first 32 hex digits of :func:`reference_key`: a sha256 over the retain set's fingerprint, the
model name and keyword arguments, the data spec, the ``TrainConfig`` with that seed, and the seed. Any
change to those inputs gives a new file name; nothing is ever overwritten with a different model.
Unreadable cache files are retrained and rewritten, with a :class:`ReferenceCacheWarning`; every write goes
through :func:`~unlearnkit.models.save_checkpoint` (temporary names, the sidecar renamed last), so a killed run
leaves the old cache file or the new one, never half of one.

Example:
    >>> from unlearnkit.data import load_dataset
    >>> from unlearnkit.train import TrainConfig
    >>> data = load_dataset("digits")
    >>> refs = retrained_models(data.train, [0, 1, 2], "mlp", {}, data.spec, TrainConfig(epochs=5),
    ...                         seeds=range(8), cache_dir="runs/references", progress=False)
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from unlearnkit.data.dataset import DataSpec, IndexedDataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models import CheckpointMeta, build_model, checkpoint_exists, load_checkpoint, save_checkpoint
from unlearnkit.train import TrainConfig, check_seeds, fit_ensemble

KEY_VERSION = 1  # bump when the training code changes what the same inputs produce, to orphan old files


def default_cache_dir() -> Path:
    """Where reference models are cached unless told otherwise: ``$UNLEARNKIT_CACHE/references``, else
    ``~/.cache/unlearnkit/references`` (the XDG convention: deleting it only costs retraining)."""
    root = os.environ.get("UNLEARNKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "unlearnkit") / "references"


class ReferenceCacheWarning(UserWarning):
    """A cached reference model could not be read and is being retrained (and its file rewritten)."""


def cache_key(parts: dict) -> str:
    """sha256 (hex) of ``parts`` as canonical JSON: sorted keys, tuples as lists; the same parts, the same key.

    Raises:
        ConfigError: a value JSON cannot represent (e.g. a tensor in the model kwargs).
    """
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"cannot build a cache key from {parts!r} ({exc}); pass plain numbers, strings, lists and dicts"
        ) from exc
    return hashlib.sha256(text.encode()).hexdigest()


def reference_key(
    retain: IndexedDataset, model_name: str, model_kwargs: dict, spec: DataSpec, config: TrainConfig, seed: int
) -> str:
    """The cache key of one retrained reference model (see the module docstring for what it covers).

    The retain set enters through its fingerprint (sorted ids, shapes, labels), so two forget requests
    that leave the same samples share their references.
    """
    return cache_key({
        "kind": "retrained-reference",
        "version": KEY_VERSION,
        "retain_fingerprint": retain.fingerprint(),
        "model": {"name": model_name, "kwargs": model_kwargs},
        "spec": spec.to_dict(),
        "train_config": config.with_(seed=seed).to_dict(),
        "seed": seed,
    })


def retrained_models(
    train: IndexedDataset,
    forget_ids: Iterable[int] | torch.Tensor,
    model_name: str,
    model_kwargs: dict,
    spec: DataSpec,
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    cache_dir: str | Path | None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> list[nn.Module]:
    """One model per seed, trained from scratch on ``train`` without ``forget_ids``, loaded from cache when there.

    Model ``s`` equals ``fit(build_model(model_name, spec, seed=s, **model_kwargs), train.without(forget_ids),
    config.with_(seed=s))`` up to float rounding; the missing ones are trained together with ``fit_ensemble``.

    Args:
        train: the full training set the original model saw.
        forget_ids: the ids to leave out; every one must be in ``train``.
        model_name: a registered architecture (``unlearnkit.models.MODELS``).
        model_kwargs: its keyword arguments, e.g. ``{"hidden": (64,)}`` (JSON values only, for the key).
        spec: the data's input shape and class count.
        config: the original recipe; each model uses it with its own seed.
        seeds: one model per seed, returned in this order; distinct.
        cache_dir: directory of cached checkpoints (created if needed); ``None`` trains every time.
        device: ``None`` picks cuda > mps > cpu; models are returned there.
        progress: show progress bars (default: only on a terminal).

    Returns:
        The models in eval mode, in the order of ``seeds``.

    Raises:
        DataError: a forget id that is not in ``train``.
        ConfigError: no seeds, repeated seeds, an empty retain set, or model kwargs JSON cannot hold.
    """
    seeds = check_seeds(seeds)
    forget = train.by_ids(forget_ids)  # refuses ids not in the training set (e.g. test ids), clearly
    retain = train.without(forget.ids)
    dev = resolve_device(device)
    keys = {s: reference_key(retain, model_name, model_kwargs, spec, config, s) for s in seeds}
    cache = None if cache_dir is None else Path(cache_dir)
    models: dict[int, nn.Module] = {}
    if cache is not None:
        for s in seeds:
            model = _load_cached(_cache_path(cache, model_name, s, keys[s]), keys[s], dev)
            if model is not None:
                models[s] = model
    missing = [s for s in seeds if s not in models]
    if missing:
        # the sidecar's data section, as runs.data_meta writes it for the training set (source unknown here)
        data = {"fingerprint": train.fingerprint(), "train_size": len(train),
                "retain_fingerprint": retain.fingerprint(), "retain_size": len(retain)}
        trained = fit_ensemble(
            lambda s: build_model(model_name, spec, seed=s, **model_kwargs), retain, config, len(missing), missing,
            device=dev, progress=progress, description=f"retrain {model_name}",
        )
        for s, model in zip(missing, trained, strict=True):
            models[s] = model
            if cache is not None:
                meta = CheckpointMeta(
                    model_name, dict(model_kwargs), spec, data, config.with_(seed=s).to_dict(),
                    history=[{"method": "retrain", "forget_ids": sorted(int(i) for i in forget.ids)}],
                    extra={"reference_key": keys[s]},  # checked on load, beside the file name
                )
                save_checkpoint(_cache_path(cache, model_name, s, keys[s]), model, meta)
    return [models[s] for s in seeds]


def _cache_path(cache: Path, model_name: str, seed: int, key: str) -> Path:
    # name and seed first, for people listing the directory; 32 hex digits (128 bits) of the key for identity
    return cache / f"retrain-{model_name}-seed{seed}-{key[:32]}"


def _load_cached(path: Path, key: str, device: torch.device) -> nn.Module | None:
    """The cached model at ``path``, or None when there is none or it cannot be used (warned, retrained)."""
    if not checkpoint_exists(path):
        return None
    try:
        ckpt = load_checkpoint(path, device=device)
    except CheckpointError as exc:
        warnings.warn(ReferenceCacheWarning(f"cached reference {path} is unusable ({exc}); retraining it and "
                                            "overwriting the file"), stacklevel=3)
        return None
    if ckpt.meta.get("reference_key") != key:
        warnings.warn(ReferenceCacheWarning(f"cached reference {path} was written for other inputs (its key "
                                            "differs); retraining it and overwriting the file"), stacklevel=3)
        return None
    return ckpt.model
