"""Multi-task data sources: every sample carries several label columns (``IndexedDataset.tasks``).

    multi-fashion-mnist   two Fashion-MNIST items in one 28x28 image; tasks left (10), right (10), same (2)
    multi-digits          two scikit-learn digits in one 12x12 image; tasks left (10), right (10), same (2)
    fashion-mnist-tasks   plain Fashion-MNIST; tasks class (10) and group (4, the coarse group of the class)

The two composite sources follow MultiMNIST (Sabour, Frosst, Hinton, NeurIPS 2017, "Dynamic Routing Between
Capsules"): two images of the same split overlap on one canvas, and a model must name both. Image ``i`` of a split
is paired with a partner ``j != i`` of the same split, drawn uniformly at random. The canvas is zero, ``i`` sits in
its top-left corner and ``j`` in its bottom-right corner, and where they overlap the brighter pixel wins
(elementwise max). Fashion-MNIST's canvas is 36x36 (items of 28x28, shifted by 8 pixels) and is then resized back
to 28x28 (bilinear, antialiased); the digits' canvas is 12x12 (items of 8x8, shifted by 4) and keeps that size.
Every split is then standardised with the training composites' global mean and std (one scalar each).

Tasks, in order (the first one is also the split's ``y``):

    left    class of the top-left item
    right   class of the bottom-right item (the partner)
    same    1 when both items fall in the same coarse group, else 0: same parity for digits, same
            ``FASHION_GROUPS`` entry for Fashion-MNIST (tops, bottoms, footwear, bags)

A composite takes the id of its top-left item (the ``fashion-mnist`` / ``digits`` sources' ids), so ids are unique
and never move; ``fashion-mnist-tasks`` keeps the ``fashion-mnist`` ids and images unchanged. The partners come
from the ``seed`` option alone (one independent generator per split), so the same options give the same data bit
for bit.

    >>> from unlearnkit.data import load_dataset
    >>> bundle = load_dataset("multi-digits", data_options={"seed": 0})
    >>> bundle.spec.input_shape, list(bundle.train.tasks)
    ((1, 12, 12), ['left', 'right', 'same'])

The sources register themselves when ``unlearnkit.data`` is imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.data.biased import _rngs
from unlearnkit.data.dataset import DatasetBundle, IndexedDataset
from unlearnkit.data.sources import (
    FASHION_HOW,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    DataOption,
    DataSource,
    _load_idx_dir,
    digits_images,
    read_idx_dir,
    register_source,
)
from unlearnkit.errors import DataError

__all__ = ["CHUNK", "COMPOSITE_TASKS", "FASHION_GROUPS", "FASHION_GROUP_NAMES", "compose", "draw_partners"]

# Coarse group of each Fashion-MNIST class, indexed by class: tops 0 (T-shirt/top, Pullover, Dress, Coat, Shirt),
# bottoms 1 (Trouser), footwear 2 (Sandal, Sneaker, Ankle boot), bags 3 (Bag).
FASHION_GROUPS = (0, 1, 0, 0, 0, 2, 0, 2, 3, 2)
FASHION_GROUP_NAMES = ("tops", "bottoms", "footwear", "bags")
# The label columns of both composite sources, in order, with their class counts.
COMPOSITE_TASKS = (("left", 10), ("right", 10), ("same", 2))
# Composites are built this many at a time, so that no full-size canvas or resize buffer is ever held.
CHUNK = 4096

SEED_HELP = "seeds the partner draw (which item sits bottom-right of each composite): same options, same data"


def draw_partners(n: int, rng: np.random.Generator) -> np.ndarray:
    """A partner position for each of ``n`` items: uniform over the other ``n - 1`` (never the item itself)."""
    if n < 2:
        raise DataError(f"a composite split needs at least 2 images to pair, got {n}; use a larger split")
    return (np.arange(n) + rng.integers(1, n, size=n)) % n


def compose(images: torch.Tensor, partners: np.ndarray, canvas: int, size: int | None = None) -> torch.Tensor:
    """Unscaled composites ``[N, 1, S, S]`` float32 of grey images ``[N, H, W]`` in [0, 1]: image ``i`` top-left,
    image ``partners[i]`` bottom-right of a ``canvas``-wide zero square, merged by elementwise max, then resized
    to ``size`` (bilinear, antialiased) unless ``size`` is None. Built ``CHUNK`` images at a time."""
    n, h, w = images.shape
    dy, dx = canvas - h, canvas - w
    side = canvas if size is None else size
    out = torch.empty(n, 1, side, side, dtype=torch.float32)
    order = torch.from_numpy(np.asarray(partners, dtype=np.int64))
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        board = torch.zeros(stop - start, 1, canvas, canvas, dtype=torch.float32)
        board[:, 0, :h, :w] = images[start:stop]
        board[:, 0, dy:, dx:] = torch.maximum(board[:, 0, dy:, dx:], images[order[start:stop]])
        if size is not None:
            board = F.interpolate(board, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:stop] = board
    return out


def _stats(x: torch.Tensor) -> tuple[float, float]:
    """Global mean and std (N - 1 in the denominator, like ``Tensor.std``) of ``x``, summed chunk by chunk in
    float64 with numpy's fixed summation order: the same numbers whatever the thread count."""
    chunks = [c.numpy() for c in x.split(CHUNK)]
    count = x.numel()
    mean = sum(float(np.sum(c, dtype=np.float64)) for c in chunks) / count
    squares = sum(float(np.sum(np.square(c.astype(np.float64) - mean))) for c in chunks)
    std = max((squares / max(count - 1, 1)) ** 0.5, 1e-8)
    return mean, std


