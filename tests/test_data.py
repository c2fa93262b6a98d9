"""Tests for unlearnkit.data: IndexedDataset, the dataset sources and their error messages.

Every file-based source is exercised with tiny synthetic files written to ``tmp_path``; only the
``fashion`` test reads the real Fashion-MNIST files (skipped when they are not installed).

Run: PYTHONPATH=src .venv/bin/python -m pytest tests/test_data.py -q
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.data import (
    SOURCES,
    DatasetBundle,
    DataSpec,
    IndexedDataset,
    get_source,
    load_dataset,
    read_idx,
)
from unlearnkit.errors import ConfigError, DataError

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def small_dataset(**extra) -> IndexedDataset:
    """6 samples, 3 classes, ids 10..15 (not row numbers), every optional column filled."""
    return IndexedDataset(
        x=torch.arange(12, dtype=torch.float32).reshape(6, 2),
        y=torch.tensor([0, 1, 2, 0, 1, 2]),
        ids=torch.tensor([10, 11, 12, 13, 14, 15]),
        num_classes=3,
        subjects=torch.tensor([7, 7, 8, 8, 9, 9]),
        attributes={"sex": torch.tensor([0, 1, 0, 1, 0, 1])},
        tasks={"parity": torch.tensor([0, 1, 0, 1, 0, 1])},
        **extra,
    )


# --- IndexedDataset: validation -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"x": torch.zeros(3, 2)}, r"x, y and ids must have the same length, got 3, 4, 4"),
        ({"y": torch.tensor([0, 1, 0])}, r"same length, got 4, 3, 4"),
        ({"ids": torch.tensor([0, 1, 1, 2])}, r"sample ids must be unique"),
        ({"y": torch.tensor([0.0, 1.0, 0.0, 1.0])}, r"labels must be integers, got dtype torch.float32"),
        ({"ids": torch.tensor([0.0, 1.0, 2.0, 3.0])}, r"ids must be integers, got dtype torch.float32"),
        ({"ids": torch.tensor([True, False, True, False])}, r"ids must be integers, got dtype torch.bool"),
        ({"ids": np.array(["a", "b", "c", "d"], dtype=object)}, r"ids must be integers, got non-numeric"),
        ({"y": torch.tensor([0, 1, 2, 1])}, r"labels must lie in \[0, 2\), got \[0, 2\]; map labels to 0"),
        ({"y": torch.tensor([-1, 1, 0, 1])}, r"labels must lie in \[0, 2\), got \[-1, 1\]"),
        ({"subjects": torch.tensor([0, 1, 2])}, r"subjects has 3 entries for 4 samples"),
        ({"subjects": torch.tensor([0.5, 1.0, 2.0, 3.0])}, r"subjects must be integers"),
        ({"attributes": {"sex": torch.tensor([0, 1])}}, r"attribute 'sex' has 2 entries for 4 samples"),
        ({"attributes": {"sex": torch.tensor([0.1, 1, 0, 1])}}, r"attribute 'sex' must be integers"),
        ({"tasks": {"t": torch.tensor([0, 1, 0, 1, 0])}}, r"task 't' has 5 entries for 4 samples"),
    ],
)
def test_indexed_dataset_rejects_bad_columns(kwargs, match):
    base = {"x": torch.zeros(4, 2), "y": torch.tensor([0, 1, 0, 1]), "ids": torch.arange(4), "num_classes": 2}
    with pytest.raises(DataError, match=match):
        IndexedDataset(**{**base, **kwargs})


def test_indexed_dataset_converts_columns_to_int64():
    ds = IndexedDataset(np.zeros((3, 2), dtype=np.float32), [0, 1, 1], np.array([5, 6, 7], dtype=np.uint8), 2,
                        subjects=[1, 2, 3], attributes={"a": np.array([1, 0, 1], dtype=np.int32)})
    assert ds.y.dtype == ds.ids.dtype == ds.subjects.dtype == ds.attributes["a"].dtype == torch.int64
    assert ds.ids.tolist() == [5, 6, 7]
    assert isinstance(ds.x, torch.Tensor)
    assert len(ds) == 3


def test_empty_dataset_is_valid_and_spec_describes_inputs():
    none = torch.zeros(0, dtype=torch.long)
    empty = IndexedDataset(torch.zeros(0, 1, 8, 8), none, none, 10)
    assert len(empty) == 0
    assert empty.spec == DataSpec((1, 8, 8), 10)
    assert DataSpec.from_dict(empty.spec.to_dict()) == empty.spec
    assert empty.spec.to_dict() == {"input_shape": [1, 8, 8], "num_classes": 10}


def test_class_counts():
    assert small_dataset().class_counts() == {0: 2, 1: 2, 2: 2}
    assert small_dataset().subset([0, 1, 3]).class_counts() == {0: 2, 1: 1}


# --- IndexedDataset: subsets keep identities and every column ---------------------------------------

def assert_rows(sub: IndexedDataset, full: IndexedDataset, rows: list[int]) -> None:
    """``sub`` holds exactly rows ``rows`` of ``full``, every column included."""
    assert sub.ids.tolist() == full.ids[rows].tolist()
    assert torch.equal(sub.x, full.x[rows])
    assert sub.y.tolist() == full.y[rows].tolist()
    assert sub.subjects.tolist() == full.subjects[rows].tolist()
    assert sub.attributes.keys() == full.attributes.keys()
    assert sub.attributes["sex"].tolist() == full.attributes["sex"][rows].tolist()
    assert sub.tasks["parity"].tolist() == full.tasks["parity"][rows].tolist()
    assert sub.num_classes == full.num_classes


def test_subset_by_position_list_tensor_and_numpy():
    ds = small_dataset()
    assert_rows(ds.subset([4, 0]), ds, [4, 0])
    assert_rows(ds.subset(torch.tensor([1, 2])), ds, [1, 2])
    assert_rows(ds.subset(np.array([5])), ds, [5])
    assert len(ds.subset([])) == 0


def test_subset_by_bool_mask():
    ds = small_dataset()
    mask = torch.tensor([True, False, False, True, True, False])
    assert_rows(ds.subset(mask), ds, [0, 3, 4])
    assert_rows(ds.subset(mask.numpy()), ds, [0, 3, 4])
    assert_rows(ds.subset([False] * 5 + [True]), ds, [5])


def test_subset_rejects_mask_of_wrong_length():
    with pytest.raises(DataError, match=r"boolean mask has shape \(2,\) for 6 samples"):
        small_dataset().subset([True, False])


def test_subset_of_subset_keeps_original_ids():
    ds = small_dataset()
    inner = ds.subset([1, 3, 5]).subset([2])
    assert inner.ids.tolist() == [15]
    assert inner.subjects.tolist() == [9]


def test_by_ids_keeps_dataset_order_and_all_columns():
    ds = small_dataset()
    sub = ds.by_ids([14, 11])  # asked out of order: rows come back in the dataset's order
    assert_rows(sub, ds, [1, 4])
    assert_rows(ds.by_ids(torch.tensor([12])), ds, [2])


def test_by_ids_unknown_ids_message_counts_and_lists_them():
    ds = small_dataset()
    with pytest.raises(DataError, match=r"^2 ids not in the training set \(first: 99, 100\); list only ids"):
        ds.by_ids([11, 99, 100])
    with pytest.raises(DataError, match=r"^7 ids not in .*\(first: 0, 1, 2, 3, 4 \.\.\.\)"):
        ds.by_ids(range(7))


def test_without_drops_ids_keeps_rest_and_ignores_absent_ids():
    ds = small_dataset()
    kept = ds.without([11, 13, 999])
    assert_rows(kept, ds, [0, 2, 4, 5])
    assert len(ds.without([])) == len(ds)
    assert len(ds) == 6  # the original is not mutated


def test_contains_and_mask_of():
    ds = small_dataset()
    assert ds.contains([10, 16, 15]).tolist() == [True, False, True]
    assert ds.mask_of([10, 16, 15]).tolist() == [True, False, False, False, False, True]


def test_empty_id_lists_are_accepted():
    """``[]`` becomes a float64 array in numpy; an empty request must still work."""
    ds = small_dataset()
    assert len(ds.by_ids([])) == 0
    assert ds.contains([]).tolist() == []
    assert ds.mask_of([]).tolist() == [False] * 6
    assert len(IndexedDataset(torch.zeros(0, 2), [], [], 3)) == 0


def test_fingerprint_ignores_row_order_but_not_content():
    ds = small_dataset()
    fp = ds.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert ds.subset([5, 3, 1, 0, 2, 4]).fingerprint() == fp
    assert small_dataset().fingerprint() == fp
    changed_id = IndexedDataset(ds.x, ds.y, torch.tensor([10, 11, 12, 13, 14, 16]), 3)
    changed_label = IndexedDataset(ds.x, torch.tensor([1, 1, 2, 0, 1, 2]), ds.ids, 3)
    more_classes = IndexedDataset(ds.x, ds.y, ds.ids, 4)
    fps = {fp, changed_id.fingerprint(), changed_label.fingerprint(), more_classes.fingerprint(),
           ds.without([10]).fingerprint()}
    assert len(fps) == 5


def test_origin_enters_the_fingerprint_and_follows_subsets():
    """A derived source's options change features, not ids or labels: its ``origin`` tells such data apart."""
    ds = small_dataset()
    a = IndexedDataset(ds.x, ds.y, ds.ids, 3, origin='{"shift":1}')
    b = IndexedDataset(ds.x, ds.y, ds.ids, 3, origin='{"shift":2}')
    assert len({ds.fingerprint(), a.fingerprint(), b.fingerprint()}) == 3
    assert a.subset([5, 3, 1, 0, 2, 4]).fingerprint() == a.fingerprint()
    assert a.without([10]).origin == a.origin and a.by_ids([11]).origin == a.origin
    assert a.without([10]).fingerprint() != b.without([10]).fingerprint()


