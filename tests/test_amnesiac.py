"""Tests for recorded training updates (unlearnkit.exact.updates) and the ``amnesiac`` method.

References are independent of the recorder: the test's own ``after_step`` hook snapshots the weights after
every step, so "the weights before a batch" and "a batch's update" are known without reading the recorded
files; a run stopped before its last step gives the pre-batch weights a third way; retraining is the
reference for class forgetting. Small digits MLPs, one or three epochs: the module runs in seconds.

Run: .venv/bin/python -m pytest tests/test_amnesiac.py -q
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from unlearnkit import cli
from unlearnkit.cli import app
from unlearnkit.data import select
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.exact.updates import UpdateRecorder, read_updates, updates_dir
from unlearnkit.methods import UnlearnTask
from unlearnkit.methods.amnesiac import _reestimate_batch_norm
from unlearnkit.models import build_model, load_checkpoint, save_checkpoint
from unlearnkit.runs import forget_checkpoint, load_with_data, save_unlearned, train_model
from unlearnkit.train import TrainConfig, accuracy_on, batches, fit
from unlearnkit.unlearning import unlearn

SMALL = {"hidden": (32,)}
ONE_EPOCH = TrainConfig(epochs=1, batch_size=64, lr=0.05)
THREE_EPOCHS = TrainConfig(epochs=3, batch_size=64, lr=0.05)
runner = CliRunner()


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


class Snapshots:
    """The test's own after_step hook: the weights after every step and each batch's ids."""

    def __init__(self, model: nn.Module) -> None:
        self.weights = [params_of(model)]  # weights[s] = before step s; weights[s + 1] = after it
        self.ids: list[torch.Tensor] = []

    def __call__(self, step: int, ids: torch.Tensor, model: nn.Module) -> None:
        self.weights.append(params_of(model))
        self.ids.append(ids.clone())

    def delta(self, step: int) -> dict[str, torch.Tensor]:
        return {k: self.weights[step + 1][k] - self.weights[step][k] for k in self.weights[step]}


def record(digits, path: Path, config: TrainConfig, dtype: str = "float32") -> Path:
    """Train the small MLP with recorded updates and save the checkpoint at ``path``."""
    trained = train_model(digits, "mlp", config, model_kwargs=SMALL, device="cpu", progress=False,
                          record_updates=path, record_dtype=dtype)
    save_checkpoint(path, trained.model, trained.meta)
    return path


def snapshots(digits, config: TrainConfig) -> Snapshots:
    model = build_model("mlp", digits.spec, seed=config.seed, **SMALL)
    snaps = Snapshots(model)
    fit(model, digits.train, config, device="cpu", progress=False, after_step=snaps)
    return snaps


def amnesiac(path: Path, forget_ids: torch.Tensor, config: TrainConfig, **params):
    """Forget ``forget_ids`` from the checkpoint at ``path`` with amnesiac (Python API, not the CLI)."""
    ckpt, bundle = load_with_data(path, device="cpu")
    split = select(bundle.train, "ids:" + ",".join(str(int(i)) for i in forget_ids), seed=0)
    return unlearn(ckpt.model, split, "amnesiac", train_config=config, device="cpu", progress=False,
                   checkpoint=path, **params)


@pytest.fixture(scope="module")
def one_epoch(digits, tmp_path_factory) -> tuple[Path, Snapshots]:
    path = record(digits, tmp_path_factory.mktemp("amnesiac") / "one", ONE_EPOCH)
    return path, snapshots(digits, ONE_EPOCH)


@pytest.fixture(scope="module")
def three_epochs(digits, tmp_path_factory) -> tuple[Path, Snapshots]:
    path = record(digits, tmp_path_factory.mktemp("amnesiac") / "three", THREE_EPOCHS)
    return path, snapshots(digits, THREE_EPOCHS)


# --- the hook and the recorded files --------------------------------------------------------------------------
def test_hook_does_not_change_an_ordinary_run(digits):
    plain = build_model("mlp", digits.spec, seed=0, **SMALL)
    fit(plain, digits.train, THREE_EPOCHS, device="cpu", progress=False)
    before = torch.get_rng_state()
    hooked = build_model("mlp", digits.spec, seed=0, **SMALL)
    fit(hooked, digits.train, THREE_EPOCHS, device="cpu", progress=False, after_step=Snapshots(hooked))
    assert torch.equal(before, torch.get_rng_state())
    for (name, a), b in zip(plain.state_dict().items(), hooked.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_recorded_run_equals_an_ordinary_run(digits, three_epochs):
    plain = build_model("mlp", digits.spec, seed=0, **SMALL)
    fit(plain, digits.train, THREE_EPOCHS, device="cpu", progress=False)
    recorded = load_checkpoint(three_epochs[0]).model
    for (name, a), b in zip(plain.state_dict().items(), recorded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_recorded_updates_and_ids_match_training(digits, three_epochs):
    path, snaps = three_epochs
    log = read_updates(updates_dir(path))
    steps_per_epoch = -(-len(digits.train) // THREE_EPOCHS.batch_size)
    assert log.steps == 3 * steps_per_epoch == len(snaps.ids)
    # the batch order fit draws: one randperm per epoch from a generator seeded with the recipe's seed
    gen = torch.Generator().manual_seed(THREE_EPOCHS.seed)
    expected = [ids for _ in range(3) for _, _, ids in batches(digits.train, 64, generator=gen, with_ids=True)]
    for step in range(log.steps):
        assert torch.equal(log.batch_ids(step), expected[step])
        assert torch.equal(snaps.ids[step], expected[step])
    for step in (0, steps_per_epoch + 3, log.steps - 1):
        assert max_diff(log.delta(step), snaps.delta(step)) == 0.0  # float32: stored as computed
    total = log.sum_deltas(list(range(log.steps)))
    assert max_diff({k: snaps.weights[0][k].double() + total[k] for k in total}, snaps.weights[-1]) < 1e-5


def test_storage_is_reported_and_chunks_split(digits, three_epochs, tmp_path):
    log = read_updates(updates_dir(three_epochs[0]))
    store = log.storage()
    on_disk = sum(p.stat().st_size for p in updates_dir(three_epochs[0]).iterdir())
    n_params = sum(p.numel() for p in build_model("mlp", digits.spec, **SMALL).parameters())
    assert store["bytes"] == on_disk and store["batches"] == log.steps and store["model_bytes"] == 4 * n_params
    assert log.steps <= store["ratio_to_model"] < 1.3 * log.steps  # one model's worth per step, plus the ids
    meta = json.loads(Path(str(three_epochs[0]) + ".json").read_text())
    assert meta["recorded_updates"] == {"dir": "three.updates", "dtype": "float32", "batches": log.steps}
    # tiny chunks: one file per step, read back the same
    model = build_model("mlp", digits.spec, seed=0, **SMALL)
    recorder = UpdateRecorder(model, tmp_path / "x.updates", chunk_bytes=1)
    fit(model, digits.train, ONE_EPOCH, device="cpu", progress=False, after_step=recorder)
    small = recorder.finish(model)
    assert len(small.index["chunks"]) == small.steps
    steps = [0, 5, small.steps - 1]
    one = read_updates(updates_dir(record(digits, tmp_path / "y", ONE_EPOCH)))
    assert max_diff(small.sum_deltas(steps), one.sum_deltas(steps)) == 0.0


def test_float16_halves_storage_and_rounds(digits, one_epoch, tmp_path):
    path16 = record(digits, tmp_path / "half", ONE_EPOCH, dtype="float16")
    log16, log32 = read_updates(updates_dir(path16)), read_updates(updates_dir(one_epoch[0]))
    chunk_bytes = [sum(c["bytes"] for c in log.index["chunks"]) for log in (log16, log32)]
    assert 0.45 < chunk_bytes[0] / chunk_bytes[1] < 0.55
    step = log32.steps - 1
    d16, d32 = log16.delta(step), log32.delta(step)
    assert all(d16[k].dtype == torch.float16 for k in d16)
    for k in d32:  # rounding to 11 significant bits: relative error at most 2^-11 (absolute near zero)
        err = (d16[k].float() - d32[k]).abs()
        assert (err <= d32[k].abs() * 2.0**-11 + 6e-8).all(), k
    assert max_diff(d16, d32) > 0


# --- amnesiac against independent references ------------------------------------------------------------------
def test_last_batch_subtraction_restores_pre_batch_weights(digits, one_epoch):
    path, snaps = one_epoch
    last = len(snaps.ids) - 1
    result = amnesiac(path, snaps.ids[last], ONE_EPOCH, repair_epochs=0)
    assert max_diff(params_of(result.model), snaps.weights[last]) < 1e-6
    # a third way: a run stopped before its last step
    stopped = build_model("mlp", digits.spec, seed=0, **SMALL)
    calls = iter(range(10_000))
    fit(stopped, digits.train, ONE_EPOCH, device="cpu", progress=False, should_stop=lambda: next(calls) == last)
    assert max_diff(params_of(result.model), params_of(stopped)) < 1e-6
    assert result.info["subtracted_batches"] == 1 and result.info["recorded_batches"] == last + 1
    assert result.info["subtracted_fraction"] == round(1 / (last + 1), 6)


def test_middle_batch_is_original_minus_its_update(one_epoch):
    path, snaps = one_epoch
    middle = len(snaps.ids) // 2
    result = amnesiac(path, snaps.ids[middle][:3], ONE_EPOCH, repair_epochs=0)
    delta = snaps.delta(middle)
    expected = {k: snaps.weights[-1][k] - delta[k] for k in delta}
    assert max_diff(params_of(result.model), expected) < 1e-6
    assert max_diff(params_of(result.model), snaps.weights[-1]) > 1e-4  # it did change the weights
    assert result.info["subtracted_batches"] == 1


def test_every_batch_holding_a_forget_id_is_subtracted(three_epochs):
    path, snaps = three_epochs
    forget = torch.cat([snaps.ids[4][:2], snaps.ids[30][:1]])
    hit = [s for s, ids in enumerate(snaps.ids) if torch.isin(ids, forget).any()]
    assert len(hit) >= 3  # each id appears once per epoch
    result = amnesiac(path, forget, THREE_EPOCHS, repair_epochs=0)
    expected = dict(snaps.weights[-1])
    for s in hit:
        expected = {k: expected[k] - snaps.delta(s)[k] for k in expected}
    assert max_diff(params_of(result.model), expected) < 1e-5
    assert result.info["subtracted_batches"] == len(hit)


def test_float16_updates_are_close_not_exact(digits, one_epoch, tmp_path):
    _, snaps = one_epoch
    path16 = record(digits, tmp_path / "half", ONE_EPOCH, dtype="float16")
    middle = len(snaps.ids) // 2  # mid-schedule: large updates (the last ones are tiny, the cosine lr ends near 0)
    result = amnesiac(path16, snaps.ids[middle], ONE_EPOCH, repair_epochs=0)
    delta = snaps.delta(middle)
    err = max_diff(params_of(result.model), {k: snaps.weights[-1][k] - delta[k] for k in delta})
    biggest = max(d.abs().max().item() for d in delta.values())
    assert 1e-6 < err <= biggest * 2.0**-11 + 1e-6  # rounded, within float16's half-ulp of the update
    assert result.info["update_dtype"] == "float16"


def test_class_forgetting_moves_toward_retrain(digits, three_epochs):
    path, _ = three_epochs
    ckpt = load_checkpoint(path)
    split = select(digits.train, "class:3", seed=0)
    retrained = unlearn(ckpt.model, split, "retrain", train_config=THREE_EPOCHS, device="cpu", progress=False)
    result = unlearn(ckpt.model, split, "amnesiac", train_config=THREE_EPOCHS, device="cpu", progress=False,
                     checkpoint=path)
    original, target, got = (accuracy_on(m, split.forget) for m in (ckpt.model, retrained.model, result.model))
    assert original > 0.8 and target < 0.05
    assert abs(got - target) < 0.05
    assert accuracy_on(result.model, digits.test) > 0.5  # the repair restores the other classes
    assert result.info["subtracted_fraction"] > 0.9  # nearly every shuffled batch holds a 3
    assert any("initial weights" in n for n in result.notes)


def test_repair_trains_on_retain_only(three_epochs):
    path, snaps = three_epochs
    forget = snaps.ids[0][:5]
    bare = amnesiac(path, forget, THREE_EPOCHS, repair_epochs=0)
    repaired = amnesiac(path, forget, THREE_EPOCHS)  # default: a brief repair
    assert max_diff(params_of(bare.model), params_of(repaired.model)) > 1e-3
    assert repaired.config == {"repair_epochs": 2, "lr_scale": 1.0}


def test_batch_norm_statistics_are_reestimated_on_retain(digits):
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64))
    model[1].running_mean.fill_(5.0)
    split = select(digits.train, "class:3", seed=0)
    task = UnlearnTask(model=model, split=split, train_config=THREE_EPOCHS, device=torch.device("cpu"))
    assert _reestimate_batch_norm(model, task)
    means = [x.flatten(1).mean(0) for x, _ in batches(split.retain, 64, shuffle=False)]
    assert torch.allclose(model[1].running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert model[1].momentum == 0.1
    assert not _reestimate_batch_norm(nn.Linear(2, 2), task)


# --- bad inputs -----------------------------------------------------------------------------------------------
def test_needs_a_checkpoint(digits, digits_model):
    split = select(digits.train, "class:3", seed=0)
    with pytest.raises(ConfigError, match="needs a checkpoint trained with --record-updates"):
        unlearn(digits_model, split, "amnesiac", device="cpu")


def test_refuses_checkpoint_without_updates(digits, tmp_path):
    trained = train_model(digits, "mlp", ONE_EPOCH, model_kwargs=SMALL, device="cpu", progress=False)
    save_checkpoint(tmp_path / "plain", trained.model, trained.meta)
    assert not updates_dir(tmp_path / "plain").exists()
    with pytest.raises(CheckpointError, match=r"no recorded updates .*plain\.updates.*--record-updates") as info:
        amnesiac(tmp_path / "plain", torch.tensor([0]), ONE_EPOCH)
    assert "\n" not in str(info.value)


def test_refuses_updates_of_another_architecture(digits, one_epoch, tmp_path):
    trained = train_model(digits, "mlp", ONE_EPOCH, model_kwargs={"hidden": (16,)}, device="cpu", progress=False)
    save_checkpoint(tmp_path / "other", trained.model, trained.meta)
    shutil.copytree(updates_dir(one_epoch[0]), updates_dir(tmp_path / "other"))
    with pytest.raises(CheckpointError, match=r"do not fit .*features.1.weight.*shape \[32, 64\].*\[16, 64\]"):
        amnesiac(tmp_path / "other", torch.tensor([0]), ONE_EPOCH)


def test_refuses_replaced_weights(digits, one_epoch, tmp_path):
    trained = train_model(digits, "mlp", ONE_EPOCH.with_(seed=1), model_kwargs=SMALL, device="cpu", progress=False)
    save_checkpoint(tmp_path / "replaced", trained.model, trained.meta)
    shutil.copytree(updates_dir(one_epoch[0]), updates_dir(tmp_path / "replaced"))
    with pytest.raises(CheckpointError, match="not those at the end of the run recorded.*retrain it with --record"):
        amnesiac(tmp_path / "replaced", torch.tensor([0]), ONE_EPOCH)


def test_refuses_the_output_of_a_forget(one_epoch, tmp_path):
    path, _ = one_epoch
    result, split, ckpt, _ = forget_checkpoint(path, "class:3", "amnesiac", device="cpu", progress=False)
    save_unlearned(tmp_path / "forgot", result, split, ckpt)
    shutil.copytree(updates_dir(path), updates_dir(tmp_path / "forgot"))  # even with the updates beside it
    with pytest.raises(CheckpointError, match=rf"output of 1 forget operation.*original checkpoint \({path}\)"):
        forget_checkpoint(tmp_path / "forgot", "class:5", "amnesiac", device="cpu", progress=False)


def test_refuses_damaged_updates(digits, tmp_path):
    path = record(digits, tmp_path / "dmg", ONE_EPOCH)
    directory = updates_dir(path)
    (directory / "chunk-00000.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="missing or has the wrong size.*--record-updates"):
        amnesiac(path, torch.tensor([0]), ONE_EPOCH)
    (directory / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="index.json is not valid JSON.*--record-updates"):
        amnesiac(path, torch.tensor([0]), ONE_EPOCH)


@pytest.mark.parametrize(("params", "message"), [
    ({"repair_epochs": -1}, r"^parameter 'repair_epochs' of method 'amnesiac' must be an int in \[0, inf\), got -1$"),
    ({"lr_scale": 0.0}, r"^parameter 'lr_scale' of method 'amnesiac' must be a float in \(0, inf\), got 0.0$"),
])
def test_bad_config(params, message):
    from unlearnkit.methods import get_method

    with pytest.raises(ConfigError, match=message):
        get_method("amnesiac")(**params)


def test_recorder_refuses_bad_use(digits, tmp_path):
    model = build_model("mlp", digits.spec, seed=0, **SMALL)
    with pytest.raises(ConfigError, match="unknown update dtype 'float8'; choose one of float32, float16"):
        UpdateRecorder(model, tmp_path / "a.updates", dtype="float8")
    recorder = UpdateRecorder(model, tmp_path / "b.updates")
    with pytest.raises(ConfigError, match="expected step 0, got 5; use one recorder per fit"):
        recorder(5, torch.tensor([1]), model)
    half = UpdateRecorder(model, tmp_path / "c.updates", dtype="float16")
    with torch.no_grad():
        next(model.parameters()).add_(1e6)
    with pytest.raises(ConfigError, match="more than float16 can hold.*--record-dtype float32"):
        half(0, torch.tensor([1]), model)
    assert not (tmp_path / "c.updates.partial").exists()


def test_failed_training_leaves_no_files(digits, tmp_path):
    from unlearnkit.errors import TrainingDivergedError

    with pytest.raises(TrainingDivergedError):
        train_model(digits, "mlp", ONE_EPOCH.with_(lr=1e30, momentum=0.0), model_kwargs=SMALL, device="cpu",
                    progress=False, record_updates=tmp_path / "nan")
    assert list(tmp_path.iterdir()) == []


# --- command line ---------------------------------------------------------------------------------------------
def test_cli_round_trip(tmp_path):
    out = str(tmp_path / "ck")
    train = runner.invoke(app, ["train", "--dataset", "digits", "--epochs", "2", "--out", out, "--record-updates",
                                "--record-dtype", "float16", "--device", "cpu", "--no-progress", "--json"])
    assert train.exit_code == 0, train.output
    store = json.loads(train.stdout)["updates"]
    assert store["batches"] == 2 * 23 and store["dtype"] == "float16" and store["bytes"] > 0
    assert store["ratio_to_model"] == pytest.approx(store["bytes"] / store["model_bytes"], rel=1e-3)
    forgot = runner.invoke(app, ["forget", "--checkpoint", out, "--forget", "random:0.01", "--method", "amnesiac",
                                 "--param", "repair_epochs=1", "--out", str(tmp_path / "forgot"), "--device", "cpu",
                                 "--no-progress", "--json"])
    assert forgot.exit_code == 0, forgot.output
    summary = json.loads(forgot.stdout)
    assert summary["method"] == "amnesiac" and summary["recorded_batches"] == 46
    assert 0 < summary["subtracted_batches"] <= 46
    assert summary["subtracted_fraction"] == round(summary["subtracted_batches"] / 46, 6)
    history = json.loads((tmp_path / "forgot.json").read_text())["history"]
    assert history[0]["info"]["subtracted_batches"] == summary["subtracted_batches"]
    text = runner.invoke(app, ["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "t"),
                               "--record-updates", "--device", "cpu", "--no-progress"])
    assert text.exit_code == 0 and "recorded 23 batch updates (float32)" in text.stdout


def cli_error(capsys, *args: str) -> str:
    """Run the console entry point; require exit status 2 and exactly one ``error:`` line, and return it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["unlearn", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 2 and "Traceback" not in err and len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--record-dtype", "float16"], "--record-dtype applies to recorded updates; add --record-updates"),
    (["--record-updates", "--record-dtype", "bf16"], "--record-dtype must be one of float32, float16, got 'bf16'"),
])
def test_cli_bad_record_options(capsys, tmp_path, args, message):
    assert message in cli_error(capsys, "train", "--epochs", "1", "--out", str(tmp_path / "x"), *args)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_amnesiac_without_updates(capsys, tmp_path):
    out = str(tmp_path / "plain")
    trained = runner.invoke(app, ["train", "--epochs", "1", "--out", out, "--device", "cpu", "--no-progress"])
    assert trained.exit_code == 0
    line = cli_error(capsys, "forget", "-c", out, "-f", "class:3", "--method", "amnesiac", "--out",
                     str(tmp_path / "f"), "--device", "cpu")
    assert "no recorded updates" in line and "unlearn train --record-updates" in line
