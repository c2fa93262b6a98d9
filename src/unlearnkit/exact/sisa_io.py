"""SISA files on disk: the folder beside a SISA checkpoint, its index and slice weights, and their sha256 checks.

Training and unlearning (:mod:`unlearnkit.exact.sisa`) work on tensors and plain data; this module only
writes and reads them. Beside a checkpoint ``OUT`` (``OUT.safetensors`` + ``OUT.json``)::

    OUT.sisa/assignment.json                   the plan, the ids of every shard and slice, each file's sha256
    OUT.sisa/shard-K/slice-R.safetensors       member K's weights after slice step R

A new folder is written whole under a temporary name and renamed to ``OUT.sisa``, or, when a checkpoint
there still uses that folder, to a fresh ``OUT.sisa.new-XXXXXXXX``; the checkpoint's sidecar names the
folder and the sha256 of its ``assignment.json``, and saving that sidecar is what makes the folder the
checkpoint's (see :mod:`unlearnkit.models.checkpoint`). A replaced checkpoint's folder is removed only after.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from unlearnkit import files
from unlearnkit.errors import CheckpointError
from unlearnkit.models.checkpoint import checkpoint_paths, file_sha256, new_side_folder, side_folder

FORMAT = "unlearnkit-sisa"
VERSION = 1
INDEX = "assignment.json"
SECTION = "sisa"  # the sidecar section that names the folder
RETRAIN = "train again with --sisa"


def sisa_dir(path: str | Path) -> Path:
    """``runs/x`` -> ``runs/x.sisa`` (or the ``runs/x.sisa.new-...`` folder its sidecar names): where a SISA
    checkpoint keeps its assignment and slice weights."""
    return side_folder(path, SECTION)


def slice_file(shard: int, step: int) -> str:
    """The slice file of member ``shard`` after slice step ``step`` (0-based), relative to the folder."""
    return f"shard-{shard}/slice-{step + 1}.safetensors"


def write_sisa_files(path: str | Path, doc: dict, states: list[list[dict[str, torch.Tensor]]]) -> dict:
    """Write a new SISA folder for the checkpoint at ``path``: every ``states[shard][step]`` as a slice file and
    ``doc`` (plus ``format``, ``version`` and the slice files' sha256 under ``files``) as ``assignment.json``.

    Returns what the checkpoint sidecar keeps under ``"sisa"``: the folder's name and the index's sha256.
    """
    folder = new_side_folder(path, SECTION)
    tmp = files.make_temp_dir(folder)
    try:
        digests = {}
        for k, steps in enumerate(states):
            for r, weights in enumerate(steps):
                name = slice_file(k, r)
                blob = safetensors_bytes({n: t.contiguous() for n, t in weights.items()}, metadata={"format": FORMAT})
                files.write_bytes_atomic(tmp / name, blob, force=False)
                digests[name] = file_sha256(tmp / name)
        files.write_json_atomic(tmp / INDEX, {"format": FORMAT, "version": VERSION, **doc, "files": digests},
                                force=False, indent=None)
        digest = file_sha256(tmp / INDEX)
        files.replace(tmp, folder)
    except BaseException:
        files.remove_tree(tmp)
        raise
    return {"dir": folder.name, "assignment_sha256": digest}


def read_sisa_index(path: str | Path, expected_sha256: str) -> tuple[Path, dict]:
    """The folder of the SISA checkpoint at ``path`` and its parsed ``assignment.json``, checked against the
    sha256 its sidecar records."""
    folder = sisa_dir(path)
    index = folder / INDEX
    if not index.is_file():
        raise CheckpointError(f"{index} not found; a SISA checkpoint keeps its shards in {folder.name}/ beside it: "
                              f"copy that folder with the checkpoint, or {RETRAIN}")
    if file_sha256(index) != expected_sha256:
        raise CheckpointError(f"{index} does not match {checkpoint_paths(path)[1].name} (sha256 differs); restore "
                              f"the checkpoint and its {folder.name} folder as they were saved together")
    try:
        doc = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{index} is damaged (not JSON: {exc}); restore it, or {RETRAIN}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CheckpointError(f"{index} is not a SISA index of version {VERSION}; restore it, or {RETRAIN}")
    if not isinstance(doc.get("files"), dict):
        raise CheckpointError(f"{index} is damaged (field 'files' must be an object); restore it, or {RETRAIN}")
    return folder, doc


def read_slice(folder: Path, doc: dict, shard: int, step: int) -> dict[str, torch.Tensor]:
    """Member ``shard``'s weights after slice step ``step``, checked against the index's sha256."""
    file = folder / slice_file(shard, step)
    if not file.is_file():
        raise CheckpointError(f"SISA slice file {file} is missing; restore {folder.name}/ as saved, or {RETRAIN}")
    if file_sha256(file) != doc["files"].get(slice_file(shard, step)):
        raise CheckpointError(f"SISA slice file {file} is corrupt (sha256 differs from {INDEX}); "
                              f"restore {folder.name}/ as saved, or {RETRAIN}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read SISA slice file {file} ({exc}); restore it") from exc


# --- training progress: the slice steps finished so far, for a rerun after a kill ------------------------------
PLAN = "plan.json"


def progress_dir(path: str | Path) -> Path:
    """``runs/x`` -> ``runs/x.sisa.partial``: while ``unlearn train --sisa --out runs/x`` runs, every finished slice
    step's weights are written there, so a rerun of the same command after a kill continues from them. It is
    removed once the checkpoint is saved."""
    return Path(f"{path}.sisa.partial")


def step_file(folder: Path, shard: int, step: int) -> Path:
    return folder / f"shard-{shard}" / f"step-{step + 1}.safetensors"


def open_progress(folder: Path, key: str, describe: str) -> None:
    """Create ``folder`` for the training run ``key`` (a digest of everything that decides the weights), or check
    that the one there belongs to the same run.

    Raises:
        ConfigError: the folder holds the steps of another training run (other data, plan, member or recipe).
    """
    from unlearnkit.errors import ConfigError

    plan = folder / PLAN
    if plan.is_file():
        try:
            saved = json.loads(plan.read_text()).get("key")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            saved = None
        if saved == key:
            return
        raise ConfigError(f"{folder} holds the finished slice steps of another SISA training (other data, --sisa "
                          f"plan, model or recipe than {describe}); rerun the command that started it to continue "
                          f"it, or delete {folder} to start this one")
    folder.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(plan, {"format": FORMAT, "key": key, "run": describe}, force=True)


def write_step(folder: str | Path, shard: int, step: int, weights: dict[str, torch.Tensor]) -> None:
    """Save member ``shard``'s weights after slice step ``step`` (atomically: a kill leaves the step whole or
    absent)."""
    file = step_file(Path(folder), shard, step)
    file.parent.mkdir(parents=True, exist_ok=True)
    blob = safetensors_bytes({n: t.contiguous() for n, t in weights.items()}, metadata={"format": FORMAT})
    files.write_bytes_atomic(file, blob, force=True)


def read_steps(folder: Path, shard: int, slices: int) -> list[dict[str, torch.Tensor]]:
    """The finished steps 0..r of member ``shard`` (the longest readable run from step 0; may be empty)."""
    steps = []
    for step in range(slices):
        file = step_file(folder, shard, step)
        if not file.is_file():
            break
        try:
            steps.append(load_file(str(file)))
        except (SafetensorError, OSError, ValueError):  # damaged outside unlearnkit: train this step again
            break
    return steps
