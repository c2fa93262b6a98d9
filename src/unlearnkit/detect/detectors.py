"""The detectors behind :func:`detect` (see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.device import resolve_device
from unlearnkit.errors import ConfigError
from unlearnkit.methods.bias import features_of
from unlearnkit.train import predict_logits

DETECTORS = ("spectral", "activation-clustering", "loss")


@dataclass
class Detection:
    """The suspects (ids, sorted), every sample's score (aligned with ``ids_scored``), and how they were chosen."""

    method: str
    suspects: torch.Tensor
    scores: np.ndarray
    ids_scored: torch.Tensor
    budget: int

    def to_json(self) -> dict:
        return {"method": self.method, "n_suspects": len(self.suspects), "budget": self.budget}


def features(model: nn.Module, data: IndexedDataset, device=None) -> np.ndarray:
    """The penultimate-layer features of every sample of ``data`` (float64 numpy, rows in ``data``'s order)."""
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    return features_of(model, data, dev).double().numpy()


def spectral_scores(feats: np.ndarray, labels: np.ndarray, directions: int = 2) -> np.ndarray:
    """Per label: the squared norm of each centred feature row's projection on the top ``directions`` right
    singular vectors, each scaled to unit variance, divided by the label's median score (so that labels compare on
    one scale). Tran et al. use the top direction alone; in the Fashion-MNIST mlp's features a BadNets trigger
    spreads over the top two directions of the target label (the second separates the poisoned rows almost as well
    as the first), so both are used, each scaled to unit variance."""
    scores = np.zeros(len(feats))
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        centred = feats[rows] - feats[rows].mean(0)
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(directions, len(sv))
        proj = centred @ vt[:k].T / np.maximum(sv[:k], 1e-12)
        s = (proj ** 2).sum(1)
        scores[rows] = s / max(np.median(s), 1e-12)
    return scores


def clustering_scores(feats: np.ndarray, labels: np.ndarray, max_cluster: float, seed: int = 0) -> np.ndarray:
    """Per label: 2-means on the features' top 10 principal components; when the smaller cluster holds at most
    ``max_cluster`` of the label, its rows score their distance to the larger cluster's centre divided by the
    larger cluster's median distance (others score 0)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    scores = np.zeros(len(feats))
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 4:
            continue
        reduced = PCA(n_components=min(10, len(rows) - 1, feats.shape[1]), random_state=seed).fit_transform(feats[rows])
        assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(reduced)
        small = int(np.bincount(assign, minlength=2).argmin())
        if np.mean(assign == small) > max_cluster:
            continue
        big_centre = reduced[assign != small].mean(0)
        dist = np.linalg.norm(reduced - big_centre, axis=1)
        scale = max(np.median(dist[assign != small]), 1e-12)
        scores[rows[assign == small]] = dist[assign == small] / scale
    return scores


def loss_scores(model: nn.Module, data: IndexedDataset, device=None) -> np.ndarray:
    logits = predict_logits(model, data, device=device)
    return F.cross_entropy(logits, data.y, reduction="none").double().numpy()


def detect(model: nn.Module, train: IndexedDataset, method: str = "spectral", *, rate: float = 0.01,
           budget: int | None = None, max_cluster: float = 0.35, device=None, seed: int = 0) -> Detection:
    """Score every sample of ``train`` with ``method`` and return the top ``budget`` as suspects (default
    ``ceil(1.5 * rate * len(train))``; ``activation-clustering`` flags at most the samples of its small clusters)."""
    if method not in DETECTORS:
        raise ConfigError(f"unknown detector {method!r}; choose one of: {', '.join(DETECTORS)}")
    if not 0 < rate < 1:
        raise ConfigError(f"--rate is the expected poisoned share of the training set, in (0, 1); got {rate}")
    if budget is not None and not 1 <= budget <= len(train):
        raise ConfigError(f"--budget must lie in [1, {len(train)}] (the training set), got {budget}")
    budget = budget or int(np.ceil(1.5 * rate * len(train)))
    labels = train.y.numpy()
    if method == "loss":
        scores = loss_scores(model, train, device)
    else:
        feats = features(model, train, device)
        scores = (spectral_scores(feats, labels) if method == "spectral"
                  else clustering_scores(feats, labels, max_cluster, seed))
    order = np.argsort(-scores, kind="stable")[:budget]
    if method == "activation-clustering":
        order = order[scores[order] > 0]
    suspects = train.ids[torch.from_numpy(np.sort(order))].sort().values
    return Detection(method, suspects, scores, train.ids.clone(), budget)


def precision_recall(suspects: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Precision and recall of ``suspects`` against the known poisoned ids ``truth``."""
    hit = int(torch.isin(suspects, truth).sum())
    precision = hit / len(suspects) if len(suspects) else 0.0
    recall = hit / len(truth) if len(truth) else 0.0
    return precision, recall
