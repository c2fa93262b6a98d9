"""Forget-set selection: ``select(train, spec, seed) -> ForgetSplit``.

Spec grammar (one scenario per spec):

    random:F              a seeded random fraction F in (0, 1) of the training samples
    class:C[,C...]        every sample of the given classes
    ids:1,2,3 | ids:FILE  the samples with these ids (FILE: one integer id per line, # comments)
    subjects:17,42 | subjects:FILE
                          every sample owned by these data subjects
    attribute:NAME=VALUE  every sample whose attribute NAME equals VALUE

On multi-task data (``IndexedDataset.tasks``) a suffix ``@TASK[,TASK]`` scopes the deletion to those tasks
(partial-task forgetting: ``random:0.05@left``): the samples are forgotten for the named tasks only, and their
labels for the other tasks stay training data. ``class:C`` selects by the first task's label (``y``). Without a
suffix, or when the suffix names every task, the samples are forgotten for every task (full-task forgetting).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from unlearnkit.data.dataset import IndexedDataset, _missing_message
from unlearnkit.errors import DataError

KINDS = ("random", "class", "ids", "subjects", "attribute", "poisoned")
MASKED = -1  # a task label removed by a partial-task deletion (unlearnkit.models.multitask uses the same value)


@dataclass
class ForgetSplit:
    """The samples to forget and the samples to keep, plus how they were chosen."""

    forget: IndexedDataset
    retain: IndexedDataset
    spec: str
    seed: int
    # the tasks the samples are forgotten for (multi-task data, ``SPEC@TASK[,TASK]``); empty: every task
    tasks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def partial(self) -> bool:
        """True when the samples are forgotten for some of the data's tasks only (partial-task forgetting)."""
        return bool(self.tasks) and set(self.tasks) != set(self.forget.tasks)

    def other_tasks(self) -> tuple[str, ...]:
        """The tasks the forget samples keep (empty unless partial)."""
        return tuple(t for t in self.forget.tasks if t not in self.tasks) if self.partial else ()

    def scoped_tasks(self) -> tuple[str, ...]:
        """The tasks the samples are forgotten for: the scope, or every task of the data."""
        return tuple(self.tasks) if self.tasks else tuple(self.forget.tasks)

    def whole_classes(self) -> dict[str, bool]:
        """Per scoped task of multi-task data, whether its forgotten labels are whole classes: no label of that task
        that remains (``remaining()``, masks dropped) has one of their classes."""
        remaining = self.remaining()
        out = {}
        for name in self.scoped_tasks():
            kept = remaining.tasks[name][remaining.tasks[name] != MASKED]
            out[name] = not bool(torch.isin(self.forget.tasks[name].unique(), kept.unique()).any())
        return out

    def remaining(self) -> IndexedDataset:
        """Everything a model may still learn from: the retain set, plus, in partial-task forgetting, the forget
        samples with their scoped tasks' labels set to ``MASKED`` (what the exact reference trains on)."""
        if not self.partial:
            return self.retain
        return concat(self.retain, mask_tasks(self.forget, self.tasks))

    def forget_targets(self) -> IndexedDataset:
        """The forget samples with only the labels to forget: the other tasks' labels ``MASKED`` (partial)."""
        return mask_tasks(self.forget, self.other_tasks()) if self.partial else self.forget

    @property
    def forget_ids(self) -> torch.Tensor:
        return self.forget.ids

    def forgets_whole_classes(self) -> bool:
        """True when no retained sample shares a label with the forget set (class-level forgetting)."""
        return not bool(torch.isin(self.forget.y.unique(), self.retain.y.unique()).any())

    def ids_digest(self) -> str:
        """sha256 of the sorted forget ids: records *which* samples were forgotten without listing them."""
        ids = np.sort(self.forget.ids.numpy())
        return hashlib.sha256(np.ascontiguousarray(ids).tobytes()).hexdigest()


def mask_tasks(data: IndexedDataset, tasks: tuple[str, ...] | list[str]) -> IndexedDataset:
    """A copy of ``data`` whose labels for ``tasks`` are all ``MASKED`` (features and ids shared, not copied)."""
    out = data.subset(torch.arange(len(data)))
    out.tasks = {name: torch.full_like(labels, MASKED) if name in tasks else labels
                 for name, labels in out.tasks.items()}
    return out


