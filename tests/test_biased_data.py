"""Tests for the derived sources with a bias attribute (unlearnkit.data.biased): colored-digits,
colored-fashion-mnist and biased-tabular.

They check determinism (same options, same data bit for bit; another seed or rho, other data), that the measured
share of bias-aligned samples matches rho in train and val and the unbiased rate in test (binomial tolerances),
the attributes, ids and shapes, the option validation messages, that the default models train on the data, and the
``datasets`` / ``train`` commands. colored-fashion-mnist runs on a small synthetic IDX directory in the fast path;
the ``fashion`` tests read the real files (skipped when they are not installed).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_biased_data.py -q
"""

from __future__ import annotations

import gzip
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import cli_fails
from unlearnkit.cli import app
from unlearnkit.data import SOURCES, DataOption, DataSpec, IndexedDataset, get_source, load_dataset, select
from unlearnkit.data.biased import COLORS, TABULAR_FEATURES, draw_colors
from unlearnkit.data.sources import digits_images
from unlearnkit.errors import ConfigError
from unlearnkit.models import build_model
from unlearnkit.runs import load_with_data
from unlearnkit.train import TrainConfig, accuracy_on, fit

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NEW_SOURCES = ("colored-digits", "colored-fashion-mnist", "biased-tabular")
ATTRIBUTE = {"colored-digits": "color", "colored-fashion-mnist": "color", "biased-tabular": "sensitive"}
CPU = ("--device", "cpu", "--no-progress")
runner = CliRunner()


def splits(bundle):
    return {"train": bundle.train, "val": bundle.val, "test": bundle.test}


def aligned_share(split, attribute: str) -> float:
    """Share of samples whose attribute equals their label: the class colour, or sensitive == label."""
    return float((split.attributes[attribute] == split.y).double().mean())


def binomial_tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    """``sigmas`` standard deviations of a share of ``n`` Bernoulli(p) draws: false alarms about 1 in 16,000."""
    return sigmas * math.sqrt(p * (1 - p) / n)


