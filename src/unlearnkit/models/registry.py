"""Model registry: architectures by name, built deterministically from a seed."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.data.dataset import DataSpec
from unlearnkit.errors import ConfigError
from unlearnkit.models.architectures import (
    CNN,
    MLP,
    FrozenFeatures,
    LinearRegression,
    LogisticRegression,
    ResNet18,
    ShardEnsemble,
)
from unlearnkit.models.multitask import MultiTaskNet
from unlearnkit.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    summary: str

    def params(self) -> dict[str, object]:
        """The builder's own keyword arguments and their defaults (input shape and classes excluded)."""
        sig = inspect.signature(self.builder)
        return {k: p.default for k, p in sig.parameters.items() if k not in ("input_shape", "num_classes")}


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, builder: Callable[..., nn.Module], summary: str) -> None:
    MODELS.add(name, ModelEntry(name, builder, summary))


register_model("mlp", MLP, "multi-layer perceptron on flattened inputs (hidden=(256, 128))")
register_model(
    "cnn", CNN, "small conv net: 2 conv blocks + 2 linear, no batch norm (28x28, 32x32, 8x8 inputs)"
)
register_model("resnet18", ResNet18, "CIFAR-style ResNet-18 (3x3 stem, batch norm)")
register_model("mtl-mlp", MultiTaskNet.mlp, "multi-task mlp: a shared trunk (hidden=(256, 128)) and one head per "
               "task of a multi-task source (tasks from the data)")
register_model("mtl-cnn", MultiTaskNet.cnn, "multi-task cnn: the cnn's conv blocks and hidden layer shared, one head "
               "per task of a multi-task source (tasks from the data)")


def _shard_ensemble(input_shape: tuple[int, ...], num_classes: int, member: str = "mlp",
                    member_kwargs: dict | None = None, shards: int = 1, aggregate: str = "vote") -> nn.Module:
    """SISA's ensemble: ``shards`` members of the registered architecture ``member`` (see ``ShardEnsemble``)."""
    if member not in MODELS or MODELS[member].builder is _shard_ensemble:
        choices = ", ".join(sorted(n for n, e in MODELS.items() if e.builder is not _shard_ensemble))
        raise ConfigError(f"unknown ensemble member {member!r}; choose one of: {choices}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (member_kwargs or {}).items()}
    unknown = set(kwargs) - set(MODELS[member].params())
    if unknown:
        raise ConfigError(f"model {member!r} has no parameter(s) {sorted(unknown)}; its parameters: "
                          f"{sorted(MODELS[member].params())}")
    if shards < 1:
        raise ConfigError(f"an ensemble needs shards >= 1, got {shards}")
    members = [MODELS[member].builder(input_shape, num_classes, **kwargs) for _ in range(shards)]
    return ShardEnsemble(members, aggregate)


register_model("sisa-ensemble", _shard_ensemble,
               "SISA ensemble: one member model per shard, aggregated by vote or mean softmax (train --sisa)")


def _frozen_backbone(input_shape: tuple[int, ...], num_classes: int, backbone: str | None,
                     backbone_kwargs: dict | None) -> FrozenFeatures | None:
    """The frozen feature network under a linear head (None: the head reads the flattened input)."""
    if backbone is None:
        if backbone_kwargs:
            raise ConfigError("backbone_kwargs given without a backbone; name the backbone architecture too")
        return None
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in (backbone_kwargs or {}).items()}
    return FrozenFeatures(build_model(backbone, DataSpec(tuple(input_shape), num_classes), **kwargs))


def _linear(input_shape: tuple[int, ...], num_classes: int, perturbation: float = 0.0, normalize: bool = False,
            backbone: str | None = None, backbone_kwargs: dict | None = None) -> nn.Module:
    """``linear``: ridge regression on one-hot targets (see ``LinearHead``); ``backbone``: frozen features."""
    return LinearRegression(input_shape, num_classes, perturbation,
                            _frozen_backbone(input_shape, num_classes, backbone, backbone_kwargs), normalize)


def _logistic(input_shape: tuple[int, ...], num_classes: int, perturbation: float = 0.0, normalize: bool = False,
              backbone: str | None = None, backbone_kwargs: dict | None = None) -> nn.Module:
    """``logistic``: multinomial logistic regression (see ``LinearHead``); ``backbone``: frozen features."""
    return LogisticRegression(input_shape, num_classes, perturbation,
                              _frozen_backbone(input_shape, num_classes, backbone, backbone_kwargs), normalize)


register_model("linear", _linear, "one float64 linear layer fit by least squares on one-hot targets (ridge; "
               "optimizer lbfgs: closed form); certified removal is exact")
register_model("logistic", _logistic, "multinomial logistic regression, one float64 linear layer trained to the "
               "optimum (optimizer lbfgs); for certified removal")


def build_model(name: str, spec: DataSpec, *, seed: int = 0, **kwargs) -> nn.Module:
    """Build a registered architecture for data of the given spec, with weights drawn from ``seed``.

    Example:
        >>> from unlearnkit.data import DataSpec
        >>> model = build_model("mlp", DataSpec((1, 8, 8), 10), seed=0, hidden=(64,))
    """
    entry = MODELS.get(name)
    unknown = set(kwargs) - set(entry.params())
    if unknown:
        raise ConfigError(
            f"model {name!r} has no parameter(s) {sorted(unknown)}; its parameters: {sorted(entry.params())}"
        )
    if name == "cnn" and (len(spec.input_shape) != 3 or min(spec.input_shape[1:]) < 8):
        raise ConfigError(
            f"the cnn needs image inputs [C, H, W] of at least 8x8, got {spec.input_shape}; use mlp"
        )
    if name == "resnet18" and len(spec.input_shape) != 3:
        raise ConfigError(f"resnet18 needs image inputs [C, H, W], got {spec.input_shape}; use mlp")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return entry.builder(spec.input_shape, spec.num_classes, **kwargs)


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A CPU copy of ``model`` with every resettable layer re-initialised from ``seed`` (any module).

    Re-initialising on the CPU draws from the seeded CPU generator, so the result is the same whatever
    device the input lives on; move it where it should train afterwards.
    """
    new = copy.deepcopy(model).to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in new.modules():
            if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                module.reset_parameters()
    return new