def _composite_bundle(splits: dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]], *, canvas: int,
                      size: int | None, groups: np.ndarray, seed: int, source: str,
                      class_names: list[str]) -> DatasetBundle:
    """Pair, compose and standardise the ``train`` and ``test`` splits (grey images, labels, ids) with their tasks."""
    built = {}
    for (name, (images, y, ids)), rng in zip(splits.items(), _rngs(seed, len(splits)), strict=True):
        partners = draw_partners(len(y), rng)
        left, right = torch.from_numpy(y), torch.from_numpy(y[partners])
        same = torch.from_numpy((groups[y] == groups[y[partners]]).astype(np.int64))
        tasks = {"left": left.clone(), "right": right, "same": same}
        built[name] = (compose(images, partners, canvas, size), left, ids, tasks)
    mean, std = _stats(built["train"][0])
    parts = {}
    for name, (x, left, ids, tasks) in built.items():
        x.sub_(mean).div_(std)  # in place: the composites are ours
        parts[name] = IndexedDataset(x, left, torch.from_numpy(ids), num_classes=10, tasks=tasks)
    return DatasetBundle(train=parts["train"], test=parts["test"], source=source, class_names=class_names)


def _load_multi_digits(test_fraction: float = 0.2, *, seed: int) -> DatasetBundle:
    x, y, train_idx, test_idx = digits_images(test_fraction)  # a row's index is its id
    splits = {"train": (x[train_idx], y[train_idx], train_idx), "test": (x[test_idx], y[test_idx], test_idx)}
    return _composite_bundle(splits, canvas=12, size=None, groups=np.arange(10) % 2, seed=seed,
                             source="multi-digits", class_names=[str(i) for i in range(10)])


def _load_multi_fashion_mnist(directory: Path, *, seed: int) -> DatasetBundle:
    xtr, ytr, xte, yte = read_idx_dir(directory)  # ids as fashion-mnist gives them: train 0.., then test
    to_gray = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    n = len(ytr)
    splits = {"train": (to_gray(xtr), ytr.astype(np.int64), np.arange(n)),
              "test": (to_gray(xte), yte.astype(np.int64), np.arange(n, n + len(yte)))}
    return _composite_bundle(splits, canvas=36, size=28, groups=np.asarray(FASHION_GROUPS), seed=seed,
                             source="multi-fashion-mnist", class_names=list(FASHION_MNIST_CLASSES))


def _load_fashion_mnist_tasks(directory: Path) -> DatasetBundle:
    plain = _load_idx_dir(directory, "fashion-mnist-tasks", list(FASHION_MNIST_CLASSES))  # fashion-mnist's x, ids
    groups = torch.tensor(FASHION_GROUPS, dtype=torch.int64)

    def with_tasks(split: IndexedDataset) -> IndexedDataset:
        return IndexedDataset(split.x, split.y, split.ids, num_classes=10,
                              tasks={"class": split.y, "group": groups[split.y]})

    return DatasetBundle(train=with_tasks(plain.train), test=with_tasks(plain.test), source="fashion-mnist-tasks",
                         class_names=plain.class_names)


_SEED = DataOption("seed", int, 0, SEED_HELP, low=0)

register_source(DataSource(
    "multi-fashion-mnist", "two Fashion-MNIST items overlapped in one 28x28 image (MultiMNIST-style); tasks left, "
    "right, same group", _load_multi_fashion_mnist, default_dir=FASHION_MNIST_DIR, how_to_get=FASHION_HOW,
    default_model="mtl-cnn", options=(_SEED,), tasks=COMPOSITE_TASKS,
))
register_source(DataSource(
    "multi-digits", "two digits overlapped in one 12x12 image (MultiMNIST-style), embedded; tasks left, right, "
    "same parity", _load_multi_digits, embedded=True, default_model="mtl-mlp", options=(_SEED,),
    tasks=COMPOSITE_TASKS,
))
register_source(DataSource(
    "fashion-mnist-tasks", "Fashion-MNIST with two tasks: class (10) and coarse group (4: tops, bottoms, footwear, "
    "bags)", _load_fashion_mnist_tasks, default_dir=FASHION_MNIST_DIR, how_to_get=FASHION_HOW,
    default_model="mtl-cnn", tasks=(("class", 10), ("group", 4)),
))