def write_fashion_like(directory: Path, n_train: int = 200, n_test: int = 50) -> None:
    """A tiny MNIST-style IDX directory (random pixels, balanced labels), for colored-fashion-mnist's fast path."""
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
        (directory / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fashion-like")
    write_fashion_like(directory)
    return directory


def load(name: str, fashion_dir: Path | None = None, **options):
    data_dir = fashion_dir if name == "colored-fashion-mnist" else None
    return load_dataset(name, data_dir=data_dir, data_options=options)


# --- registration and shapes ----------------------------------------------------------------------

def test_sources_are_registered_with_their_attributes_and_models():
    assert set(NEW_SOURCES) <= set(SOURCES)
    assert get_source("colored-digits").attributes == ("color",)
    assert get_source("colored-fashion-mnist").attributes == ("color",)
    assert get_source("biased-tabular").attributes == ("sensitive",)
    assert [get_source(n).default_model for n in NEW_SOURCES] == ["mlp", "cnn", "mlp"]
    assert get_source("digits").attributes == ()
    assert get_source("colored-fashion-mnist").default_dir == str(FASHION_DIR)


@pytest.mark.parametrize(
    ("name", "spec", "sizes"),
    [
        ("colored-digits", DataSpec((3, 8, 8), 10), (1295, 143, 359)),  # digits' 1438 train = 1295 + 143 val
        ("colored-fashion-mnist", DataSpec((3, 28, 28), 10), (180, 20, 50)),  # the synthetic directory
        ("biased-tabular", DataSpec((len(TABULAR_FEATURES),), 2), (4000, 400, 2000)),  # n, n//10, n//2
    ],
)
def test_shapes_sizes_and_attributes_on_every_split(name, spec, sizes, fashion_dir):
    bundle = load(name, fashion_dir)
    assert bundle.spec == spec and bundle.source == name
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == sizes
    high = 9 if ATTRIBUTE[name] == "color" else 1
    for part, split in splits(bundle).items():
        assert split.spec == spec, part
        assert set(split.attributes) == {ATTRIBUTE[name]}, part
        values = split.attributes[ATTRIBUTE[name]]
        assert values.dtype == torch.int64 and len(values) == len(split), part
        assert 0 <= int(values.min()) and int(values.max()) <= high, part
        assert split.x.dtype == torch.float32 and torch.isfinite(split.x).all(), part


@pytest.mark.parametrize("name", NEW_SOURCES)
def test_ids_are_distinct_across_splits_and_val_ids_never_move(name, fashion_dir):
    bundle = load(name, fashion_dir)
    ids = [set(s.ids.tolist()) for s in splits(bundle).values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    other = load(name, fashion_dir, seed=5, rho=0.5)  # other colours or features, the same sample ids
    for part in ("train", "val", "test"):
        assert torch.equal(splits(bundle)[part].ids, splits(other)[part].ids), part


def test_colored_digits_keeps_the_digits_split_and_labels():
    colored, digits = load_dataset("colored-digits"), load_dataset("digits")
    assert torch.equal(colored.test.ids, digits.test.ids) and torch.equal(colored.test.y, digits.test.y)
    pool = torch.cat([colored.train.ids, colored.val.ids])
    assert sorted(pool.tolist()) == digits.train.ids.tolist()
    # the val split is a stratified 10% of the training samples: every class, in proportion
    counts = colored.val.class_counts()
    assert set(counts) == set(range(10))
    for c, n in digits.train.class_counts().items():
        assert abs(counts[c] - 0.1 * n) <= 1, (c, counts[c], n)


def test_pixels_are_the_grey_image_times_its_colour_standardised_per_channel():
    bundle = load_dataset("colored-digits", data_options={"rho": 0.7})
    gray, _, _, _ = digits_images()
    train = bundle.train
    # oracle: torch's own per-channel statistics of the standardised coloured training split
    assert torch.allclose(train.x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(train.x.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    # rebuild the raw coloured images directly and standardise them with torch: every split must match
    raw_train = gray[train.ids][:, None] * COLORS[train.attributes["color"]].float()[:, :, None, None]
    mean, std = raw_train.mean(dim=(0, 2, 3), keepdim=True), raw_train.std(dim=(0, 2, 3), keepdim=True)
    for part, split in splits(bundle).items():
        raw = gray[split.ids][:, None] * COLORS[split.attributes["color"]].float()[:, :, None, None]
        assert torch.allclose(split.x, (raw - mean) / std, atol=1e-4), part
    # the background stays black: the darkest value of each channel is the standardised zero
    assert torch.allclose(train.x.amin(dim=(0, 2, 3)), (-mean / std).flatten(), atol=1e-5)


# --- determinism ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "other"), [("colored-digits", {"seed": 1}), ("colored-digits", {"rho": 0.9}),
                                             ("biased-tabular", {"seed": 1}), ("biased-tabular", {"rho": 0.7}),
                                             ("biased-tabular", {"proxy_noise": 1.0}),
                                             ("colored-fashion-mnist", {"seed": 1})])
def test_same_options_same_data_other_options_other_data(name, other, fashion_dir):
    a, b, c = load(name, fashion_dir), load(name, fashion_dir), load(name, fashion_dir, **other)
    attribute = ATTRIBUTE[name]
    for part in ("train", "val", "test"):
        sa, sb, sc = splits(a)[part], splits(b)[part], splits(c)[part]
        assert sa.fingerprint() == sb.fingerprint(), part
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.attributes[attribute], sb.attributes[attribute]), part
        assert sa.fingerprint() != sc.fingerprint(), part  # the options enter the fingerprint
    assert not torch.equal(a.train.x, c.train.x)
    # explicit defaults are the defaults: same data, same fingerprint
    defaults = {o.name: o.default for o in get_source(name).options}
    assert load(name, fashion_dir, **defaults).train.fingerprint() == a.train.fingerprint()


# --- the bias: measured shares against rho --------------------------------------------------------

def test_draw_colors_gives_the_class_colour_with_probability_rho_and_the_others_uniformly():
    n, rho = 90_000, 0.4
    y = np.random.default_rng(0).integers(0, 10, n)
    colors = draw_colors(y, rho, np.random.default_rng(1))
    assert abs((colors == y).mean() - rho) < binomial_tolerance(rho, n)
    offset = (colors - y) % 10  # 0: the class colour; 1..9: the others, each (1 - rho) / 9
    p_other = (1 - rho) / 9
    for k in range(1, 10):
        assert abs((offset == k).mean() - p_other) < binomial_tolerance(p_other, n), k
    assert (draw_colors(y, 1.0, np.random.default_rng(1)) == y).all()


@pytest.mark.parametrize("rho", [0.9, 0.99])
def test_colored_digits_aligned_share_is_rho_in_train_and_val_and_a_tenth_in_test(rho):
    bundle = load_dataset("colored-digits", data_options={"rho": rho})
    pool = torch.cat([bundle.train.attributes["color"] == bundle.train.y, bundle.val.attributes["color"] ==
                      bundle.val.y])
    assert abs(float(pool.double().mean()) - rho) < binomial_tolerance(rho, len(pool))
    assert abs(aligned_share(bundle.train, "color") - rho) < binomial_tolerance(rho, len(bundle.train))
    assert abs(aligned_share(bundle.test, "color") - 0.1) < binomial_tolerance(0.1, len(bundle.test))
    # test colours are uniform over all ten, whatever the class
    counts = torch.bincount(bundle.test.attributes["color"], minlength=10).double() / len(bundle.test)
    assert (counts - 0.1).abs().max() < binomial_tolerance(0.1, len(bundle.test))


def test_rho_one_colours_every_training_image_by_its_class():
    bundle = load_dataset("colored-digits", data_options={"rho": "1"})
    assert aligned_share(bundle.train, "color") == 1.0 and aligned_share(bundle.val, "color") == 1.0
    assert aligned_share(bundle.test, "color") < 0.5


@pytest.mark.parametrize("rho", [0.9, 0.6])
def test_biased_tabular_sensitive_agrees_with_the_label_with_rho_in_train_and_val_and_half_in_test(rho):
    bundle = load_dataset("biased-tabular", data_options={"rho": rho})
    for split, p in ((bundle.train, rho), (bundle.val, rho), (bundle.test, 0.5)):
        assert abs(aligned_share(split, "sensitive") - p) < binomial_tolerance(p, len(split))
    # labels from a symmetric linear rule: balanced classes
    assert abs(float(bundle.train.y.double().mean()) - 0.5) < binomial_tolerance(0.5, len(bundle.train))


def test_biased_tabular_proxy_leaks_the_attribute_as_much_as_its_noise_allows():
    proxy = TABULAR_FEATURES.index("proxy")
    exact = load_dataset("biased-tabular", data_options={"proxy_noise": 0}).train
    # no noise: the proxy takes two values, the larger for sensitive = 1
    values = exact.x[:, proxy]
    assert len(torch.unique(values)) == 2
    assert torch.equal((values > values.mean()).long(), exact.attributes["sensitive"])
    # noise 0.5 on a 0/1 attribute: thresholding halfway between the groups is right with probability Phi(1)
    train = load_dataset("biased-tabular").train
    values, s = train.x[:, proxy], train.attributes["sensitive"]
    middle = (values[s == 0].mean() + values[s == 1].mean()) / 2
    phi = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    accuracy = float(((values > middle).long() == s).double().mean())
    assert abs(accuracy - phi) < binomial_tolerance(phi, len(train))
    # features standardised with the training split's statistics
    assert torch.allclose(train.x.mean(0), torch.zeros(len(TABULAR_FEATURES)), atol=1e-5)
    assert torch.allclose(train.x.std(0), torch.ones(len(TABULAR_FEATURES)), atol=1e-5)


def test_biased_tabular_sizes_come_from_n():
    bundle = load_dataset("biased-tabular", data_options={"n": "101"})
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (101, 10, 50)


def test_attribute_selection_works_on_the_colour():
    train = load_dataset("colored-digits").train
    split = select(train, "attribute:color=3", seed=0)
    assert len(split.forget) == int((train.attributes["color"] == 3).sum()) > 0
    assert (split.forget.attributes["color"] == 3).all() and (split.retain.attributes["color"] != 3).all()


# --- options: validation --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("colored-digits", {"rho": "0"}, "dataset 'colored-digits': --data-option rho='0' is invalid; rho must be a "
                                         "number in (0, 1]"),
        ("colored-digits", {"rho": "1.5"}, "rho='1.5' is invalid; rho must be a number in (0, 1]"),
        ("colored-digits", {"rho": "nan"}, "rho='nan' is invalid"),
        ("colored-digits", {"seed": "-1"}, "seed='-1' is invalid; seed must be an integer >= 0"),
        ("colored-digits", {"seed": "1.5"}, "seed='1.5' is invalid; seed must be an integer >= 0"),
        ("colored-digits", {"n": "10"}, "dataset 'colored-digits' has no --data-option 'n'; valid keys: rho, seed"),
        ("colored-fashion-mnist", {"rho": "-0.1"}, "rho='-0.1' is invalid; rho must be a number in (0, 1]"),
        ("biased-tabular", {"rho": "1.1"}, "dataset 'biased-tabular': --data-option rho='1.1' is invalid; rho must "
                                           "be a number in [0, 1]"),
        ("biased-tabular", {"n": "19"}, "n='19' is invalid; n must be an integer >= 20"),
        ("biased-tabular", {"proxy_noise": "-1"}, "proxy_noise='-1' is invalid; proxy_noise must be a number >= 0"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(name, options, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_dataset(name, data_dir=tmp_path / "never-read" if name == "colored-fashion-mnist" else None,
                     data_options=options)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_biased_tabular_refuses_a_test_fraction():
    with pytest.raises(ConfigError, match=r"^biased-tabular sizes its splits from --data-option n \(test n//2, val "
                                          r"n//10\), not from a test fraction \(got 0.3\); drop test_fraction$"):
        load_dataset("biased-tabular", test_fraction=0.3)


@pytest.mark.parametrize(
    ("closed", "valid", "accepted", "refused"),
    [
        ("both", "a number in [0, 1]", (0.0, 1.0), (-0.1, 1.1)),
        ("right", "a number in (0, 1]", (0.5, 1.0), (0.0, 1.1)),
        ("left", "a number in [0, 1)", (0.0, 0.5), (1.0, -0.1)),
        ("neither", "a number in (0, 1)", (0.5,), (0.0, 1.0)),
    ],
)
def test_data_option_closed_says_which_ends_belong(closed, valid, accepted, refused):
    option = DataOption("p", float, 0.5, "a share", low=0.0, high=1.0, closed=closed)
    assert option.valid() == valid
    for value in accepted:
        assert option.coerce(str(value)) == value
    for value in refused:
        with pytest.raises(ConfigError, match=re.escape(f"p must be {valid}")):
            option.coerce(value)


def test_data_option_one_sided_open_bounds_and_bad_declarations():
    assert DataOption("x", float, 1.0, "h", low=0.0, closed="right").valid() == "a number > 0"
    assert DataOption("x", int, 1, "h", high=5, closed="left").valid() == "an integer < 5"
    with pytest.raises(ConfigError, match=r"x must be a number > 0"):
        DataOption("x", float, 1.0, "h", low=0.0, closed="right").coerce("0")
    with pytest.raises(ValueError, match=r"closed must be one of"):
        DataOption("x", float, 1.0, "h", low=0.0, closed="open")
    with pytest.raises(ValueError, match=r"bad default"):
        DataOption("x", float, 0.0, "h", low=0.0, high=1.0, closed="right")


# --- models train on the data ---------------------------------------------------------------------

@pytest.mark.parametrize(("name", "chance"), [("colored-digits", 0.1), ("biased-tabular", 0.5)])
def test_default_model_trains_an_epoch(name, chance):
    bundle = load_dataset(name)
    model = build_model(get_source(name).default_model, bundle.spec, seed=0)
    before = accuracy_on(model, bundle.train)
    fit(model, bundle.train, TrainConfig(epochs=1, batch_size=64, lr=0.05), progress=False)
    after = accuracy_on(model, bundle.train)
    assert after > max(before, chance) + 0.2, (before, after)


def test_a_colour_model_is_right_on_val_and_fooled_on_test():
    # the point of the source: with rho = 0.99 the colour is the easy shortcut, which val rewards and test does not
    bundle = load_dataset("colored-digits")
    model = fit(build_model("mlp", bundle.spec, seed=0), bundle.train, TrainConfig(epochs=2, batch_size=64, lr=0.05),
                progress=False)
    val, test = accuracy_on(model, bundle.val), accuracy_on(model, bundle.test)
    assert val > 0.8 and val - test > 0.3, (val, test)


def test_cnn_builds_and_trains_on_three_channel_images(fashion_dir):
    for bundle in (load_dataset("colored-digits"), load_dataset("colored-fashion-mnist", data_dir=fashion_dir)):
        model = build_model("cnn", bundle.spec, seed=0)
        assert model(bundle.train.x[:4]).shape == (4, 10)
        fit(model, bundle.train.subset(range(100)), TrainConfig(epochs=1, batch_size=50, lr=0.05), progress=False)


def test_train_size_shrinks_only_the_training_split(fashion_dir):
    full = load_dataset("colored-fashion-mnist", data_dir=fashion_dir)
    small = load_dataset("colored-fashion-mnist", data_dir=fashion_dir, train_size=60, data_options={"rho": 0.95})
    assert len(small.train) == 60 and len(small.val) == len(full.val) and len(small.test) == len(full.test)
    assert small.options == {"data_dir": str(fashion_dir), "data_options": {"rho": 0.95, "seed": 0},
                             "train_size": 60}
    assert set(small.train.ids.tolist()) <= set(full.train.ids.tolist())
    assert load_dataset(**{"name": "colored-fashion-mnist", **small.options}).train.fingerprint() == \
        small.train.fingerprint()


# --- the command line -----------------------------------------------------------------------------

def test_datasets_json_lists_the_sources_with_attributes_and_options():
    result = runner.invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert all("attributes" in r for r in rows.values())
    assert rows["digits"]["attributes"] == [] and rows["tabular"]["attributes"] == []
    expected = {
        "colored-digits": (["color"], {"rho": 0.99, "seed": 0}),
        "colored-fashion-mnist": (["color"], {"rho": 0.99, "seed": 0}),
        "biased-tabular": (["sensitive"], {"n": 4000, "rho": 0.9, "proxy_noise": 0.5, "seed": 0}),
    }
    for name, (attributes, defaults) in expected.items():
        assert rows[name]["attributes"] == attributes, name
        assert {o["name"]: o["default"] for o in rows[name]["options"]} == defaults, name
    assert rows["colored-digits"]["options"][0]["valid"] == "a number in (0, 1]"
    assert rows["colored-digits"]["available"] and rows["biased-tabular"]["available"]
    assert rows["colored-fashion-mnist"]["default_model"] == "cnn"
    table = runner.invoke(app, ["datasets"], terminal_width=200)
    assert table.exit_code == 0 and "sensitive" in table.stdout


def test_cli_trains_on_colored_digits_and_the_checkpoint_rebuilds_its_data(tmp_path):
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "--dataset", "colored-digits", "--data-option", "rho=0.95", "--epochs", "1",
                                 "--out", str(out), *CPU, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "colored-digits" and summary["model"] == "mlp"
    assert summary["data_options"] == {"rho": 0.95, "seed": 0}
    sidecar = json.loads(out.with_name("model.json").read_text())
    assert sidecar["data"]["spec"]["input_shape"] == [3, 8, 8]
    ckpt, bundle = load_with_data(out)  # checks the fingerprint of the rebuilt data
    assert bundle.options["data_options"] == {"rho": 0.95, "seed": 0}
    assert bundle.train.fingerprint() == load_dataset("colored-digits", data_options={"rho": 0.95}).train.fingerprint()


def test_cli_bad_rho_is_one_error_line(capsys, tmp_path):
    line = cli_fails(capsys, "train", "--dataset", "colored-digits", "--data-option", "rho=0", "--out",
                     str(tmp_path / "m"), *CPU, sole=True)
    assert line == ("error: dataset 'colored-digits': --data-option rho='0' is invalid; rho must be a number in "
                    "(0, 1]")
    assert list(tmp_path.iterdir()) == []


# --- real Fashion-MNIST (light) -------------------------------------------------------------------

@pytest.mark.fashion
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_DIR} "
                    "(apt-get install -y dataset-fashion-mnist)")