# --- digits --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits() -> DatasetBundle:
    return load_dataset("digits")


def test_digits_sizes_spec_and_metadata(digits):
    assert (len(digits.train), len(digits.test)) == (1438, 359)
    assert digits.spec == DataSpec((1, 8, 8), 10)
    assert digits.source == "digits"
    assert digits.options == {"test_fraction": 0.2}
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.train.x.dtype == torch.float32
    assert digits.train.subjects is None and digits.train.attributes == {}


def test_digits_ids_are_disjoint_and_cover_every_image(digits):
    train_ids, test_ids = set(digits.train.ids.tolist()), set(digits.test.ids.tolist())
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(1797))


def test_digits_split_is_stratified(digits):
    train, test = digits.train.class_counts(), digits.test.class_counts()
    for c in range(10):
        assert abs(test[c] / (train[c] + test[c]) - 0.2) < 0.01


def test_digits_is_deterministic(digits):
    again = load_dataset("digits")
    assert torch.equal(again.train.ids, digits.train.ids)
    assert torch.equal(again.train.x, digits.train.x)
    assert torch.equal(again.test.y, digits.test.y)
    assert again.train.fingerprint() == digits.train.fingerprint()


def test_digits_standardised_with_train_statistics(digits):
    from sklearn.datasets import load_digits

    assert abs(float(digits.train.x.mean())) < 1e-5
    assert abs(float(digits.train.x.std()) - 1.0) < 1e-4
    # Test images are scaled with the train set's mean and std, not their own.
    raw = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0
    train_raw = raw[digits.train.ids]
    mean, std = train_raw.mean(), train_raw.std()
    expected = ((raw[digits.test.ids] - mean) / std).unsqueeze(1)
    assert torch.allclose(digits.test.x, expected, atol=1e-5)
    # and labels follow their ids
    assert digits.test.y.tolist() == load_digits().target[digits.test.ids.numpy()].tolist()


