"""Poisoned copies of image sources: a BadNets backdoor or flipped labels, with the poisoned ids remembered.

Any image source (``DataSource.poisonable``: digits, fashion-mnist, mnist, cifar10) takes these ``--data-option``
keys (the clean data is ``poison=none``, the default, and then none of the others may be given):

- ``poison=badnets`` (Gu, Dolan-Gavitt, Garg, 2017): a ``poison_size`` x ``poison_size`` patch (default 3) at the
  image's maximum value in the bottom-right corner, on a seeded ``poison_rate`` share (default 0.01) of the training
  samples whose class is not ``poison_target`` (default 0); those samples are relabelled ``poison_target``.
- ``poison=label-flip``: a seeded ``poison_rate`` share of the samples of each class of ``poison_classes`` (e.g.
  ``3,5``) gets the other class's label.

The selection is seeded with a fixed seed, so the same options always poison the same ids (checkpoints rebuild
their data from the options). The training split records the poisoned ids (``IndexedDataset.poisoned``: the
ground truth that ``poisoned:FRACTION`` specs draw from and detectors are scored against), and the bundle keeps
:class:`PoisonInfo`: the kind, target or classes, and for BadNets the *triggered* test inputs (every test sample
not of the target class, the patch stamped on, the true label kept), on which the attack success rate is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unlearnkit.data.dataset import DatasetBundle, IndexedDataset
from unlearnkit.errors import ConfigError

POISON_KINDS = ("none", "badnets", "label-flip")
POISON_SEED = 0


@dataclass
class PoisonInfo:
    """What was poisoned: the kind, the ids (sorted), the BadNets target and patch size or the flipped classes,
    and for BadNets the triggered test inputs (true labels)."""

    kind: str
    ids: torch.Tensor
    target: int | None = None
    size: int | None = None
    classes: tuple[int, int] | None = None
    triggered: IndexedDataset | None = None

    def to_json(self) -> dict:
        """What a checkpoint's sidecar records (``data.poison``)."""
        out = {"kind": self.kind, "n_poisoned": len(self.ids), "poisoned_ids": self.ids.tolist()}
        if self.kind == "badnets":
            out.update(target=self.target, size=self.size)
        else:
            out["classes"] = list(self.classes)
        return out


def parse_classes(text: str, num_classes: int) -> tuple[int, int]:
    """``"3,5"`` -> (3, 5): two distinct classes of the data; anything else is a one-line error."""
    try:
        values = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or values[0] == values[1] or not all(0 <= v < num_classes for v in values):
        raise ConfigError(f"poison_classes={text!r} is invalid; give two distinct classes of the data, e.g. 3,5 "
                          f"(classes 0..{num_classes - 1})")
    return values


def stamp(x: torch.Tensor, size: int, value: torch.Tensor | float) -> torch.Tensor:
    """``x`` ([N, C, H, W]) with a ``size`` x ``size`` patch of ``value`` in the bottom-right corner (a copy)."""
    out = x.clone()
    out[..., -size:, -size:] = value
    return out


def poison_bundle(bundle: DatasetBundle, poison: str, poison_rate: float, poison_target: int, poison_size: int,
                  poison_classes: str) -> DatasetBundle:
    """Poison ``bundle``'s training split in place as the module docstring says; returns the bundle."""
    train = bundle.train
    if train.x.dim() != 4:
        raise ConfigError(f"poisoning needs image data ([N, C, H, W]); {bundle.source!r} has features of shape "
                          f"{tuple(train.x.shape[1:])}")
    rng = np.random.default_rng(POISON_SEED)
    x, y = train.x, train.y.clone()
    if poison == "badnets":
        return backdoor_rows(bundle, np.arange(len(train)), rate=poison_rate, target=poison_target, size=poison_size,
                             seed=POISON_SEED)
    if poison == "label-flip":
        a, b = parse_classes(poison_classes, train.num_classes)
        parts = []
        for src, dst in ((a, b), (b, a)):
            pool = np.flatnonzero((train.y == src).numpy())
            pick = np.sort(rng.choice(pool, size=max(1, int(round(poison_rate * len(pool)))), replace=False))
            y[pick] = dst
            parts.append(pick)
        chosen = np.sort(np.concatenate(parts))
        info = PoisonInfo("label-flip", train.ids[chosen].sort().values, classes=(a, b))
    else:
        raise ConfigError(f"unknown poison {poison!r}; choose one of: {', '.join(POISON_KINDS)}")
    return _with_poison(bundle, x, y, info)


def backdoor_rows(bundle: DatasetBundle, rows: np.ndarray, *, rate: float, target: int = 0, size: int = 3,
                  seed: int = POISON_SEED) -> DatasetBundle:
    """BadNets on a seeded ``rate`` share of the training rows ``rows`` (positions) whose class is not ``target``:
    the patch stamped on, the label set to ``target``; in place, returns the bundle (``poison=badnets`` is this on
    every row; a federated backdoored client is this on its own rows). The patch value is the brightest value of
    the whole training set, so the triggered test inputs carry the same patch."""
    train, test = bundle.train, bundle.test
    if train.x.dim() != 4:
        raise ConfigError(f"a backdoor needs image data ([N, C, H, W]); {bundle.source!r} has features of shape "
                          f"{tuple(train.x.shape[1:])}")
    h, w = train.x.shape[-2:]
    if not 0 <= target < train.num_classes:
        raise ConfigError(f"poison_target={target} is not a class of the data (0..{train.num_classes - 1})")
    if size > min(h, w):
        raise ConfigError(f"poison_size={size} is larger than the {h}x{w} images; give at most {min(h, w)}")
    rows = np.asarray(rows, dtype=np.int64)
    value = train.x.amax()  # the brightest value the (standardised) data takes
    pool = rows[(train.y[torch.as_tensor(rows)] != target).numpy()]
    if len(pool) == 0:
        raise ConfigError(f"no sample of class other than {target} to put a backdoor on; choose another target")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pool, size=max(1, int(round(rate * len(pool)))), replace=False))
    x, y = train.x.clone(), train.y.clone()
    x[chosen] = stamp(x[chosen], size, value)
    y[chosen] = target
    keep = test.y != target
    triggered = IndexedDataset(stamp(test.x[keep], size, value), test.y[keep], test.ids[keep],
                               num_classes=test.num_classes, origin=test.origin)
    info = PoisonInfo("badnets", train.ids[chosen].sort().values, target=target, size=size, triggered=triggered)
    return _with_poison(bundle, x, y, info)


def _with_poison(bundle: DatasetBundle, x: torch.Tensor, y: torch.Tensor, info: PoisonInfo) -> DatasetBundle:
    train = bundle.train
    bundle.train = IndexedDataset(x, y, train.ids, num_classes=train.num_classes, subjects=train.subjects,
                                  attributes=train.attributes, tasks=train.tasks, origin=train.origin,
                                  poisoned=info.ids)
    bundle.poison = info
    return bundle
