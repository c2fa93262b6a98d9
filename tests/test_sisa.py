"""Tests for SISA (unlearnkit.exact.sisa, method ``sisa``, ``unlearn train --sisa``) on the embedded digits data.

The reference for exactness is independent of the unlearning code path: a fresh SISA training on the data
without the forget ids, compared weight for weight (every member and every saved slice step). Small members
(mlp hidden=(32,)) and 3 epochs keep the module fast; the Ray test is marked slow.

Run: .venv/bin/python -m pytest tests/test_sisa.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails as fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset, select
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.exact.sisa import SisaSpec, assign, forget_sisa, load_sisa, sisa_dir, sisa_state, train_sisa
from unlearnkit.models import load_checkpoint
from unlearnkit.models.architectures import ShardEnsemble
from unlearnkit.runs import save_model, train_model
from unlearnkit.train import TrainConfig, accuracy_on
from unlearnkit.unlearning import unlearn

RECIPE = TrainConfig(epochs=6, batch_size=64, lr=0.05, seed=3)  # balanced slices: 2E/(R+1) epochs per step
SMALL = {"hidden": (32,)}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
runner = CliRunner()


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def same_sisa(model_a, model_b) -> bool:
    """Same ensemble weights and the same saved weights after every slice step of every shard."""
    a, b = sisa_state(model_a), sisa_state(model_b)
    steps_equal = len(a.states) == len(b.states) and all(
        states_equal(x, y) for sa, sb in zip(a.states, b.states, strict=True) for x, y in zip(sa, sb, strict=True))
    return steps_equal and states_equal(model_a.state_dict(), model_b.state_dict())



def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"{result.exception!r}\n{result.output}"
    return json.loads(result.stdout)


# --- spec, assignment, ensemble ---------------------------------------------------------------------------
def test_spec_parses_and_defaults():
    assert SisaSpec.parse("shards=5,slices=3,aggregate=softmax,by=subjects") == SisaSpec(5, 3, "softmax", "subjects")
    assert SisaSpec.parse(" shards = 2 ") == SisaSpec(2, 1, "vote", "ids", 1, "balanced")
    assert SisaSpec.parse("shards=2,slice_epochs=full").slice_epochs == "full"


@pytest.mark.parametrize(("text", "message"), [
    ("shards=0,slices=2", "SISA needs shards >= 1, got shards=0"),
    ("shards=2,slices=0", "SISA needs slices >= 1"),
    ("shards=2,aggregate=mean", "unknown aggregate 'mean'; choose one of vote, softmax"),
    ("shards=2,by=rows", "unknown SISA assignment by='rows'"),
    ("shards=2,epochs=3", "unknown --sisa key 'epochs'"),
    ("slices=2", "--sisa needs shards=S"),
    ("shards=two", "--sisa shards must be an integer, got 'two'"),
    ("shards", "--sisa item 'shards' needs KEY=VALUE"),
    ("shards=2,slices=2,shards=3", "--sisa gives shards twice; give each key once"),
    ("shards=2,slice_epochs=half", "unknown slice_epochs='half'; choose one of balanced, full"),
])
def test_bad_spec(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        SisaSpec.parse(text)
    assert "\n" not in str(info.value)


def test_assignment_does_not_depend_on_other_ids(digits):
    spec = SisaSpec(4, 3)
    full = assign(digits.train, spec, seed=0)
    ids = [i for shard in full.ids for s in shard for i in s]
    assert sorted(ids) == sorted(digits.train.ids.tolist())  # disjoint shards covering every sample
    removed = digits.train.ids[::3]
    smaller = assign(digits.train.without(removed), spec, seed=0)
    assert smaller.ids == full.without(removed.tolist()).ids
    assert assign(digits.train, spec, seed=1).ids != full.ids  # the seed moves samples


def test_by_subjects_keeps_each_subject_in_one_shard_and_slice():
    data = load_dataset("digits", subjects=40).train
    where = {}
    for k, shard in enumerate(assign(data, SisaSpec(4, 2, by="subjects"), seed=0).ids):
        for r, ids in enumerate(shard):
            for subject in data.by_ids(ids).subjects.tolist():
                assert where.setdefault(subject, (k, r)) == (k, r)
    assert len(where) == 40


def test_too_many_shards_and_missing_subjects(digits):
    few = digits.train.subset(torch.arange(5))
    with pytest.raises(ConfigError, match=r"--sisa shards=6 is more than the 5 samples to split; use at most 5"):
        assign(few, SisaSpec(6), seed=0)
    with pytest.raises(ConfigError, match=r"by=subjects needs data subjects; load the data with --subjects N"):
        assign(digits.train, SisaSpec(2, by="subjects"), seed=0)
    with pytest.raises(ConfigError, match=r"more than the 3 subjects"):
        assign(load_dataset("digits", subjects=3).train, SisaSpec(4, by="subjects"), seed=0)


class Fixed(torch.nn.Module):
    """A member that outputs the same logits for every input."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def test_ensemble_vote_softmax_and_inactive_members():
    members = [Fixed([3.0, 0.0, 0.0]), Fixed([2.0, 0.0, 0.0]), Fixed([0.0, 0.5, 0.0]), Fixed([0.0, 9.0, 0.0])]
    x = torch.zeros(2, 1)
    probs = torch.stack([m(x).softmax(-1) for m in members])
    vote = ShardEnsemble(members, "vote")
    # two votes each for classes 0 and 1: the tie goes to the higher mean probability, here class 0
    assert int(probs.mean(0)[0].argmax()) == 0
    assert vote(x).argmax(-1).tolist() == [0, 0]
    vote.active[0] = 0  # member 0's shard emptied: class 1 wins two votes to one
    assert vote(x).argmax(-1).tolist() == [1, 1]
    assert torch.isfinite(vote(x)).all()
    soft = ShardEnsemble(members, "softmax")
    assert torch.allclose(soft(x).exp(), probs.mean(0), atol=1e-6)
    with pytest.raises(ConfigError, match="unknown aggregate 'max'"):
        ShardEnsemble(members, "max")


