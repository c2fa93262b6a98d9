"""The architectures unlearnkit ships: ``mlp``, ``cnn``, a CIFAR-style ``resnet18``, SISA's ensemble, and the
linear heads ``linear`` / ``logistic`` (on the flattened input or on a frozen network's features).

Each builder takes the data's input shape and class count plus its own keyword arguments, and names
its last linear layer ``classifier`` so that methods which reset or retrain "the head" find it.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import ConfigError


class LinearEraser(nn.Module):
    """An affine map that removes a linearly encoded concept from features, ``x - (x - center) @ projection.T``
    (the form of LEACE, Belrose et al., NeurIPS 2023). It is the identity until fitted (``projection`` zeros).
    Buffers, not parameters: training never moves it."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("projection", torch.zeros(width, width))
        self.register_buffer("center", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - (x - self.center) @ self.projection.T


class ErasedLinear(nn.Linear):
    """An output layer whose input passes a :class:`LinearEraser` first. The model's penultimate features are then
    the eraser's output (:func:`unlearnkit.models.penultimate`): what the linear map actually reads."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features)
        self.eraser = LinearEraser(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.eraser(x))


def penultimate(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, logits)`` of ``model`` on ``x``: the features are what its output layer's linear map reads.

    The output layer is ``model.classifier`` (every built-in architecture names it so) or, for any other
    ``nn.Module``, its last ``nn.Linear`` (the documented hook: name the output layer ``classifier``). Gradients
    flow through both outputs, so a method can train on the features (an adversarial head, a probe).
    """
    layer = getattr(model, "classifier", None)
    if not isinstance(layer, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"{type(model).__name__} has no nn.Linear output layer to read penultimate features "
                              "from; name the model's output layer 'classifier'")
        layer = linears[-1]
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        eraser = getattr(module, "eraser", None)
        captured.append(eraser(inputs[0]) if eraser is not None else inputs[0])

    handle = layer.register_forward_pre_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"{type(model).__name__}'s output layer ran {len(captured)} times in one forward pass; "
                          "penultimate features need it to run once")
    return captured[0], logits


def output_layer(width: int, num_classes: int, erased: bool) -> nn.Linear:
    """The ``classifier`` of a built-in architecture: plain, or with a concept eraser before it (``erased=True``,
    what ``leace`` produces; the kwarg is saved with the checkpoint, so the model loads again)."""
    return ErasedLinear(width, num_classes) if erased else nn.Linear(width, num_classes)