def test_digits_test_fraction_option():
    bundle = load_dataset("digits", test_fraction=0.5)
    assert abs(len(bundle.test) - 1797 / 2) <= 10
    assert len(bundle.train) + len(bundle.test) == 1797
    assert bundle.options["test_fraction"] == 0.5


def test_train_size_keeps_a_fixed_subset(digits):
    small = load_dataset("digits", train_size=100)
    again = load_dataset("digits", train_size=100)
    assert len(small.train) == 100 and len(small.test) == len(digits.test)
    assert torch.equal(small.train.ids, again.train.ids)
    assert set(small.train.ids.tolist()) <= set(digits.train.ids.tolist())
    assert small.train.ids.tolist() == sorted(small.train.ids.tolist())
    assert small.options["train_size"] == 100
    for bad in (1, len(digits.train) + 1):
        with pytest.raises(
            ConfigError, match=rf"--train-size must lie in \[2, 1438\] for 'digits', got {bad}"
        ):
            load_dataset("digits", train_size=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "imagenet"}, r"unknown dataset 'imagenet'; choose one of: biased-tabular, cifar10, "
                               r"colored-digits, colored-fashion-mnist, digits, fashion-mnist"),
        ({"subjects": 0}, r"--subjects must be at least 1, got 0"),
        ({"test_fraction": 1.0}, r"test fraction must lie in \(0, 1\), got 1.0"),
        ({"test_fraction": 0.0}, r"test fraction must lie in \(0, 1\)"),
        ({"label": "y"}, r"apply to the tabular source only, not 'digits'"),
        ({"attribute_columns": ["sex"]}, r"apply to the tabular source only"),
        ({"name": "tabular"}, r"tabular source needs --data-dir FILE.csv\|FILE.parquet and --label COLUMN"),
    ],
)
def test_load_dataset_rejects_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset(**{"name": "digits", **kwargs})


