"""Architectures by name (incl. multi-head multi-task models) and checkpoint save/load (safetensors + JSON sidecar)."""

from unlearnkit.models.architectures import penultimate
from unlearnkit.models.checkpoint import (
    Checkpoint,
    CheckpointMeta,
    checkpoint_exists,
    checkpoint_paths,
    load_checkpoint,
    read_sidecar,
    save_checkpoint,
)
from unlearnkit.models.registry import MODELS, build_model, fresh_copy, register_model

__all__ = [
    "MODELS", "Checkpoint", "CheckpointMeta", "build_model", "checkpoint_exists", "checkpoint_paths",
    "fresh_copy", "load_checkpoint", "penultimate", "read_sidecar", "register_model", "save_checkpoint",
]
