"""Classifier heads. Each maps pooled features (B, D) to logits (B, K).

Heads are registered by name so that a run's ``config.json`` can rebuild them
(``{"type": "cosine"}``); later issues add the ETF and logit-adjusted heads here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import ConfigMismatchError

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        HEADS[name] = cls
        return cls

    return wrap


@register_head("linear")
class LinearHead(nn.Linear):
    """A plain fully connected classifier."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__(in_features, num_classes, bias=bias)


@register_head("cosine")
class CosineHead(nn.Module):
    """NormedLinear of LDAM-DRW: logits are cosines between the feature and each class weight.

    As in kaidic/LDAM-DRW ``models/resnet_cifar.py::NormedLinear`` the weight is stored as
    (in_features, num_classes), initialised uniform(-1, 1) and renormed; the loss (LDAM) applies the
    scale ``s``, so inference logits are plain cosines in [-1, 1].
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, num_classes))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)


def build_head(spec: dict[str, Any], in_features: int, num_classes: int) -> nn.Module:
    """Build a head from its config spec, e.g. ``{"type": "linear"}``."""
    spec = dict(spec)
    kind = spec.pop("type", "linear")
    if kind not in HEADS:
        raise ConfigMismatchError(
            f"unknown head type {kind!r}; known heads: {sorted(HEADS)}. "
            "The config.json was written by a newer ltzoo, or is corrupt."
        )
    return HEADS[kind](in_features, num_classes, **spec)