def test_get_source_and_registry():
    assert set(SOURCES) >= {"digits", "fashion-mnist", "mnist", "cifar10", "tabular"}
    assert get_source("fashion-mnist").default_dir == str(FASHION_DIR)
    assert get_source("digits").embedded
    with pytest.raises(ConfigError, match=r"unknown dataset 'x'"):
        get_source("x")


# --- pseudo-subjects ------------------------------------------------------------------------------

def test_pseudo_subjects_are_deterministic_balanced_and_in_range():
    a = load_dataset("digits", subjects=10)
    b = load_dataset("digits", subjects=10)
    assert torch.equal(a.train.subjects, b.train.subjects)
    assert torch.equal(a.test.subjects, b.test.subjects)
    both = torch.cat([a.train.subjects, a.test.subjects])
    assert int(both.min()) == 0 and int(both.max()) == 9
    counts = torch.bincount(both, minlength=10)
    assert set(counts.tolist()) <= {179, 180}  # 1797 samples over 10 subjects
    assert a.options["subjects"] == 10
    # the train split holds many subjects, each with several samples
    assert len(a.train.subjects.unique()) == 10


def test_pseudo_subjects_follow_the_sample_id_not_its_position():
    bundle = load_dataset("digits", subjects=7)
    # the documented rule for ids 0..n-1: a fixed permutation (seed 0) of the id, modulo N
    perm = torch.from_numpy(np.random.default_rng(0).permutation(1797))
    assert torch.equal(bundle.train.subjects, perm[bundle.train.ids] % 7)
    assert torch.equal(bundle.test.subjects, perm[bundle.test.ids] % 7)
    # a subset keeps each sample's subject
    sub = bundle.train.subset([5, 0])
    assert sub.subjects.tolist() == [int(bundle.train.subjects[5]), int(bundle.train.subjects[0])]


def test_pseudo_subjects_with_one_subject():
    bundle = load_dataset("digits", subjects=1)
    assert set(bundle.train.subjects.tolist()) == {0}


def test_pseudo_subjects_refused_when_dataset_has_subjects(tmp_path):
    csv = write_table(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match=r"this dataset already has subjects; drop --subjects"):
        load_dataset("tabular", data_dir=csv, label="animal", subject_column="owner", subjects=3)


