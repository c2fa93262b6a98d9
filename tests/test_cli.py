"""Tests for the ``unlearn`` command line (unlearnkit.cli) on the embedded digits data.

Most cases run the typer app in-process with ``typer.testing.CliRunner``; error cases go through
``cli.main()`` (the console entry point, in-process) so the exit status and the one-line message are
checked; a few start the real console script in a subprocess. One small digits checkpoint is trained
per module and reused.

Run: .venv/bin/python -m pytest tests/test_cli.py -q
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from scipy.spatial.distance import jensenshannon
from typer.testing import CliRunner, Result

from tests.conftest import cli_fails as fails
from unlearnkit import cli
from unlearnkit.cli import app
from unlearnkit.data import load_dataset, select
from unlearnkit.evaluation import BASE_METRICS
from unlearnkit.methods import METHODS
from unlearnkit.models import load_checkpoint
from unlearnkit.train import predict_logits

CPU = ("--device", "cpu")
QUIET = ("--device", "cpu", "--no-progress")
BASE_KEYS = set(BASE_METRICS)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
runner = CliRunner()


# --- helpers --------------------------------------------------------------------------------------
def invoke_ok(*args: str) -> Result:
    """Run the app in-process and require exit status 0."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (
        f"unlearn {' '.join(args)} exited {result.exit_code}: {result.exception!r}\n{result.output}"
    )
    return result


