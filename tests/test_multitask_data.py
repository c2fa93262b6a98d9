"""Tests for the multi-task sources (unlearnkit.data.multitask): multi-digits, multi-fashion-mnist and
fashion-mnist-tasks.

multi-digits is rebuilt independently: each composite's partner is found from the pixels only the partner covers,
the composites are redrawn from ``digits_images`` and standardised with statistics computed here, and the stored
images must match. The tests also check the tasks on every split, ids, determinism, the declared task lists and
option validation. The ``fashion`` tests read the real Fashion-MNIST files (skipped when they are not installed);
each source is loaded once per module.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_multitask_data.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearnkit.data import DataSpec, get_source, load_dataset
from unlearnkit.data.multitask import COMPOSITE_TASKS, FASHION_GROUPS, draw_partners
from unlearnkit.data.sources import digits_images
from unlearnkit.errors import ConfigError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_DIR} "
                                   "(apt-get install -y dataset-fashion-mnist)")
GROUPS = np.asarray(FASHION_GROUPS)


def splits(bundle):
    return {"train": bundle.train, "test": bundle.test}


# --- declarations ---------------------------------------------------------------------------------

def test_sources_declare_their_tasks_models_and_options():
    assert get_source("multi-digits").tasks == (("left", 10), ("right", 10), ("same", 2)) == COMPOSITE_TASKS
    assert get_source("multi-fashion-mnist").tasks == (("left", 10), ("right", 10), ("same", 2))
    assert get_source("fashion-mnist-tasks").tasks == (("class", 10), ("group", 4))
    assert [get_source(n).default_model for n in ("multi-digits", "multi-fashion-mnist", "fashion-mnist-tasks")] \
        == ["mtl-mlp", "mtl-cnn", "mtl-cnn"]
    assert get_source("multi-digits").embedded
    assert get_source("multi-fashion-mnist").default_dir == str(FASHION_DIR)
    assert get_source("fashion-mnist-tasks").default_dir == str(FASHION_DIR)
    assert [o.name for o in get_source("multi-digits").options] == ["seed"]
    assert [o.name for o in get_source("multi-fashion-mnist").options] == ["seed"]
    assert get_source("fashion-mnist-tasks").options == ()


def test_fashion_groups():
    # tops: T-shirt/top, Pullover, Dress, Coat, Shirt; bottoms: Trouser; footwear: Sandal, Sneaker, Ankle boot; bag
    assert FASHION_GROUPS == (0, 1, 0, 0, 0, 2, 0, 2, 3, 2)


def test_partners_are_never_the_item_itself_and_cover_the_others():
    partners = draw_partners(5, np.random.default_rng(0))
    assert len(partners) == 5 and (partners != np.arange(5)).all()
    many = draw_partners(3, np.random.default_rng(1))
    assert (many != np.arange(3)).all() and set(many) <= {0, 1, 2}
    counts = np.bincount(draw_partners(20000, np.random.default_rng(2)), minlength=20000)
    assert counts.sum() == 20000  # one partner each


@pytest.mark.parametrize("value", ["-1", "x", "1.5"])
def test_bad_seed_is_a_config_error(value):
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("multi-digits", data_options={"seed": value})


def test_fashion_mnist_tasks_takes_no_option():
    with pytest.raises(ConfigError, match="no --data-option"):
        load_dataset("fashion-mnist-tasks", data_options={"seed": "0"})


# --- multi-digits ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    return load_dataset("multi-digits")


def place(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The 12x12 composites, drawn here: ``left`` in rows/cols 0-7, ``right`` in 4-11, brighter pixel wins."""
    canvas = np.zeros((len(left), 12, 12))
    canvas[:, :8, :8] = left
    canvas[:, 4:, 4:] = np.maximum(canvas[:, 4:, 4:], right)
    return canvas


def find_partners(stored: np.ndarray, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each composite's partner among ``gray``, from the 48 partner pixels the left item never covers (canvas rows or
    cols 8-11): standardisation is affine, so the true partner's pixels correlate perfectly. Also the best score."""
    pure = np.ones((8, 8), dtype=bool)
    pure[:4, :4] = False  # the partner's top-left quarter sits under the left item

    def z(a: np.ndarray) -> np.ndarray:
        return (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)

    corr = z(stored[:, 4:, 4:][:, pure]) @ z(gray[:, pure]).T / pure.sum()
    return corr.argmax(1), corr.max(1)


