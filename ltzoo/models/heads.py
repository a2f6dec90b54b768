"""Classifier heads. Each maps pooled features (B, D) to logits (B, K).

Heads are registered by name so that a run's ``config.json`` can rebuild them
(``{"type": "cosine"}``); later issues add the ETF and logit-adjusted heads here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError, ConfigMismatchError
from ltzoo.losses.logit_adjustment import adjust_logits, check_mode, log_prior

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: ``{"type": name}`` in a config builds ``cls``. A name registered twice is an error
    (configs written with the first head would load into the second)."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in HEADS:
            raise ValueError(f"head type {name!r} is already registered (by {HEADS[name].__name__}); pick another name")
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

    ``scale`` and ``bias`` are for a calibrated head (``ltzoo calibrate``): ``scale * cosine + bias``, a logit
    adjustment or a deployment prior folded in. A trained head has neither (scale 1, no bias parameter).
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 1.0, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, num_classes))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        self.scale = float(scale)
        if bias:
            self.bias = nn.Parameter(torch.zeros(num_classes))
        else:
            self.register_parameter("bias", None)

    def config_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "cosine"}
        if self.scale != 1.0:
            spec["scale"] = self.scale
        if self.bias is not None:
            spec["bias"] = True
        return spec

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cosines = F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)
        if self.scale != 1.0:
            cosines = cosines * self.scale
        return cosines if self.bias is None else cosines + self.bias


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """A (K, D) simplex equiangular tight frame: unit rows with pairwise cosine -1/(K-1).

    As HN410/Exploring-Weight-Balancing... ``utils/model_units.py::get_general_etf``:
    W = (U sqrt(K/(K-1)) (I - 11^T/K))^T with U a random (D, K) matrix of orthonormal columns. The
    official code draws U with scipy's ``ortho_group``; ltzoo uses the QR of a Gaussian matrix from
    its own seeded generator (also Haar-distributed), so the head is reproducible without scipy.
    """
    if dim < num_classes:
        raise BadHyperParameterError(
            f"a {num_classes}-class simplex ETF needs at least {num_classes} feature dimensions, the "
            f"backbone gives {dim}; use a wider backbone or set the ETF head's lift_dim >= {num_classes}"
        )
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(dim, num_classes, generator=generator, dtype=torch.float64)
    basis, _ = torch.linalg.qr(gaussian)  # (D, K), orthonormal columns
    centering = torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes
    etf = basis @ centering * math.sqrt(num_classes / (num_classes - 1))
    return etf.T.contiguous().float()


@register_head("etf")
class ETFHead(nn.Module):
    """Fixed simplex-ETF classifier with a trainable bias (the one-stage method of Hasegawa & Sato).

    The ETF matrix is a persistent *buffer*: saved in ``model.safetensors`` but never trained or
    weight-decayed (official: ``etf_norm_rate`` 1, ``train_etf_norm`` false, only the bias trains).
    The bias starts uniform(-1/D, 1/D) as in the official ``ETFClassifier``.

    ``lift_dim`` is ltzoo's own addition for backbones narrower than the class count (ResNet-32
    gives 64 features, CIFAR-100 has 100 classes; the official code uses ResNet-34 with 512): a
    trainable Linear -> BatchNorm -> ReLU maps the pooled features to ``lift_dim`` before the ETF.
    Without it the head refuses such a backbone rather than build a matrix that is not an ETF.
    """

    def __init__(self, in_features: int, num_classes: int, lift_dim: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.in_features = in_features
        self.lift_dim = lift_dim
        self.seed = seed
        self.lift: nn.Module = nn.Identity()
        etf_dim = in_features
        if lift_dim is not None:
            self.lift = nn.Sequential(nn.Linear(in_features, lift_dim, bias=False), nn.BatchNorm1d(lift_dim), nn.ReLU())
            etf_dim = lift_dim
        self.register_buffer("weight", simplex_etf(num_classes, etf_dim, seed))
        self.bias = nn.Parameter(torch.empty(num_classes).uniform_(-1.0 / etf_dim, 1.0 / etf_dim))

    def pre_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The vector the ETF sees (the lifted features when ``lift_dim`` is set)."""
        return self.lift(features)

    def config_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": "etf", "seed": self.seed}
        if self.lift_dim is not None:
            spec["lift_dim"] = self.lift_dim
        return spec

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(self.lift(features), self.weight, self.bias)


@register_head("logit_adjusted")
class LogitAdjustedHead(nn.Module):
    """A base head followed by post-hoc logit adjustment with the training prior held as a buffer.

    Spec: ``{"type": "logit_adjusted", "tau": 0.65, "mode": "multiplicative", "base": {...}}``.
    ``log_prior`` is persistent, so ``ltzoo.load`` and the ONNX graph both give adjusted logits.
    Built from a spec alone (no weights) the prior is uniform, which changes no prediction.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        base: dict[str, Any],
        tau: float,
        mode: str = "multiplicative",
        class_counts: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.tau = float(tau)
        self.mode = check_mode(mode)
        self.base_spec = dict(base)
        self.base = build_head(base, in_features, num_classes)
        counts = class_counts if class_counts is not None else [1] * num_classes
        self.register_buffer("log_prior", log_prior(counts))

    def pre_logits(self, features: torch.Tensor) -> torch.Tensor:
        inner = getattr(self.base, "pre_logits", None)
        return inner(features) if inner is not None else features

    def config_spec(self) -> dict[str, Any]:
        """What ``config.json`` stores (the trainer asks the head, since a method may have replaced it)."""
        return {"type": "logit_adjusted", "tau": self.tau, "mode": self.mode, "base": dict(self.base_spec)}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return adjust_logits(self.base(features), self.log_prior, self.tau, self.mode)


@torch.no_grad()
def reinitialise_head(head: nn.Module, std: float, seed: int) -> None:
    """Weights ~ N(0, std) and zero biases, from a seeded generator (deterministic across ranks): the classifier
    re-initialisation of decoupled stage 2 (cRT of Kang et al. 2020; ICCL, cRT in ltzoo)."""
    generator = torch.Generator().manual_seed(seed)
    for param in head.parameters():
        if param.dim() >= 2:
            param.copy_(torch.randn(param.shape, generator=generator) * std)
        else:
            param.zero_()


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