def invoke_json(*args: str):
    return json.loads(invoke_ok(*args, "--json").stdout)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run the console entry point ``cli.main()`` in-process: (exit status, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["unlearn", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, ANSI.sub("", captured.out), ANSI.sub("", captured.err)




def original_forget_accuracy(checkpoint: Path) -> float:
    """The checkpoint's accuracy on the class:3 forget set (all 3s), computed here, not by the CLI."""
    split = select(load_dataset("digits").train, "class:3", seed=0)
    logits = predict_logits(load_checkpoint(checkpoint).model, split.forget, device="cpu")
    return float((logits.argmax(dim=1) == split.forget.y).double().mean())


def config_defaults(method: str, split=None) -> dict:
    """A method's hyperparameter defaults read from its Config dataclass's fields, as JSON gives them back; with
    a ``split`` given, an auto field (default None, an ``auto`` rule) takes its rule's value for that split, as a
    run reports it."""
    fields = dataclasses.fields(METHODS[method].Config)
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in fields}
    if split is not None:
        for f in fields:
            rule = f.metadata.get("auto")
            if rule is not None:
                defaults[f.name] = rule.pick(split)
    return json.loads(json.dumps(defaults))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pair(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def pair_digests(path: Path) -> tuple[str, str]:
    weights, sidecar = pair(path)
    return sha256(weights), sha256(sidecar)


def sidecar(path: Path) -> dict:
    return json.loads(pair(path)[1].read_text())


def copy_pair(src: Path, dst: Path) -> Path:
    for a, b in zip(pair(src), pair(dst), strict=True):
        shutil.copyfile(a, b)
    return dst


# --- shared runs (module-scoped: trained once) ----------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The digits MLP is tiny: intra-op threads only add overhead, and on a busy 2-core machine their
    spin-waiting makes training several times slower. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def class3_ids(digits) -> list[int]:
    return sorted(int(i) for i in digits.train.ids[digits.train.y == 3])


@pytest.fixture(scope="module")
def original(workdir) -> tuple[Path, dict]:
    out = workdir / "original"
    summary = invoke_json("train", "--dataset", "digits", "--epochs", "3", "--out", str(out), *QUIET)
    return out, summary


@pytest.fixture(scope="module")
def forgotten(workdir, original) -> dict[str, tuple[Path, dict]]:
    """class:3 forgotten from the original by each of retrain, finetune, gradient-ascent (seed 0)."""
    runs = {}
    for method in ("retrain", "finetune", "gradient-ascent"):
        out = workdir / f"class3-{method}"
        summary = invoke_json("forget", "-c", str(original[0]), "--forget", "class:3", "--method", method,
                              "--seed", "0", "--out", str(out), *QUIET)
        runs[method] = (out, summary)
    return runs


@pytest.fixture(scope="module")
def random_runs(workdir, original) -> dict[str, Path]:
    """finetune on random:0.1: 'a' and 'b' with seed 0, 'c' with seed 1."""
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = workdir / f"random-{name}"
        invoke_json("forget", "-c", str(original[0]), "-f", "random:0.1", "--method", "finetune",
                    "--seed", str(seed), "--out", str(out), *QUIET)
        runs[name] = out
    return runs


# --- help and listings ----------------------------------------------------------------------------
HELP_OPTIONS = {
    "datasets": ["--json"],
    "methods": ["--json"],
    "train": ["--out", "--dataset", "--model", "--epochs", "--lr", "--seed", "--force", "--device", "--json"],
    "forget": ["--checkpoint", "--forget", "--method", "--param", "--out", "--seed", "--force", "--json"],
    "debias": ["--checkpoint", "--attribute", "--method", "--out", "--param", "--seed", "--force", "--json"],
    "evaluate": ["--checkpoint", "--forget", "--reference", "--original", "--relearn", "--seed", "--per-sample",
                 "--force", "--markdown", "--json"],
    "neurips": ["--checkpoint", "--forget", "--method", "--models", "--param", "--calibration", "--cache-dir",
                "--no-cache", "--save", "--force", "--json"],
    "compare": ["--dataset", "--forget", "--methods", "--epochs", "--seed", "--markdown", "--save", "--force",
                "--json"],
    "demo": ["--forget", "--seed", "--device"],
    "bench": ["--out", "--resume", "--db", "--executor", "--ray-address", "--overlay", "--device", "--json"],
    "tune": ["--method", "--config", "--trials", "--out", "--seed", "--write", "--timeout", "--force", "--json"],
    "report": ["--db"],
    "requests": ["make", "check"],  # a command group: its subcommands
    "fl": ["train", "forget", "evaluate", "methods"],
    "detect": ["--checkpoint", "--method", "--out", "--rate", "--budget", "--max-cluster", "--force", "--json"],
    "stream": ["--checkpoint", "--requests", "--method", "--param", "--policy", "--verify-every", "--max-drift",
               "--reversal-tol", "--out", "--resume", "--seed", "--json"],
}


def test_help_table_covers_every_command():
    assert set(typer.main.get_command(app).commands) == set(HELP_OPTIONS)


def test_root_help_lists_commands_and_debug():
    out = invoke_ok("--help").stdout
    for name in HELP_OPTIONS:
        assert name in out
    assert "--debug" in out


@pytest.mark.parametrize("command", sorted(HELP_OPTIONS))
def test_command_help(command):
    out = invoke_ok(command, "--help").stdout
    assert f"unlearn {command}" in out
    for option in HELP_OPTIONS[command]:
        assert option in out, f"{command} --help does not mention {option}"


def test_methods_json():
    rows = invoke_json("methods")
    assert isinstance(rows, list) and rows
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == set(METHODS)
    for row in rows:
        assert {"name", "summary", "reference", "exact", "params"} <= set(row)
        assert isinstance(row["summary"], str) and row["summary"]
        assert isinstance(row["reference"], str) and row["reference"]
        assert isinstance(row["exact"], bool)
        # the defaults of the method's Config, read field by field (JSON turns tuples into lists)
        assert row["params"] == config_defaults(row["name"]), row["name"]
    assert by_name["retrain"]["exact"] is True
    assert by_name["finetune"]["exact"] is False
    assert by_name["gradient-ascent"]["exact"] is False
    assert [n for n, r in by_name.items() if r["exact"]] == ["retrain", "retrain-balanced", "sisa"]
    assert [n for n, r in by_name.items() if r["certified"]] == ["certified"]
    assert by_name["sisa"]["requires"] and by_name["amnesiac"]["requires"] and by_name["finetune"]["requires"] is None
    assert "epochs" in by_name["finetune"]["params"]


def test_methods_table_lists_every_method():
    out = invoke_ok("methods").stdout
    for name in METHODS:
        assert name in out


def test_datasets_json():
    rows = {row["name"]: row for row in invoke_json("datasets")}
    assert {"digits", "mnist", "fashion-mnist"} <= set(rows)
    assert rows["digits"]["available"] is True
    assert rows["digits"]["default_model"] == "mlp"
    assert rows["mnist"]["how_to_get"]


# --- train / forget -------------------------------------------------------------------------------
def test_train_json_and_files(original):
    out, summary = original
    assert set(summary) == {"checkpoint", "dataset", "model", "train_accuracy", "test_accuracy", "seconds",
                            "train_config"}
    assert summary["checkpoint"] == str(out)
    assert summary["dataset"] == "digits" and summary["model"] == "mlp"
    assert summary["train_config"]["epochs"] == 3
    assert 0.5 < summary["test_accuracy"] <= 1.0 and 0.5 < summary["train_accuracy"] <= 1.0
    weights, side = pair(out)
    assert weights.is_file() and side.is_file()
    meta = sidecar(out)
    assert meta["history"] == []
    assert meta["train_config"] == summary["train_config"]
    assert meta["weights"]["sha256"] == sha256(weights)


def test_train_human_output(workdir):
    out = workdir / "human"
    result = invoke_ok("train", "--epochs", "1", "--out", str(out), *QUIET)
    assert f"saved {out}" in result.stdout
    assert "test accuracy" in result.stdout


@pytest.mark.parametrize("method", ["retrain", "finetune", "gradient-ascent"])
def test_forget_json_and_history(forgotten, original, class3_ids, method):
    out, summary = forgotten[method]
    assert summary["checkpoint"] == str(out)
    assert summary["method"] == method
    assert summary["forget"] == "class:3" and summary["seed"] == 0
    assert summary["n_forget"] == len(class3_ids)
    assert summary["n_retain"] == 1438 - len(class3_ids)
    # forget ran without --param: the Config's defaults, auto ones resolved for class forgetting
    split = select(load_dataset("digits").train, "class:3", seed=0)
    assert summary["config"] == config_defaults(method, split)
    # every method must lose more of the forget set than of the retain set
    assert summary["forget_accuracy"] < summary["retain_accuracy"]
    history = sidecar(out)["history"]
    assert len(history) == 1
    entry = history[0]
    assert entry["method"] == method
    assert entry["forget_spec"] == "class:3"
    assert entry["seed"] == 0
    assert sorted(entry["forget_ids"]) == class3_ids
    assert entry["parent"] == str(original[0])


def test_retrain_never_saw_the_forgotten_class(forgotten):
    assert forgotten["retrain"][1]["forget_accuracy"] <= 0.05


def test_forget_human_output(workdir, original):
    out = workdir / "human-forget"
    result = invoke_ok("forget", "-c", str(original[0]), "-f", "class:3", "--method", "finetune",
                       "--param", "epochs=1", "--out", str(out), *QUIET)
    assert f"saved {out}" in result.stdout and "finetune forgot" in result.stdout
    assert sidecar(out)["history"][0]["config"]["epochs"] == 1


# --- evaluate -------------------------------------------------------------------------------------
def test_evaluate_json_keys(forgotten):
    out = forgotten["gradient-ascent"][0]
    result = invoke_ok("evaluate", "-c", str(out), "-f", "class:3", "--json", *CPU)
    data = json.loads(result.stdout)
    assert set(data) == BASE_KEYS
    assert all(0.0 <= data[k] <= 1.0 for k in BASE_KEYS)
    assert "warning" not in result.stderr  # same spec and seed as forget


def test_evaluate_with_reference(forgotten):
    out, ref = forgotten["gradient-ascent"][0], forgotten["retrain"][0]
    data = invoke_json("evaluate", "-c", str(out), "-f", "class:3", "--reference", str(ref), *CPU)
    assert set(data) == BASE_KEYS | {"reference", "gap", "js_divergence", "comparison"}
    assert set(data["reference"]) == BASE_KEYS
    assert set(data["gap"]) == BASE_KEYS | {"average"}
    for key in BASE_KEYS:
        assert data["gap"][key] == pytest.approx(abs(data[key] - data["reference"][key]), abs=2e-6)
    # oracle: SciPy's Jensen-Shannon distance (base 2) squared, per forget sample, between the two checkpoints'
    # softmax outputs, averaged
    split = select(load_dataset("digits").train, "class:3", seed=0)
    p, q = (torch.softmax(predict_logits(load_checkpoint(path).model, split.forget, device="cpu").double(), dim=1)
            for path in (out, ref))
    oracle = np.mean([jensenshannon(a, b, base=2) ** 2 for a, b in zip(p.numpy(), q.numpy(), strict=True)])
    assert oracle > 1e-3  # the two models differ, so a report of 0 would not match
    assert data["js_divergence"] == pytest.approx(oracle, abs=2e-6)
    # the reference is the retrained model: its forget accuracy is the one forget reported for it
    assert data["reference"]["forget_accuracy"] == forgotten["retrain"][1]["forget_accuracy"]


def test_evaluate_reference_against_itself_has_no_gap(forgotten):
    ref = forgotten["retrain"][0]
    data = invoke_json("evaluate", "-c", str(ref), "-f", "class:3", "-r", str(ref), *CPU)
    assert data["gap"]["average"] == 0.0
    assert data["js_divergence"] == pytest.approx(0.0, abs=1e-6)


def test_evaluate_same_split_as_forget(random_runs, tmp_path):
    out = random_runs["a"]
    per_sample = tmp_path / "new-dir" / "per-sample.json"  # the folder is created
    result = invoke_ok("evaluate", "-c", str(out), "-f", "random:0.1", "--seed", "0",
                       "--per-sample", str(per_sample), "--json", *CPU)
    assert "warning" not in result.stderr
    values = json.loads(per_sample.read_text())
    history = sidecar(out)["history"][0]
    assert sorted(values["forget_ids"]) == sorted(history["forget_ids"])
    assert len(values["forget_loss"]) == history["n_forget"] == len(values["forget_ids"])
    assert all(v >= 0.0 for v in values["forget_loss"])


def test_evaluate_other_seed_warns(random_runs):
    result = invoke_ok("evaluate", "-c", str(random_runs["a"]), "-f", "random:0.1", "--seed", "1",
                       "--json", *CPU)
    assert "warning:" in result.stderr
    assert "random:0.1 with seed 0" in result.stderr and "--seed" in result.stderr
    assert set(json.loads(result.stdout)) == BASE_KEYS  # the warning stays off stdout


def test_evaluate_per_sample_with_reference(forgotten, tmp_path):
    per_sample = tmp_path / "ps.json"
    invoke_ok("evaluate", "-c", str(forgotten["finetune"][0]), "-f", "class:3",
              "-r", str(forgotten["retrain"][0]), "--per-sample", str(per_sample), *CPU)
    values = json.loads(per_sample.read_text())
    assert {"forget_ids", "forget_loss", "forget_js"} <= set(values)
    assert len(values["forget_js"]) == len(values["forget_ids"]) == forgotten["finetune"][1]["n_forget"]


def test_evaluate_with_original_and_relearn(forgotten, original, tmp_path):
    per_sample = tmp_path / "ps.json"
    data = invoke_json("evaluate", "-c", str(forgotten["gradient-ascent"][0]), "-f", "class:3", "--original",
                       str(original[0]), "--relearn", "--per-sample", str(per_sample), *CPU)
    # oracle: the L2 norm of the difference of every floating-point tensor of the two checkpoints, flattened
    a, b = (load_checkpoint(path).model.state_dict() for path in (forgotten["gradient-ascent"][0], original[0]))
    moved = float(torch.sqrt(sum(((a[k].double() - b[k].double()) ** 2).sum() for k in a if a[k].is_floating_point())))
    assert moved > 0 and data["comparison"]["weight_distance_original"] == pytest.approx(moved, rel=1e-5)
    # gradient ascent left forget accuracy below the original's, the relearning target: at least one step is needed
    assert data["forget_accuracy"] < original_forget_accuracy(original[0])
    assert data["comparison"]["relearn_steps"] >= 1
    assert "reference" not in data
    values = json.loads(per_sample.read_text())
    assert values["had_reference"] is False and "js_divergence" in values["not_computed"]


def test_evaluate_relearn_without_original(capsys, forgotten):
    line = fails(capsys, "evaluate", "-c", str(forgotten["finetune"][0]), "-f", "class:3", "--relearn", *CPU)
    assert "--relearn needs --original PATH" in line


def test_evaluate_markdown(forgotten):
    out = invoke_ok("evaluate", "-c", str(forgotten["finetune"][0]), "-f", "class:3",
                    "-r", str(forgotten["retrain"][0]), "--markdown", *CPU).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "| metric | value | retrained | gap |"
    assert lines[1].startswith("|---")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names == [*BASE_METRICS, "gap.average", "js_divergence", "kl_divergence", "activation_distance",
                     "weight_distance"]


def test_evaluate_table_keeps_brackets_in_paths(workdir, forgotten):
    odd = workdir / "[v2]"
    odd.mkdir(exist_ok=True)
    path = copy_pair(forgotten["finetune"][0], odd / "model")
    out = invoke_ok("evaluate", "-c", str(path), "-f", "class:3", *CPU).stdout
    assert "[v2]" in out
    assert "forget_accuracy" in out


# --- compare / demo -------------------------------------------------------------------------------
def test_compare_json(class3_ids):
    data = invoke_json("compare", "--methods", "finetune,gradient-ascent", "--forget", "class:3",
                       "--epochs", "3", *QUIET)
    assert {"dataset", "forget", "original", "methods"} <= set(data)
    assert data["dataset"] == "digits" and data["forget"] == "class:3"
    assert data["n_forget"] == len(class3_ids)
    assert BASE_KEYS <= set(data["original"])
    assert set(data["methods"]) == {"retrain", "finetune", "gradient-ascent"}
    for name, row in data["methods"].items():
        assert BASE_KEYS | {"reference", "gap", "js_divergence", "seconds", "speedup"} <= set(row), name
        assert row["seconds"] > 0 and row["speedup"] > 0
    retrain = data["methods"]["retrain"]
    assert retrain["speedup"] == 1.0
    assert retrain["gap"]["average"] == 0.0
    # the original still knows class 3; the retrained reference does not
    assert data["original"]["forget_accuracy"] > retrain["forget_accuracy"]


def test_demo_lists_every_method():
    out = invoke_ok("demo", "--forget", "class:3", *CPU).stdout
    for name in [*(n for n, c in METHODS.items() if c.requires is None and c.kind == "samples"), "original"]:
        assert name in out, f"demo table lacks {name}"  # methods that need training-time files are left out
    assert "speedup" in out and "forget class:3" in out


# --- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_weights(random_runs):
    a, b = random_runs["a"], random_runs["b"]
    assert sha256(pair(a)[0]) == sha256(pair(b)[0])
    assert sidecar(a)["history"][0]["forget_ids"] == sidecar(b)["history"][0]["forget_ids"]


def test_other_seed_other_forget_set(random_runs):
    ids_a = sidecar(random_runs["a"])["history"][0]["forget_ids"]
    ids_c = sidecar(random_runs["c"])["history"][0]["forget_ids"]
    assert len(ids_a) == len(ids_c) == round(0.1 * 1438)
    assert set(ids_a) != set(ids_c)
    assert sha256(pair(random_runs["a"])[0]) != sha256(pair(random_runs["c"])[0])


# --- errors: one line on stderr, exit status 2 ----------------------------------------------------
def test_missing_checkpoint(capsys, workdir):
    missing = workdir / "[draft]" / "missing"  # brackets must reach the user as typed
    line = fails(capsys, "forget", "-c", str(missing), "-f", "class:3", "--out", str(workdir / "never"), *QUIET)
    assert f"{missing}.json not found" in line
    assert "--out" in line
    assert not pair(workdir / "never")[1].exists()


def test_corrupt_sidecar(capsys, workdir, original):
    path = copy_pair(original[0], workdir / "corrupt")
    pair(path)[1].write_text("{ this is not json")
    line = fails(capsys, "evaluate", "-c", str(path), "-f", "class:3", *CPU)
    assert "not valid JSON" in line and "corrupt.json" in line


def test_swapped_weights(capsys, workdir, original, forgotten):
    path = copy_pair(original[0], workdir / "swapped")
    shutil.copyfile(pair(forgotten["retrain"][0])[0], pair(path)[0])
    line = fails(capsys, "evaluate", "-c", str(path), "-f", "class:3", *CPU)
    assert "swapped.safetensors does not match swapped.json" in line
    assert "sha256" in line


def test_unknown_method(capsys, workdir, original):
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", "class:3", "--method", "nope",
                 "--out", str(workdir / "never"), *QUIET)
    assert "unknown method 'nope'" in line
    assert "finetune" in line and "retrain" in line
    assert not pair(workdir / "never")[0].exists()


def test_unknown_method_in_compare(capsys):
    line = fails(capsys, "compare", "--methods", "finetune,nope", *QUIET)
    assert "unknown method(s) ['nope']" in line


def test_unknown_param(capsys, workdir, original):
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", "class:3", "--method", "finetune",
                 "--param", "bogus=1", "--out", str(workdir / "never"), *QUIET)
    assert "no parameter(s) ['bogus']" in line
    assert "epochs" in line  # lists the parameters it does have