# --- exact unlearning through checkpoints ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sisa_ckpt(tmp_path_factory, digits):
    """A saved 4-shard, 3-slice SISA checkpoint of small mlps."""
    out = tmp_path_factory.mktemp("sisa") / "original"
    trained = train_model(digits, "mlp", RECIPE, model_kwargs=SMALL, progress=False, sisa="shards=4,slices=3")
    save_model(out, trained.model, trained.meta)
    return out


def test_folders_saved_before_slice_epochs_load_as_full_and_stay_exact(tmp_path, digits):
    """A SISA folder written before the slice schedule existed has no slice_epochs: it was trained with the whole
    recipe at every step, and its deletions must retrain that way to stay exact."""
    from unlearnkit.models.checkpoint import file_sha256

    out = tmp_path / "old"
    trained = train_model(digits, "mlp", RECIPE, model_kwargs=SMALL, progress=False,
                          sisa="shards=2,slices=2,slice_epochs=full")
    save_model(out, trained.model, trained.meta)
    index = sisa_dir(out) / "assignment.json"
    doc = json.loads(index.read_text())
    del doc["slice_epochs"]
    index.write_text(json.dumps(doc))
    sidecar = json.loads((tmp_path / "old.json").read_text())
    sidecar["sisa"]["assignment_sha256"] = file_sha256(index)
    (tmp_path / "old.json").write_text(json.dumps(sidecar))
    assert load_sisa(out).spec.slice_epochs == "full"
    ids = [int(i) for i in digits.train.ids[:3]]
    split = select(digits.train, "ids:" + ",".join(map(str, ids)), seed=0)
    result = unlearn(load_checkpoint(out).model, split, "sisa", train_config=RECIPE, checkpoint=out, progress=False)
    fresh = train_sisa(digits.train.without(ids), "mlp", RECIPE, "shards=2,slices=2,slice_epochs=full",
                       member_kwargs=SMALL, progress=False)
    assert same_sisa(result.model, fresh)