def test_multi_digits_shapes_tasks_and_ids(digits):
    assert digits.spec == DataSpec((1, 12, 12), 10)
    assert digits.class_names == [str(i) for i in range(10)]
    _, y, train_idx, test_idx = digits_images()
    plain = load_dataset("digits")
    for name, split in splits(digits).items():
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 12, 12)
        assert list(split.tasks) == ["left", "right", "same"]
        assert all(t.dtype == torch.int64 and len(t) == len(split) for t in split.tasks.values())
        assert torch.equal(split.y, split.tasks["left"])
        assert torch.equal(split.ids, splits(plain)[name].ids)
        assert split.tasks["left"].tolist() == y[split.ids.numpy()].tolist()  # the left item's own label
        left, right = split.tasks["left"], split.tasks["right"]
        assert torch.equal(split.tasks["same"], (left % 2 == right % 2).long())
        assert set(split.tasks["same"].tolist()) == {0, 1}
    assert digits.train.ids.tolist() == train_idx.tolist() and digits.test.ids.tolist() == test_idx.tolist()
    assert len(digits.train) == 1438 and len(digits.test) == 359


def test_multi_digits_matches_an_independent_reconstruction(digits):
    x, y, train_idx, test_idx = digits_images()
    raw, partners = {}, {}
    for name, idx in (("train", train_idx), ("test", test_idx)):
        split = splits(digits)[name]
        gray = x[idx].numpy().astype(np.float64)
        found, score = find_partners(split.x[:, 0].numpy().astype(np.float64), gray)
        assert score.min() > 1 - 1e-5, f"{name}: a composite whose partner pixels match no digit"
        assert (found != np.arange(len(idx))).all(), f"{name}: an item paired with itself"
        assert split.tasks["right"].tolist() == y[idx][found].tolist()
        raw[name], partners[name] = place(gray, gray[found]), found
    mean, std = raw["train"].mean(), raw["train"].std(ddof=1)  # statistics of the training composites only
    for name, split in splits(digits).items():
        stored = split.x[:, 0].numpy().astype(np.float64)
        np.testing.assert_allclose(stored * std + mean, raw[name], atol=1e-5, err_msg=name)
    assert abs(float(digits.train.x.mean())) < 1e-4 and abs(float(digits.train.x.std()) - 1) < 1e-4
    # partners are spread out: no digit is everyone's partner
    assert np.bincount(partners["train"]).max() < 12


def test_multi_digits_is_deterministic_and_seeded(digits):
    again, other = load_dataset("multi-digits"), load_dataset("multi-digits", data_options={"seed": 1})
    for name, split in splits(digits).items():
        twin, moved = splits(again)[name], splits(other)[name]
        assert torch.equal(split.x, twin.x) and torch.equal(split.ids, twin.ids)
        assert all(torch.equal(split.tasks[k], twin.tasks[k]) for k in split.tasks)
        assert torch.equal(split.ids, moved.ids) and torch.equal(split.y, moved.y)  # same left items
        assert not torch.equal(split.x, moved.x) and not torch.equal(split.tasks["right"], moved.tasks["right"])
    assert digits.options["data_options"] == {"seed": 0} and other.options["data_options"] == {"seed": 1}
    assert digits.train.fingerprint() == again.train.fingerprint() != other.train.fingerprint()


def test_multi_digits_train_size_keeps_the_tasks_aligned(digits):
    small = load_dataset("multi-digits", train_size=100)
    assert len(small.train) == 100 and all(len(t) == 100 for t in small.train.tasks.values())
    full = digits.train.by_ids(small.train.ids)
    assert torch.equal(small.train.x, full.x)
    assert all(torch.equal(small.train.tasks[k], full.tasks[k]) for k in full.tasks)


# --- Fashion-MNIST (real files) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="module")
def multi_fashion():
    return load_dataset("multi-fashion-mnist")  # all 60,000 + 10,000 composites


def binomial_tolerance(p: float, n: int, sigmas: float = 4.0) -> float:
    return sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.fashion
