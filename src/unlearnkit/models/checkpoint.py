"""Checkpoints: ``PATH.safetensors`` (weights) + ``PATH.json`` (everything needed to rebuild and audit).

The sidecar holds the model name and kwargs, the data source, its options and fingerprint, the
training recipe (``TrainConfig`` as a dict), and the history of forget operations applied. It also
records the sha256 of the weights file, so a sidecar paired with the wrong or a corrupted weights file
is refused. Nothing is pickled.

Reading. Every sidecar is checked against one declared schema, :data:`SIDECAR`: each key the loader and its
callers read, with its type. A damaged sidecar (a key missing, a value of the wrong type, an unknown format or
version) is refused with one line naming the file, the field and the fix, e.g. ``runs/x.json: field
'model.kwargs' must be an object, got str; the sidecar is damaged: retrain or restore it``. Keys the schema
does not name (``extra`` facts) are kept as they are.

Side folders. A checkpoint may own folders beside it: SISA slices (``PATH.sisa/``, section ``"sisa"``) and
recorded updates (``PATH.updates/``, section ``"recorded_updates"``). The sidecar section names its folder
(``"dir"``) and, for SISA, the sha256 of the folder's index. :func:`side_folder` finds a checkpoint's folder.

Writing: the sidecar is the commit point. At every instant either the old or the new checkpoint is loadable
(weights, sidecar and side folders consistent), whatever step a crash interrupts:

1. A new side folder is written whole under a temporary name, then renamed to ``PATH.sisa`` if nothing is
   there, else to a fresh ``PATH.sisa.new-XXXXXXXX`` (:func:`new_side_folder`); the old folder is untouched.
2. The new weights go to ``PATH.safetensors`` if no sidecar uses that file, else to a fresh
   ``PATH.safetensors.new-XXXXXXXX`` (each file: temporary name, fsync, rename).
3. The new sidecar, naming the new weights file and side folders with their sha256, replaces the old one in
   one atomic rename. This is the commit: before it the old sidecar names only old files, after it the new
   sidecar names only new ones.
4. After the commit a staged weights file is renamed to ``PATH.safetensors`` and the sidecar rewritten to
   name it; a loader given a sidecar whose staged file is already gone reads ``PATH.safetensors`` (the
   sha256 tells). Then the old side folders and leftovers of earlier interrupted saves are removed.

A loader honours a name in the sidecar only if it belongs to this checkpoint (``PATH.safetensors``,
``PATH.sisa`` or one of their ``.new-`` names) and ignores temporary files, so a copied checkpoint
(``runs/y.json`` from ``runs/x.json``) reads its own ``runs/y.*`` files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from unlearnkit import files
from unlearnkit.data.dataset import DataSpec
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models.registry import build_model

FORMAT = "unlearnkit-checkpoint"
VERSION = 1
# sidecar section -> the suffix of the folder it describes (``runs/x`` -> ``runs/x.sisa``)
SIDE_FOLDERS = {"sisa": ".sisa", "recorded_updates": ".updates", "federated": ".fl"}
DAMAGED = "the sidecar is damaged: retrain or restore it"


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
        """Every id removed by the forget operations in the history, in order (partial-task operations, which
        record ``forget_tasks``, remove labels, not samples, and are left out)."""
        return [i for op in self.history if not op.get("forget_tasks") for i in op.get("forget_ids", [])]


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


# --- the sidecar schema: one declaration, checked in one place ------------------------------------------------
class _Invalid(Exception):
    """One problem found in a sidecar: the dotted field and what is wrong with it."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where, self.problem = where, problem


