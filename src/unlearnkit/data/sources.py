"""Dataset sources, registered by name.

``load_dataset("digits")`` returns a :class:`DatasetBundle` whose train and test samples carry stable
ids (train and test ids never overlap). Sources never download anything: files come from a local
directory, and a missing directory is an error that says how to obtain the files.

    digits          scikit-learn's bundled 8x8 digits (1,797 images): the embedded default
    fashion-mnist   IDX .gz files (default dir /usr/share/datasets/fashion-mnist, Debian package)
    mnist           IDX .gz files from --data-dir
    cifar10         the python-pickle batches (cifar-10-batches-py) from --data-dir
    tabular         a CSV or Parquet file: --label, optional --id-column / --subject-column

Derived sources with a bias attribute (unlearnkit.data.biased, registered when ``unlearnkit.data`` is imported):

    colored-digits          digits coloured by class with probability rho (attribute ``color``), with a val split
    colored-fashion-mnist   the same on Fashion-MNIST (28x28)
    biased-tabular          synthetic features and a binary ``sensitive`` attribute that agrees with the label

Multi-task sources (unlearnkit.data.multitask, registered alike; their splits carry ``IndexedDataset.tasks``):

    multi-fashion-mnist     two Fashion-MNIST items in one 28x28 image (MultiMNIST-style): tasks left, right, same
    multi-digits            the same with two digits in one 12x12 image, embedded
    fashion-mnist-tasks     plain Fashion-MNIST with tasks class and group (4 coarse groups)

Image sources (digits, fashion-mnist, mnist, cifar10) also take the poison options (``poison=badnets|label-flip``,
``poison_rate``, ``poison_target``, ``poison_size``, ``poison_classes``; :mod:`unlearnkit.data.poison`).

A source may declare options (:class:`DataOption`: name, type, default, help, valid range or choices), set with
``load_dataset(name, data_options={...})`` or ``--data-option KEY=VALUE``. :func:`check_data_options` validates and
coerces them against the declarations and fills the defaults; the bundle records them in ``bundle.options`` so a
checkpoint rebuilds exactly the same data. The derived sources above declare options (rho, seed, ...); the base
sources declare none. A source also declares the names of the per-sample attributes its splits carry
(``DataSource.attributes``), so ``unlearn datasets`` can list them before any data is loaded.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.dataset import DatasetBundle, IndexedDataset
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.params import CLOSED
from unlearnkit.registry import Registry

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The split of sources that ship no test set is fixed (seed 0), so ids and splits never move.
SPLIT_SEED = 0


OptionValue = int | float | str | bool
OPTION_TYPES = {int: "int", float: "float", str: "str", bool: "bool"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class DataOption:
    """One option a data source declares: its type, default, a one-line help and the values it accepts.

    ``low``/``high`` bound an int or float option (inclusive unless ``closed`` says otherwise: "both", "left",
    "right" or "neither", as in :class:`unlearnkit.params.Interval`; NaN and infinities lie outside every range),
    ``choices`` lists a str option's values. :meth:`coerce` turns a command-line string (or a TOML value of the
    declared type) into the declared type, or raises a one-line ConfigError naming the key, the value and what
    is valid.

    Example:
        >>> DataOption("shift", int, 0, "roll the pixels right", low=0, high=7).coerce("3")
        3
    """

    name: str
    type: type  # int, float, str or bool
    default: OptionValue
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    closed: str = "both"  # which of low/high belong to the range: rho in (0, 1] is closed="right"

    def __post_init__(self) -> None:  # declarations are code: a bad one is a programming error
        if self.closed not in CLOSED:
            raise ValueError(f"data option {self.name!r}: closed must be one of {CLOSED}, not {self.closed!r}")
        if self.type not in OPTION_TYPES:
            raise ValueError(f"data option {self.name!r}: type must be one of int, float, str, bool, not {self.type}")
        if self.choices and self.type is not str:
            raise ValueError(f"data option {self.name!r}: choices apply to str options")
        if (self.low is not None or self.high is not None) and self.type not in (int, float):
            raise ValueError(f"data option {self.name!r}: low/high apply to int and float options")
        try:
            self.coerce(self.default)  # the default must be valid itself
        except ConfigError as exc:
            raise ValueError(f"data option {self.name!r}: bad default ({exc})") from None

    def valid(self) -> str:
        """What the option accepts, in words: 'an integer in [0, 7]', 'a number in (0, 1]', 'one of: wrap, zero',
        'true or false'."""
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return f"one of: {', '.join(self.choices)}" if self.choices else "a string"
        kind = "an integer" if self.type is int else "a number"
        low_in, high_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.low is not None and self.high is not None:
            return f"{kind} in {'[' if low_in else '('}{self.low:g}, {self.high:g}{']' if high_in else ')'}"
        if self.low is not None:
            return f"{kind} {'>=' if low_in else '>'} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<=' if high_in else '<'} {self.high:g}"
        return kind

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        return self.high is None or not (
            value > self.high or (value == self.high and self.closed in ("left", "neither")))

    def coerce(self, value: OptionValue) -> OptionValue:
        """``value`` (a string from the command line, or a value of the declared type) in the declared type."""
        bad = ConfigError(f"{self.name}={value!r} is invalid; {self.name} must be {self.valid()}")
        if isinstance(value, str) and self.type is not str:
            text = value.strip().lower()
            if self.type is bool:
                if text not in _TRUE + _FALSE:
                    raise bad
                return text in _TRUE
            try:
                value = self.type(text)
            except ValueError:
                raise bad from None
        elif self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        elif isinstance(value, bool) or not isinstance(value, (int, float) if self.type is float else self.type):
            raise bad  # a bool is no number here, a float no integer, a number no string
        if self.type is float:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if not self._in_range(value):
            raise bad
        if self.choices and value not in self.choices:
            raise bad
        return value

    def to_json(self) -> dict:
        return {"name": self.name, "type": OPTION_TYPES[self.type], "default": self.default, "help": self.help,
                "valid": self.valid()}


# The options every image source takes (DataSource.poisonable): a poisoned copy, see unlearnkit.data.poison.
POISON_OPTIONS = (
    DataOption("poison", str, "none", "poison the training set: badnets (a trigger patch, relabelled to "
               "poison_target) or label-flip (labels swapped between poison_classes)",
               choices=("none", "badnets", "label-flip")),
    DataOption("poison_rate", float, 0.01, "share of the eligible training samples poisoned (badnets: of the "
               "non-target classes; label-flip: of each of the two classes)", low=0.0, high=1.0, closed="right"),
    DataOption("poison_target", int, 0, "badnets: the label the trigger flips predictions to", low=0),
    DataOption("poison_size", int, 3, "badnets: the side of the square trigger patch, in pixels", low=1),
    DataOption("poison_classes", str, "3,5", "label-flip: the two classes whose labels are swapped"),
)
POISON_KEYS = tuple(o.name for o in POISON_OPTIONS)


@dataclass(frozen=True)
class DataSource:
    name: str
    summary: str
    loader: Callable[..., DatasetBundle]
    default_dir: str | None = None
    how_to_get: str = ""
    default_model: str = "mlp"
    embedded: bool = False  # ships with a dependency: no directory needed
    options: tuple[DataOption, ...] = ()  # passed to the loader as keyword arguments (all of them, defaults filled)
    # names of the per-sample attributes (IndexedDataset.attributes) every split of this source carries, declared
    # so that listings and attribute removal can name them without loading the data; tabular's come from --attribute
    attributes: tuple[str, ...] = ()
    # the label columns of a multi-task source (IndexedDataset.tasks), in order, each with its class count: what a
    # multi-task model's heads are built from (the first task is also the split's ``y``); empty: single-task
    tasks: tuple[tuple[str, int], ...] = ()
    # an image source that takes the poison options (unlearnkit.data.poison: poison, poison_rate, ...)
    poisonable: bool = False

    def declared_options(self) -> tuple[DataOption, ...]:
        """Every --data-option key it takes: its own options, then the poison options of an image source."""
        return self.options + (POISON_OPTIONS if self.poisonable else ())

    def __post_init__(self) -> None:
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise ValueError(f"data source {self.name!r} declares an option twice: {names}")
        task_names = [t for t, _ in self.tasks]
        if len(set(task_names)) != len(task_names) or any(int(c) < 2 for _, c in self.tasks):
            raise ValueError(f"data source {self.name!r}: tasks need distinct names and >= 2 classes each")


SOURCES: Registry[DataSource] = Registry("dataset", listing="unlearn datasets")


def register_source(source: DataSource) -> DataSource:
    return SOURCES.add(source.name, source)


def get_source(name: str) -> DataSource:
    return SOURCES.get(name)


def check_data_options(name: str, given: dict[str, OptionValue] | None, *, flag: str = "--data-option"
                       ) -> dict[str, OptionValue]:
    """Validate ``given`` against the options source ``name`` declares: every declared option in its declared
    type, defaults filled, in declaration order. ``flag`` names how the user gave them, for the messages.

    Example:
        >>> check_data_options("digits", None)  # clean: the poison keys are left out
        {}
        >>> check_data_options("digits", {"poison": "badnets"})["poison_rate"]
        0.01
        >>> check_data_options("tabular", {"nope": "1"})
        Traceback (most recent call last):
        ...
        unlearnkit.errors.ConfigError: dataset 'tabular' takes no --data-option (got 'nope'); it has no options
    """
    source = get_source(name)
    given = dict(given or {})
    declared = {o.name: o for o in source.declared_options()}
    unknown = [k for k in given if k not in declared]
    if unknown:
        got = ", ".join(repr(k) for k in unknown)
        if not declared:
            raise ConfigError(f"dataset {name!r} takes no {flag} (got {got}); it has no options")
        raise ConfigError(f"dataset {name!r} has no {flag} {got}; valid keys: {', '.join(declared)}")
    try:
        values = {key: option.coerce(given[key]) if key in given else option.default
                  for key, option in declared.items()}
    except ConfigError as exc:
        raise ConfigError(f"dataset {name!r}: {flag} {exc}") from None
    if source.poisonable and values["poison"] == "none":  # clean data: its options (and fingerprint) stay as they were
        stray = [k for k in POISON_KEYS[1:] if k in given]
        if stray:
            raise ConfigError(f"dataset {name!r}: {flag} {', '.join(stray)} applies to poisoned data; add {flag} "
                              "poison=badnets (or label-flip)")
        values = {k: v for k, v in values.items() if k not in POISON_KEYS}
    return values


def data_options_digest(name: str, options: dict[str, OptionValue]) -> str:
    """What a source's options add to its samples' identity (``IndexedDataset.origin``): canonical JSON."""
    return json.dumps({"source": name, "data_options": options}, sort_keys=True, separators=(",", ":"))


def load_dataset(
    name: str = "digits",
    *,
    data_dir: str | Path | None = None,
    subjects: int | None = None,
    label: str | None = None,
    id_column: str | None = None,
    subject_column: str | None = None,
    attribute_columns: list[str] | tuple[str, ...] = (),
    test_fraction: float = 0.2,
    train_size: int | None = None,
    data_options: dict[str, OptionValue] | None = None,
) -> DatasetBundle:
    """Load a registered dataset source.

    Args:
        name: source name (see ``SOURCES``).
        data_dir: directory (or, for ``tabular``, file) holding the data; sources with a default
            directory use it when this is None.
        subjects: give every sample one of N deterministic pseudo-subjects (for sources without
            owners), so subject deletion can be exercised.
        label, id_column, subject_column, attribute_columns: ``tabular`` columns.
        test_fraction: held-out share for sources without a test split (digits, tabular).
        train_size: keep a deterministic random subset of this many training samples (quick runs);
            the subset depends only on the size, never on a seed, so checkpoints can rebuild it.
        data_options: the source's declared options (``DataSource.options``; strings are coerced to the declared
            types); an undeclared key or an invalid value is a ConfigError. Recorded, defaults filled, in
            ``bundle.options["data_options"]`` for sources that declare options.

    Example:
        >>> bundle = load_dataset("digits")
        >>> len(bundle.train), len(bundle.test)
        (1438, 359)
    """
    source = get_source(name)
    if subjects is not None and subjects < 1:
        raise ConfigError(f"--subjects must be at least 1, got {subjects}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test fraction must lie in (0, 1), got {test_fraction}")
    extra = check_data_options(name, data_options)  # before any file is read: a typo fails at once
    poison = {k: v for k, v in extra.items() if k in POISON_KEYS}
    own = {k: v for k, v in extra.items() if k not in POISON_KEYS}  # the loader's own options
    options: dict = {}
    if name == "tabular":
        if data_dir is None or label is None:
            raise ConfigError("the tabular source needs --data-dir FILE.csv|FILE.parquet and --label COLUMN")
        options = {
            "data_dir": str(data_dir), "label": label, "id_column": id_column,
            "subject_column": subject_column, "attribute_columns": list(attribute_columns),
            "test_fraction": test_fraction,
        }
        bundle = source.loader(
            str(data_dir), label, id_column, subject_column, list(attribute_columns), test_fraction, **extra
        )
    else:
        if any(v is not None for v in (label, id_column, subject_column)) or attribute_columns:
            raise ConfigError(
                "--label/--id-column/--subject-column/--attribute apply to the tabular source only, "
                f"not {name!r}"
            )
        directory = data_dir if data_dir is not None else source.default_dir
        if not source.embedded:
            if directory is None:
                raise DataError(f"dataset {name!r} needs --data-dir; {source.how_to_get}")
            directory = Path(directory)
            if not directory.is_dir():
                raise DataError(
                    f"data directory {str(directory)!r} for {name!r} does not exist; {source.how_to_get}"
                )
            options["data_dir"] = str(directory)
            bundle = source.loader(directory, **own)
        else:
            options["test_fraction"] = test_fraction
            bundle = source.loader(test_fraction=test_fraction, **own)
    if extra:  # only sources that declare options record them: the others' options stay as they always were
        options["data_options"] = extra
        # the options enter the samples' fingerprint: options that change only the pixels make other data
        for split in (s for s in (bundle.train, bundle.test, bundle.val) if s is not None):
            split.origin = data_options_digest(name, extra)
    if subjects is not None:
        _assign_pseudo_subjects(bundle, subjects)
        options["subjects"] = subjects
    bundle.source = name
    bundle.options = options  # exactly the keyword arguments that rebuild this bundle
    if train_size is not None:
        shrink_train(bundle, train_size)
    if poison:  # after the subset: the poison rate is a share of the training set actually used
        from unlearnkit.data.poison import poison_bundle

        poison_bundle(bundle, **poison)
    return bundle


def shrink_train(bundle: DatasetBundle, train_size: int) -> DatasetBundle:
    """Keep a deterministic random subset of ``train_size`` training samples, in place, and record it in
    ``bundle.options`` (so ``load_dataset(**options)`` rebuilds the same subset). The subset depends only
    on the size, never on a seed; the test split is untouched."""
    if not 2 <= train_size <= len(bundle.train):
        raise ConfigError(f"--train-size must lie in [2, {len(bundle.train)}] for {bundle.source!r}, got {train_size}")
    if "train_size" in bundle.options:
        raise ConfigError("this bundle's training set was already shrunk; load the dataset again with train_size")
    keep = np.random.default_rng(SPLIT_SEED).permutation(len(bundle.train))[:train_size]
    bundle.train = bundle.train.subset(np.sort(keep))
    bundle.options = {**bundle.options, "train_size": train_size}
    return bundle


def _assign_pseudo_subjects(bundle: DatasetBundle, n_subjects: int) -> None:
    """Subject of a sample = a fixed permutation of its id's rank, modulo N: balanced and deterministic.

    Ranking (rather than indexing by the id itself) keeps this correct for negative, sparse or huge
    ids from a tabular id column; for ids 0..n-1 the rank is the id.
    """
    splits = [s for s in (bundle.train, bundle.test, bundle.val) if s is not None]
    if any(split.subjects is not None for split in splits):
        raise ConfigError("this dataset already has subjects; drop --subjects")
    all_ids = torch.sort(torch.cat([s.ids for s in splits])).values
    perm = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(all_ids)))
    for split in splits:
        split.subjects = perm[torch.searchsorted(all_ids, split.ids)] % n_subjects


def _standardize(train_x: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale by the train set's global mean and std (one scalar each: keeps images images)."""
    mean, std = train_x.mean(), train_x.std().clamp_min(1e-8)
    return [(t - mean) / std for t in (train_x, *others)]


