"""Finding the parts of a model that methods reset, perturb, freeze or prune.

Methods work on any ``nn.Module`` classifier; when one needs a structure the model lacks (a conv
layer, a final linear layer) these helpers raise a ``ConfigError`` that says so, instead of crashing.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from unlearnkit.errors import ConfigError

PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every linear/conv layer, in forward-definition order."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PARAMETRIC)]
    if not layers:
        raise ConfigError("this method needs a model with linear or conv layers; the model has none")
    return layers


def classifier(model: nn.Module, method: str) -> nn.Linear:
    """The output layer: ``model.classifier`` if it is a Linear, else the last Linear layer."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{method} needs a final nn.Linear classifier layer; this model has none")
    return linears[-1]


def conv_layers(model: nn.Module, method: str) -> list[tuple[str, nn.Conv2d]]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{method} works on conv layers and this model has none (e.g. an mlp); use a cnn "
                          "or resnet18, or another method")
    return convs


def top_layers(model: nn.Module, k: int, method: str) -> list[tuple[str, nn.Module]]:
    """The last ``k`` linear/conv layers (the ones nearest the output)."""
    layers = weight_layers(model)
    if not 1 <= k <= len(layers):
        raise ConfigError(f"{method}: k must lie in [1, {len(layers)}] for this model (it has {len(layers)} "
                          f"linear/conv layers), got {k}")
    return layers[-k:]


def reinitialise(module: nn.Module, generator_seed: int) -> None:
    """Reset a layer's parameters from a seed (leaves every other RNG stream untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        module.reset_parameters()


def parameter_owner(model: nn.Module) -> dict[str, nn.Module]:
    """Parameter name -> the module that owns it."""
    owners = {}
    for mod_name, module in model.named_modules():
        for p_name, _ in module.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = module
    return owners


def top_block(model: nn.Module, k: int, method: str) -> list[tuple[str, nn.Module]]:
    """The top ``k`` linear/conv layers and every module with its own parameters or buffers defined
    after the first of them (normalisation layers in between), in definition order."""
    first = top_layers(model, k, method)[0][0]
    owners = [(n, m) for n, m in model.named_modules()
              if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))]
    start = next(i for i, (n, _) in enumerate(owners) if n == first)
    return owners[start:]


def fresh_module(module: nn.Module, seed: int, method: str) -> nn.Module:
    """A CPU copy of ``module`` re-initialised from ``seed``: the same values whatever device the
    model lives on (re-initialising in place would draw from a CUDA generator on a GPU)."""
    if not hasattr(module, "reset_parameters"):
        raise ConfigError(f"{method} cannot re-initialise a {type(module).__name__}: it has no reset_parameters()")
    fresh = copy.deepcopy(module).to("cpu")
    reinitialise(fresh, seed)
    return fresh


def reset_module(module: nn.Module, seed: int, method: str) -> None:
    """Re-initialise ``module`` in place from ``seed`` (parameters and buffers such as batch-norm
    statistics), device-independently."""
    module.load_state_dict(fresh_module(module, seed, method).state_dict())