class MLP(nn.Module):
    """Flatten, then ``len(hidden)`` ReLU layers, then the ``classifier``."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (256, 128),
                 dropout: float = 0.0, erased: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = output_layer(width, num_classes, erased)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CNN(nn.Module):
    """Two conv blocks (conv-ReLU-maxpool), a hidden linear layer, the ``classifier``.

    Works for 28x28 (MNIST, Fashion-MNIST), 32x32 (CIFAR-10) and 8x8 (digits) inputs. Small on
    purpose: about 1.2M multiply-adds per 28x28 image, so an epoch of Fashion-MNIST takes seconds on
    two CPU cores. No batch norm, so many copies can be trained at once with ``torch.func``.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16, hidden: int = 128,
                 erased: bool = False):
        super().__init__()
        channels, height, wide = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width * (height // 4) * (wide // 4), hidden), nn.ReLU())
        self.classifier = output_layer(hidden, num_classes, erased)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.features(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 in its CIFAR form (He et al. 2016): 3x3 stem, no max-pool, four stages of two blocks."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64, erased: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, in_planes = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = output_layer(in_planes, num_classes, erased)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.classifier(torch.flatten(self.pool(out), 1))


AGGREGATES = ("vote", "softmax")


class ShardEnsemble(nn.Module):
    """One member model per data shard, predicting together: SISA's ensemble (Bourtoule et al., IEEE S&P 2021).

    ``aggregate="softmax"`` returns the log of the members' mean softmax. ``aggregate="vote"`` is the paper's
    label vote: each member votes for its top class, and the output is the log of
    ``(1 - a) * vote_share + a * mean_softmax`` with ``a = 1 / (2 (k + 1))`` for ``k`` voting members. That ``a``
    is small enough that the argmax is always the majority vote (one vote is worth ``(1 - a) / k > a``), ties go
    to the class with the higher mean probability, and every class keeps a finite score, so losses and
    membership attacks on the output stay defined.

    The ``active`` buffer (saved with the weights) marks members whose shard holds data; a member whose shard
    is empty (every sample of it deleted) keeps its initial weights and takes no part in the prediction.
    """

    def __init__(self, members: list[nn.Module], aggregate: str = "vote"):
        super().__init__()
        if aggregate not in AGGREGATES:
            raise ConfigError(f"unknown aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
        if not members:
            raise ConfigError("an ensemble needs at least one member; use shards >= 1")
        self.members = nn.ModuleList(members)
        self.aggregate = aggregate
        self.register_buffer("active", torch.ones(len(members)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        voting = [m for m, on in zip(self.members, self.active.tolist(), strict=True) if on]
        if not voting:
            raise RuntimeError("no ensemble member is active: every shard is empty")
        logits = torch.stack([m(x) for m in voting])  # [members, batch, classes]
        mean_prob = logits.softmax(-1).mean(0)
        tiny = torch.finfo(mean_prob.dtype).tiny
        if self.aggregate == "softmax":
            return mean_prob.clamp_min(tiny).log()
        votes = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(mean_prob.dtype).mean(0)
        a = 1.0 / (2 * (len(voting) + 1))
        return ((1 - a) * votes + a * mean_prob).clamp_min(tiny).log()


class FrozenFeatures(nn.Module):
    """A trained network up to its ``classifier``, frozen: a fixed feature map under a linear head.

    The network's weights are kept as buffers (saved with the checkpoint, never trained) and its modules stay
    out of the module tree: the network runs as a skeleton on the meta device through
    ``torch.func.functional_call``. So optimizers see no parameters here, and ``fresh_copy`` (what ``retrain``
    starts from) re-initialises only the head on top. The network's forward pass must end with
    ``self.classifier`` (every built-in architecture does); that layer is dropped.
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        if not isinstance(getattr(network, "classifier", None), nn.Linear):
            raise ConfigError(f"a frozen feature network needs a final nn.Linear named 'classifier'; "
                              f"{type(network).__name__} has none, use one of mlp, cnn, resnet18")
        self.width = network.classifier.in_features
        skeleton = copy.deepcopy(network).to("cpu")
        skeleton.classifier = nn.Identity()
        self.names = list(skeleton.state_dict())
        for name, tensor in skeleton.state_dict().items():
            self.register_buffer(name.replace(".", "__"), tensor.detach().clone())
        self._skeleton = (skeleton.to("meta").eval(),)  # in a tuple: not a registered submodule

    def load_network(self, network: nn.Module) -> FrozenFeatures:
        """Copy the weights of a trained ``network`` of this architecture into the frozen buffers."""
        state = {k: v for k, v in network.state_dict().items() if not k.startswith("classifier.")}
        if sorted(state) != sorted(self.names):
            raise ConfigError(f"the feature network's weights do not fit this architecture ({len(state)} tensors for "
                              f"{len(self.names)}); pass the checkpoint the head was built for")
        with torch.no_grad():
            for name in self.names:
                getattr(self, name.replace(".", "__")).copy_(state[name])
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = {name: getattr(self, name.replace(".", "__")) for name in self.names}
        return torch.func.functional_call(self._skeleton[0], state, (x,))


class LinearHead(nn.Module):
    """One linear layer, the ``classifier``, on fixed features: the flattened input or a ``FrozenFeatures`` network.

    The convex models behind certified removal (unlearnkit.exact.linear, method ``certified``). The head's weights are
    float64, so a model trained to its optimum stays there through a save and a load (float32 rounding alone
    would leave a gradient that spoils the removal bound); logits come out in float32 like every other model's.
    ``perturbation`` is the standard deviation sigma of the loss-perturbation vector ``b`` of Guo et al. (ICML
    2020): drawn once when the model is built (from the build seed) and kept in the ``noise`` buffer, so that
    retraining a copy minimises the same perturbed objective. It is saved with the weights: publish only the
    ``classifier`` weights of a model whose removal guarantee matters. ``normalize`` scales every feature vector
    to unit L2 norm before the head, as the paper does: the removal bound grows with the feature norms, so this
    makes it far tighter (at some cost in accuracy for the same weight decay).
    """

    objective: ClassVar[str]

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, perturbation: float = 0.0,
                 features: FrozenFeatures | None = None, normalize: bool = False):
        super().__init__()
        if not (math.isfinite(perturbation) and perturbation >= 0):
            raise ConfigError(f"perturbation (the std of the loss perturbation) must be >= 0, got {perturbation}")
        self.perturbation = float(perturbation)
        self.normalize = bool(normalize)
        self.features = nn.Flatten() if features is None else features
        width = math.prod(input_shape) if features is None else features.width
        self.classifier = nn.Linear(width, num_classes, dtype=torch.float64)
        self.register_buffer("noise", self.perturbation * torch.randn(num_classes, width + 1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x).to(self.classifier.weight.dtype)
        if self.normalize:
            features = F.normalize(features, dim=1)
        return self.classifier(features).to(torch.float32)


class LinearRegression(LinearHead):
    """``linear``: least squares on one-hot targets with an L2 penalty (ridge regression), solved in closed form."""

    objective = "squared"


class LogisticRegression(LinearHead):
    """``logistic``: multinomial logistic regression (softmax cross-entropy) with an L2 penalty."""

    objective = "logistic"
