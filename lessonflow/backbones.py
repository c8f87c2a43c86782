"""Transfer learning's moving parts: class subsets, a network's backbone and head, freezing, features.

A backbone lesson learns on some classes of a dataset and a transfer lesson reuses it on others
(001 §4, §7.5.4, §7.5.6), so both pick classes out of one prepared set here. A zoo network splits
into the part a transfer lesson freezes (``features``) and the part it trains (``classifier`` or
``fc``, as torchvision names them). Frozen means eval mode and no gradients, and a frozen part's
output never changes, so its features are computed once per image rather than once per epoch.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HEADS = ("classifier", "fc")  # the trained part's attribute, VGG's and ResNet's


class BackboneError(ValueError):
    """A backbone's saved weights do not fit the network a transfer lesson builds."""


def checked_classes(data: dict[str, Any], key: str, indices: list[int]) -> list[int]:
    """``indices`` (the lesson's ``key``), refused unless each is a position in the dataset's class list."""
    bad = [index for index in indices if not 0 <= index < len(data["classes"])]
    if bad:
        raise ValueError(f"{key}: {bad[0]} is no class of the dataset; allowed: 0..{len(data['classes']) - 1}")
    return indices


def class_subset(data: dict[str, Any], classes: list[int], per_class: int | None = None) -> dict[str, Any]:
    """The splits restricted to ``classes``, relabelled 0, 1, … in their order; the first ``per_class``
    training images of each class only, when given (the few images a transfer lesson learns from)."""
    subset: dict[str, Any] = {key: value for key, value in data.items() if not key.startswith(("x_", "y_"))}
    subset["classes"] = [data["classes"][index] for index in classes]
    for split in ("train", "val", "test"):
        if f"y_{split}" not in data:
            continue
        y = data[f"y_{split}"]
        picks = [(y == label).nonzero().flatten() for label in classes]
        if split == "train" and per_class is not None:
            picks = [pick[:per_class] for pick in picks]
        index = torch.cat(picks).sort().values
        subset[f"x_{split}"] = data[f"x_{split}"][index]
        subset[f"y_{split}"] = torch.tensor([classes.index(int(label)) for label in y[index]], dtype=torch.long)
    return subset


def parts(network: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(backbone, head) of a zoo network: its ``features`` and its ``classifier`` or ``fc``."""
    head = next((getattr(network, name) for name in HEADS if hasattr(network, name)), None)
    if not hasattr(network, "features") or head is None:
        raise BackboneError(f"{type(network).__name__} has no features and head to split; "
                            "transfer lessons use vgg_small or resnet_cifar")
    return network.features, head


def load_backbone(backbone: nn.Module, saved: dict[str, torch.Tensor], label: str, prefix: str = "features.") -> None:
    """Put the backbone weights of a whole saved network (those under ``prefix``, its head's aside) into
    ``backbone``, or say in one line why not."""
    heads = tuple(f"{name}." for name in HEADS)
    state = {key.removeprefix(prefix): value for key, value in saved.items()
             if key.startswith(prefix) and not key.startswith(heads)}
    expected = backbone.state_dict()
    if not state:
        raise BackboneError(f"{label}: holds no backbone weights (no {prefix or 'non-head '}* entries); "
                            "it is not a model of the architecture this lesson names")
    for key, value in expected.items():
        if key not in state or state[key].shape != value.shape:
            found = "missing" if key not in state else f"of shape {tuple(state[key].shape)}"
            raise BackboneError(f"{label}: another architecture than this lesson's model: {prefix}{key} is {found}, "
                                f"expected {tuple(value.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise BackboneError(f"{label}: another architecture than this lesson's model: unexpected {prefix}{extra[0]}")
    backbone.load_state_dict(state)


def freeze(backbone: nn.Module) -> nn.Module:
    """Eval mode (batch norm keeps its saved statistics: the seed's ResNet50 drifted) and no gradients."""
    backbone.eval()
    backbone.requires_grad_(False)
    return backbone
