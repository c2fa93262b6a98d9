"""Tests for attribute removal on the command line: ``unlearn debias``, ``unlearn evaluate --attribute`` and
``unlearn compare --attribute``, on the embedded colored-digits data (digits coloured by class with probability
0.99 in training, uniformly at random in the test split).

One small original (3 epochs) is trained per module and debiased with dfr, leace and retrain-balanced; the bad
inputs go through the console entry point (``cli_fails``: exit status 2, one ``error:`` line).

Run: .venv/bin/python -m pytest tests/test_debias_cli.py -q
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails as fails
from unlearnkit.cli import app
from unlearnkit.data import load_dataset
from unlearnkit.evaluation import BIAS_KEYS
from unlearnkit.models import load_checkpoint
from unlearnkit.models.architectures import ErasedLinear
from unlearnkit.train import predict_logits

CPU = ("--device", "cpu")
QUIET = (*CPU, "--no-progress")
DATA = "colored-digits"
runner = CliRunner()


def invoke_json(*args: str):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"unlearn {' '.join(args)} exited {result.exit_code}: {result.exception!r}\n" \
                                  f"{result.output}"
    return json.loads(result.stdout)


def pair(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def digests(path: Path) -> tuple[str, ...]:
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in pair(path))


def sidecar(path: Path) -> dict:
    return json.loads(pair(path)[1].read_text())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: intra-op threads only add overhead on the shared 2-core machine. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("debias")


@pytest.fixture(scope="module")
def original(workdir) -> Path:
    out = workdir / "original"
    invoke_json("train", "--dataset", DATA, "--epochs", "3", "--out", str(out), *QUIET)
    return out


@pytest.fixture(scope="module")
def debiased(workdir, original) -> dict:
    """The original debiased by dfr, leace and retrain-balanced: method -> (path, --json summary), plus the
    original's file digests taken before."""
    before = digests(original)
    runs = {}
    for method in ("dfr", "leace", "retrain-balanced"):
        out = workdir / method
        runs[method] = (out, invoke_json("debias", "-c", str(original), "--attribute", "color", "--method", method,
                                         "--out", str(out), *QUIET))
    return {"runs": runs, "original_digests": before}


# --- debias -----------------------------------------------------------------------------------------------------
def test_debias_json_and_saved_checkpoints(debiased, original):
    train = load_dataset(DATA).train
    for method, (out, summary) in debiased["runs"].items():
        assert {"method", "config", "seconds", "notes", "checkpoint", "attribute"} <= set(summary)
        assert (summary["method"], summary["attribute"], summary["checkpoint"]) == (method, "color", str(out))
        assert summary["seconds"] > 0 and isinstance(summary["notes"], list)
        ckpt = load_checkpoint(out)  # loads again: weights and sidecar agree, the architecture rebuilds
        erased = isinstance(ckpt.model.classifier, ErasedLinear)
        assert erased == (method == "leace"), method
        assert ckpt.model_kwargs.get("erased", False) is erased
        (entry,) = ckpt.history
        assert entry["attribute"] == "color" and entry["method"] == method and entry["parent"] == str(original)
        assert entry["n_train"] == summary["n_train"] == len(train)
        assert entry["config"] == summary["config"] and "forget_ids" not in entry


def test_the_saved_model_is_the_one_that_ran(debiased):
    """Reloaded, each checkpoint predicts what the command reported: its test accuracy (the eraser included)."""
    test = load_dataset(DATA).test
    for out, summary in debiased["runs"].values():
        logits = predict_logits(load_checkpoint(out).model, test, device="cpu")
        accuracy = float((logits.argmax(1) == test.y).double().mean())
        assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_the_input_checkpoint_is_untouched(debiased, original):
    assert digests(original) == debiased["original_digests"]
    assert sidecar(original)["history"] == []


