"""The model registry: every architecture a lesson can name in ``params.yaml``.

A model is built from the data's shape (``in_shape``, ``num_classes``) plus the
lesson's own keyword arguments, so one class serves every lesson that shares the
architecture (``mnist-logreg``, ``mnist-ann`` and ``mnist-mlp`` are all ``mlp``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

MODELS: dict[str, type[nn.Module]] = {}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
}
DATA_ARGS = ("in_shape", "num_classes")


def register(name: str):
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS[name] = cls
        return cls
    return add


def check_model_args(name: str, kwargs: dict) -> None:
    """Fail early, naming the allowed names, when params ask for a model or argument that does not exist."""
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    signature = inspect.signature(MODELS[name].__init__)
    allowed = [p for p in signature.parameters if p not in ("self", *DATA_ARGS)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown argument of model {name!r}; allowed: {', '.join(allowed) or 'none'}")
    if "activations" in kwargs:
        bad = [a for a in kwargs["activations"] if a not in ACTIVATIONS]
        if bad:
            raise ValueError(f"activations: unknown activation {bad[0]!r}; allowed: {', '.join(ACTIVATIONS)}")


def build_model(name: str, kwargs: dict, *, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    check_model_args(name, kwargs)
    return MODELS[name](in_shape=tuple(in_shape), num_classes=num_classes, **kwargs)


@register("mlp")
class MLP(nn.Module):
    """Fully connected net on flattened pixels; with no hidden layers it is multinomial logistic regression."""

    def __init__(self, in_shape, num_classes, hidden: list[int] = (), activations: list[str] | None = None):
        super().__init__()
        activations = list(activations or ["relu"] * len(hidden))
        if len(activations) != len(hidden):
            raise ValueError(f"activations: {len(activations)} given for {len(hidden)} hidden layers")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for size, act in zip(hidden, activations):
            layers += [nn.Linear(width, size), ACTIVATIONS[act]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _flat_size(features: nn.Module, in_shape) -> int:
    """Size the classifier head from a dry forward pass instead of hand-computed arithmetic."""
    with torch.no_grad():
        return features(torch.zeros(1, *in_shape)).flatten(1).shape[1]


@register("cnn")
class SmallCNN(nn.Module):
    """Two conv/ReLU/max-pool blocks and a head; covers both tutorial CNNs through its arguments.

    Course (003 K): channels [10, 20], kernel 5, padding 0, head [64].
    Book (001 §7.6): channels [16, 32], kernel 5, padding 2, no hidden head layer.
    """

    def __init__(self, in_shape, num_classes, channels: list[int] = (10, 20), kernel: int = 5,
                 padding: int = 0, head: list[int] = (64,)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_shape[0]
        for out in channels:
            layers += [nn.Conv2d(width, out, kernel, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
            width = out
        self.features = nn.Sequential(*layers)
        sizes = [_flat_size(self.features, in_shape), *head]
        head_layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:]):
            head_layers += [nn.Linear(a, b), nn.ReLU()]
        head_layers.append(nn.Linear(sizes[-1], num_classes))
        self.head = nn.Sequential(*head_layers)

    def forward(self, x):
        return self.head(self.features(x))
