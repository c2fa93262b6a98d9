"""Checkpoints: ``PATH.safetensors`` (weights) + ``PATH.json`` (everything needed to rebuild and audit).

The sidecar holds the model name and kwargs, the data source, its options and fingerprint, the
training recipe (``TrainConfig`` as a dict), and the history of forget operations applied. It also
records the sha256 of the weights file, so a sidecar paired with the wrong or a corrupted weights file
is refused. Nothing is pickled. Files are written to a temporary name and renamed, so an interrupted
save never leaves a half-written checkpoint under the final name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearnkit.data.dataset import DataSpec
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models.registry import build_model

FORMAT = "unlearnkit-checkpoint"
VERSION = 1


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``runs/x`` or ``runs/x.json`` or ``runs/x.safetensors`` -> (weights path, sidecar path)."""
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def checkpoint_exists(path: str | Path) -> bool:
    return any(p.exists() for p in checkpoint_paths(path))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode) and its sidecar metadata."""

    model: nn.Module
    meta: dict
    path: Path | None = None

    @property
    def model_name(self) -> str:
        return self.meta["model"]["name"]

    @property
    def model_kwargs(self) -> dict:
        return dict(self.meta["model"].get("kwargs", {}))

    @property
    def spec(self) -> DataSpec:
        return DataSpec.from_dict(self.meta["data"]["spec"])

    @property
    def data(self) -> dict:
        return self.meta["data"]

    @property
    def train_config(self) -> dict:
        return dict(self.meta["train_config"])

    @property
    def history(self) -> list[dict]:
        return list(self.meta.get("history", []))

    def forgotten_ids(self) -> list[int]:
        """Every id removed by the forget operations in the history, in order."""
        return [i for op in self.history for i in op.get("forget_ids", [])]


@dataclass
class CheckpointMeta:
    """What :func:`save_checkpoint` writes beside the weights."""

    model_name: str
    model_kwargs: dict
    spec: DataSpec
    data: dict  # source, options, fingerprint, train_size
    train_config: dict
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> tuple[Path, Path]:
    """Write ``path.safetensors`` and ``path.json`` atomically; returns both paths."""
    weights, sidecar = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp_w = weights.with_name(weights.name + ".tmp")
    tmp_s = sidecar.with_name(sidecar.name + ".tmp")
    try:
        _write_pair(tmp_w, tmp_s, weights, sidecar, state, meta)
    finally:  # a failed save (e.g. metadata JSON cannot encode) leaves no temporary files behind
        tmp_w.unlink(missing_ok=True)
        tmp_s.unlink(missing_ok=True)
    return weights, sidecar


def _write_pair(
    tmp_w: Path, tmp_s: Path, weights: Path, sidecar: Path, state: dict, meta: CheckpointMeta
) -> None:
    save_file(state, str(tmp_w), metadata={"format": FORMAT})
    digest = file_sha256(tmp_w)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {"name": meta.model_name, "kwargs": _jsonable(meta.model_kwargs)},
        "data": {**_jsonable(meta.data), "spec": meta.spec.to_dict()},
        "train_config": _jsonable(meta.train_config),
        "history": _jsonable(meta.history),
        "weights": {"file": weights.name, "sha256": digest, "tensors": len(state)},
        **_jsonable(meta.extra),
    }
    tmp_s.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp_w, weights)
    os.replace(tmp_s, sidecar)


def read_sidecar(path: str | Path) -> dict:
    """The parsed sidecar JSON of a checkpoint, validated for format; weights are not touched."""
    weights, sidecar = checkpoint_paths(path)
    if not sidecar.exists():
        hint = f" (found {weights.name} alone)" if weights.exists() else ""
        raise CheckpointError(
            f"checkpoint sidecar {sidecar} not found{hint}; "
            "pass the path given to --out when the model was saved"
        )
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint sidecar {sidecar} is not valid JSON ({exc}); restore it from a backup"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{sidecar} is not an unlearnkit checkpoint sidecar; pass a path written by unlearnkit"
        )
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"{sidecar} has checkpoint version {meta.get('version')}; this unlearnkit reads {VERSION}"
        )
    for key in ("model", "data", "train_config", "weights"):
        if key not in meta:
            raise CheckpointError(f"{sidecar} lacks the {key!r} section; the sidecar is damaged, restore it")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint, refusing missing, corrupt or mismatched files with a clear message."""
    weights, sidecar = checkpoint_paths(path)
    meta = read_sidecar(path)
    if not weights.exists():
        raise CheckpointError(
            f"checkpoint weights {weights} not found beside {sidecar.name}; restore the file"
        )
    if file_sha256(weights) != meta["weights"].get("sha256"):
        raise CheckpointError(
            f"{weights.name} does not match {sidecar.name} (sha256 differs): the weights were replaced or "
            "corrupted; restore the pair that was saved together"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {weights} ({exc}); the file is corrupt, restore it") from exc
    spec = DataSpec.from_dict(meta["data"]["spec"])
    name = meta["model"]["name"]
    try:
        model = build_model(name, spec, seed=0, **_model_kwargs(meta["model"].get("kwargs", {})))
    except (ConfigError, TypeError, ValueError) as exc:  # unknown name, or kwargs of another architecture
        raise CheckpointError(
            f"{sidecar.name} names model {name!r} with kwargs that cannot be built ({exc}); "
            "the sidecar names the wrong architecture, restore it"
        ) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # line 0 only says "Error(s) in loading state_dict for X:"; the next one names the keys
        first = lines[1] if len(lines) > 1 else lines[0]
        first = first if len(first) <= 200 else first[:200] + " ..."
        raise CheckpointError(
            f"weights in {weights.name} do not fit model {meta['model']['name']!r} ({first}); "
            "the sidecar names the wrong architecture"
        ) from exc
    model.to(device).eval()
    return Checkpoint(model=model, meta=meta, path=sidecar.with_suffix(""))


def _model_kwargs(kwargs: dict) -> dict:
    """JSON turns tuples into lists; architectures take tuples (e.g. ``hidden``)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
