"""LDAM loss and the DRW (deferred re-weighting) schedule of Cao et al. (NeurIPS 2019).

Follows kaidic/LDAM-DRW ``losses.py::LDAMLoss`` and the ``train_rule == 'DRW'`` branch of
``cifar_train.py``:

* margins ``m_j = C / n_j^(1/4)`` with ``C`` chosen so that the largest margin is ``max_m``;
* the loss is ``CE(s * (z - m_y * onehot_y), y)`` on cosine logits ``z`` (the ``cosine`` head);
* DRW: uniform class weights before ``start_epoch``, class-balanced weights
  ``(1 - beta) / (1 - beta^n_j)`` (normalised to sum to the class count) from ``start_epoch`` on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.class_balanced import class_balanced_weights
from ltzoo.precision import full_precision


def ldam_margins(class_counts: Sequence[int], max_m: float = 0.5) -> torch.Tensor:
    """Per-class margins ``n_j^(-1/4)`` rescaled so that the largest (rarest class) equals ``max_m``."""
    if max_m < 0:
        raise BadHyperParameterError(f"LDAM max_m must be >= 0, got {max_m}; the official CIFAR value is 0.5")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.numel() == 0 or (counts <= 0).any():
        raise BadHyperParameterError("LDAM margins need every class count > 0 (an empty class has no margin)")
    margins = counts.pow(-0.25)
    return (margins * (max_m / margins.max())).float()


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss on cosine logits.

    ``weight`` (per-class, or ``None`` for uniform) is what DRW changes between epochs; it is a
    buffer so that it follows the module's device. As in the official code the weighted mean is
    PyTorch's ``cross_entropy(weight=...)`` mean (divided by the sum of the targets' weights).
    """

    def __init__(
        self, class_counts: Sequence[int], max_m: float = 0.5, s: float = 30.0, weight: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if s <= 0:
            raise BadHyperParameterError(f"LDAM scale s must be > 0, got {s}; the official CIFAR value is 30")
        self.s = float(s)
        self.register_buffer("margins", ldam_margins(class_counts, max_m), persistent=False)
        self.register_buffer("weight", None, persistent=False)
        self.set_weight(weight)

    def set_weight(self, weight: torch.Tensor | None) -> None:
        """Replace the per-class weights (DRW calls this at its switch epoch)."""
        if weight is not None:
            weight = torch.as_tensor(weight, dtype=torch.float32, device=self.margins.device)
            if weight.shape != self.margins.shape:
                raise BadHyperParameterError(
                    f"LDAM class weights have shape {tuple(weight.shape)}, expected ({self.margins.numel()},)"
                )
        self.weight = weight

    @full_precision
    def forward(self, cosine_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Subtract the target class's margin from its logit only, then scale (official LDAMLoss).
        onehot = F.one_hot(targets, num_classes=cosine_logits.shape[1]).to(cosine_logits.dtype)
        shifted = cosine_logits - onehot * self.margins[targets].unsqueeze(1)
        return F.cross_entropy(self.s * shifted, targets, weight=self.weight)


class DeferredReweighting:
    """DRW: the class weights for a given epoch (0-indexed, within the stage).

    The official code computes ``betas[epoch // 160]`` with ``betas = [0, 0.9999]``; beta 0 gives
    all-ones weights. Here the switch epoch is a hyper-parameter and epochs past it keep ``beta``
    (the official indexing would run off the list after epoch 319).
    """

    def __init__(self, class_counts: Sequence[int], start_epoch: int, beta: float = 0.9999) -> None:
        if start_epoch < 0:
            raise BadHyperParameterError(f"DRW start epoch must be >= 0, got {start_epoch}")
        if not 0.0 <= beta < 1.0:
            raise BadHyperParameterError(f"DRW beta must be in [0, 1), got {beta}; the official value is 0.9999")
        self.class_counts = list(class_counts)
        self.start_epoch = int(start_epoch)
        self.beta = float(beta)

    def is_active(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def weights(self, epoch: int) -> torch.Tensor:
        return class_balanced_weights(self.class_counts, self.beta if self.is_active(epoch) else 0.0)