def test_checkpoint_files_and_loading(sisa_ckpt, digits):
    folder = sisa_dir(sisa_ckpt)
    doc = json.loads((folder / "assignment.json").read_text())
    assert (doc["shards"], doc["slices"], doc["aggregate"], doc["by"]) == (4, 3, "vote", "ids")
    assert len(doc["files"]) == 12 and all((folder / name).is_file() for name in doc["files"])
    assert sum(doc["shard_sizes"]) == len(digits.train)
    ckpt = load_checkpoint(sisa_ckpt)  # the plain loader: an nn.Module that predicts
    assert isinstance(ckpt.model, ShardEnsemble) and ckpt.meta["sisa"]["shards"] == 4
    assert accuracy_on(ckpt.model, digits.test) > 0.8


def _pick_forget_ids(ckpt_path: Path) -> tuple[list[int], dict[int, int]]:
    """Ids from shard 0's last slice and shard 1's first slice, read from the saved assignment."""
    doc = json.loads((sisa_dir(ckpt_path) / "assignment.json").read_text())["assignment"]
    return doc[0][2][:2] + doc[1][0][:1], {0: 3, 1: 1}


def _count_steps(monkeypatch) -> list[tuple[int, int]]:
    """Record (samples, optimizer steps actually run) of every slice step SISA trains."""
    import unlearnkit.exact.sisa as sisa_module
    from unlearnkit.train import fit as real_fit

    seen: list[tuple[int, int]] = []

    def counting_fit(model, data, config, **kwargs):
        steps = [0]
        kwargs["after_step"] = lambda *_: steps.__setitem__(0, steps[0] + 1)
        out = real_fit(model, data, config, **kwargs)
        seen.append((len(data), steps[0]))
        return out

    monkeypatch.setattr(sisa_module, "fit", counting_fit)
    return seen