@needs_fashion
def test_multi_fashion_mnist_shapes_tasks_and_ids(multi_fashion, fashion):
    assert multi_fashion.spec == DataSpec((1, 28, 28), 10)
    assert multi_fashion.class_names == fashion.class_names
    assert (len(multi_fashion.train), len(multi_fashion.test)) == (60000, 10000)
    for name, split in splits(multi_fashion).items():
        plain = splits(fashion)[name]
        assert split.x.dtype == torch.float32 and split.x.shape[1:] == (1, 28, 28)
        assert list(split.tasks) == ["left", "right", "same"]
        assert all(t.dtype == torch.int64 and len(t) == len(split) for t in split.tasks.values())
        assert torch.equal(split.ids, plain.ids)
        assert torch.equal(split.y, split.tasks["left"]) and torch.equal(split.y, plain.y)
        left, right = split.tasks["left"].numpy(), split.tasks["right"].numpy()
        assert split.tasks["same"].numpy().tolist() == (GROUPS[left] == GROUPS[right]).astype(int).tolist()
        # partners are uniform over the split: each class shows up on the right about as often as in the split
        counts, n = np.bincount(right, minlength=10), len(split)
        assert (np.abs(counts - n / 10) < binomial_tolerance(0.1, n)).all(), counts
    assert multi_fashion.train.ids.tolist() == list(range(60000))
    assert int(multi_fashion.test.ids.min()) == 60000 and int(multi_fashion.test.ids.max()) == 69999
    assert abs(float(multi_fashion.train.x.mean())) < 1e-3 and abs(float(multi_fashion.train.x.std()) - 1) < 1e-3


@pytest.mark.fashion
@needs_fashion
def test_multi_fashion_mnist_composites_are_two_items_resized(multi_fashion, fashion):
    """For a few composites, redraw every candidate partner of the right class here (36x36 canvas, max, resize) and
    fit stored = a * composite + b: one candidate fits exactly, it is not the item itself, and every split shares
    one (a, b), the training statistics."""
    from unlearnkit.data.sources import read_idx_dir

    xtr, _, xte, _ = read_idx_dir(FASHION_DIR)
    fits = []
    for name, images, rows in (("train", xtr, (0, 1, 59999)), ("test", xte, (0, 9999))):
        split = splits(multi_fashion)[name]
        gray = torch.from_numpy(images.astype(np.float32) / 255.0)
        for i in rows:
            candidates = np.flatnonzero(splits(fashion)[name].y.numpy() == int(split.tasks["right"][i]))
            board = torch.zeros(len(candidates), 1, 36, 36)
            board[:, 0, :28, :28] = gray[i]
            board[:, 0, 8:, 8:] = torch.maximum(board[:, 0, 8:, 8:], gray[candidates])
            small = F.interpolate(board, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
            c = small.flatten(1).double().numpy()
            s = split.x[i].flatten().double().numpy()
            cc = c - c.mean(1, keepdims=True)
            a = cc @ (s - s.mean()) / (cc * cc).sum(1)
            b = s.mean() - a * c.mean(1)
            residual = np.abs(s - a[:, None] * c - b[:, None]).max(1)
            best = int(residual.argmin())
            assert residual[best] < 1e-4, f"{name}[{i}]: no partner of class {int(split.tasks['right'][i])} fits"
            assert candidates[best] != i, f"{name}[{i}] is paired with itself"
            fits.append((a[best], b[best]))
    fits = np.asarray(fits)
    assert (fits[:, 0] > 0).all() and np.ptp(fits, axis=0).max() < 1e-4  # one affine map for every split


@pytest.mark.fashion
@needs_fashion
def test_multi_fashion_mnist_is_deterministic(multi_fashion):
    small = load_dataset("multi-fashion-mnist", train_size=500)
    assert torch.equal(small.train.x, multi_fashion.train.by_ids(small.train.ids).x)  # the same 60,000 built again
    assert torch.equal(small.test.x, multi_fashion.test.x)
    assert all(torch.equal(small.test.tasks[k], multi_fashion.test.tasks[k]) for k in small.test.tasks)
    other = load_dataset("multi-fashion-mnist", data_options={"seed": 1}, train_size=500)
    assert not torch.equal(other.test.x, multi_fashion.test.x)
    assert not torch.equal(other.test.tasks["right"], multi_fashion.test.tasks["right"])


@pytest.mark.fashion
@needs_fashion
def test_fashion_mnist_tasks_are_class_and_group(fashion):
    bundle = load_dataset("fashion-mnist-tasks")
    assert bundle.spec == DataSpec((1, 28, 28), 10) and bundle.class_names == fashion.class_names
    for name, split in splits(bundle).items():
        plain = splits(fashion)[name]
        assert torch.equal(split.x, plain.x) and torch.equal(split.ids, plain.ids) and torch.equal(split.y, plain.y)
        assert list(split.tasks) == ["class", "group"]
        assert torch.equal(split.tasks["class"], split.y)
        assert split.tasks["group"].tolist() == GROUPS[split.y.numpy()].tolist()
    assert np.bincount(bundle.train.tasks["group"].numpy()).tolist() == [30000, 6000, 18000, 6000]
