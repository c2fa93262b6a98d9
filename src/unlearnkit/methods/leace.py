"""leace: erase the attribute linearly from the penultimate features, then refit the output layer.

LEACE (LEAst-squares Concept Erasure, Belrose et al., NeurIPS 2023) is the affine map, closest to the identity in
the least-squares sense, after which no linear predictor does better than a constant at recovering the attribute
from the features: ``x - (x - mean) @ P.T`` with an oblique projection ``P`` fitted from the features' and the
attribute's (one-hot) covariance. The eraser is the ``concept-erasure`` package's ``LeaceEraser`` (installed with
the ``bias`` extra), placed in front of the output layer (the model's ``classifier`` becomes an ``ErasedLinear``,
which the checkpoint records as the kwarg ``erased=true``); the output layer is then refitted on erased features.
The encoder is untouched, so this is post hoc and fast; a non-linear probe may still find the attribute (the
guarantee is linear only).

What the eraser is fitted on matters. On biased training data the attribute is correlated with the label, so the
directions that predict the attribute also predict the class, and erasing them costs accuracy (on biased-tabular
fitting there made the model anti-biased). ``fit_on=counterfactual`` (the default when the data source can
re-render its samples) fits it on training samples rendered with every attribute value, where the attribute is
independent of everything else, so only the attribute's own directions go; ``fit_on=balanced`` resamples the
training data group-balanced (label x attribute); ``fit_on=train`` uses it as it is. The output layer is refitted
on the same data, erased.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import AttributeTask, Method, register
from unlearnkit.methods.bias import balanced_draw, features_of, fit_linear_head, rerendered, resampled
from unlearnkit.methods.space import Float
from unlearnkit.models.architectures import ErasedLinear
from unlearnkit.params import AT_LEAST_ONE, NON_NEGATIVE, Options, Params, param


def leace_projection(features: torch.Tensor, values: torch.Tensor, n_values: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, center)`` of the LEACE eraser of ``values`` (ints) from ``features``, with ``concept-erasure``."""
    try:
        from concept_erasure import LeaceEraser
    except ImportError as exc:
        raise ConfigError("leace needs the concept-erasure package: pip install 'unlearnkit[bias]' "
                          "(or pip install concept-erasure)") from exc
    z = F.one_hot(values, n_values).to(torch.float64)
    eraser = LeaceEraser.fit(features.to(torch.float64), z)
    projection = eraser.proj_left @ eraser.proj_right
    center = eraser.bias if eraser.bias is not None else torch.zeros(features.shape[1], dtype=torch.float64)
    return projection.float(), center.float()


@register
class Leace(Method):
    name = "leace"
    kind = "attribute"
    summary = ("post hoc: erase the attribute linearly from the penultimate features (LEACE, concept-erasure) "
               "and refit the output layer")
    reference = "Belrose et al., NeurIPS 2023, 'LEACE: Perfect linear concept erasure in closed form'"
    needs_forget = False
    forgets_classes = False

    search_space = {"l2": Float(1e-5, 1e-1, log=True)}

    @dataclass(frozen=True)
    class Config(Params):
        l2: float = param(1e-3, NON_NEGATIVE)  # squared-weight penalty of the refitted output layer
        iterations: int = param(200, AT_LEAST_ONE)  # L-BFGS iterations of the refit (started from the old layer)
        fit_on: str = param("auto", Options("auto", "counterfactual", "balanced", "train"))  # the data the eraser
        # and the refit see (module docstring); auto: counterfactual when the source can re-render, else balanced
        samples: int = param(2000, AT_LEAST_ONE)  # training samples rendered with every attribute value
        # (fit_on=counterfactual)

    def run(self, task: AttributeTask) -> nn.Module:
        cfg = self.config
        model = task.clone_model()
        layer = getattr(model, "classifier", None)
        if isinstance(layer, ErasedLinear):
            raise ConfigError("this model already has a concept eraser in front of its output layer (leace ran on "
                              "it); run leace on the model before it")
        if not isinstance(layer, nn.Linear):
            raise ConfigError(f"leace needs an nn.Linear output layer named 'classifier'; {type(model).__name__} "
                              "has none (every registered architecture has it)")
        fit_on = cfg.fit_on if cfg.fit_on != "auto" else \
            ("counterfactual" if task.counterfactual is not None else "balanced")
        feats, values, labels = self._fit_data(model, task, fit_on)
        projection, center = leace_projection(feats, values, task.n_values)
        erased = ErasedLinear(layer.in_features, layer.out_features).to(layer.weight.device)
        erased.eraser.projection.copy_(projection)
        erased.eraser.center.copy_(center)
        clean = erased.eraser(feats.to(layer.weight.device)).cpu()
        head = fit_linear_head(clean, labels, task.train.num_classes, l2=cfg.l2, epochs=cfg.iterations,
                               generator=task.generator(0), init=layer)
        with torch.no_grad():
            erased.weight.copy_(head.weight.to(erased.weight))
            erased.bias.copy_(head.bias.to(erased.bias))
        model.classifier = erased
        rank = int(torch.linalg.matrix_rank(projection))
        task.note(f"erased a rank-{rank} subspace of the {feats.shape[1]} penultimate features (fitted on {fit_on} "
                  f"data, {len(feats)} rows); refit the output layer on them, erased")
        return model.eval()

    def _fit_data(self, model: nn.Module, task: AttributeTask, fit_on: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features, attribute values, labels) the eraser and the refit are fitted on."""
        train = task.train
        if fit_on == "counterfactual":
            if task.counterfactual is None:
                raise ConfigError("leace fit_on=counterfactual needs a data source that can re-render its samples "
                                  "(colored-digits, colored-fashion-mnist, biased-tabular); use fit_on=balanced")
            pick = torch.randperm(len(train), generator=task.generator(1))[: self.config.samples]
            base = train.subset(pick.sort().values)
            parts = [rerendered(task, base, task.generator(2), torch.full((len(base),), v, dtype=torch.int64))
                     for v in range(task.n_values)]
            feats = torch.cat([features_of(model, part, task.device) for part in parts])
            values = torch.cat([task.values(part) for part in parts])
            return feats, values, torch.cat([part.y for part in parts])
        data = train if fit_on == "train" else resampled(train, balanced_draw(task.groups(), len(train),
                                                                               task.generator(1)))
        return features_of(model, data, task.device), task.values(data), data.y