def test_colored_fashion_mnist_real_files():
    bundle = load_dataset("colored-fashion-mnist", data_options={"rho": 0.95}, train_size=2000)
    assert bundle.spec == DataSpec((3, 28, 28), 10)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (2000, 6000, 10000)
    assert int(bundle.test.ids.min()) == 60000 and int(bundle.test.ids.max()) == 69999
    assert bundle.val.class_counts() == {c: 600 for c in range(10)}
    for split, p in ((bundle.val, 0.95), (bundle.test, 0.1)):
        assert abs(aligned_share(split, "color") - p) < binomial_tolerance(p, len(split))


# --- counterfactuals: the same sample with another attribute value ----------------------------------------------
def test_counterfactual_recolours_the_same_grey_image():
    """Re-rendering in the current colours gives the images back; another colour and back again too; a
    recoloured image has the new colour's channel pattern (black where the colour has no such channel)."""
    from unlearnkit.data.biased import COLORS

    bundle = load_dataset("colored-digits")
    data = bundle.train
    colors = data.attributes["color"]
    assert torch.allclose(bundle.counterfactual(data, "color", colors), data.x, atol=1e-5)
    other = (colors + 3) % 10
    moved = bundle.counterfactual(data, "color", other)
    assert not torch.allclose(moved, data.x, atol=1e-2)
    back = bundle.counterfactual(IndexedDataset(moved, data.y, data.ids, 10, attributes={"color": other}), "color",
                                 colors)
    assert torch.allclose(back, data.x, atol=1e-5)
    blue = torch.full_like(colors, 2)  # (0, 0, 255): the red and green channels hold the background value only
    x = bundle.counterfactual(data, "color", blue)
    assert COLORS[2, 0] == 0 and torch.allclose(x[:, 0], x[:1, 0, :1, :1].expand_as(x[:, 0]))
    with pytest.raises(ConfigError, match="only be re-rendered with another 'color'"):
        bundle.counterfactual(data, "size", colors)


def test_tabular_counterfactual_moves_only_the_proxy():
    bundle = load_dataset("biased-tabular", data_options={"n": 200})
    data = bundle.train
    flipped = 1 - data.attributes["sensitive"]
    x = bundle.counterfactual(data, "sensitive", flipped)
    changed = (x != data.x).any(0)
    assert changed.tolist() == [False, False, False, False, True, False, False]
    assert torch.allclose(bundle.counterfactual(data, "sensitive", data.attributes["sensitive"]), data.x)