def test_param_without_equals(capsys, workdir, original):
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", "class:3", "--param", "epochs",
                 "--out", str(workdir / "never"), *QUIET)
    assert "'epochs' needs KEY=VALUE" in line


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("random:0", "strictly between 0 and 1"),
        ("random:1.5", "strictly between 0 and 1"),
        ("random:lots", "is not a number"),
        ("class:99", "class(es) [99] do not exist"),
        ("", "lacks a kind"),
        ("class:", "has nothing after ':'"),
        ("colour:3", "unknown forget kind 'colour'"),
        ("class:0,1,2,3,4,5,6,7,8,9", "selects all 1438 training samples"),
    ],
)
def test_bad_forget_spec(capsys, workdir, original, spec, expected):
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", spec, "--out", str(workdir / "never"), *QUIET)
    assert expected in line
    assert not pair(workdir / "never")[1].exists()


def test_forget_test_split_ids(capsys, workdir, original, digits):
    test_ids = [int(i) for i in digits.test.ids[:3]]
    spec = "ids:" + ",".join(map(str, test_ids))
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", spec, "--out", str(workdir / "never"), *QUIET)
    assert "3 ids not in the training set" in line
    assert str(test_ids[0]) in line and "test-split" in line


def test_evaluate_bad_spec(capsys, original):
    line = fails(capsys, "evaluate", "-c", str(original[0]), "-f", "random:0", *CPU)
    assert "strictly between 0 and 1" in line