def _got(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


@dataclass(frozen=True)
class Kind:
    """A JSON scalar: ``str``, ``int`` (not bool), ``number`` (int or float, not bool) or ``bool``; ``minimum``
    bounds numbers, ``hex`` asks a string for that many lower-case hex digits, ``filename`` for a bare name."""

    kind: str
    minimum: int | None = None
    hex: int | None = None
    filename: bool = False

    def check(self, value, where: str) -> None:
        ok = {
            "str": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
        }[self.kind]
        if not ok:
            article = "an" if self.kind == "int" else "a"
            name = {"str": "string", "int": "integer"}.get(self.kind, self.kind)
            raise _Invalid(where, f"must be {article} {name}, got {_got(value)}")
        if self.minimum is not None and value < self.minimum:
            raise _Invalid(where, f"must be >= {self.minimum}, got {value}")
        if self.hex is not None and (len(value) != self.hex or any(c not in "0123456789abcdef" for c in value)):
            raise _Invalid(where, f"must be {self.hex} lower-case hex digits, got {value[:80]!r}")
        if self.filename and (not value or value in (".", "..") or "/" in value or "\\" in value):
            raise _Invalid(where, f"must be a file name in the checkpoint's folder, got {value[:80]!r}")


@dataclass(frozen=True)
class ListOf:
    """A JSON list whose every item matches ``item``."""

    item: Kind | ListOf | Obj

    def check(self, value, where: str) -> None:
        if not isinstance(value, list):
            raise _Invalid(where, f"must be a list, got {_got(value)}")
        for i, v in enumerate(value):
            self.item.check(v, f"{where}[{i}]")


@dataclass(frozen=True)
class Obj:
    """A JSON object: ``required`` and ``optional`` keys with their specs; other keys pass unchecked."""

    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)

    def check(self, value, where: str) -> None:
        if not isinstance(value, dict):
            raise _Invalid(where, f"must be an object, got {_got(value)}")
        for key, spec in self.required.items():
            if key not in value:
                raise _Invalid(_join(where, key), "is missing")
            spec.check(value[key], _join(where, key))
        for key, spec in self.optional.items():
            if key in value:
                spec.check(value[key], _join(where, key))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


STR, INT, NUMBER, COUNT = Kind("str"), Kind("int"), Kind("number"), Kind("int", minimum=0)
SHA256, NAME = Kind("str", hex=64), Kind("str", filename=True)
# Every key that the loader and its callers read (runs, methods/certified, methods/amnesiac, exact/sisa,
# bench/references); keys not named here are extra facts and pass as they are.
SIDECAR = Obj(
    required={
        "format": STR,
        "version": INT,
        "model": Obj(required={"name": STR}, optional={"kwargs": Obj()}),
        "data": Obj(
            required={"spec": Obj(required={"input_shape": ListOf(Kind("int", minimum=1)),
                                            "num_classes": Kind("int", minimum=1)})},
            # reference-cache checkpoints (bench/references.py) have no source: they are never reloaded with data
            optional={"source": STR, "options": Obj(), "fingerprint": STR, "train_size": COUNT, "test_size": COUNT},
        ),
        # TrainConfig's fields; TrainConfig.from_dict checks their ranges and refuses unknown ones
        "train_config": Obj(optional={"epochs": INT, "batch_size": INT, "optimizer": STR, "lr": NUMBER,
                                      "momentum": NUMBER, "weight_decay": NUMBER, "schedule": STR, "seed": INT}),
        "weights": Obj(required={"file": NAME, "sha256": SHA256}, optional={"tensors": COUNT}),
    },
    optional={
        "created": STR,
        "history": ListOf(Obj(optional={
            "method": STR, "forget_spec": STR, "attribute": STR, "n_train": COUNT, "seed": INT, "n_forget": COUNT,
            "forget_ids": ListOf(INT),
            "forget_ids_sha256": STR, "seconds": NUMBER, "parent": STR, "config": Obj(), "notes": ListOf(STR),
            # methods/certified.py carries its running bound from one removal to the next
            "info": Obj(optional={"cumulative_bound": NUMBER, "removals_since_retrain": COUNT}),
        })),
        "sisa": Obj(required={"dir": NAME, "assignment_sha256": SHA256}),  # the rest is a summary for people
        "recorded_updates": Obj(required={"dir": NAME}, optional={"dtype": STR, "batches": COUNT}),
        # federated checkpoints (unlearnkit.federated.runs): the job, client counts, removed clients, the store
        "federated": Obj(required={"job": Obj(), "counts": ListOf(COUNT)},
                         optional={"dir": NAME, "removed": ListOf(INT)}),
        "features_from": STR,
        "reference_key": STR,
        "train_seconds": NUMBER,
    },
)