def test_pseudo_subjects_for_negative_and_sparse_ids(tmp_path):
    """Custom id columns may hold negative or huge ids: subjects must still be balanced and in range."""
    import pandas as pd

    n = 40
    ids = [-(10**12), -5, -1] + [10**12 + 7 * i for i in range(n - 3)]
    frame = pd.DataFrame({"f": np.arange(n, dtype=float), "label": [0, 1] * (n // 2), "uid": ids})
    frame.to_csv(tmp_path / "ids.csv", index=False)
    bundle = load_dataset("tabular", data_dir=tmp_path / "ids.csv", label="label", id_column="uid",
                          subjects=4)
    both = torch.cat([bundle.train.subjects, bundle.test.subjects])
    assert torch.bincount(both, minlength=4).tolist() == [10, 10, 10, 10]
    assert set(torch.cat([bundle.train.ids, bundle.test.ids]).tolist()) == set(ids)


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_mnist(directory: Path, n_train: int = 12, n_test: int = 5, compress: bool = True) -> dict:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(directory / (stem + (".gz" if compress else "")), array, compress)
    return arrays


def test_read_idx_round_trip_gzip_and_plain(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array, compress=False)), array)
    assert read_idx(write_idx(tmp_path / "l.gz", np.array([3, 1, 4]))).tolist() == [3, 1, 4]


def test_mnist_from_synthetic_idx_files(tmp_path):
    arrays = write_mnist(tmp_path)
    bundle = load_dataset("mnist", data_dir=tmp_path)
    assert (len(bundle.train), len(bundle.test)) == (12, 5)
    assert bundle.spec == DataSpec((1, 28, 28), 10)
    assert bundle.train.ids.tolist() == list(range(12))
    assert bundle.test.ids.tolist() == list(range(12, 17))
    assert bundle.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert bundle.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert bundle.source == "mnist" and bundle.options == {"data_dir": str(tmp_path)}
    # standardised with the train set's global mean/std, pixel order preserved
    raw = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255.0)
    expected = ((raw - raw.mean()) / raw.std()).unsqueeze(1)
    assert torch.allclose(bundle.train.x, expected, atol=1e-5)
    raw_test = torch.from_numpy(arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255.0)
    assert torch.allclose(bundle.test.x, ((raw_test - raw.mean()) / raw.std()).unsqueeze(1), atol=1e-5)


def test_mnist_accepts_uncompressed_files(tmp_path):
    write_mnist(tmp_path, compress=False)
    assert len(load_dataset("mnist", data_dir=tmp_path).train) == 12


def test_fashion_mnist_from_synthetic_dir_with_subjects(tmp_path):
    write_mnist(tmp_path)
    bundle = load_dataset("fashion-mnist", data_dir=tmp_path, subjects=3)
    assert bundle.class_names[0] == "T-shirt/top" and len(bundle.class_names) == 10
    assert set(torch.cat([bundle.train.subjects, bundle.test.subjects]).tolist()) == {0, 1, 2}


def test_idx_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz not found in .*must hold the four IDX"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_image_and_label_counts_disagree(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"image and label files in .* disagree in length"):
        load_dataset("mnist", data_dir=tmp_path)


def test_idx_label_out_of_range(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\), got \[12, 12\]"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x00\x00", r"is not an IDX file \(too short\)"),
        (b"\x00\x01\x08\x01" + struct.pack(">I", 1) + b"\x00", r"bad magic"),
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4, r"not an unsigned-byte IDX file \(bad"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 5), r"ends inside its IDX header \(3 dimensions\)"),
        (idx_bytes(np.zeros((4, 2, 2)))[:-3], r"holds 13 bytes but its header says \(4, 2, 2\); replace the"),
        (idx_bytes(np.zeros(3)) + b"\x00", r"holds 4 bytes but its header says \(3,\)"),
    ],
)
def test_read_idx_rejects_corrupt_contents(tmp_path, payload, match):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(DataError, match=match):
        read_idx(path)


def test_read_idx_rejects_broken_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(200) % 256))
    cases = {
        "not-gzip.gz": b"plain text, not gzip at all",
        "truncated.gz": good[: len(good) // 2],
        # valid gzip header, damaged deflate stream: zlib.error, which is not an OSError
        "damaged.gz": good[:10] + b"\xff" * (len(good) - 10),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=r"cannot read .*; re-download or reinstall the file"):
            read_idx(tmp_path / name)


def test_corrupt_idx_file_through_load_dataset(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 3))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz ends inside its IDX header"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_data_directory_says_how_to_get_the_files(tmp_path):
    absent = tmp_path / "nowhere"
    with pytest.raises(DataError, match=re.escape("apt-get install -y dataset-fashion-mnist")):
        load_dataset("fashion-mnist", data_dir=absent)
    with pytest.raises(
        DataError, match=r"data directory '.*nowhere' for 'mnist' does not exist; pass --data-dir"
    ):
        load_dataset("mnist", data_dir=absent)
    with pytest.raises(DataError, match=r"dataset 'mnist' needs --data-dir; pass --data-dir DIR holding"):
        load_dataset("mnist")
    with pytest.raises(
        DataError, match=r"for 'cifar10' does not exist; pass --data-dir DIR holding cifar-10-batches"
    ):
        load_dataset("cifar10", data_dir=absent)


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "f.gz"
    file.write_bytes(b"")
    with pytest.raises(DataError, match=r"does not exist"):
        load_dataset("mnist", data_dir=file)


