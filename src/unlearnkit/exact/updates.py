"""Recorded training updates: each optimizer step's parameter change, with the ids of the batch that made it.

Amnesiac unlearning (Graves, Nagisetty and Ganesh, "Amnesiac Machine Learning", AAAI 2021) undoes the
batches that held a forgotten sample by subtracting the parameter updates those batches made. That needs,
for every step of training, the update and the ids in the batch. :class:`UpdateRecorder` is the hook that
``fit(..., after_step=recorder)`` calls after each optimizer step; it writes the updates beside the
checkpoint, in chunks so that memory stays bounded however long training runs::

    OUT.updates/index.json                 format, dtype, parameter shapes, chunk list, end-of-run fingerprint
    OUT.updates/ids.safetensors            "ids" (int64, every batch's ids one after another), "offsets" (int64)
    OUT.updates/chunk-00000.safetensors    "<step>/<parameter name>": params after the step minus params before

What is recorded: every parameter with ``requires_grad`` at the start of training, as it changed in one
step (gradient, momentum, weight decay and learning rate schedule all included: it is the observed
difference, not the gradient). Buffers are not recorded: a batch-norm running statistic is an
exponential average, so subtracting one early step's change from it would remove more than that step
left behind and can drive a running variance negative; the amnesiac method re-estimates those statistics
on the retain set instead. ``float16`` halves the storage and rounds each update to about three
significant digits (see docs/exact/amnesiac.md for what that does to exactness).

``index.json`` also keeps a sha256 of the model's state at the end of the recorded run, so a checkpoint
whose weights are no longer that end (the output of a forget, or a replaced model) is recognised.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from unlearnkit import files
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models.checkpoint import new_side_folder, side_folder

FORMAT = "unlearnkit-updates"
VERSION = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# 64 MiB of updates per chunk file: few files for small models, bounded memory for large ones.
CHUNK_BYTES = 64 << 20
FLOAT16_MAX = torch.finfo(torch.float16).max


SECTION = "recorded_updates"  # the checkpoint sidecar section that names the folder


def updates_dir(checkpoint: str | Path) -> Path:
    """Where the updates of the checkpoint ``runs/x`` (or ``runs/x.json``/``.safetensors``) live: ``runs/x.updates``,
    or the ``runs/x.updates.new-...`` folder its sidecar names (after a ``--force`` replacement)."""
    return side_folder(checkpoint, SECTION)


def new_updates_dir(checkpoint: str | Path) -> Path:
    """Where to record the updates of a model that will be saved at ``checkpoint``: ``runs/x.updates`` if free, else
    a fresh name, so that a checkpoint saved there now keeps its own updates until the new one replaces it."""
    return new_side_folder(checkpoint, SECTION)


def state_fingerprint(model: nn.Module) -> str:
    """sha256 of every tensor in ``model.state_dict()`` (names, dtypes, shapes and exact bytes)."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as a checkpoint stores them (every state-dict tensor)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