def validate_sidecar(doc, sidecar: str | Path) -> dict:
    """``doc`` (parsed sidecar JSON) checked against :data:`SIDECAR`; raises a one-line :class:`CheckpointError`."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = (f"field 'format' is {doc.get('format')!r}" if isinstance(doc, dict)
                 else f"it holds a JSON {_got(doc)}")
        raise CheckpointError(f"{sidecar} is not an unlearnkit checkpoint sidecar ({found}, not an object with "
                              f"format {FORMAT!r}); pass a path written by unlearnkit")
    if doc.get("version") != VERSION or isinstance(doc.get("version"), bool):
        raise CheckpointError(f"{sidecar} has checkpoint version {doc.get('version')!r}; this unlearnkit reads "
                              f"{VERSION} (field 'version'): use the unlearnkit that wrote it, or retrain")
    try:
        SIDECAR.check(doc, "")
    except _Invalid as bad:
        raise CheckpointError(f"{sidecar}: field {bad.where!r} {bad.problem}; {DAMAGED}") from None
    return doc


# --- side folders and the files a sidecar names ------------------------------------------------------------
def _stem(path: str | Path) -> Path:
    """``runs/x``, ``runs/x.json`` or ``runs/x.safetensors`` -> ``runs/x``."""
    return checkpoint_paths(path)[1].with_suffix("")


def canonical_folder(path: str | Path, section: str) -> Path:
    """``runs/x`` -> ``runs/x.sisa`` (section ``"sisa"``) or ``runs/x.updates`` (``"recorded_updates"``)."""
    stem = _stem(path)
    return stem.with_name(stem.name + SIDE_FOLDERS[section])


def _own(name, canonical: Path) -> Path | None:
    """The path ``name`` (from a sidecar) means, if it is ``canonical`` or one of its ``.new-`` names, else None."""
    if not isinstance(name, str) or "/" in name or "\\" in name:
        return None
    if name == canonical.name or name.startswith(canonical.name + ".new-"):
        return canonical.with_name(name)
    return None


def _loose_sidecar(sidecar: Path) -> dict | None:
    """The sidecar's JSON if it parses to an object, else None (no validation: for finding files only)."""
    try:
        doc = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _named(doc: dict | None, section: str, key: str, canonical: Path) -> Path:
    """The file or folder the sidecar's ``doc[section][key]`` names, if it belongs here and exists; else canonical."""
    entry = doc.get(section) if doc else None
    named = _own(entry.get(key) if isinstance(entry, dict) else None, canonical)
    return named if named is not None and named.exists() else canonical


def side_folder(path: str | Path, section: str) -> Path:
    """The folder of the checkpoint at ``path`` for ``section`` (``"sisa"``, ``"recorded_updates"``): the one its
    sidecar names, or ``PATH.sisa`` / ``PATH.updates`` when the sidecar names none of its own."""
    canonical = canonical_folder(path, section)
    return _named(_loose_sidecar(checkpoint_paths(path)[1]), section, "dir", canonical)


def new_side_folder(path: str | Path, section: str) -> Path:
    """Where a new side folder for the checkpoint at ``path`` goes: ``PATH.sisa`` (or ``.updates``) if nothing is
    there, else a fresh ``PATH.sisa.new-XXXXXXXX``, so the folder of the checkpoint saved there now stays whole
    until a new sidecar replaces it."""
    canonical = canonical_folder(path, section)
    return canonical if not (canonical.exists() or canonical.is_symlink()) else files.fresh_path(canonical)


def weights_file(path: str | Path, doc: dict | None = None) -> Path:
    """The weights file of the checkpoint at ``path``: the one its sidecar names if it belongs here and exists,
    else ``PATH.safetensors``."""
    weights, sidecar = checkpoint_paths(path)
    doc = _loose_sidecar(sidecar) if doc is None else doc
    return _named(doc, "weights", "file", weights)