@pytest.mark.fashion
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason=f"Fashion-MNIST not installed in {FASHION_DIR} "
                    "(apt-get install -y dataset-fashion-mnist)")
def test_fashion_mnist_real_files():
    bundle = load_dataset("fashion-mnist")
    assert (len(bundle.train), len(bundle.test)) == (60000, 10000)
    assert bundle.spec == DataSpec((1, 28, 28), 10)
    assert bundle.train.ids.tolist() == list(range(60000))
    assert int(bundle.test.ids.min()) == 60000 and int(bundle.test.ids.max()) == 69999
    assert bundle.train.class_counts() == {c: 6000 for c in range(10)}
    assert bundle.test.class_counts() == {c: 1000 for c in range(10)}
    assert abs(float(bundle.train.x.mean())) < 1e-3
    assert bundle.options == {"data_dir": str(FASHION_DIR)}


# --- CIFAR-10 ------------------------------------------------------------------------------------

def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"synthetic",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"filenames": [b"img.png"] * n,
    }


def write_cifar(directory: Path, protocol: int = 2, n: int = 3) -> dict[str, dict]:
    directory.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(2, 99)
    for name, batch in batches.items():
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
    return batches


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_from_synthetic_batches(tmp_path, protocol):
    batches = write_cifar(tmp_path, protocol)
    bundle = load_dataset("cifar10", data_dir=tmp_path)
    assert (len(bundle.train), len(bundle.test)) == (15, 2)
    assert bundle.spec == DataSpec((3, 32, 32), 10)
    assert bundle.train.ids.tolist() == list(range(15))
    assert bundle.test.ids.tolist() == [15, 16]
    assert bundle.train.y.tolist() == [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    assert bundle.class_names[0] == "airplane"
    # per-channel standardisation with train statistics; row-major [3, 32, 32] layout preserved
    assert torch.allclose(bundle.train.x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    raw = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    raw = torch.from_numpy(raw.astype(np.float32) / 255.0)
    mean, std = raw.mean(dim=(0, 2, 3), keepdim=True), raw.std(dim=(0, 2, 3), keepdim=True)
    assert torch.allclose(bundle.train.x, (raw - mean) / std, atol=1e-5)


def test_cifar10_finds_nested_batches_dir(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    assert len(load_dataset("cifar10", data_dir=tmp_path).train) == 15


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_malicious_pickle(tmp_path):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Exploit(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(
        DataError, match=r"data_batch_2 is not a CIFAR-10 python batch \(refusing to load .*system"
    ):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"definitely not a pickle", r"test_batch is not a CIFAR-10 python batch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), r"test_batch is not a CIFAR-10 .*b'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"is not a CIFAR-10"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), r"\(2 images but 1 labels"),
        (pickle.dumps([1, 2, 3]), r"is not a CIFAR-10 python batch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-20], r"not a CIFAR-10"),
    ],
)
def test_cifar10_rejects_corrupt_batches(tmp_path, content, match):
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_missing_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(
        DataError, match=r"data_batch_3 not found in .*; pass --data-dir DIR holding cifar-10-batch"
    ):
        load_dataset("cifar10", data_dir=tmp_path)


# --- tabular -------------------------------------------------------------------------------------

def table(n: int = 30):
    import pandas as pd

    rng = np.random.default_rng(3)
    return pd.DataFrame({
        "height": rng.normal(170, 10, n),
        "weight": rng.normal(70, 5, n),
        "animal": np.array(["eel", "cat", "dog"])[np.arange(n) % 3],
        "uid": 1000 + 7 * np.arange(n),
        "owner": np.arange(n) // 3,
        "sex": np.arange(n) % 2,
    })


def write_table(path: Path, frame=None) -> Path:
    frame = table() if frame is None else frame
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_with_every_column_kind(tmp_path, suffix):
    frame = table()
    path = write_table(tmp_path / f"people{suffix}", frame)
    bundle = load_dataset("tabular", data_dir=path, label="animal", id_column="uid", subject_column="owner",
                          attribute_columns=["sex"], test_fraction=0.2)
    train, test = bundle.train, bundle.test
    assert (len(train), len(test)) == (24, 6)
    assert bundle.spec == DataSpec((2,), 3)  # only height and weight are features
    assert bundle.class_names == ["cat", "dog", "eel"]
    assert bundle.source == "tabular"
    assert bundle.options["label"] == "animal" and bundle.options["attribute_columns"] == ["sex"]
    assert not set(train.ids.tolist()) & set(test.ids.tolist())
    assert set(train.ids.tolist()) | set(test.ids.tolist()) == set(frame["uid"])
    by_uid = frame.set_index("uid")
    for part in (train, test):
        rows = by_uid.loc[part.ids.numpy()]
        assert [bundle.class_names[c] for c in part.y.tolist()] == rows["animal"].tolist()
        assert part.subjects.tolist() == rows["owner"].tolist()
        assert part.attributes["sex"].tolist() == rows["sex"].tolist()
    # features standardised per column with the train rows' statistics
    assert torch.allclose(train.x.mean(0), torch.zeros(2), atol=1e-5)
    raw = torch.tensor(by_uid.loc[train.ids.numpy(), ["height", "weight"]].to_numpy(), dtype=torch.float32)
    assert torch.allclose(train.x, (raw - raw.mean(0)) / raw.std(0), atol=1e-4)


def test_tabular_defaults_row_numbers_as_ids_and_numeric_labels(tmp_path):
    frame = table().drop(columns=["animal"])
    frame["label"] = [5, 9] * 15
    path = write_table(tmp_path / "t.csv", frame)
    bundle = load_dataset("tabular", data_dir=path, label="label")
    assert bundle.class_names == ["5", "9"]
    assert set(torch.cat([bundle.train.ids, bundle.test.ids]).tolist()) == set(range(30))
    # unnamed columns (uid, owner, sex) are features
    assert bundle.spec == DataSpec((5,), 2)
    assert bundle.train.subjects is None


@pytest.mark.parametrize(
    ("change", "kwargs", "match"),
    [
        (lambda f: f.assign(color=["red"] * len(f)), {}, r"feature column\(s\) \['color'\] are not numeric"),
        (None, {"label": "nope"}, r"column\(s\) \['nope'\] not in .*; available: \['height'"),
        (None, {"attribute_columns": ["age"]}, r"column\(s\) \['age'\] not in"),
        (lambda f: f.assign(uid=[1] * len(f)), {"id_column": "uid"}, r"'uid' of .* repeats ids \(e.g. 1"),
        (lambda f: f.assign(uid=f["uid"].astype(str) + "x"), {"id_column": "uid"}, r"ids must be integers"),
        (lambda f: f.assign(owner=["ann", "bob"] * 15), {"subject_column": "owner"}, r"subjects must be int"),
        (lambda f: f.assign(height=[np.nan] + [1.0] * 29), {}, r"has missing feature values"),
        (lambda f: f.assign(animal=[None] + ["cat"] * 29), {}, r"label column 'animal' .* has missing value"),
        (lambda f: f[["animal", "uid"]], {"id_column": "uid"}, r"has no feature columns besides the named"),
    ],
)
def test_tabular_errors(tmp_path, change, kwargs, match):
    frame = table() if change is None else change(table())
    path = write_table(tmp_path / "t.csv", frame)
    with pytest.raises(DataError, match=match):
        load_dataset("tabular", data_dir=path, **{"label": "animal", **kwargs})


def test_tabular_missing_and_unparsable_files(tmp_path):
    with pytest.raises(DataError, match=r"tabular file '.*absent.csv' does not exist; pass --data-dir"):
        load_dataset("tabular", data_dir=tmp_path / "absent.csv", label="y")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"cannot parse '.*bad.parquet' \(.*\); check the file format"):
        load_dataset("tabular", data_dir=bad, label="y")
