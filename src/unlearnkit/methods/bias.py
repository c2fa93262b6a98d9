"""Shared pieces of the attribute methods (kind "attribute"): groups, balanced sampling, features, a probe.

A *group* is a (label, attribute value) pair. Bias removal methods balance over groups, because a biased training
set is dominated by the bias-aligned groups (a class with its usual colour) and starves the bias-conflicting ones.
This module registers no method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.dataset import IndexedDataset
from unlearnkit.errors import ConfigError
from unlearnkit.models.architectures import penultimate


def resampled(data: IndexedDataset, index: torch.Tensor) -> IndexedDataset:
    """The rows ``index`` of ``data`` (repeats allowed) as a training set; ids become the draw numbers, since a
    resampled set holds a sample more than once (it is only ever trained on, never saved or selected from)."""
    index = index.to(torch.int64)
    return IndexedDataset(x=data.x[index], y=data.y[index], ids=torch.arange(len(index)), num_classes=data.num_classes,
                          attributes={k: v[index] for k, v in data.attributes.items()})


def balanced_draw(groups: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` row indices drawn with replacement so that every group present is equally likely: a group uniformly,
    then a row of it uniformly (the group-balanced sampling of Sagawa et al., ICLR 2020)."""
    present, inverse = torch.unique(groups, return_inverse=True)
    members = [torch.nonzero(inverse == g).flatten() for g in range(len(present))]
    pick = torch.randint(len(present), (n,), generator=generator)
    counts = torch.bincount(pick, minlength=len(present))
    rows = torch.empty(n, dtype=torch.int64)
    for g, rows_of_g in enumerate(members):
        where = torch.nonzero(pick == g).flatten()
        rows[where] = rows_of_g[torch.randint(len(rows_of_g), (int(counts[g]),), generator=generator)]
    return rows


def balanced_subset(groups: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Row indices of a group-balanced subset without repeats: every group present cut down to the smallest
    group's size, at random (deep feature reweighting's subset, Kirichenko et al., ICLR 2023)."""
    present = torch.unique(groups)
    members = [torch.nonzero(groups == g).flatten() for g in present]
    size = min(len(m) for m in members)
    return torch.cat([m[torch.randperm(len(m), generator=generator)[:size]] for m in members]).sort().values


def features_of(model: nn.Module, data: IndexedDataset, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """The penultimate features of every row of ``data`` (eval mode, no gradients), on the CPU."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            feats, _ = penultimate(model, data.x[start:start + batch_size].to(device))
            out.append(feats.float().cpu())
    model.train(was_training)
    return torch.cat(out)


def group_weights(groups: torch.Tensor) -> torch.Tensor:
    """Per-sample weights, summing to 1, under which every group present weighs the same (1 / its size / the
    number of groups): the loss of a group-balanced set, computed on all the data."""
    present, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse].float() * len(present))


def fit_linear_head(features: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float, epochs: int,
                    generator: torch.Generator, init: nn.Linear | None = None,
                    weights: torch.Tensor | None = None) -> nn.Linear:
    """A multinomial logistic-regression head on fixed features (full-batch L-BFGS on the cross-entropy, averaged
    or weighted by ``weights`` (summing to 1), plus ``l2`` x the squared weights), started from ``init`` when
    given; features are used as they are."""
    head = nn.Linear(features.shape[1], num_classes)
    if init is not None:
        head.load_state_dict({k: v.detach().cpu().float() for k, v in init.state_dict().items()
                              if k in ("weight", "bias")})
    else:
        with torch.no_grad():
            head.weight.normal_(0, 0.01, generator=generator)
            head.bias.zero_()
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=epochs, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        if weights is None:
            fit = F.cross_entropy(head(features), y)
        else:
            fit = (F.cross_entropy(head(features), y, reduction="none") * weights).sum()
        loss = fit + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def set_output_layer(model: nn.Module, head: nn.Linear) -> None:
    """Copy ``head``'s weight and bias into ``model.classifier`` (in place, on its device and dtype)."""
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, nn.Linear):
        raise ConfigError(f"{type(model).__name__} has no nn.Linear output layer named 'classifier' to replace; "
                          "attribute methods that refit the head need one (every registered architecture has it)")
    with torch.no_grad():
        layer.weight.copy_(head.weight.to(layer.weight))
        layer.bias.copy_(head.bias.to(layer.bias))


def rerendered(task, data: IndexedDataset, generator: torch.Generator,
               values: torch.Tensor | None = None) -> IndexedDataset | None:
    """``data`` re-rendered by the task's counterfactual renderer with uniformly random attribute values (or
    ``values``), so that the attribute is independent of the label and of everything else in the sample; the
    attribute column holds the new values. None when the task has no renderer."""
    if task.counterfactual is None:
        return None
    if values is None:
        values = torch.randint(task.n_values, (len(data),), generator=generator)
    x = task.counterfactual(data, task.attribute, values)
    return IndexedDataset(x=x, y=data.y, ids=data.ids, num_classes=data.num_classes,
                          attributes={**data.attributes, task.attribute: values})