# --- saving -------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> tuple[Path, Path]:
    """Write ``path.safetensors`` and ``path.json``, replacing a checkpoint there safely; returns both paths.

    Side folders named in ``meta.extra`` (``"sisa"``, ``"recorded_updates"``, each with its ``"dir"``) must be
    written already (:func:`new_side_folder`); this save commits them. See the module docstring for the steps.
    """
    weights, sidecar = checkpoint_paths(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = safetensors_bytes(state, metadata={"format": FORMAT})
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": {"name": meta.model_name, "kwargs": _jsonable(meta.model_kwargs)},
        "data": {**_jsonable(meta.data), "spec": meta.spec.to_dict()},
        "train_config": _jsonable(meta.train_config),
        "history": _jsonable(meta.history),
        "weights": {"file": weights.name, "sha256": hashlib.sha256(blob).hexdigest(), "tensors": len(state)},
        **_jsonable(meta.extra),
    }
    validate_sidecar(json.loads(json.dumps(doc)), sidecar)  # a value JSON cannot hold fails here, before any write
    weights.parent.mkdir(parents=True, exist_ok=True)
    old = _loose_sidecar(sidecar)
    in_use = weights_file(path, old) if old is not None else None
    target = weights if in_use != weights else files.fresh_path(weights)
    doc["weights"]["file"] = target.name
    files.write_bytes_atomic(target, blob, force=True)
    files.crash_point("checkpoint")  # weights written, sidecar not yet: the crash tests stop here
    files.write_json_atomic(sidecar, doc, force=True)  # the commit
    if target != weights:
        files.replace(target, weights)
        doc["weights"]["file"] = weights.name
        files.write_json_atomic(sidecar, doc, force=True)
    _remove_leftovers(path, doc)
    return weights, sidecar


def _remove_leftovers(path: str | Path, doc: dict) -> None:
    """After a commit: delete what the new sidecar does not name (old side folders, staged or temporary files of
    this checkpoint left by an earlier interrupted save)."""
    weights, sidecar = checkpoint_paths(path)
    keep = {weights.name, sidecar.name}
    bases = [weights.name, sidecar.name]
    for section in SIDE_FOLDERS:
        canonical = canonical_folder(path, section)
        bases.append(canonical.name)
        entry = doc.get(section)
        named = _own(entry.get("dir") if isinstance(entry, dict) else None, canonical)
        if named is not None:
            keep.add(named.name)
    for entry in sorted(weights.parent.iterdir()):
        if entry.name not in keep and any(_derived(entry.name, base) for base in bases):
            files.remove_tree(entry)


def _derived(name: str, base: str) -> bool:
    """Whether ``name`` is ``base`` or a name the save protocol derives from it: staged (``base.new-X``), being
    deleted (``base.old-X``) or temporary (``.base.tmp-X``, ``.base.new-X.tmp-Y``)."""
    return (name == base or name.startswith((f"{base}.new-", f"{base}.old-"))
            or (name.startswith(f".{base}.") and ".tmp-" in name))


# --- loading ------------------------------------------------------------------------------------------------
def read_sidecar(path: str | Path) -> dict:
    """The parsed sidecar JSON of a checkpoint, checked against :data:`SIDECAR`; weights are not touched."""
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
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint sidecar {sidecar} ({exc}); check the path") from exc
    return validate_sidecar(meta, sidecar)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint, refusing missing, corrupt or mismatched files with a clear message."""
    _, sidecar = checkpoint_paths(path)
    meta = read_sidecar(path)
    weights = weights_file(path, meta)
    if not weights.exists():
        raise CheckpointError(
            f"checkpoint weights {weights} not found beside {sidecar.name}; restore the file"
        )
    if file_sha256(weights) != meta["weights"]["sha256"]:
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
    except (ConfigError, TypeError, ValueError, RuntimeError) as exc:  # unknown name, or another architecture's kwargs
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{sidecar.name} names model {name!r} with kwargs that cannot be built ({reason}); "
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
