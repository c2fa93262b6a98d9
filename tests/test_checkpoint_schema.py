"""The checkpoint sidecar is read through one declared schema: every malformed sidecar is a one-line error.

A real checkpoint is saved (with a history entry and every extra section the package writes), then its sidecar
is damaged field by field: each key deleted, each value replaced by a string, an integer, a float, a bool, a
list, an object and null, the format and the version changed. Each load either works (the value was of an
accepted type, or the key is optional) or raises :class:`CheckpointError` with one line; a declared field of the
wrong type, and a missing required one, must be named in that line. Never a KeyError/TypeError/AttributeError
traceback.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_checkpoint_schema.py -q
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from unlearnkit.data.dataset import DataSpec
from unlearnkit.errors import CheckpointError, UnlearnError
from unlearnkit.models import CheckpointMeta, build_model, load_checkpoint, read_sidecar, save_checkpoint
from unlearnkit.train import TrainConfig

SPEC = DataSpec((1, 8, 8), 10)
KWARGS = {"hidden": (16,)}
HISTORY = [{"method": "certified", "forget_spec": "ids:1,2", "seed": 0, "n_forget": 2, "forget_ids": [1, 2],
            "forget_ids_sha256": "ab" * 32, "seconds": 0.1, "parent": "runs/x", "config": {"epsilon": 1.0},
            "notes": ["a note"], "info": {"cumulative_bound": 0.5, "removals_since_retrain": 1}}]
EXTRA = {"sisa": {"dir": "run.sisa", "assignment_sha256": "cd" * 32, "shards": 2, "slices": 1},
         "recorded_updates": {"dir": "run.updates", "dtype": "float32", "batches": 3},
         "features_from": "runs/net", "reference_key": "ef" * 32, "train_seconds": 1.5}

# What the loader and its callers read, with the JSON type each must have (written down here, independently of
# the schema in checkpoint.py, from the code that reads them: runs.py, exact/sisa.py, methods/certified.py,
# methods/amnesiac.py, bench/references.py).
REQUIRED = ["model", "model.name", "data", "data.spec", "data.spec.input_shape", "data.spec.num_classes",
            "train_config", "weights", "weights.file", "weights.sha256"]
TYPES = {
    "model": dict, "model.name": str, "model.kwargs": dict,
    "data": dict, "data.source": str, "data.options": dict, "data.fingerprint": str, "data.train_size": int,
    "data.spec": dict, "data.spec.input_shape": list, "data.spec.input_shape[0]": int, "data.spec.num_classes": int,
    "train_config": dict, "train_config.epochs": int, "train_config.lr": float, "train_config.optimizer": str,
    "train_config.seed": int,
    "history": list, "history[0]": dict, "history[0].method": str, "history[0].forget_ids": list,
    "history[0].forget_ids[0]": int, "history[0].parent": str, "history[0].info": dict,
    "history[0].info.cumulative_bound": float, "history[0].info.removals_since_retrain": int,
    "weights": dict, "weights.file": str, "weights.sha256": str,
    "sisa": dict, "sisa.dir": str, "sisa.assignment_sha256": str,
    "recorded_updates": dict, "recorded_updates.dir": str,
    "features_from": str, "reference_key": str,
}
VALUES = {"str": "text", "int": 7, "float": 1.5, "bool": True, "list": [1], "object": {"k": 1}, "null": None}


def _accepts(kind: type, value) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("schema")
    model = build_model("mlp", SPEC, seed=0, **KWARGS)
    meta = CheckpointMeta("mlp", KWARGS, SPEC, {"source": "digits", "options": {"test_fraction": 0.2},
                                                "fingerprint": "12" * 32, "train_size": 1438, "test_size": 359},
                          TrainConfig(epochs=2).to_dict(), history=HISTORY, extra=EXTRA)
    save_checkpoint(folder / "run", model, meta)
    return folder / "run", json.loads((folder / "run.json").read_text())


def _paths(value, prefix: str = ""):
    """Every field of a JSON document, as the dotted path an error message uses (``history[0].forget_ids[1]``)."""
    if isinstance(value, dict):
        for key, v in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _paths(v, path)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            path = f"{prefix}[{i}]"
            yield path
            yield from _paths(v, path)


def _split(path: str) -> list:
    steps = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            steps.append(int(index))
            rest = rest.removeprefix("[")
    return steps


def _mutate(doc: dict, path: str, value=None, delete: bool = False) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = _split(path)
    node = doc
    for step in parents:
        node = node[step]
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


def _load(run: Path, doc: dict):
    """Load a checkpoint whose sidecar is ``doc``, and read everything its callers read; the error, or None."""
    Path(f"{run}.json").write_text(json.dumps(doc))
    try:
        ckpt = load_checkpoint(run)
        ckpt.model_name, ckpt.model_kwargs, ckpt.spec, ckpt.data, ckpt.forgotten_ids()  # noqa: B018
        ckpt.data.get("options", {}).get("test_fraction")
        [op.get("parent") for op in ckpt.history]  # noqa: B018  (amnesiac)
        last = ckpt.history[-1:]
        info = last[0].get("info", {}) if last else {}
        float(info.get("cumulative_bound", 0.0)), int(info.get("removals_since_retrain", 0))  # certified
        for section in ("sisa", "recorded_updates"):
            if section in ckpt.meta:
                ckpt.meta[section]["dir"].endswith("x")  # noqa: B018
        if "sisa" in ckpt.meta:
            ckpt.meta["sisa"]["assignment_sha256"].lower()  # noqa: B018
        try:
            TrainConfig.from_dict(ckpt.train_config)
        except UnlearnError:  # an unknown or out-of-range recipe value: TrainConfig's own one-line error
            pass
    except CheckpointError as exc:
        return exc
    return None


@pytest.fixture
def restore(saved):
    run, doc = saved
    yield
    Path(f"{run}.json").write_text(json.dumps(doc))


def test_the_saved_checkpoint_loads(saved, restore):
    run, doc = saved
    assert _load(run, doc) is None
    ckpt = load_checkpoint(run)
    assert ckpt.history == HISTORY and ckpt.meta["sisa"] == EXTRA["sisa"]
    assert set(TYPES) <= set(_paths(doc)), "the saved sidecar holds every field the test damages"


@pytest.mark.parametrize("path", REQUIRED)
def test_missing_required_field(saved, restore, path):
    run, doc = saved
    error = _load(run, _mutate(doc, path, delete=True))
    assert error is not None, f"a sidecar without {path!r} loaded"
    message = str(error)
    assert "\n" not in message
    assert f"run.json: field '{path}' is missing; the sidecar is damaged: retrain or restore it" in message


@pytest.mark.parametrize("path", sorted(TYPES))
def test_wrong_type(saved, restore, path):
    run, doc = saved
    for name, value in VALUES.items():
        if _accepts(TYPES[path], value):
            continue
        error = _load(run, _mutate(doc, path, value))
        assert error is not None, f"{path} = {value!r} loaded"
        message = str(error)
        assert "\n" not in message and message.startswith(f"{run}.json: field '{path}' must be"), message
        assert "retrain or restore it" in message, message
        assert name in message or (name == "object" and "got object" in message), message


def test_every_field_deleted_or_retyped_is_a_one_line_checkpoint_error_or_loads(saved, restore):
    """The broad sweep: every key of the saved sidecar, deleted or given a value of each JSON type."""
    run, doc = saved
    outcomes = {"loaded": 0, "refused": 0}
    for path in _paths(doc):
        mutations = [_mutate(doc, path, delete=True)] if not path.endswith("]") else []
        mutations += [_mutate(doc, path, value) for value in VALUES.values()]
        for mutated in mutations:
            error = _load(run, mutated)  # anything but a CheckpointError propagates and fails the test
            if error is None:
                outcomes["loaded"] += 1
                continue
            outcomes["refused"] += 1
            assert "\n" not in str(error) and str(run.name) in str(error), str(error)
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes


@pytest.mark.parametrize(("change", "match"), [
    ({"format": "keras"}, r"run.json is not an unlearnkit checkpoint sidecar \(field 'format' is 'keras'"),
    ({"format": None}, r"run.json is not an unlearnkit checkpoint sidecar \(field 'format' is None"),
    ({"version": 2}, r"run.json has checkpoint version 2; this unlearnkit reads 1 \(field 'version'\)"),
    ({"version": "1"}, r"run.json has checkpoint version '1'; this unlearnkit reads 1 \(field 'version'\)"),
    ({"version": True}, r"has checkpoint version True"),
    ({"weights": {"file": "run.safetensors", "sha256": "XYZ"}}, r"field 'weights.sha256' must be 64 lower-case hex"),
    ({"data": {"spec": {"input_shape": [0, 8, 8], "num_classes": 10}}},
     r"field 'data.spec.input_shape\[0\]' must be >= 1, got 0"),
])
def test_unknown_format_or_version_and_bad_values(saved, restore, change, match):
    run, doc = saved
    error = _load(run, {**doc, **change})
    assert error is not None and "\n" not in str(error)
    with pytest.raises(CheckpointError, match=match):
        raise error


def test_not_an_object(saved, restore):
    run, _ = saved
    for text in ("[1, 2]", '"text"', "7", "null"):
        Path(f"{run}.json").write_text(text)
        with pytest.raises(CheckpointError, match=r"run.json is not an unlearnkit checkpoint sidecar \(it holds a "
                                                  r"JSON (list|str|int|null)"):
            read_sidecar(run)


def test_save_refuses_metadata_the_loader_would_refuse(tmp_path):
    """The same schema checks what save_checkpoint writes, before any file exists."""
    model = build_model("mlp", SPEC, seed=0, **KWARGS)
    meta = CheckpointMeta("mlp", KWARGS, SPEC, {"source": 3}, {})
    with pytest.raises(CheckpointError, match=r"field 'data.source' must be a string, got int"):
        save_checkpoint(tmp_path / "bad", model, meta)
    assert list(tmp_path.iterdir()) == []
    assert torch.is_tensor(next(iter(model.state_dict().values())))
