"""Every head ltzoo trains, read as an affine map of a pre-logit vector, and rebuilt from one.

A head computes ``logits = pre(x) @ weight.T + bias`` from the pooled features ``x``, where ``pre`` is
- ``identity`` for the linear head, the ETF head without a lift and a logit-adjusted head on either;
- ``normalize`` (L2) for the cosine head of LDAM-DRW, RSG and the synergy, whose weight rows are unit vectors
  times the logit scale ``s`` the method trained with (LDAM's ``s``, 30 by default: the plain head outputs
  cosines, whose argmax is the same);
- ``lift`` for an ETF head that first lifts narrow features (Linear -> BN -> ReLU).

A post-hoc calibration changes only ``weight`` and ``bias`` (:class:`AffineHead`), so it folds exactly into a
head of the same ``pre``: a plain linear layer for ``identity`` (every later step, timm loading included, sees
an ordinary classifier), a cosine head with a scale and a bias for ``normalize``, the same lifted ETF head with
a new bias (and a rescaled ETF buffer) for ``lift``.

Which methods apply to which head, and why (:func:`applicable_methods`):
- ``la`` (additive logit adjustment) changes only the bias: every head;
- ``tau-norm`` divides each weight row by its norm to the power tau: not for cosine and ETF heads, whose rows
  all have one norm already (tau-norm would change nothing);
- ``ncm`` replaces the rows by the classes' mean pre-logit vectors: not for a lifted ETF head, whose lift was
  trained for the fixed ETF and is kept as it is.
A logit-adjusted head (the one-stage weight-balancing recipe) is read as its base head with its own adjustment
folded in: that is its "no change" candidate, and the methods above start from the base head's logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.calibration import METHODS
from ltzoo.errors import BadHyperParameterError
from ltzoo.models.heads import CosineHead, ETFHead, LinearHead, LogitAdjustedHead

DEFAULT_COSINE_SCALE = 30.0  # LDAM's s (kaidic/LDAM-DRW), when the recipe records none


@dataclass(frozen=True)
class AffineHead:
    """``logits = pre(x) @ weight.T + bias`` (``weight`` (K, D), ``bias`` (K,), float64)."""

    pre: str  # "identity" | "normalize" | "lift"
    weight: np.ndarray
    bias: np.ndarray

    def logits(self, pre_logits: np.ndarray) -> np.ndarray:
        return pre_logits @ self.weight.T + self.bias

    def with_params(self, weight: np.ndarray | None = None, bias: np.ndarray | None = None) -> AffineHead:
        return replace(self, weight=self.weight if weight is None else weight, bias=self.bias if bias is None else bias)


@dataclass(frozen=True)
class ReadHead:
    """A model's head as calibration sees it: its affine form, the module computing ``pre`` (for ``lift``),
    what it was (the config's head spec) and the reason each method does not apply (None: it applies)."""

    affine: AffineHead
    spec: dict[str, object]
    not_applicable: dict[str, str | None]
    lift: nn.Module | None = None

    def applicable(self) -> list[str]:
        return [method for method in METHODS if self.not_applicable[method] is None]


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float64).cpu().numpy()


def read_head(head: nn.Module, spec: dict[str, object], cosine_scale: float = DEFAULT_COSINE_SCALE) -> ReadHead:
    """The affine form of ``head`` (its config spec ``spec``); an unknown head type is refused with the types
    calibration knows."""
    if isinstance(head, LogitAdjustedHead):
        base = read_head(head.base, dict(head.base_spec), cosine_scale)
        log_prior = _np(head.log_prior)
        affine = base.affine
        if head.mode == "additive":
            affine = affine.with_params(bias=affine.bias - head.tau * log_prior)
        else:  # logits * pi^(-tau): a per-class factor on every weight row and the bias
            factor = np.exp(-head.tau * log_prior)
            affine = affine.with_params(weight=affine.weight * factor[:, None], bias=affine.bias * factor)
        return replace(base, affine=affine, spec=spec)
    if isinstance(head, LinearHead):
        bias = _np(head.bias) if head.bias is not None else np.zeros(head.out_features)
        return ReadHead(
            AffineHead("identity", _np(head.weight), bias), spec, {"la": None, "tau-norm": None, "ncm": None}
        )
    if isinstance(head, CosineHead):
        scale = head.scale if head.scale != 1.0 else cosine_scale
        weight = F.normalize(head.weight.detach(), dim=0).T  # (K, D) unit rows
        bias = _np(head.bias) if head.bias is not None else np.zeros(weight.shape[0])
        return ReadHead(
            AffineHead("normalize", _np(weight) * scale, bias),
            spec,
            {
                "la": None,
                "ncm": None,
                "tau-norm": "the cosine head's weight rows are unit vectors, so tau-norm changes nothing",
            },
        )
    if isinstance(head, ETFHead):
        reasons: dict[str, str | None] = {
            "la": None,
            "ncm": None,
            "tau-norm": "the ETF head's fixed rows all have norm 1, so tau-norm changes nothing",
        }
        pre = "identity"
        if head.lift_dim is not None:
            pre = "lift"
            reasons["ncm"] = (
                "the ETF head lifts the features (Linear-BN-ReLU) for its fixed ETF; class means would "
                "need another head on the lifted features"
            )
        return ReadHead(
            AffineHead(pre, _np(head.weight), _np(head.bias)), spec, reasons, lift=head.lift if pre == "lift" else None
        )
    raise BadHyperParameterError(
        f"calibration does not know the head {type(head).__name__} ({spec}); it reads linear, cosine, etf and "
        "logit_adjusted heads"
    )


def pre_logits(read: ReadHead, pooled: torch.Tensor) -> np.ndarray:
    """The vector the head's affine map reads, from pooled backbone features."""
    with torch.no_grad():
        if read.affine.pre == "normalize":
            return _np(F.normalize(pooled.float(), dim=1))
        if read.affine.pre == "lift":
            assert read.lift is not None
            return _np(read.lift.eval()(pooled.float()))
    return _np(pooled)


def build_head(read: ReadHead, affine: AffineHead) -> tuple[nn.Module, dict[str, object]]:
    """The head module (and its config spec) that computes ``affine`` from pooled features."""
    num_classes, dim = affine.weight.shape
    weight = torch.as_tensor(affine.weight, dtype=torch.float32)
    bias = torch.as_tensor(affine.bias, dtype=torch.float32)
    if affine.pre == "identity":
        head = LinearHead(dim, num_classes)
        head.weight.data.copy_(weight)
        head.bias.data.copy_(bias)
        return head, {"type": "linear"}
    if affine.pre == "normalize":
        # Unit columns times one scale: the rows' norms (all equal for la; ncm's means are normalised too).
        norms = weight.norm(dim=1)
        scale = float(norms.mean())
        if not torch.allclose(norms, torch.full_like(norms, scale), rtol=1e-4):
            raise BadHyperParameterError("a cosine head's rows must share one norm")  # a bug, not a user error
        head = CosineHead(dim, num_classes, scale=scale, bias=True)
        head.weight.data.copy_((weight / scale).T)
        head.bias.data.copy_(bias)
        return head, head.config_spec()
    # lift: the same lifted ETF head; the ETF buffer takes the (rescaled) rows, the trainable bias the bias
    original = read.lift
    assert original is not None
    head = ETFHead(original[0].in_features, num_classes, lift_dim=dim)
    head.lift = copy.deepcopy(original)
    head.weight.copy_(weight)
    head.bias.data.copy_(bias)
    return head, head.config_spec()