def test_train_refuses_to_overwrite(capsys, original):
    out = original[0]
    before = pair_digests(out)
    line = fails(capsys, "train", "--epochs", "1", "--out", str(out), *QUIET)
    assert "already exists" in line and "--force" in line
    assert pair_digests(out) == before


def test_forget_refuses_to_overwrite(capsys, original, random_runs):
    out = random_runs["c"]
    before = pair_digests(out)
    line = fails(capsys, "forget", "-c", str(original[0]), "-f", "class:3", "--out", str(out), *QUIET)
    assert f"{out}.json already exists" in line and "--force" in line
    assert pair_digests(out) == before


def test_compare_save_refuses_an_existing_file(capsys, tmp_path, original):
    """`compare --save` onto an existing checkpoint's sidecar is refused before any training, leaving it as it was;
    with --force the file is replaced by the result, whole."""
    target = tmp_path / "x.json"
    shutil.copyfile(pair(original[0])[1], target)
    before = sha256(target)
    args = ("compare", "--methods", "finetune", "--forget", "class:3", "--epochs", "1", "--train-size", "300",
            "--save", str(target), *QUIET)
    line = fails(capsys, *args)
    assert f"{target} already exists; choose another path or pass --force to replace it" in line
    assert sha256(target) == before
    data = invoke_json(*args, "--force")
    assert json.loads(target.read_text()) == data and data["forget"] == "class:3"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left