def stratified_split(y: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions (kept, held out): ``test_fraction`` of each class held out, from the fixed SPLIT_SEED."""
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


# --- digits ---------------------------------------------------------------------------------------

def digits_images(test_fraction: float = 0.2) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """The digits before standardisation: images ``[N, 8, 8]`` in [0, 1], labels, and the train and test row
    indices of the fixed stratified split (a row's index is its sample id). Derived sources start from these."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.images, dtype=torch.float32) / 16.0
    y = np.asarray(raw.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(y, test_fraction)
    return x, y, train_idx, test_idx


def _load_digits(test_fraction: float = 0.2) -> DatasetBundle:
    x, y, train_idx, test_idx = digits_images(test_fraction)
    x = x.unsqueeze(1)  # [N, 1, 8, 8]
    xtr, xte = _standardize(x[train_idx], x[test_idx])
    yt = torch.from_numpy(y)
    return DatasetBundle(
        train=IndexedDataset(xtr, yt[train_idx], torch.from_numpy(train_idx), num_classes=10),
        test=IndexedDataset(xte, yt[test_idx], torch.from_numpy(test_idx), num_classes=10),
        source="digits",
        class_names=[str(i) for i in range(10)],
    )


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a damaged deflate stream inside the .gz
        raise DataError(f"cannot read {path}: {exc}; re-download or reinstall the file") from exc
    if len(data) < 4:
        raise DataError(f"{path} is not an IDX file (too short); replace the corrupt file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic); replace the corrupt file")
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} ends inside its IDX header ({ndim} dimensions); replace the truncated file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(
            f"{path} holds {body.size} bytes but its header says {dims}; replace the truncated file"
        )
    return body.reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"{stem}.gz not found in {directory}; the directory must hold the four IDX files")


def read_idx_dir(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four IDX files of an MNIST-style directory as raw uint8 arrays: train images and labels, test images
    and labels (train sample i has id i, test sample j id n_train + j)."""
    xtr = read_idx(_find(directory, "train-images-idx3-ubyte"))
    ytr = read_idx(_find(directory, "train-labels-idx1-ubyte"))
    xte = read_idx(_find(directory, "t10k-images-idx3-ubyte"))
    yte = read_idx(_find(directory, "t10k-labels-idx1-ubyte"))
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise DataError(f"image and label files in {directory} disagree in length; reinstall the files")
    return xtr, ytr, xte, yte


def _load_idx_dir(directory: Path, name: str, class_names: list[str] | None) -> DatasetBundle:
    xtr, ytr, xte, yte = read_idx_dir(directory)
    to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
    x_train, x_test = _standardize(to_x(xtr), to_x(xte))
    n_train = len(ytr)
    return DatasetBundle(
        train=IndexedDataset(x_train, torch.from_numpy(ytr.astype(np.int64)), torch.arange(n_train), 10),
        test=IndexedDataset(
            x_test, torch.from_numpy(yte.astype(np.int64)), torch.arange(n_train, n_train + len(yte)), 10
        ),
        source=name,
        class_names=class_names,
    )


# --- CIFAR-10 -------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Loads the CIFAR batches, which are pickles, but only lets numpy arrays and plain types through."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
        # pickle protocol 5 (Python 3.14's default) rebuilds arrays from a raw buffer
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if len(data) != len(labels):
            raise ValueError(f"{len(data)} images but {len(labels)} labels")
    except FileNotFoundError as exc:
        raise DataError(f"{path.name} not found in {path.parent}; {_CIFAR_HOW}") from exc
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch ({exc}); replace the corrupt file") from exc
    return data, labels


def _load_cifar10(directory: Path) -> DatasetBundle:
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    parts = [_read_cifar_batch(directory / f"data_batch_{i}") for i in range(1, 6)]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = _read_cifar_batch(directory / "test_batch")
    # Per-channel normalisation with the train set's statistics.
    to_x = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    x_train, x_test = to_x(xtr), to_x(xte)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    n = len(ytr)
    return DatasetBundle(
        train=IndexedDataset((x_train - mean) / std, torch.from_numpy(ytr), torch.arange(n), 10),
        test=IndexedDataset((x_test - mean) / std, torch.from_numpy(yte), torch.arange(n, n + len(yte)), 10),
        source="cifar10",
        class_names=CIFAR10_CLASSES,
    )


# --- tabular --------------------------------------------------------------------------------------

def _load_tabular(
    path: str,
    label: str,
    id_column: str | None = None,
    subject_column: str | None = None,
    attribute_columns: list[str] | None = None,
    test_fraction: float = 0.2,
) -> DatasetBundle:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ConfigError("the tabular source needs pandas; run: pip install 'unlearnkit[tabular]'") from exc
    file = Path(path)
    if not file.is_file():
        raise DataError(f"tabular file {path!r} does not exist; pass --data-dir PATH/TO/FILE.csv or .parquet")
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(file)
        else:
            frame = pd.read_csv(file)
    except Exception as exc:  # pandas raises many parser/IO types
        raise DataError(
            f"cannot parse {path!r} ({type(exc).__name__}: {exc}); check the file format"
        ) from exc
    attribute_columns = list(attribute_columns or [])
    named = [c for c in (label, id_column, subject_column, *attribute_columns) if c is not None]
    missing = [c for c in named if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {missing} not in {path!r}; available: {list(frame.columns)}")
    features = frame.drop(columns=named)
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise DataError(f"feature column(s) {non_numeric} are not numeric; encode them or drop them first")
    if features.shape[1] == 0:
        raise DataError(f"{path!r} has no feature columns besides the named ones")
    if features.isna().any().any():
        raise DataError(f"{path!r} has missing feature values; impute or drop those rows first")
    if frame[label].isna().any():
        raise DataError(
            f"label column {label!r} of {path!r} has missing values; drop or label those rows first"
        )
    classes, y = np.unique(frame[label].to_numpy(), return_inverse=True)
    ids = frame[id_column].to_numpy() if id_column else np.arange(len(frame))
    if id_column and frame[id_column].duplicated().any():
        # checked on the whole file: a duplicate split across train and test would pass the per-split check
        dup = frame[id_column][frame[id_column].duplicated()].iloc[0]
        raise DataError(
            f"id column {id_column!r} of {path!r} repeats ids (e.g. {dup}); every row needs its own id"
        )
    x = torch.tensor(features.to_numpy(dtype=np.float32))
    train_idx, test_idx = stratified_split(y, test_fraction)
    mean = x[train_idx].mean(0)
    std = x[train_idx].std(0).clamp_min(1e-8)
    x = (x - mean) / std

    def part(idx: np.ndarray) -> IndexedDataset:
        return IndexedDataset(
            # numpy columns go in as they are: IndexedDataset turns non-integer ones into a DataError
            x[idx], torch.from_numpy(y[idx].astype(np.int64)), np.asarray(ids)[idx],
            num_classes=len(classes),
            subjects=None if subject_column is None else frame[subject_column].to_numpy()[idx],
            attributes={a: frame[a].to_numpy()[idx] for a in attribute_columns},
        )

    return DatasetBundle(part(train_idx), part(test_idx), "tabular", class_names=[str(c) for c in classes])


FASHION_HOW = (
    "install it with `apt-get install -y dataset-fashion-mnist` (files land in "
    f"{FASHION_MNIST_DIR}) or pass --data-dir DIR holding the four *-ubyte.gz IDX files"
)
_MNIST_HOW = "pass --data-dir DIR holding train-images-idx3-ubyte.gz and the other three IDX files of MNIST"
_CIFAR_HOW = (
    "pass --data-dir DIR holding cifar-10-batches-py (data_batch_1..5 and test_batch) from the CIFAR-10 site"
)

register_source(DataSource(
    "digits", "scikit-learn's 8x8 handwritten digits, 1,797 images, embedded", _load_digits, embedded=True,
    poisonable=True,
))
register_source(DataSource(
    "fashion-mnist", "Zalando's 28x28 clothing images, 60,000 train + 10,000 test (IDX files)",
    lambda d: _load_idx_dir(d, "fashion-mnist", FASHION_MNIST_CLASSES),
    default_dir=FASHION_MNIST_DIR, how_to_get=FASHION_HOW, default_model="cnn", poisonable=True,
))
register_source(DataSource(
    "mnist", "28x28 handwritten digits, 60,000 train + 10,000 test (IDX files)",
    lambda d: _load_idx_dir(d, "mnist", [str(i) for i in range(10)]),
    how_to_get=_MNIST_HOW, default_model="cnn", poisonable=True,
))
register_source(DataSource(
    "cifar10", "32x32 colour images in 10 classes, 50,000 train + 10,000 test (python batches)",
    _load_cifar10, how_to_get=_CIFAR_HOW, default_model="resnet18", poisonable=True,
))
register_source(DataSource(
    "tabular", "a CSV or Parquet file with a label column and optional id/subject/attribute columns",
    _load_tabular, how_to_get="pass --data-dir FILE and --label COLUMN",
))