def test_debias_keeps_the_history_and_leaves_forgotten_samples_out(workdir, original):
    forgot = workdir / "forgot"
    done = invoke_json("forget", "-c", str(original), "-f", "random:0.05", "--method", "finetune",
                       "--param", "epochs=1", "--out", str(forgot), *QUIET)
    out = workdir / "forgot-balanced"
    summary = invoke_json("debias", "-c", str(forgot), "--attribute", "color", "--method", "retrain-balanced",
                          "--out", str(out), *QUIET)
    history = sidecar(out)["history"]
    assert [h.get("forget_spec") for h in history] == ["random:0.05", None]
    assert history[0] == sidecar(forgot)["history"][0]
    # retrain-balanced trains on the checkpoint's training set as it is now: the forgotten samples stay out
    assert history[1]["n_train"] == summary["n_train"] == len(load_dataset(DATA).train) - done["n_forget"]


def test_an_erased_model_keeps_its_eraser_through_another_method(workdir, debiased):
    """dfr refits the output layer of a leace model in place: the eraser stays, and so does erased=true."""
    out = workdir / "leace-dfr"
    invoke_json("debias", "-c", str(debiased["runs"]["leace"][0]), "--attribute", "color", "--method", "dfr",
                "--out", str(out), *QUIET)
    ckpt = load_checkpoint(out)
    assert isinstance(ckpt.model.classifier, ErasedLinear) and ckpt.model_kwargs["erased"] is True
    assert [h["method"] for h in ckpt.history] == ["leace", "dfr"]


def test_debias_refuses_to_overwrite_before_any_work(capsys, workdir, debiased):
    out = debiased["runs"]["dfr"][0]
    before = digests(out)
    # the checkpoint does not exist: the overwrite refusal comes first, before anything loads
    line = fails(capsys, "debias", "-c", str(workdir / "missing"), "--attribute", "color", "--method", "dfr",
                 "--out", str(out), *QUIET)
    assert f"{pair(out)[1]} already exists; choose another --out or pass --force" in line
    assert digests(out) == before


# --- evaluate --attribute ---------------------------------------------------------------------------------------
def test_evaluate_attribute_json_with_reference(debiased):
    leace, balanced = debiased["runs"]["leace"][0], debiased["runs"]["retrain-balanced"][0]
    data = invoke_json("evaluate", "-c", str(leace), "--attribute", "color", "--reference", str(balanced), *CPU)
    assert set(data) == {"attribute", "bias", "reference", "gap"} and data["attribute"] == "color"
    assert set(data["bias"]) == set(data["reference"]) == set(BIAS_KEYS)
    assert set(data["gap"]) == set(BIAS_KEYS) - {"leakage_chance"}
    for key, gap in data["gap"].items():
        if gap is None:
            assert data["bias"][key] is None or data["reference"][key] is None
        else:
            assert gap == pytest.approx(abs(data["bias"][key] - data["reference"][key]), abs=2e-6), key
    # the unbiased accuracy is the plain test accuracy, measured here from the saved model
    test = load_dataset(DATA).test
    logits = predict_logits(load_checkpoint(leace).model, test, device="cpu")
    assert data["bias"]["unbiased_accuracy"] == pytest.approx(float((logits.argmax(1) == test.y).double().mean()),
                                                              abs=1e-6)


def test_evaluate_forget_and_attribute_together_prints_both_tables(debiased):
    result = runner.invoke(app, ["evaluate", "-c", str(debiased["runs"]["dfr"][0]), "-f", "class:3",
                                 "--attribute", "color", *CPU])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "forget class:3" in out and "forget_accuracy" in out  # the sample-forgetting table
    assert "attribute color" in out and all(key in out for key in BIAS_KEYS)  # the bias table


# --- compare --attribute ----------------------------------------------------------------------------------------
def test_compare_attribute_json():
    data = invoke_json("compare", "--dataset", DATA, "--attribute", "color", "--methods", "dfr,leace",
                       "--epochs", "2", *QUIET)
    assert (data["dataset"], data["attribute"], data["reference"]) == (DATA, "color", "retrain-balanced")
    assert list(data["methods"]) == ["retrain-balanced", "dfr", "leace"]  # the reference first
    assert set(data["original"]["bias"]) == set(BIAS_KEYS) and data["train_config"]["epochs"] == 2
    reference_seconds = data["methods"]["retrain-balanced"]["seconds"]
    for name, row in data["methods"].items():
        assert set(row["bias"]) == set(BIAS_KEYS), name
        assert row["seconds"] > 0
        # both seconds are rounded to 4 decimals, the speedup to 3
        assert row["speedup"] == pytest.approx(reference_seconds / row["seconds"], rel=1e-2, abs=1e-3), name
    assert data["methods"]["retrain-balanced"]["speedup"] == 1.0
    assert all(v in (0.0, None) for v in data["methods"]["retrain-balanced"]["gap"].values())