def mask_rows(data: IndexedDataset, ids, tasks) -> IndexedDataset:
    """A copy of ``data`` whose labels for ``tasks`` are ``MASKED`` on the rows with the given ``ids``."""
    rows = data.mask_of(ids)
    out = data.subset(torch.arange(len(data)))
    out.tasks = {name: torch.where(rows, torch.full_like(labels, MASKED), labels) if name in tasks else labels
                 for name, labels in out.tasks.items()}
    return out


def concat(a: IndexedDataset, b: IndexedDataset) -> IndexedDataset:
    """The rows of ``a`` then those of ``b`` (same columns; ids must not overlap)."""
    if set(a.tasks) != set(b.tasks) or set(a.attributes) != set(b.attributes) or \
            (a.subjects is None) != (b.subjects is None):
        raise DataError("cannot join datasets with different columns; build both parts from one dataset")
    return IndexedDataset(
        x=torch.cat([a.x, b.x]), y=torch.cat([a.y, b.y]), ids=torch.cat([a.ids, b.ids]),
        num_classes=a.num_classes,
        subjects=None if a.subjects is None else torch.cat([a.subjects, b.subjects]),
        attributes={k: torch.cat([v, b.attributes[k]]) for k, v in a.attributes.items()},
        tasks={k: torch.cat([v, b.tasks[k]]) for k, v in a.tasks.items()},
        origin=a.origin,
    )


def split_scope(spec: str) -> tuple[str, tuple[str, ...]]:
    """``"random:0.1@left,same"`` -> ``("random:0.1", ("left", "same"))``; no suffix: ``(spec, ())``."""
    if not isinstance(spec, str) or "@" not in spec:
        return spec, ()
    base, scope = spec.rsplit("@", 1)
    tasks = tuple(t.strip() for t in scope.split(",") if t.strip())
    if not tasks:
        raise DataError(f"forget spec {spec!r} has nothing after '@'; name the tasks, e.g. random:0.05@left")
    if len(set(tasks)) != len(tasks):
        raise DataError(f"forget spec {spec!r} names a task twice; list each task once")
    return base, tasks


def _parse_int_list(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError as exc:
        raise DataError(f"{what} must be integers separated by commas, got {text!r}") from exc


def read_int_list(arg: str, what: str) -> list[int]:
    """``1,2,3`` or a path to a file with one integer per line (``#`` starts a comment)."""
    candidate = Path(arg)
    looks_like_list = all(ch.isdigit() or ch in ", -" for ch in arg.strip()) and arg.strip() != ""
    if not looks_like_list:
        if not candidate.is_file():
            raise DataError(
                f"{what} file {arg!r} does not exist; give a file with one integer per line or a list 1,2,3"
            )
        values = []
        for lineno, line in enumerate(candidate.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                values.append(int(line))
            except ValueError as exc:
                raise DataError(
                    f"{arg}:{lineno}: {line!r} is not an integer; put one integer {what[:-1]} per line"
                ) from exc
        return values
    return _parse_int_list(arg, what)


def _poisoned(train: IndexedDataset, arg: str, seed: int) -> torch.Tensor:
    """``poisoned:FRACTION``: a seeded share of the known poisoned ids among ``train``'s rows (the identified part
    of the poison; 1 = all of it)."""
    try:
        fraction = float(arg)
    except ValueError:
        raise DataError(f"poisoned:{arg} is not a number; give the identified share, e.g. poisoned:0.1 or "
                        "poisoned:1") from None
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"the identified share must lie in (0, 1], got {fraction}; e.g. poisoned:0.1")
    if train.poisoned is None:
        raise DataError("poisoned:F needs poisoned data, and this data is clean; load it with --data-option "
                        "poison=badnets (or label-flip)")
    rows = torch.nonzero(train.poisoned_mask()).flatten()
    if len(rows) == 0:
        raise DataError("no poisoned sample is left in this training set (they were forgotten already)")
    k = max(1, int(round(fraction * len(rows))))
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(train), dtype=torch.bool)
    mask[rows[torch.randperm(len(rows), generator=gen)[:k]]] = True
    return mask