class UpdateRecorder:
    """Records each step's parameter update and batch ids to a folder; pass it as ``fit(after_step=...)``.

    Example:
        >>> import tempfile
        >>> from unlearnkit.data import load_dataset
        >>> from unlearnkit.models import build_model
        >>> from unlearnkit.train import TrainConfig, fit
        >>> data = load_dataset("digits")  # 1438 training samples
        >>> model = build_model("mlp", data.spec, seed=0)
        >>> folder = tempfile.TemporaryDirectory()
        >>> recorder = UpdateRecorder(model, updates_dir(Path(folder.name) / "x"))
        >>> model = fit(model, data.train, TrainConfig(epochs=1, batch_size=512), after_step=recorder, progress=False)
        >>> log = recorder.finish(model)
        >>> log.steps, [len(log.batch_ids(step)) for step in range(log.steps)]
        (3, [512, 512, 414])
        >>> folder.cleanup()

    Files go to a hidden temporary folder beside ``directory`` while training runs (each file written whole, then
    renamed) and the folder is renamed to ``directory`` by :meth:`finish`, so an interrupted run never leaves a
    half-written log under the final name; :meth:`abort` removes the temporary folder. A log already at
    ``directory`` is replaced only once the new one is complete (for a checkpoint, record to
    :func:`new_updates_dir` instead: its sidecar then decides which log is its own).
    """

    def __init__(self, model: nn.Module, directory: str | Path, *, dtype: str = "float32",
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"unknown update dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        if chunk_bytes < 1:
            raise ConfigError(f"chunk_bytes must be positive, got {chunk_bytes}")
        self.directory = Path(directory)
        self.partial = files.temp_path(self.directory)  # the log while it is written
        self.dtype = dtype
        self.chunk_bytes = chunk_bytes
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.shapes = {name: list(p.shape) for name, p in model.named_parameters() if p.requires_grad}
        self._previous = self._snapshot(model)
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_bytes = 0
        self._pending_first = 0
        self._chunks: list[dict] = []
        self._ids: list[torch.Tensor] = []
        self._steps = 0
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        files.sweep_stale(self.directory)  # the partial log of a killed run
        self.partial.mkdir()

    def _snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        params = dict(model.named_parameters())
        return {name: params[name].detach().clone() for name in self.names}

    def __call__(self, step: int, ids: torch.Tensor, model: nn.Module) -> None:
        """The ``after_step`` hook: store params now minus params at the previous call, and the batch ids."""
        if step != self._steps:
            raise ConfigError(f"update recorder expected step {self._steps}, got {step}; use one recorder per fit")
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                now = params[name].detach()
                delta = (now - self._previous[name]).to("cpu", DTYPES[self.dtype])
                if self.dtype == "float16" and not torch.isfinite(delta).all():
                    self.abort()
                    raise ConfigError(f"step {step} changed {name} by more than float16 can hold ({FLOAT16_MAX:g}); "
                                      "record with --record-dtype float32")
                self._pending[f"{step}/{name}"] = delta.contiguous()
                self._pending_bytes += delta.numel() * delta.element_size()
                self._previous[name].copy_(now)
        self._ids.append(ids.detach().to("cpu", torch.int64).reshape(-1).clone())
        self._steps += 1
        if self._pending_bytes >= self.chunk_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        path = self.partial / f"chunk-{len(self._chunks):05d}.safetensors"
        files.write_bytes_atomic(path, safetensors_bytes(self._pending, metadata={"format": FORMAT}), force=False)
        self._chunks.append({"file": path.name, "first_step": self._pending_first,
                             "steps": self._steps - self._pending_first, "bytes": path.stat().st_size})
        self._pending, self._pending_bytes, self._pending_first = {}, 0, self._steps

    def finish(self, model: nn.Module) -> UpdateLog:
        """Write the last chunk, the ids and the index, move the folder into place; returns the log."""
        self._flush()
        ids = torch.cat(self._ids) if self._ids else torch.empty(0, dtype=torch.int64)
        offsets = torch.tensor([0, *torch.tensor([len(i) for i in self._ids], dtype=torch.int64).cumsum(0).tolist()],
                               dtype=torch.int64)
        files.write_bytes_atomic(self.partial / "ids.safetensors",
                                 safetensors_bytes({"ids": ids, "offsets": offsets}, metadata={"format": FORMAT}),
                                 force=False)
        index = {
            "format": FORMAT,
            "version": VERSION,
            "dtype": self.dtype,
            "steps": self._steps,
            "parameters": self.shapes,
            "buffers": "not recorded (batch-norm statistics are re-estimated on the retain set)",
            "ids_file": "ids.safetensors",
            "chunks": self._chunks,
            "model_bytes": model_bytes(model),
            "final_state_sha256": state_fingerprint(model),
        }
        files.write_json_atomic(self.partial / "index.json", index, force=False)
        if self.directory.exists():  # the old log stays whole (renamed aside) until the new one is in place
            old = files.fresh_path(self.directory, "old")
            files.replace(self.directory, old)
            files.replace(self.partial, self.directory)
            files.remove_tree(old)
        else:
            files.replace(self.partial, self.directory)
        self._previous = {}
        return read_updates(self.directory)

    def abort(self) -> None:
        """Drop what was written (training failed); the final folder is left untouched."""
        self._pending, self._previous = {}, {}
        if self.partial.exists():
            files.remove_tree(self.partial)


@dataclass
class UpdateLog:
    """A recorded run, read back: the index, the batch ids per step, and the updates on demand."""

    directory: Path
    index: dict
    ids: torch.Tensor  # every batch's ids, concatenated in step order
    offsets: torch.Tensor  # batch s holds ids[offsets[s]:offsets[s + 1]]

    @property
    def steps(self) -> int:
        return int(self.index["steps"])

    @property
    def dtype(self) -> str:
        return self.index["dtype"]

    @property
    def parameters(self) -> dict[str, list[int]]:
        return dict(self.index["parameters"])

    def batch_ids(self, step: int) -> torch.Tensor:
        return self.ids[int(self.offsets[step]) : int(self.offsets[step + 1])]

    def steps_containing(self, ids: torch.Tensor) -> list[int]:
        """The steps whose batch held at least one of ``ids``, in order."""
        hit = torch.isin(self.ids, ids.to(torch.int64).reshape(-1))
        step_of = torch.repeat_interleave(torch.arange(self.steps), self.offsets.diff())
        return sorted(set(step_of[hit].tolist()))

    def storage(self) -> dict:
        """Bytes on disk, number of recorded batches, and the ratio of those bytes to the model's weights."""
        total = sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())
        return {
            "dir": str(self.directory), "bytes": total, "batches": self.steps, "dtype": self.dtype,
            "model_bytes": self.index["model_bytes"],
            "ratio_to_model": round(total / max(1, self.index["model_bytes"]), 3),
        }

    def delta(self, step: int) -> dict[str, torch.Tensor]:
        """The update of one step, parameter name -> tensor in the recorded dtype."""
        with self._open(self._chunk_of(step)) as f:
            return {name: f.get_tensor(f"{step}/{name}") for name in self.parameters}

    def sum_deltas(self, steps: list[int]) -> dict[str, torch.Tensor]:
        """The sum of the updates of ``steps``, parameter name -> float64 tensor on the CPU.

        Sums in float64 so that adding many small updates loses nothing beyond their recorded precision.
        """
        total = {name: torch.zeros(shape, dtype=torch.float64) for name, shape in self.parameters.items()}
        by_chunk: dict[int, list[int]] = {}
        for step in steps:
            by_chunk.setdefault(self._chunk_of(step), []).append(step)
        for chunk, chunk_steps in by_chunk.items():
            with self._open(chunk) as f:
                for step in chunk_steps:
                    for name in total:
                        total[name] += f.get_tensor(f"{step}/{name}").to(torch.float64)
        return total

    def _chunk_of(self, step: int) -> int:
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside the {self.steps} recorded steps")
        for i, chunk in enumerate(self.index["chunks"]):
            if chunk["first_step"] <= step < chunk["first_step"] + chunk["steps"]:
                return i
        raise CheckpointError(f"{self.directory / 'index.json'} lists no chunk for step {step}; the index is damaged, "
                              "retrain with --record-updates")

    def _open(self, chunk: int):
        entry = self.index["chunks"][chunk]
        path = self.directory / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise CheckpointError(f"update chunk {path} is missing or has the wrong size; the recorded updates are "
                                  "incomplete, retrain with --record-updates")
        try:
            return safe_open(str(path), framework="pt")
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read update chunk {path} ({exc}); retrain with --record-updates") from exc