# --- bad input: one line, exit status 2, nothing written ---------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (("--attribute", "colour", "--method", "dfr"), "the data has no attribute 'colour' (its attributes: color)"),
    (("--attribute", "color", "--method", "finetune"), "finetune removes samples, not an attribute; use unlearn "
                                                       "forget"),
    (("--attribute", "color", "--method", "nope"), "unknown method 'nope'"),
    (("--attribute", "color", "--method", "dfr", "--param", "bogus=1"), "no parameter(s) ['bogus']"),
])
def test_debias_bad_input(capsys, workdir, original, args, message):
    out = workdir / "never"
    line = fails(capsys, "debias", "-c", str(original), *args, "--out", str(out), *QUIET)
    assert message in line
    assert not any(p.exists() for p in pair(out))


def test_leace_twice_is_refused(capsys, workdir, debiased):
    out = workdir / "never"
    line = fails(capsys, "debias", "-c", str(debiased["runs"]["leace"][0]), "--attribute", "color", "--method",
                 "leace", "--out", str(out), *QUIET)
    assert "already has a concept eraser" in line
    assert not any(p.exists() for p in pair(out))


def test_forget_refuses_an_attribute_method(capsys, workdir, original):
    out = workdir / "never"
    line = fails(capsys, "forget", "-c", str(original), "-f", "class:3", "--method", "dfr", "--out", str(out),
                 *QUIET)
    assert "dfr removes an attribute, not samples; use unlearn debias --attribute NAME" in line
    assert not any(p.exists() for p in pair(out))


@pytest.mark.parametrize(("args", "message"), [
    (("--forget", "class:3", "--methods", "dfr"), "dfr removes an attribute, not samples; compare it with "
                                                   "--attribute"),
    (("--attribute", "color", "--methods", "finetune"), "finetune removes samples, not an attribute; compare it "
                                                        "with --forget"),
    (("--attribute", "color", "--forget", "class:3"), "compare takes --forget SPEC (methods that remove samples) "
                                                      "or --attribute NAME"),
    (("--attribute", "colour", "--methods", "dfr"), "the data has no attribute 'colour' (its attributes: color)"),
])
def test_compare_bad_input(capsys, args, message):
    line = fails(capsys, "compare", "--dataset", DATA, *args, *QUIET)
    assert message in line


def test_compare_attribute_on_data_without_attributes(capsys):
    line = fails(capsys, "compare", "--dataset", "digits", "--attribute", "color", "--methods", "dfr", *QUIET)
    assert "the data has no attribute 'color' (its attributes: none)" in line


@pytest.mark.parametrize(("args", "message"), [
    ((), "evaluate needs --forget SPEC"),
    (("--attribute", "colour"), "the data has no attribute 'colour' (its attributes: color)"),
    (("--attribute", "color", "--original", "x"), "--original and --relearn measure sample forgetting; add --forget"),
    (("--attribute", "color", "--per-sample", "x.json"), "--per-sample writes per-sample forgetting values; add "
                                                         "--forget"),
])
def test_evaluate_bad_input(capsys, original, args, message):
    line = fails(capsys, "evaluate", "-c", str(original), *args, *CPU)
    assert message in line


def test_debias_help_lists_its_options():
    result = runner.invoke(app, ["debias", "--help"])
    assert result.exit_code == 0
    for option in ("--checkpoint", "--attribute", "--method", "--out", "--param", "--seed", "--device", "--force",
                   "--json", "--progress"):
        assert option in result.stdout, option