def test_evaluate_per_sample_refuses_an_existing_file(capsys, tmp_path, original):
    per_sample = tmp_path / "ps.json"
    per_sample.write_text("keep me\n")
    args = ("evaluate", "-c", str(original[0]), "-f", "class:3", "--per-sample", str(per_sample), *CPU)
    line = fails(capsys, *args)
    assert f"{per_sample} already exists; choose another path or pass --force to replace it" in line
    assert per_sample.read_text() == "keep me\n"
    invoke_ok(*args, "--force")
    assert {"forget_ids", "forget_loss"} <= set(json.loads(per_sample.read_text()))


def test_force_replaces(workdir, original, forgotten):
    out = copy_pair(forgotten["finetune"][0], workdir / "replaced")
    before = pair_digests(out)
    invoke_json("forget", "-c", str(original[0]), "-f", "class:5", "--method", "gradient-ascent",
                "--param", "epochs=2", "--out", str(out), "--force", *QUIET)
    after = pair_digests(out)
    assert after[0] != before[0] and after[1] != before[1]
    entry = sidecar(out)["history"][0]
    assert entry["method"] == "gradient-ascent" and entry["forget_spec"] == "class:5"
    assert entry["config"]["epochs"] == 2


def test_nan_loss(capsys, workdir):
    out = workdir / "diverged"
    line = fails(capsys, "train", "--lr", "1e30", "--epochs", "1", "--out", str(out), *QUIET)
    assert "loss became nan" in line
    assert "learning rate" in line and "--lr" in line
    assert not any(p.exists() for p in pair(out))
    assert not list(workdir.glob("diverged*"))  # no temporary files either