def read_updates(directory: str | Path) -> UpdateLog:
    """Read the index and batch ids of a recorded run (the updates stay on disk until asked for)."""
    directory = Path(directory)
    index_path = directory / "index.json"
    fix = "retrain the checkpoint with `unlearn train --record-updates`"
    if not index_path.is_file():
        raise CheckpointError(f"no recorded updates at {directory} (index.json not found); {fix}")
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index_path} is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        raise CheckpointError(f"{index_path} is not an unlearnkit update index of version {VERSION}; {fix}")
    if index.get("dtype") not in DTYPES:
        raise CheckpointError(f"{index_path} names update dtype {index.get('dtype')!r}; {fix}")
    try:
        arrays = load_file(str(directory / index["ids_file"]))
        ids, offsets = arrays["ids"], arrays["offsets"]
    except (SafetensorError, OSError, KeyError, FileNotFoundError) as exc:
        raise CheckpointError(f"cannot read the batch ids in {directory} ({exc}); {fix}") from exc
    if len(offsets) != index["steps"] + 1 or int(offsets[-1]) != len(ids):
        raise CheckpointError(f"the batch ids in {directory} do not match its index ({index['steps']} steps); {fix}")
    return UpdateLog(directory, index, ids, offsets)


def check_matches(log: UpdateLog, model: nn.Module, checkpoint: str | Path) -> None:
    """Refuse updates recorded for other parameters (names or shapes) than ``model``'s."""
    params = {name: list(p.shape) for name, p in model.named_parameters()}
    for name, shape in log.parameters.items():
        if params.get(name) != shape:
            have = "missing" if name not in params else params[name]
            raise CheckpointError(
                f"the recorded updates in {log.directory} do not fit {checkpoint}: parameter {name!r} was recorded "
                f"with shape {shape}, the model's is {have}; retrain with --record-updates"
            )
    if not log.parameters:
        raise CheckpointError(f"{log.directory} records no parameters; retrain with --record-updates")


def summary_bytes(n: int) -> str:
    """``n`` bytes as a short human figure (kB, MB, GB)."""
    if n < 1000:
        return f"{n} B"
    exp = min(3, int(math.log10(n) // 3))
    return f"{n / 1000 ** exp:.1f} {('B', 'kB', 'MB', 'GB')[exp]}"
