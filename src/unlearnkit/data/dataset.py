"""Datasets whose samples keep their identity.

An :class:`IndexedDataset` holds features ``x``, labels ``y`` and stable int64 ``ids``: a sample's id
never changes, whatever subset it sits in, so a deletion request ("forget ids 17 and 42") means the
same samples in the full training set, in a shard, or in a retain split. Optional per-sample
columns: ``subjects`` (the data owner of each sample), ``attributes`` (name -> int tensor, e.g. a
sensitive attribute) and ``tasks`` (name -> label tensor, for multi-task data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from unlearnkit.errors import DataError


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data: input shape (without batch) and class count."""

    input_shape: tuple[int, ...]
    num_classes: int

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(tuple(int(s) for s in d["input_shape"]), int(d["num_classes"]))


def _as_long(values, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
    except (TypeError, ValueError) as exc:  # strings or mixed objects, e.g. a CSV column of names
        raise DataError(f"{name} must be integers, got non-numeric values; map them to int64 first") from exc
    # an empty list becomes float64 in numpy; with no values there is nothing to reject
    if t.numel() and (t.dtype.is_floating_point or t.dtype == torch.bool):
        raise DataError(f"{name} must be integers, got dtype {t.dtype}; convert the column to int64")
    return t.to(torch.int64)


@dataclass
class IndexedDataset:
    """Features, labels and stable sample ids, plus optional subjects, attributes and tasks.

    Example:
        >>> ds = IndexedDataset(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1]), torch.arange(4), num_classes=2)
        >>> ds.without([1, 3]).ids.tolist()
        [0, 2]
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor
    num_classes: int
    subjects: torch.Tensor | None = None
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)
    tasks: dict[str, torch.Tensor] = field(default_factory=dict)
    # what made these samples beyond their ids and labels, for sources whose options change the features (set by
    # load_dataset from the data options); enters the fingerprint only when set, so other fingerprints never move
    origin: str = ""
    # poisoned data (unlearnkit.data.poison): the ids known to be poisoned, sorted; a set kept whole by subset(), so
    # that a subset's poisoned rows are those of its ids in it (poisoned_mask)
    poisoned: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.x = torch.as_tensor(self.x)
        self.y = _as_long(self.y, "labels")
        self.ids = _as_long(self.ids, "ids")
        n = len(self.ids)
        if len(self.x) != n or len(self.y) != n:
            raise DataError(
                f"x, y and ids must have the same length, got {len(self.x)}, {len(self.y)}, {n}; "
                "build the dataset from aligned columns"
            )
        if n and len(torch.unique(self.ids)) != n:
            raise DataError("sample ids must be unique; give every sample its own id (e.g. its row number)")
        if self.subjects is not None:
            self.subjects = _as_long(self.subjects, "subjects")
            if len(self.subjects) != n:
                raise DataError(
                    f"subjects has {len(self.subjects)} entries for {n} samples; align the columns"
                )
        self.attributes = {k: _as_long(v, f"attribute {k!r}") for k, v in self.attributes.items()}
        self.tasks = {k: _as_long(v, f"task {k!r}") for k, v in self.tasks.items()}
        if self.poisoned is not None:
            self.poisoned = _as_long(self.poisoned, "poisoned ids")
        for kind, cols in (("attribute", self.attributes), ("task", self.tasks)):
            for k, v in cols.items():
                if len(v) != n:
                    raise DataError(f"{kind} {k!r} has {len(v)} entries for {n} samples; align the columns")
        if n and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise DataError(
                f"labels must lie in [0, {self.num_classes}), got [{int(self.y.min())}, "
                f"{int(self.y.max())}]; map labels to 0..C-1"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(tuple(self.x.shape[1:]), self.num_classes)

    def subset(self, index: torch.Tensor | np.ndarray | Iterable[int]) -> IndexedDataset:
        """Rows selected by a positional index or boolean mask (not by id; see :meth:`by_ids`)."""
        idx = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise DataError(
                    f"boolean mask has shape {tuple(idx.shape)} for {len(self)} samples; "
                    "give one flag per sample"
                )
            idx = torch.nonzero(idx, as_tuple=False).flatten()
        idx = idx.to(torch.int64)
        return IndexedDataset(
            x=self.x[idx],
            y=self.y[idx],
            ids=self.ids[idx],
            num_classes=self.num_classes,
            subjects=None if self.subjects is None else self.subjects[idx],
            attributes={k: v[idx] for k, v in self.attributes.items()},
            tasks={k: v[idx] for k, v in self.tasks.items()},
            origin=self.origin,
            poisoned=self.poisoned,
        )

    def poisoned_mask(self) -> torch.Tensor:
        """Boolean mask over the rows: which are known to be poisoned (all False for clean data)."""
        if self.poisoned is None:
            return torch.zeros(len(self), dtype=torch.bool)
        return torch.isin(self.ids, self.poisoned)

    def contains(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Boolean mask over ``ids``: which of them are in this dataset."""
        ids = _as_long(list(ids) if not isinstance(ids, torch.Tensor) else ids, "ids")
        return torch.isin(ids, self.ids)

    def mask_of(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Boolean mask over this dataset's rows: which rows have one of ``ids``."""
        ids = _as_long(list(ids) if not isinstance(ids, torch.Tensor) else ids, "ids")
        return torch.isin(self.ids, ids)

    def by_ids(self, ids: Iterable[int] | torch.Tensor) -> IndexedDataset:
        """The rows whose ids are in ``ids``, in this dataset's order; unknown ids are an error."""
        ids = _as_long(list(ids) if not isinstance(ids, torch.Tensor) else ids, "ids")
        missing = ids[~torch.isin(ids, self.ids)]
        if len(missing):
            raise DataError(_missing_message("ids", missing))
        return self.subset(self.mask_of(ids))

    def without(self, ids: Iterable[int] | torch.Tensor) -> IndexedDataset:
        """This dataset minus the rows whose ids are in ``ids`` (ids not present are ignored)."""
        return self.subset(~self.mask_of(ids))

    def fingerprint(self) -> str:
        """sha256 over the sorted ids, the feature shape, the labels and the ``origin`` (when set: a derived
        source's options): identifies the sample set."""
        order = torch.argsort(self.ids)
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.ids[order].numpy()).tobytes())
        h.update(str(tuple(self.x.shape)).encode())
        h.update(str(self.num_classes).encode())
        h.update(np.ascontiguousarray(self.y[order].numpy()).tobytes())
        if self.origin:
            h.update(self.origin.encode())
        return h.hexdigest()

    def class_counts(self) -> dict[int, int]:
        values, counts = torch.unique(self.y, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _missing_message(
    what: str, missing: torch.Tensor, hint: str = "test-split ids cannot be forgotten"
) -> str:
    first = ", ".join(str(int(v)) for v in missing[:5])
    more = " ..." if len(missing) > 5 else ""
    return (
        f"{len(missing)} {what} not in the training set (first: {first}{more}); "
        f"list only {what} that exist ({hint})"
    )


@dataclass
class DatasetBundle:
    """The splits of one data source: ``train``, ``test`` and optionally ``val``.

    ``counterfactual``, for sources that can re-render a sample with another attribute value (the biased sources),
    is ``counterfactual(data, attribute, values) -> x``: the features of every row of ``data`` as they would be had
    its attribute been ``values`` (one per row) and nothing else changed.
    """

    train: IndexedDataset
    test: IndexedDataset
    source: str
    options: dict = field(default_factory=dict)
    val: IndexedDataset | None = None
    class_names: list[str] | None = None
    counterfactual: Callable[[IndexedDataset, str, torch.Tensor], torch.Tensor] | None = field(
        default=None, repr=False, compare=False)
    # poisoned data: unlearnkit.data.poison.PoisonInfo (the kind, the ids, the triggered test inputs); None: clean
    poison: object | None = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> DataSpec:
        return self.train.spec