def test_mnist_needs_data_dir(capsys, workdir):
    line = fails(capsys, "train", "--dataset", "mnist", "--out", str(workdir / "mnist"), *QUIET)
    assert "'mnist' needs --data-dir" in line
    assert "train-images-idx3-ubyte.gz" in line


def test_missing_data_dir(capsys, workdir):
    line = fails(capsys, "train", "--dataset", "mnist", "--data-dir", str(workdir / "nowhere"),
                 "--out", str(workdir / "mnist"), *QUIET)
    assert "does not exist" in line and "--data-dir" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(capsys, workdir):
    out = workdir / "cuda"
    line = fails(capsys, "train", "--epochs", "1", "--device", "cuda", "--no-progress", "--out", str(out))
    assert "CUDA is not available" in line and "--device cpu" in line
    assert not any(p.exists() for p in pair(out))


def test_main_success_exits_zero(capsys):
    code, out, _ = run_main(capsys, "methods", "--json")
    assert code == 0
    assert {row["name"] for row in json.loads(out)} == set(METHODS)


# --- the real console script ----------------------------------------------------------------------
def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("unlearn")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "unlearnkit.cli"]


@pytest.fixture(scope="module")
def subprocess_runs(workdir) -> dict[str, subprocess.CompletedProcess]:
    """Three real runs, started together: an error, the same error with --debug, and a success."""
    missing = str(workdir / "no-such-checkpoint")
    commands = {
        "error": ["forget", "-c", missing, "-f", "class:3", "--out", str(workdir / "never"), "--json"],
        "debug": ["--debug", "forget", "-c", missing, "-f", "class:3", "--out", str(workdir / "never"), "--json"],
        "ok": ["methods", "--json"],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["OMP_NUM_THREADS"] = "1"
    procs = {
        name: subprocess.Popen([*_entry_point(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
        for name, args in commands.items()
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_entry_point_error_is_one_line(subprocess_runs):
    run = subprocess_runs["error"]
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: checkpoint sidecar") and "not found" in lines[0]
    assert "Traceback" not in run.stderr


def test_entry_point_debug_shows_traceback(subprocess_runs):
    run = subprocess_runs["debug"]
    assert run.returncode not in (0, 2)
    assert "Traceback (most recent call last)" in run.stderr
    assert "CheckpointError" in run.stderr and "not found" in run.stderr


def test_entry_point_success(subprocess_runs):
    run = subprocess_runs["ok"]
    assert run.returncode == 0, run.stderr
    assert {row["name"] for row in json.loads(run.stdout)} == set(METHODS)