@pytest.mark.parametrize(("schedule", "low", "high"), [("balanced", 0.95, 1.2), ("full", 2.9, 3.4)])
def test_slice_schedule_training_cost(monkeypatch, digits, schedule, low, high):
    """The epochs actually run: balanced slice steps (2E/(R+1) epochs each) pass over the training set about E times
    in all, what one model at the same recipe does; full steps (R+1)/2 = 3 times that at R = 5 (a little more: each
    step rounds its last mini-batch up)."""
    seen = _count_steps(monkeypatch)
    recipe = RECIPE.with_(epochs=6)
    train_sisa(digits.train, "mlp", recipe, f"shards=3,slices=5,slice_epochs={schedule}", member_kwargs=SMALL,
               progress=False)
    assert len(seen) == 3 * 5
    single = recipe.epochs * -(-len(digits.train) // recipe.batch_size)  # one model's optimizer steps
    sisa_steps = sum(steps for _, steps in seen)
    assert low * single <= sisa_steps <= high * single
    if schedule == "balanced":  # each step: 2E/(R+1) = 2 epochs of its slices so far, in whole mini-batches
        assert all(steps == round(2 * -(-n // recipe.batch_size)) for n, steps in seen)


def test_forget_retrains_only_affected_shards_and_equals_fresh_training(sisa_ckpt, digits):
    ids, first = _pick_forget_ids(sisa_ckpt)
    ckpt = load_checkpoint(sisa_ckpt)
    split = select(digits.train, "ids:" + ",".join(map(str, ids)), seed=0)
    result = unlearn(ckpt.model, split, "sisa", train_config=RECIPE, checkpoint=sisa_ckpt, progress=False)
    assert result.info["retrained_shards"] == [0, 1]
    assert result.info["first_retrained_slice"] == {str(k): r for k, r in first.items()}
    assert result.info["retrained_slices"] == (3 - 3 + 1) + (3 - 1 + 1)
    # the independent reference: SISA training from scratch on the data without the forget ids
    fresh = train_sisa(digits.train.without(ids), "mlp", RECIPE, "shards=4,slices=3", member_kwargs=SMALL,
                       progress=False)
    assert same_sisa(result.model, fresh)
    # untouched shards and the steps before each restart are the original weights; the retrained ones moved
    old, new = load_sisa(sisa_ckpt).states, sisa_state(result.model).states
    assert all(states_equal(a, b) for k in (2, 3) for a, b in zip(old[k], new[k], strict=True))
    assert states_equal(old[0][1], new[0][1]) and not states_equal(old[0][2], new[0][2])
    assert not states_equal(old[1][0], new[1][0])


def test_sisa_needs_a_sisa_checkpoint(tmp_path, digits, digits_model):
    split = select(digits.train, "ids:1,2", seed=0)
    with pytest.raises(ConfigError, match=r"needs a SISA checkpoint \(unlearn train --sisa shards=S,slices=R\)"):
        unlearn(digits_model, split, "sisa")
    plain = train_model(digits, "mlp", RECIPE, model_kwargs=SMALL, progress=False)
    save_model(tmp_path / "plain", plain.model, plain.meta)
    with pytest.raises(ConfigError, match=r"plain is not a SISA checkpoint; method 'sisa' needs one trained with "
                                          r"unlearn train --sisa shards=S,slices=R"):
        unlearn(plain.model, split, "sisa", checkpoint=tmp_path / "plain")


@pytest.fixture
def ckpt_copy(tmp_path, sisa_ckpt):
    import shutil

    for suffix in (".json", ".safetensors"):
        shutil.copy(sisa_ckpt.with_name(sisa_ckpt.name + suffix), tmp_path / f"copy{suffix}")
    shutil.copytree(sisa_dir(sisa_ckpt), tmp_path / "copy.sisa")
    return tmp_path / "copy"


def test_missing_and_corrupt_files(ckpt_copy):
    folder = sisa_dir(ckpt_copy)
    slice_file = folder / "shard-2" / "slice-2.safetensors"
    data = bytearray(slice_file.read_bytes())
    data[-1] ^= 0xFF
    slice_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"slice-2.safetensors is corrupt \(sha256 differs from "
                                              r"assignment.json\); restore copy.sisa/ as saved"):
        load_sisa(ckpt_copy)
    slice_file.unlink()
    with pytest.raises(CheckpointError, match=r"slice-2.safetensors is missing; restore copy.sisa/ as saved"):
        load_sisa(ckpt_copy)
    index = folder / "assignment.json"
    index.write_text(index.read_text().replace('"slices": 3', '"slices": 2'))
    with pytest.raises(CheckpointError, match=r"assignment.json does not match copy.json \(sha256 differs\)"):
        load_sisa(ckpt_copy)
    index.unlink()
    with pytest.raises(CheckpointError, match=r"assignment.json not found; a SISA checkpoint keeps its shards in "
                                              r"copy.sisa/ beside it"):
        load_sisa(ckpt_copy)


def test_ensemble_weights_must_match_the_slices(ckpt_copy, digits):
    """A checkpoint whose main weights were replaced (here: one member retrained elsewhere) is refused."""
    ckpt = load_checkpoint(ckpt_copy)
    with torch.no_grad():
        ckpt.model.members[1].classifier.bias.add_(1.0)
    split = select(digits.train, "ids:1,2", seed=0)
    with pytest.raises(CheckpointError, match=r"member 1 of .*copy differs from copy.sisa/shard-1/slice-3"):
        unlearn(ckpt.model, split, "sisa", checkpoint=ckpt_copy)


def test_subject_deletion_retrains_one_shard():
    data = load_dataset("digits", subjects=30)
    spec = "shards=4,slices=2,by=subjects,aggregate=softmax"
    model = train_sisa(data.train, "mlp", RECIPE, spec, member_kwargs=SMALL, progress=False)
    split = select(data.train, "subjects:7", seed=0)
    result = forget_sisa(sisa_state(model), split, progress=False)
    assert len(result.retrained_shards) == 1 and len(split.forget) > 1
    fresh = train_sisa(split.retain, "mlp", RECIPE, spec, member_kwargs=SMALL, progress=False)
    assert same_sisa(result.model, fresh)


def test_emptied_shard_is_inactive_and_still_exact(digits):
    """Deleting every sample of a shard leaves a member that no longer votes; still equal to fresh training."""
    spec = SisaSpec(3, 2)
    model = train_sisa(digits.train, "mlp", RECIPE, spec, member_kwargs=SMALL, progress=False)
    ids = [i for s in sisa_state(model).assignment.ids[2] for i in s]
    split = select(digits.train, "ids:" + ",".join(map(str, ids)), seed=0)
    result = forget_sisa(sisa_state(model), split, progress=False)
    assert result.model.active.tolist() == [1.0, 1.0, 0.0]
    assert result.retrained_shards == [2]
    fresh = train_sisa(split.retain, "mlp", RECIPE, spec, member_kwargs=SMALL, progress=False)
    assert same_sisa(result.model, fresh)
    assert accuracy_on(result.model, digits.test) > 0.7


@pytest.mark.slow
def test_ray_gives_the_same_weights_as_local(digits):
    ray = pytest.importorskip("ray")
    spec = "shards=3,slices=2"
    local = train_sisa(digits.train, "mlp", RECIPE, spec, member_kwargs=SMALL, progress=False)
    split = select(digits.train, "random:0.01", seed=1)
    local_forget = forget_sisa(sisa_state(local), split, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = train_sisa(digits.train, "mlp", RECIPE, spec, member_kwargs=SMALL, executor="ray")
        remote_forget = forget_sisa(sisa_state(remote), split, executor="ray")
        with pytest.raises(ConfigError, match=r"asks for 4 CPUs \(threads=4\) but the Ray cluster has 2"):
            train_sisa(digits.train, "mlp", RECIPE, "shards=2,threads=4", member_kwargs=SMALL, executor="ray")
    finally:
        ray.shutdown()
    assert same_sisa(local, remote)
    assert same_sisa(local_forget.model, remote_forget.model)
    assert local_forget.retrained_shards == remote_forget.retrained_shards


# --- the command line --------------------------------------------------------------------------------------
def test_cli_round_trip_and_second_forget(tmp_path, digits):
    out = tmp_path / "sisa"
    quiet = ("--device", "cpu", "--no-progress")
    ids = [str(i) for i in digits.train.ids[[5, 6, 7, 100, 200]].tolist()]
    trained = invoke_json("train", "--dataset", "digits", "--epochs", "2", "--sisa", "shards=3,slices=2",
                          "--out", str(out), *quiet)
    assert trained["sisa"]["shards"] == 3 and sum(trained["sisa"]["shard_sizes"]) == len(digits.train)
    report = invoke_json("evaluate", "--checkpoint", str(out), "--forget", "ids:" + ",".join(ids[:2]),
                         "--device", "cpu")
    assert report["test_accuracy"] > 0.5  # chance is 0.1; 2 epochs on a third of the data each
    first = invoke_json("forget", "--checkpoint", str(out), "--forget", "ids:" + ",".join(ids[:3]), "--method", "sisa",
                        "--out", str(tmp_path / "f1"), *quiet)
    assert {"retrained_shards", "retrained_slices", "seconds"} <= set(first)
    assert 1 <= len(first["retrained_shards"]) <= 3 and first["retrained_slices"] >= len(first["retrained_shards"])
    assert sisa_dir(tmp_path / "f1").is_dir()
    second = invoke_json("forget", "--checkpoint", str(tmp_path / "f1"), "--forget", "ids:" + ",".join(ids[3:]),
                         "--method", "sisa",
                         "--out", str(tmp_path / "f2"), *quiet)
    assert second["n_forget"] == 2
    final = load_checkpoint(tmp_path / "f2")
    assert [op["method"] for op in final.history] == ["sisa", "sisa"]
    # both deletions together equal SISA training without all five ids (the cli's mlp and recipe, seed 0)
    from unlearnkit.train import default_recipe

    fresh = train_sisa(digits.train.without([int(i) for i in ids]), "mlp",
                       default_recipe("digits", "mlp").with_(epochs=2), "shards=3,slices=2", progress=False)
    assert states_equal(final.model.state_dict(), fresh.state_dict())
    assert all(states_equal(a, b) for sa, sb in zip(load_sisa(tmp_path / "f2").states, sisa_state(fresh).states,
                                                    strict=True) for a, b in zip(sa, sb, strict=True))


@pytest.mark.parametrize(("extra", "message"), [
    (("--sisa", "shards=0"), "SISA needs shards >= 1, got shards=0"),
    (("--sisa", "shards=2,aggregate=median"), "unknown aggregate 'median'; choose one of vote, softmax"),
    (("--sisa", "shards=30", "--train-size", "20"), "--sisa shards=30 is more than the 20 samples to split"),
    (("--sisa", "shards=2,by=subjects"), "by=subjects needs data subjects"),
    (("--executor", "ray"), "--executor ray fans out the shards of a SISA ensemble; add --sisa"),
    (("--sisa", "shards=2", "--executor", "dask"), "unknown executor 'dask'; choose one of local, ray"),
])
def test_cli_train_bad_inputs(capsys, tmp_path, extra, message):
    line = fails(capsys, "train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "x"),
                 "--device", "cpu", "--no-progress", *extra)
    assert message in line


def test_cli_forget_refuses_non_sisa_checkpoint(capsys, tmp_path):
    invoke_json("train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "plain"), "--device", "cpu")
    line = fails(capsys, "forget", "--checkpoint", str(tmp_path / "plain"), "--forget", "ids:1", "--method", "sisa",
                 "--out", str(tmp_path / "f"), "--device", "cpu")
    assert "is not a SISA checkpoint; method 'sisa' needs one trained with unlearn train --sisa" in line
    line = fails(capsys, "forget", "--checkpoint", str(tmp_path / "plain"), "--forget", "ids:1", "--method",
                 "finetune", "--executor", "ray", "--out", str(tmp_path / "f"), "--device", "cpu")
    assert "method 'finetune' has no parameter(s) ['executor']" in line


# --- resuming an interrupted training from the saved slice steps ------------------------------------------------
def test_training_continues_from_saved_steps_and_equals_an_uninterrupted_run(tmp_path, digits):
    """Every finished slice step is saved to the progress folder; a rerun after a kill (here: some step files
    removed, as if the kill came before them) reuses the steps still there, trains the rest, and ends with the
    very same weights at every step."""
    from unlearnkit.exact.sisa_io import step_file

    clean = train_sisa(digits.train, "mlp", RECIPE, "shards=3,slices=3", member_kwargs=SMALL, progress=False)
    folder = tmp_path / "m.sisa.partial"
    first = train_sisa(digits.train, "mlp", RECIPE, "shards=3,slices=3", member_kwargs=SMALL, progress=False,
                       progress_dir=folder)
    assert same_sisa(first, clean)
    assert sorted(p.name for p in folder.rglob("step-*.safetensors")) == sorted(
        [f"step-{r}.safetensors" for r in (1, 2, 3)] * 3)
    step_file(folder, 0, 2).unlink()  # shard 0 lost its last step, shard 1 all but the first, shard 2 everything
    step_file(folder, 1, 1).unlink()
    step_file(folder, 1, 2).unlink()
    for r in range(3):
        step_file(folder, 2, r).unlink()
    heard = []
    resumed = train_sisa(digits.train, "mlp", RECIPE, "shards=3,slices=3", member_kwargs=SMALL, progress=False,
                         progress_dir=folder, on_resume=heard.append)
    assert heard == [f"continuing from 3 of 9 slice steps saved in {folder}"]
    assert same_sisa(resumed, clean)
    with pytest.raises(ConfigError, match=r"holds the finished slice steps of another SISA training .*rerun the "
                                          r"command that started it to continue it, or delete .* to start this one"):
        train_sisa(digits.train, "mlp", RECIPE.with_(seed=4), "shards=3,slices=3", member_kwargs=SMALL,
                   progress=False, progress_dir=folder)


def test_cli_train_removes_the_progress_folder_once_saved(tmp_path):
    out = tmp_path / "m"
    invoke_json("train", "--dataset", "digits", "--epochs", "1", "--sisa", "shards=2,slices=2", "--out", str(out))
    assert (tmp_path / "m.sisa").is_dir() and not (tmp_path / "m.sisa.partial").exists()