def select(train: IndexedDataset, spec: str, seed: int = 0) -> ForgetSplit:
    """Split ``train`` into forget and retain sets following ``spec``.

    Args:
        train: the training set the model saw.
        spec: a forget spec, e.g. ``random:0.1``, ``class:3``, ``ids:forget.txt``, ``subjects:17,42``,
            ``poisoned:0.1`` (a seeded share of the known poisoned ids: poisoned data only).
        seed: seeds the ``random`` choice; recorded in the split.

    Raises:
        DataError: a malformed spec, unknown classes/ids/subjects, an empty forget set, or a forget set
            that is the whole training set; a ``@TASK`` scope on data without tasks, or naming a task the data
            lacks.

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> split = select(load_dataset("digits").train, "class:3")
        >>> int(split.forget.y.unique())
        3
    """
    spec, tasks = split_scope(spec)
    if tasks:
        if not train.tasks:
            raise DataError(f"forget spec scope @{','.join(tasks)} needs multi-task data, and this dataset has no "
                            "tasks; drop the @TASK suffix (or use a multi-task source such as multi-digits)")
        unknown = [t for t in tasks if t not in train.tasks]
        if unknown:
            raise DataError(f"task(s) {', '.join(repr(t) for t in unknown)} not in this dataset (its tasks: "
                            f"{', '.join(train.tasks)}); scope the spec with those, e.g. @{next(iter(train.tasks))}")
    if not isinstance(spec, str) or ":" not in spec:
        kinds = ", ".join(k + ":..." for k in KINDS)
        raise DataError(f"forget spec {spec!r} lacks a kind; use one of {kinds}")
    kind, arg = spec.split(":", 1)
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in KINDS:
        raise DataError(f"unknown forget kind {kind!r} in {spec!r}; use one of: {', '.join(KINDS)}")
    if not arg:
        raise DataError(f"forget spec {spec!r} has nothing after ':'; e.g. random:0.1, class:3, ids:1,2,3")
    n = len(train)
    if kind == "random":
        try:
            fraction = float(arg)
        except ValueError as exc:
            raise DataError(f"random:{arg} is not a number; give a fraction such as random:0.1") from exc
        if not 0.0 < fraction < 1.0:
            raise DataError(
                f"forget fraction must lie strictly between 0 and 1, got {fraction}; e.g. random:0.1"
            )
        k = int(round(fraction * n))
        if k == 0:
            raise DataError(f"random:{arg} selects no sample from {n}; raise the fraction above {1 / n:.2g}")
        if k == n:
            raise DataError(f"random:{arg} selects all {n} samples; lower the fraction")
        gen = torch.Generator().manual_seed(seed)
        mask = torch.zeros(n, dtype=torch.bool)
        mask[torch.randperm(n, generator=gen)[:k]] = True
    elif kind == "class":
        classes = _parse_int_list(arg, "classes")
        bad = [c for c in classes if not 0 <= c < train.num_classes]
        if bad:
            raise DataError(
                f"class(es) {bad} do not exist; this dataset has classes 0..{train.num_classes - 1}"
            )
        mask = torch.isin(train.y, torch.tensor(classes))
    elif kind == "ids":
        ids = torch.tensor(read_int_list(arg, "ids"), dtype=torch.int64)
        missing = ids[~train.contains(ids)]
        if len(missing):
            raise DataError(_missing_message("ids", missing))
        mask = train.mask_of(ids)
    elif kind == "subjects":
        if train.subjects is None:
            raise DataError(
                "this dataset has no subjects; load it with --subjects N (pseudo-subjects) "
                "or a --subject-column"
            )
        subjects = torch.tensor(read_int_list(arg, "subjects"), dtype=torch.int64)
        missing = subjects[~torch.isin(subjects, train.subjects)]
        if len(missing):
            raise DataError(_missing_message("subjects", missing, "subjects run 0..N-1 with --subjects N"))
        mask = torch.isin(train.subjects, subjects)
    elif kind == "poisoned":
        mask = _poisoned(train, arg, seed)
    else:  # attribute
        if "=" not in arg:
            raise DataError(f"attribute spec needs NAME=VALUE, got {arg!r}; e.g. attribute:sex=1")
        name, value_text = (t.strip() for t in arg.split("=", 1))
        if name not in train.attributes:
            have = ", ".join(sorted(train.attributes)) or "none"
            raise DataError(
                f"attribute {name!r} not in this dataset (attributes: {have}); check the column name"
            )
        try:
            value = int(value_text)
        except ValueError as exc:
            raise DataError(f"attribute value must be an integer, got {value_text!r}") from exc
        mask = train.attributes[name] == value
    count = int(mask.sum())
    if count == 0:
        raise DataError(f"forget spec {spec!r} selects no training sample; check the spec against the data")
    if count == n:
        raise DataError(
            f"forget spec {spec!r} selects all {n} training samples; nothing would remain - "
            "train a new model instead"
        )
    scope = "@" + ",".join(tasks) if tasks else ""
    return ForgetSplit(forget=train.subset(mask), retain=train.subset(~mask), spec=f"{kind}:{arg}{scope}", seed=seed,
                       tasks=tasks)
