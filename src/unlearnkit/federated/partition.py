"""How a training set is split among federated clients: ``iid``, ``dirichlet:ALPHA`` over labels, or ``subject``.

A partition is a list of id tensors, one per client (its partition id is its position), each sorted. It depends
only on the training set, the number of clients, the spec and the seed, so a client rebuilds its own share from
the same four values and the server never ships data.

- ``iid``: a seeded permutation cut into near-equal parts.
- ``dirichlet:ALPHA`` (label skew, as in Hsu, Qi and Brown 2019 and most federated-unlearning benchmarks): for each
  class, the shares of the clients are drawn from Dirichlet(ALPHA); smaller ALPHA gives each client fewer classes.
  Draws are repeated (same generator) until every client holds at least :data:`MIN_CLIENT_SAMPLES` samples.
- ``subject``: whole data subjects per client (the samples' ``subjects``, e.g. ``--subjects 1000``), subjects
  dealt out by a seeded permutation; a subject's samples never span two clients.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.errors import ConfigError

PARTITIONS = ("iid", "dirichlet:ALPHA", "subject")
MIN_CLIENT_SAMPLES = 10  # a client with fewer samples than this cannot fill a mini-batch worth training on
DIRICHLET_TRIES = 1000


def parse_partition(spec: str) -> tuple[str, float | None]:
    """``"iid"`` -> ("iid", None); ``"dirichlet:0.5"`` -> ("dirichlet", 0.5); ``"subject"``; else a one-line error."""
    text = str(spec).strip()
    kind, _, arg = text.partition(":")
    if kind in ("iid", "subject") and not arg:
        return kind, None
    if kind == "dirichlet":
        try:
            alpha = float(arg)
        except ValueError:
            alpha = float("nan")
        if not (alpha > 0 and np.isfinite(alpha)):
            raise ConfigError(f"partition {text!r} needs a positive concentration, e.g. dirichlet:0.5")
        return kind, alpha
    raise ConfigError(f"unknown partition {text!r}; choose one of: {', '.join(PARTITIONS)}")


def partition_ids(train: IndexedDataset, clients: int, spec: str, seed: int) -> list[torch.Tensor]:
    """The sorted ids of each client's share of ``train`` (see the module docstring).

    Example:
        >>> from unlearnkit.data import load_dataset
        >>> parts = partition_ids(load_dataset("digits").train, 3, "iid", seed=0)
        >>> [len(p) for p in parts]
        [480, 479, 479]
    """
    kind, alpha = parse_partition(spec)
    n = len(train)
    if clients < 2:
        raise ConfigError(f"a federation needs at least 2 clients, got {clients}")
    if n < clients * MIN_CLIENT_SAMPLES:
        raise ConfigError(f"{n} training samples cannot give {clients} clients {MIN_CLIENT_SAMPLES} samples each; "
                          "use fewer clients or more data (--train-size)")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        rows = np.array_split(rng.permutation(n), clients)
    elif kind == "dirichlet":
        rows = _dirichlet_rows(train.y.numpy(), clients, alpha, rng)
    else:
        rows = _subject_rows(train, clients, rng)
    return [train.ids[torch.as_tensor(np.sort(r), dtype=torch.int64)].sort().values for r in rows]


def _dirichlet_rows(labels: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(DIRICHLET_TRIES):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in classes:
            rows = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
            for k, piece in enumerate(np.split(rows, cuts)):
                parts[k].append(piece)
        out = [np.concatenate(p) for p in parts]
        if min(len(p) for p in out) >= MIN_CLIENT_SAMPLES:
            return out
    raise ConfigError(f"dirichlet:{alpha} left a client with fewer than {MIN_CLIENT_SAMPLES} samples in "
                      f"{DIRICHLET_TRIES} draws; raise ALPHA or use fewer clients")


def _subject_rows(train: IndexedDataset, clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    if train.subjects is None:
        raise ConfigError("partition 'subject' needs data subjects; load the data with --subjects N (N >= clients)")
    subjects = train.subjects.numpy()
    unique = np.unique(subjects)
    if len(unique) < clients:
        raise ConfigError(f"partition 'subject' needs at least one subject per client: {len(unique)} subjects for "
                          f"{clients} clients; raise --subjects or use fewer clients")
    groups = np.array_split(rng.permutation(unique), clients)
    return [np.flatnonzero(np.isin(subjects, g)) for g in groups]
