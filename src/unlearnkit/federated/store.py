"""What the server keeps of a federated training run, for unlearning: global models, clients' updates, counts.

A store is a folder (``CHECKPOINT.fl/`` beside the final global model; ``CHECKPOINT.fl.partial/`` while training
runs) holding:

- ``job.json``: the federation (data source and options, model, :class:`~unlearnkit.federated.client.FedConfig`),
  the clients' sample counts and each client's ids' sha256;
- ``global-TTTT.safetensors``: the global model after ``TTTT`` rounds (0 = the initial model), float32, every round;
- ``updates-TTTT.safetensors``: in round ``TTTT``, each client's update (its local model minus the global model it
  started from) under ``c{K}.{parameter}``, in the store's dtype (float16 halves the cost), at the rounds
  ``FedConfig.stored_rounds()`` names.

Each file is written whole (temporary name, then rename) before the next, so an interrupted run leaves complete
rounds only: ``unlearn fl train --resume`` restarts from the last global model. :meth:`UpdateStore.storage`
reports the bytes each kind of file takes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from unlearnkit import files
from unlearnkit.errors import CheckpointError

JOB = "job.json"
_GLOBAL = re.compile(r"^global-(\d{4,})\.safetensors$")
_UPDATES = re.compile(r"^updates-(\d{4,})\.safetensors$")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class UpdateStore:
    """Read and write one store folder (see the module docstring)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def global_path(self, round_: int) -> Path:
        return self.directory / f"global-{round_:04d}.safetensors"

    def updates_path(self, round_: int) -> Path:
        return self.directory / f"updates-{round_:04d}.safetensors"

    # --- writing -------------------------------------------------------------------------------------------
    def write_job(self, job: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        files.write_json_atomic(self.directory / JOB, job, force=True)

    def write_global(self, round_: int, state: dict[str, torch.Tensor]) -> None:
        blob = safetensors_bytes({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()})
        files.write_bytes_atomic(self.global_path(round_), blob, force=True)

    def write_updates(self, round_: int, updates: dict[int, dict[str, torch.Tensor]], dtype: str) -> None:
        cast = DTYPES[dtype]
        flat = {f"c{k}.{name}": v.detach().to("cpu", cast).contiguous()
                for k, state in sorted(updates.items()) for name, v in state.items()}
        files.write_bytes_atomic(self.updates_path(round_), safetensors_bytes(flat), force=True)

    # --- reading -------------------------------------------------------------------------------------------
    def job(self) -> dict:
        path = self.directory / JOB
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path} ({exc}); the federated store is damaged: retrain with "
                                  "unlearn fl train") from exc

    def global_rounds(self) -> list[int]:
        return self._rounds(_GLOBAL)

    def update_rounds(self) -> list[int]:
        return self._rounds(_UPDATES)

    def global_model(self, round_: int) -> dict[str, torch.Tensor]:
        return self._load(self.global_path(round_))

    def updates(self, round_: int) -> dict[int, dict[str, torch.Tensor]]:
        """Each stored client's update of round ``round_``, as float32."""
        out: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in self._load(self.updates_path(round_)).items():
            client, _, name = key.partition(".")
            out.setdefault(int(client[1:]), {})[name] = value.float()
        return dict(sorted(out.items()))

    def storage(self) -> dict:
        """Bytes on disk: global models, client updates, and in all."""
        glob = sum(p.stat().st_size for p in self.directory.glob("global-*.safetensors"))
        upd = sum(p.stat().st_size for p in self.directory.glob("updates-*.safetensors"))
        return {"global_bytes": glob, "update_bytes": upd, "total_bytes": glob + upd,
                "update_rounds": len(self.update_rounds()), "global_rounds": len(self.global_rounds())}

    def _rounds(self, pattern: re.Pattern) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.directory.iterdir() if (m := pattern.match(p.name)))

    def _load(self, path: Path) -> dict[str, torch.Tensor]:
        if not path.exists():
            raise CheckpointError(f"{path} is missing from the federated store; the store is incomplete: retrain "
                                  "with unlearn fl train (or store every round: --store-every 1)")
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path} ({exc}); the file is corrupt: retrain with unlearn fl "
                                  "train") from exc
