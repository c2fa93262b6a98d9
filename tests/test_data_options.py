"""Data options (``DataSource.options``, ``load_dataset(data_options=...)``, ``--data-option KEY=VALUE``).

The base sources declare no options (the biased sources do: tests/test_biased_data.py), so these tests use
``shifted-digits`` (tests/conftest.py): digits rolled
``shift`` pixels right, with seeded noise, an optional flip and a pad mode, registered only for this module. They
check validation and coercion, that a checkpoint rebuilds exactly the data it was trained on from its sidecar
(through ``forget``, ``evaluate`` and ``neurips``), and that other options give other data everywhere data is
identified (fingerprints, the reference-model cache).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_data_options.py -q
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import SOURCES, DataOption, DataSource, check_data_options, load_dataset
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.runs import load_with_data

CPU = ("--device", "cpu")
QUIET = (*CPU, "--no-progress")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def source(shifted_digits_source):
    return shifted_digits_source


def invoke_json(*args: str):
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"unlearn {' '.join(args)} exited {result.exit_code}: {result.output}"
    return json.loads(result.stdout)


def fails(capsys, *args: str) -> str:
    """The one error line of a failing command, which must be all it writes on stderr."""
    return cli_fails(capsys, *args, sole=True)


def sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


# --- declarations and coercion --------------------------------------------------------------------
SHIFT = DataOption("shift", int, 0, "pixels", low=0, high=7)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        (SHIFT, "3", 3), (SHIFT, " 7 ", 7), (SHIFT, 0, 0),
        (DataOption("noise", float, 0.0, "std", low=0.0, high=1.0), "0.25", 0.25),
        (DataOption("noise", float, 0.0, "std", low=0.0, high=1.0), 1, 1.0),  # TOML `noise = 1`
        (DataOption("flip", bool, False, "mirror"), "true", True), (DataOption("flip", bool, False, "m"), "0", False),
        (DataOption("flip", bool, False, "mirror"), "Yes", True), (DataOption("flip", bool, True, "m"), False, False),
        (DataOption("pad", str, "wrap", "mode", choices=("wrap", "zero")), "zero", "zero"),
        (DataOption("name", str, "", "free text"), "any text", "any text"),
    ],
)
def test_coerce_turns_strings_and_values_into_the_declared_type(option, value, expected):
    got = option.coerce(value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [
        (SHIFT, "8", r"an integer in \[0, 7\]"), (SHIFT, "-1", r"an integer in \[0, 7\]"),
        (SHIFT, "1.5", "an integer"), (SHIFT, True, "an integer"), (SHIFT, 2.0, "an integer"),
        (DataOption("noise", float, 0.0, "std", low=0.0), "nan", "a number >= 0"),
        (DataOption("noise", float, 0.0, "std"), "inf", "a number$"),
        (DataOption("noise", float, 0.0, "std", high=1.0), "1.5", "a number <= 1"),
        (DataOption("flip", bool, False, "mirror"), "maybe", "true or false"),
        (DataOption("flip", bool, False, "mirror"), 1, "true or false"),
        (DataOption("pad", str, "wrap", "mode", choices=("wrap", "zero")), "mirror", "one of: wrap, zero"),
        (DataOption("pad", str, "wrap", "mode"), 3, "a string"),
    ],
)
def test_coerce_refuses_bad_values_naming_key_value_and_what_is_valid(option, value, valid):
    with pytest.raises(ConfigError, match=rf"^{option.name}={re.escape(repr(value))} is invalid; "
                                          rf"{option.name} must be .*{valid}"):
        option.coerce(value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"type": list, "default": []}, "type must be one of int, float, str, bool"),
        ({"type": int, "default": 0, "choices": ("a",)}, "choices apply to str options"),
        ({"type": str, "default": "a", "low": 0}, "low/high apply to int and float options"),
        ({"type": int, "default": 9, "low": 0, "high": 7}, r"bad default \(x=9 is invalid"),
    ],
)
def test_bad_declarations_are_programming_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataOption("x", help="h", **kwargs)


def test_a_source_declares_each_option_once():
    with pytest.raises(ValueError, match="declares an option twice"):
        DataSource("twice", "", lambda: None, options=(SHIFT, SHIFT))


def test_base_sources_take_no_options_and_keep_their_options_and_fingerprints():
    assert all(SOURCES[name].options == () for name in ("digits", "fashion-mnist", "mnist", "cifar10", "tabular"))
    assert check_data_options("digits", None) == {} == check_data_options("digits", {})
    bundle = load_dataset("digits")
    assert bundle.options == {"test_fraction": 0.2}  # no data_options key: old sidecars and bench keys unchanged
    train = bundle.train  # the fingerprint of a source without options is the one it always had
    order = torch.argsort(train.ids)
    h = hashlib.sha256()
    for part in (train.ids[order].numpy().tobytes(), str(tuple(train.x.shape)).encode(), b"10",
                 train.y[order].numpy().tobytes()):
        h.update(part)
    assert train.fingerprint() == h.hexdigest()


def test_check_data_options_fills_defaults_and_names_valid_keys(source):
    assert check_data_options(source, {"shift": "2"}) == {"shift": 2, "noise": 0.0, "flip": False, "pad": "wrap"}
    with pytest.raises(ConfigError, match=r"^dataset 'shifted-digits' has no --data-option 'nope'; valid keys: "
                                          r"shift, noise, flip, pad$"):
        check_data_options(source, {"nope": "1"})
    with pytest.raises(ConfigError, match=r"^dataset 'tabular' takes no --data-option \(got 'nope'\); it has no "
                                          r"options$"):
        check_data_options("tabular", {"nope": 1})
    with pytest.raises(ConfigError, match=r"^dataset 'digits' has no --data-option 'nope'; valid keys: poison, "
                                          r"poison_rate, poison_target, poison_size, poison_classes$"):
        load_dataset("digits", data_options={"nope": 1})  # an image source: only the poison keys
    with pytest.raises(ConfigError, match=r"^dataset 'shifted-digits': --data-option shift='9' is invalid; shift "
                                          r"must be an integer in \[0, 7\]$"):
        load_dataset(source, data_options={"shift": "9"})


# --- load_dataset: recorded, rebuilt, distinct ----------------------------------------------------
def test_options_are_recorded_and_rebuild_the_same_data(source):
    bundle = load_dataset(source, data_options={"shift": "2", "noise": "0.1"}, train_size=300, subjects=7)
    assert bundle.options == {"test_fraction": 0.2, "subjects": 7, "train_size": 300,
                              "data_options": {"shift": 2, "noise": 0.1, "flip": False, "pad": "wrap"}}
    again = load_dataset(**{"name": source, **json.loads(json.dumps(bundle.options))})  # as a sidecar stores them
    for a, b in ((bundle.train, again.train), (bundle.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.ids, b.ids) and torch.equal(a.subjects, b.subjects)
        assert a.fingerprint() == b.fingerprint()
    assert again.options == bundle.options


def test_options_reach_the_loader(source, digits):
    plain = load_dataset(source)
    assert torch.equal(plain.train.x, digits.train.x)  # the defaults change nothing
    shifted = load_dataset(source, data_options={"shift": "3"})
    assert torch.equal(shifted.train.x, torch.roll(digits.train.x, 3, dims=-1))
    zero = load_dataset(source, data_options={"shift": "3", "pad": "zero"})
    assert torch.equal(zero.train.x[..., 3:], digits.train.x[..., :5]) and not zero.train.x[..., :3].any()
    flipped = load_dataset(source, data_options={"flip": "true"})
    assert torch.equal(flipped.test.x, digits.test.x.flip(-2))
    noisy = load_dataset(source, data_options={"noise": "0.5"})
    assert 0.4 < float((noisy.train.x - digits.train.x).std()) < 0.6


def test_other_options_give_other_data_and_other_fingerprints(source, digits):
    bundles = [load_dataset(source, data_options=o) for o in ({}, {"shift": "1"}, {"shift": "2"}, {"noise": "0.1"})]
    prints = {b.train.fingerprint() for b in bundles} | {digits.train.fingerprint()}
    assert len(prints) == 5  # ids and labels are the same everywhere: the options tell the data apart
    assert all(not torch.equal(a.train.x, b.train.x) for a, b in zip(bundles[1:], bundles[2:], strict=False))
    # subsets keep the origin: a retain set of shifted data never matches the same retain set of other data
    a, b = bundles[1].train.without([0, 1]), bundles[2].train.without([0, 1])
    assert a.fingerprint() != b.fingerprint()
    assert load_dataset(source, data_options={"shift": 0}).train.fingerprint() == bundles[0].train.fingerprint()


# --- the command line -----------------------------------------------------------------------------
def test_datasets_json_and_table_list_the_options(source):
    rows = {r["name"]: r for r in invoke_json("datasets")}
    assert rows["tabular"]["options"] == []
    poison = ["poison", "poison_rate", "poison_target", "poison_size", "poison_classes"]
    assert [o["name"] for o in rows["digits"]["options"]] == poison == [o["name"] for o in rows["mnist"]["options"]]
    options = {o["name"]: o for o in rows[source]["options"]}
    assert list(options) == ["shift", "noise", "flip", "pad"]
    assert options["shift"] == {"name": "shift", "type": "int", "default": 0, "help": "pixels to move every image "
                                "right", "valid": "an integer in [0, 7]"}
    assert options["pad"]["valid"] == "one of: wrap, zero" and options["flip"]["type"] == "bool"
    table = runner.invoke(app, ["datasets"], terminal_width=200)
    assert table.exit_code == 0 and "--data-option" in table.stdout
    text = ANSI.sub("", table.stdout)
    assert all(f"{default} (" in text for default in ("shift=0", "noise=0.0", "flip=false", "pad=wrap"))


def test_train_refuses_an_unknown_key_for_digits(capsys, tmp_path):
    line = fails(capsys, "train", "--dataset", "digits", "--data-option", "nope=1", "--out", str(tmp_path / "m"),
                 *QUIET)
    assert line == ("error: dataset 'digits' has no --data-option 'nope'; valid keys: poison, poison_rate, "
                    "poison_target, poison_size, poison_classes")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("foo", r"--data-option 'foo' needs KEY=VALUE, e.g. --data-option shift=2"),
        ("=3", r"--data-option '=3' needs KEY=VALUE"),
        ("nope=1", r"dataset 'shifted-digits' has no --data-option 'nope'; valid keys: shift, noise, flip, pad"),
        ("shift=9", r"dataset 'shifted-digits': --data-option shift='9' is invalid; shift must be an integer in "
                    r"\[0, 7\]"),
        ("pad=mirror", r"pad='mirror' is invalid; pad must be one of: wrap, zero"),
    ],
)
def test_train_refuses_bad_data_options(capsys, tmp_path, source, item, message):
    line = fails(capsys, "train", "--dataset", source, "--data-option", item, "--out", str(tmp_path / "m"), *QUIET)
    assert re.search(message, line), line


def test_a_key_given_twice_is_refused(capsys, tmp_path, source):
    line = fails(capsys, "train", "--dataset", source, "--data-option", "shift=1", "--data-option", "shift=2",
                 "--out", str(tmp_path / "m"), *QUIET)
    assert "--data-option shift is given twice ('1' and '2')" in line


def test_compare_takes_data_options(capsys, source):
    data = invoke_json("compare", "--dataset", source, "--data-option", "shift=1", "--data-option", "flip=yes",
                       "--methods", "finetune", "--forget", "class:3", "--train-size", "300", "--epochs", "2",
                       *QUIET)
    assert data["dataset"] == source and data["n_forget"] + data["n_retain"] == 300
    line = fails(capsys, "compare", "--data-option", "shift=1", *QUIET)  # digits, the default: the poison keys only
    assert "dataset 'digits' has no --data-option 'shift'; valid keys: poison," in line


@pytest.fixture(scope="module")
def trained(tmp_path_factory, source) -> dict[str, Path]:
    """Checkpoints on shifted digits with shift 2 and shift 3 (else equal), plus train size and subjects."""
    root = tmp_path_factory.mktemp("data-options")
    runs = {}
    for shift in (2, 3):
        out = root / f"shift{shift}"
        summary = invoke_json("train", "--dataset", source, "--data-option", f"shift={shift}", "--data-option",
                              "noise=0.05", "--train-size", "400", "--subjects", "20", "--epochs", "3",
                              "--out", str(out), *QUIET)
        assert summary["data_options"] == {"shift": shift, "noise": 0.05, "flip": False, "pad": "wrap"}
        runs[shift] = out
    return runs


def test_sidecar_stores_the_options_and_they_rebuild_the_data(trained, source):
    data = sidecar(trained[2])["data"]
    assert data["source"] == source
    assert data["options"] == {"test_fraction": 0.2, "subjects": 20, "train_size": 400,
                               "data_options": {"shift": 2, "noise": 0.05, "flip": False, "pad": "wrap"}}
    direct = load_dataset(source, data_options={"shift": 2, "noise": 0.05}, train_size=400, subjects=20)
    ckpt, bundle = load_with_data(trained[2], device="cpu")
    assert bundle.train.fingerprint() == direct.train.fingerprint() == data["fingerprint"]
    assert torch.equal(bundle.train.x, direct.train.x) and torch.equal(bundle.train.subjects, direct.train.subjects)
    other = sidecar(trained[3])["data"]
    assert other["fingerprint"] != data["fingerprint"]  # same ids, labels and subjects; other pixels


def test_forget_and_evaluate_rebuild_the_data_from_the_checkpoint(trained, tmp_path, source):
    out = tmp_path / "forgot"
    summary = invoke_json("forget", "-c", str(trained[2]), "-f", "subjects:3,5", "--method", "finetune",
                          "--out", str(out), *QUIET)
    direct = load_dataset(source, data_options={"shift": 2, "noise": 0.05}, train_size=400, subjects=20)
    owned = int(torch.isin(direct.train.subjects, torch.tensor([3, 5])).sum())
    assert summary["n_forget"] == owned and summary["n_forget"] + summary["n_retain"] == 400
    assert sidecar(out)["data"] == sidecar(trained[2])["data"]  # the child keeps the data options
    report = invoke_json("evaluate", "-c", str(out), "-f", "subjects:3,5", *CPU)
    model, _ = load_with_data(out, device="cpu")
    from unlearnkit.train import accuracy_on

    forget = direct.train.subset(torch.isin(direct.train.subjects, torch.tensor([3, 5])))
    assert report["forget_accuracy"] == pytest.approx(accuracy_on(model.model, forget), abs=1e-6)
    assert report["test_accuracy"] == pytest.approx(accuracy_on(model.model, direct.test), abs=1e-6)


def test_a_sidecar_with_other_options_no_longer_matches_its_fingerprint(trained, tmp_path):
    import shutil

    copy = tmp_path / "edited"
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(trained[2].with_name(trained[2].name + suffix), copy.with_name(copy.name + suffix))
    meta = sidecar(copy)
    meta["data"]["options"]["data_options"]["shift"] = 3
    copy.with_name(copy.name + ".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="fingerprint mismatch"):
        load_with_data(copy, device="cpu")


def test_a_checkpoint_reference_trained_on_other_options_is_refused(trained, capsys):
    line = fails(capsys, "evaluate", "-c", str(trained[2]), "-f", "subjects:3", "--reference", str(trained[3]),
                 *CPU)
    assert "was trained on different data" in line


def test_neurips_checks_data_options_against_the_checkpoint(trained, capsys, tmp_path, monkeypatch, source):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    line = fails(capsys, "neurips", "-c", str(trained[2]), "-f", "subjects:3", "--method", "finetune",
                 "--data-option", "shift=3", *QUIET)
    assert re.search(r"--data-option shift=3 differs from the data .*shift2 was trained on \(shift=2\); a "
                     r"checkpoint's data options come from its sidecar", line), line
    line = fails(capsys, "neurips", "-c", str(trained[2]), "-f", "subjects:3", "--method", "finetune",
                 "--data-option", "nope=1", *QUIET)
    assert "has no --data-option 'nope'; valid keys: shift, noise, flip, pad" in line
    references = tmp_path / "cache" / "references"
    for n, shift in enumerate((2, 3), start=1):  # the same ids and labels: the options keep the caches apart
        extra = ("--data-option", "shift=2", "--data-option", "noise=0.05") if shift == 2 else ()
        data = invoke_json("neurips", "-c", str(trained[shift]), "-f", "subjects:3", "--method", "finetune",
                           "--models", "2", "--no-calibration", *extra, *QUIET)
        assert data["models"] == 2
        assert len(list(references.glob("*.json"))) == 2 * n


def test_load_with_data_option_check_accepts_the_stored_values(trained):
    ckpt, bundle = load_with_data(trained[3], device="cpu", data_options={"shift": "3", "pad": "wrap"})
    assert bundle.options["data_options"]["shift"] == 3
    with pytest.raises(ConfigError, match=r"flip=True differs .* \(flip=False\)"):
        load_with_data(trained[3], device="cpu", data_options={"flip": "on"})
