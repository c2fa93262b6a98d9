"""Safe writes (unlearnkit.files) and crash-safe checkpoint replacement.

The replacement tests kill a ``--force`` replacement at every filesystem step: every call into
``unlearnkit.files`` (a file write, a rename, a folder removal) is counted, and a run is repeated with the k-th
step raising for k = 1..N, as a crash there would stop it (every later step fails too). After each crash the
checkpoint must load and be either the old or the new model, judged by its weights, with its side folder
(SISA slices, recorded updates) usable; across the crash points both outcomes must occur, so the test spans the
commit. A later save must then succeed and leave no leftovers.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_files.py -q
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from unlearnkit import files
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import ConfigError
from unlearnkit.exact.sisa import check_matches as sisa_matches
from unlearnkit.exact.sisa import load_sisa, sisa_dir
from unlearnkit.exact.updates import check_matches as updates_match
from unlearnkit.exact.updates import read_updates, state_fingerprint, updates_dir
from unlearnkit.models import build_model, load_checkpoint, save_checkpoint
from unlearnkit.runs import forget_checkpoint, save_model, train_model
from unlearnkit.train import TrainConfig

RECIPE = TrainConfig(epochs=1, batch_size=256, lr=0.05)
SMALL = {"hidden": (16,)}


# --- the helpers -----------------------------------------------------------------------------------------
def test_write_refuses_an_existing_file_without_force(tmp_path):
    target = tmp_path / "result.json"
    files.write_json_atomic(target, {"a": 1}, force=False)
    with pytest.raises(ConfigError) as info:
        files.write_json_atomic(target, {"a": 2}, force=False)
    message = str(info.value)
    assert "\n" not in message and str(target) in message and "--force" in message
    assert json.loads(target.read_text()) == {"a": 1}
    files.write_json_atomic(target, {"a": 2}, force=True)
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_refuse_overwrite(tmp_path):
    files.refuse_overwrite(None, force=False)
    files.refuse_overwrite(tmp_path / "free", force=False)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match=r"taken already exists; choose another path or pass --write to replace"):
        files.refuse_overwrite(tmp_path / "taken", force=False, flag="--write")
    files.refuse_overwrite(tmp_path / "taken", force=True)


def test_interrupted_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        files.write_text_atomic(target, "new" * 1000, force=True)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # the temporary file is gone


def test_json_that_cannot_encode_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        files.write_json_atomic(tmp_path / "x.json", {"a": object()}, force=False)
    assert list(tmp_path.iterdir()) == []


def test_creates_parent_folders_and_names_are_fresh(tmp_path):
    target = files.write_bytes_atomic(tmp_path / "a" / "b" / "c.bin", b"\x00\x01", force=False)
    assert target.read_bytes() == b"\x00\x01"
    names = {files.fresh_path(target).name for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("c.bin.new-") for n in names)
    assert files.temp_path(target).name.startswith(".c.bin.tmp-")


def test_remove_tree(tmp_path):
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x").write_text("x")
    files.remove_tree(folder)
    files.remove_tree(folder)  # gone already: nothing to do
    (tmp_path / "file").write_text("x")
    files.remove_tree(tmp_path / "file")
    assert list(tmp_path.iterdir()) == []


# --- killing a checkpoint replacement at every step ----------------------------------------------------------
class Crash(BaseException):
    """The simulated kill: a BaseException, so no ``except Exception`` in the code under test swallows it."""


class Faults:
    """Counts the filesystem steps taken through ``unlearnkit.files``; from step ``at`` on, every step raises."""

    STEPS = ("write_bytes_atomic", "replace", "remove_tree", "make_temp_dir")

    def __init__(self, mp: pytest.MonkeyPatch, at: int | None = None) -> None:
        self.count, self.at = 0, at
        for name in self.STEPS:
            mp.setattr(files, name, self._wrap(getattr(files, name)))
        mp.setattr(files.shutil, "rmtree", self._wrap(shutil.rmtree))

    def _wrap(self, fn: Callable) -> Callable:
        def step(*args, **kwargs):
            self.count += 1
            if self.at is not None and self.count >= self.at:
                raise Crash(f"killed at step {self.count}")
            return fn(*args, **kwargs)

        return step


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _which(model: torch.nn.Module, old: dict, new: dict) -> str:
    state = model.state_dict()
    if _same(state, old):
        return "old"
    if _same(state, new):
        return "new"
    raise AssertionError("the loaded checkpoint is neither the old model nor the new one")


def kill_at_every_step(tmp_path: Path, old_dir: Path, replace: Callable[[Path], None],
                       check: Callable[[Path], str], expected_files: Callable[[Path], set[str]]) -> list[str]:
    """Copy the pristine old checkpoint folder, run ``replace`` with the k-th step failing, and ``check`` what
    loads, for every k; returns the outcomes. ``check`` returns "old" or "new" (or raises)."""
    count_dir = tmp_path / "count"
    shutil.copytree(old_dir, count_dir)
    with pytest.MonkeyPatch.context() as mp:
        faults = Faults(mp)
        replace(count_dir / "ckpt")
    steps = faults.count
    assert check(count_dir / "ckpt") == "new"
    assert sorted(p.name for p in count_dir.iterdir()) == sorted(expected_files(count_dir))
    assert steps >= 4
    outcomes = []
    for k in range(1, steps + 1):
        work = tmp_path / f"kill-{k}"
        shutil.copytree(old_dir, work)
        with pytest.MonkeyPatch.context() as mp:
            Faults(mp, at=k)
            with pytest.raises(Crash):
                replace(work / "ckpt")
        try:
            outcomes.append(check(work / "ckpt"))
        except Exception as exc:
            raise AssertionError(f"after a kill at step {k} of {steps}, no loadable checkpoint: {exc}") from exc
        replace(work / "ckpt")  # the next save recovers and cleans up what the killed one left
        assert check(work / "ckpt") == "new"
        assert sorted(p.name for p in work.iterdir()) == sorted(expected_files(work)), k
    assert "old" in outcomes and "new" in outcomes, outcomes  # the kills fall both before and after the commit
    assert outcomes == sorted(outcomes, key=["old", "new"].index)  # one commit point: old, ..., old, new, ..., new
    return outcomes


@pytest.fixture(scope="module")
def digits_data():
    return load_dataset("digits")


def test_kill_plain_replacement_at_every_step(tmp_path, digits_data):
    spec = digits_data.spec
    old_model, new_model = (build_model("mlp", spec, seed=s, **SMALL) for s in (0, 1))
    trained = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False)
    old_dir = tmp_path / "old"
    save_checkpoint(old_dir / "ckpt", old_model, trained.meta)
    old, new = old_model.state_dict(), new_model.state_dict()

    outcomes = kill_at_every_step(
        tmp_path, old_dir, lambda path: save_model(path, new_model, trained.meta),
        lambda path: _which(load_checkpoint(path).model, old, new),
        lambda folder: {"ckpt.json", "ckpt.safetensors"},
    )
    assert len(outcomes) >= 5


def test_kill_sisa_replacement_at_every_step(tmp_path, digits_data):
    """Old and new SISA checkpoints differ in their training seed; after every kill the ensemble loads, its slice
    folder matches it, and `forget --method sisa` runs on it."""
    old_run = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False, sisa="shards=2,slices=2")
    new_run = train_model(digits_data, "mlp", RECIPE.with_(seed=1), model_kwargs=SMALL, progress=False,
                          sisa="shards=2,slices=2")
    old_dir = tmp_path / "old"
    save_model(old_dir / "ckpt", old_run.model, old_run.meta)
    old, new = old_run.model.state_dict(), new_run.model.state_dict()
    forget_id = int(digits_data.train.ids[0])

    def check(path: Path) -> str:
        ckpt = load_checkpoint(path)
        state = load_sisa(path)
        sisa_matches(ckpt.model, state, path)  # the slices in the folder the sidecar names are this model's
        result, _, _, _ = forget_checkpoint(path, f"ids:{forget_id}", "sisa", device="cpu", progress=False)
        assert result.info["retrained_shards"]
        return _which(ckpt.model, old, new)

    kill_at_every_step(tmp_path, old_dir, lambda path: save_model(path, new_run.model, new_run.meta), check,
                       lambda folder: {"ckpt.json", "ckpt.safetensors", sisa_dir(folder / "ckpt").name})


def test_kill_recorded_updates_replacement_at_every_step(tmp_path, digits_data):
    """`train --record-updates --force` over a checkpoint with recorded updates: the recording and the save are
    killed at every step; the checkpoint that loads always has the update log of its own run."""
    old_dir = tmp_path / "old"
    old_run = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False,
                          record_updates=old_dir / "ckpt")
    save_model(old_dir / "ckpt", old_run.model, old_run.meta)
    new_state = {}

    def replace(path: Path) -> None:
        run = train_model(digits_data, "mlp", RECIPE.with_(seed=1), model_kwargs=SMALL, progress=False,
                          record_updates=path)
        new_state.update(run.model.state_dict())
        save_model(path, run.model, run.meta)

    def check(path: Path) -> str:
        ckpt = load_checkpoint(path)
        log = read_updates(updates_dir(path))
        updates_match(log, ckpt.model, path)
        assert log.index["final_state_sha256"] == state_fingerprint(ckpt.model)  # what amnesiac checks
        result, _, _, _ = forget_checkpoint(path, "class:3", "amnesiac", params={"repair_epochs": 0},
                                            device="cpu", progress=False)
        assert result.info
        return _which(ckpt.model, old_run.model.state_dict(), new_state)  # new_state: filled by the counting run

    kill_at_every_step(tmp_path, old_dir, replace, check,
                       lambda folder: {"ckpt.json", "ckpt.safetensors", updates_dir(folder / "ckpt").name})


def test_replacing_sisa_with_plain_removes_the_old_folder_after_the_commit(tmp_path, digits_data):
    sisa = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False, sisa="shards=2,slices=1")
    plain = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False)
    save_model(tmp_path / "ckpt", sisa.model, sisa.meta)
    assert sisa_dir(tmp_path / "ckpt").name == "ckpt.sisa"
    save_model(tmp_path / "ckpt", plain.model, plain.meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]
    with pytest.raises(ConfigError, match="is not a SISA checkpoint"):
        load_sisa(tmp_path / "ckpt")
    # a SISA checkpoint replacing a SISA checkpoint: the new folder gets a fresh name, the old one goes
    save_model(tmp_path / "s", sisa.model, sisa.meta)
    save_model(tmp_path / "s", sisa.model, sisa.meta)
    folder = sisa_dir(tmp_path / "s")
    assert folder.name.startswith("s.sisa.new-") and not (tmp_path / "s.sisa").exists()
    assert sisa_matches(load_checkpoint(tmp_path / "s").model, load_sisa(tmp_path / "s"), tmp_path / "s") is None
    split = select(digits_data.train, "ids:1", seed=0)
    assert len(split.forget) == 1


def test_loader_ignores_temporary_and_foreign_names(tmp_path, digits_data):
    """Leftover temporary files do not confuse the loader, and a copied sidecar reads its own files, not the ones
    the original's sidecar names."""
    old_model, new_model = (build_model("mlp", digits_data.spec, seed=s, **SMALL) for s in (0, 1))
    meta = train_model(digits_data, "mlp", RECIPE, model_kwargs=SMALL, progress=False).meta
    save_checkpoint(tmp_path / "a", old_model, meta)
    (tmp_path / ".a.safetensors.tmp-deadbeef").write_bytes(b"half a file")
    (tmp_path / "a.safetensors.new-deadbeef").write_bytes(b"staged, never committed")
    assert _same(load_checkpoint(tmp_path / "a").model.state_dict(), old_model.state_dict())
    save_checkpoint(tmp_path / "a", new_model, meta)  # cleans both up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.safetensors"]
    doc = json.loads((tmp_path / "a.json").read_text())
    doc["weights"]["file"] = "../a.safetensors"
    (tmp_path / "b.json").write_text(json.dumps(doc))
    shutil.copy(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    with pytest.raises(Exception, match=r"field 'weights.file' must be a file name in the checkpoint's folder"):
        load_checkpoint(tmp_path / "b")
    doc["weights"]["file"] = "a.safetensors"  # another checkpoint's file: not b's, so b reads b.safetensors
    (tmp_path / "b.json").write_text(json.dumps(doc))
    (tmp_path / "b.safetensors").write_bytes(b"garbage")
    with pytest.raises(Exception, match=r"b.safetensors does not match b.json"):
        load_checkpoint(tmp_path / "b")


# --- what a killed writer leaves: swept by the next write of the same target ------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def test_next_write_sweeps_what_a_killed_writer_left(tmp_path):
    """A temporary file (or a folder caught mid-delete) of a process that is gone is removed by the next write of
    the same target; a live writer's, other targets' and foreign files stay."""
    import os

    dead, live = _dead_pid(), os.getpid()
    target = tmp_path / "result.json"
    stale = [tmp_path / f".result.json.tmp-{dead}-0badc0de", tmp_path / f"result.json.old-{dead}-0badc0de"]
    stale[0].write_bytes(b"half")
    stale[1].mkdir()
    (stale[1] / "x").write_bytes(b"x")
    kept = [tmp_path / f".result.json.tmp-{live}-0badc0de",  # a live writer (here: this process's own)
            tmp_path / f".other.json.tmp-{dead}-0badc0de",  # another target: swept when that one is written
            tmp_path / ".result.json.tmp-notapid",  # not a name unlearnkit makes
            tmp_path / "result.json.new-0badc0de"]  # a staged side folder: checkpoints own those
    for path in kept:
        path.write_bytes(b"keep")
    files.write_json_atomic(target, {"a": 1}, force=False)
    assert json.loads(target.read_text()) == {"a": 1}
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert files.temp_path(target).name.startswith(f".result.json.tmp-{live}-")


def test_crash_point_kills_the_process_on_the_chosen_pass(tmp_path):
    """UNLEARNKIT_CRASH_AT=write:2 SIGKILLs a process on its second atomic write, between the temporary file and
    the rename: the first target is whole, the second absent (its temporary file left for the next write)."""
    import os
    import signal
    import subprocess
    import sys

    code = ("from unlearnkit import files; import sys, pathlib; d = pathlib.Path(sys.argv[1]); "
            "[files.write_text_atomic(d / f'f{i}', 'x' * 1000, force=True) for i in range(3)]")
    env = {**os.environ, files.CRASH_ENV: "write:2"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "f0").read_text() == "x" * 1000 and not (tmp_path / "f1").exists()
    assert [p.name.split("-")[0] for p in tmp_path.glob(".f1.tmp-*")] == [".f1.tmp"]
    env[files.CRASH_ENV] = "store:1"  # another point: this code never passes it
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env).returncode == 0
    assert not list(tmp_path.glob(".*.tmp-*"))  # the rerun's writes swept the dead process's temporary file
