"""Supervised contrastive loss (Khosla et al., NeurIPS 2020).

Follows HobbitLong/SupContrast ``losses.py::SupConLoss`` with ``contrast_mode='all'``:

    L = mean_i  -(tau / base_tau) * 1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a != i} exp(z_i.z_a/tau) )

where every view of every sample is an anchor, A(i) is every other view in the batch and P(i) the
other views with the same label. An anchor without positives contributes 0 but still counts in the
mean (the official guard divides by 1 instead of |P(i)| = 0).

Departures from the official code, both to make the function reusable:

* the embeddings are L2-normalised here (the official model normalises before calling the loss;
  normalising twice is a no-op, so both calling styles give the same value);
* :func:`supcon_loss` takes a flat ``(N, D)`` batch with one label per row, so callers can mix
  two-view samples with single-view ones (RSG's generated features in the synergy recipe).
  :func:`supcon_loss_views` is the official ``(B, V, D)`` interface on top of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.precision import full_precision


def _check_temperatures(temperature: float, base_temperature: float) -> None:
    if not temperature > 0:
        raise BadHyperParameterError(
            f"SupCon temperature must be > 0, got {temperature}; SupContrast uses 0.07 (default) or 0.1 (CIFAR)"
        )
    if not base_temperature > 0:
        raise BadHyperParameterError(f"SupCon base_temperature must be > 0, got {base_temperature}")


@full_precision
def supcon_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07, base_temperature: float = 0.07
) -> torch.Tensor:
    """SupCon over a flat batch: ``embeddings`` (N, D), ``labels`` (N,); each row is one anchor."""
    _check_temperatures(temperature, base_temperature)
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"supcon_loss needs embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    z = F.normalize(embeddings, dim=1)
    n = z.shape[0]
    similarity = z @ z.T / temperature
    not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & not_self
    # log softmax over every other view; the anchor itself is excluded from the denominator.
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(~not_self, float("-inf")), dim=1, keepdim=True)
    num_positives = positives.sum(1).clamp(min=1)  # the official no-positive guard
    mean_log_prob_pos = (log_prob * positives).sum(1) / num_positives
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


def supcon_loss_views(
    features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07, base_temperature: float = 0.07
) -> torch.Tensor:
    """The official interface: ``features`` (B, V, D) with V views per sample, ``labels`` (B,)."""
    if features.dim() != 3:
        raise ValueError(f"supcon_loss_views needs features (B, V, D), got {tuple(features.shape)}")
    batch, views = features.shape[:2]
    flat = torch.cat(torch.unbind(features, dim=1), dim=0)  # view-major, as the official code
    return supcon_loss(flat, labels.repeat(views), temperature, base_temperature)


class SupConLoss(nn.Module):
    """Module form of :func:`supcon_loss_views` with the temperatures checked at construction."""

    def __init__(self, temperature: float = 0.07, base_temperature: float = 0.07) -> None:
        super().__init__()
        _check_temperatures(temperature, base_temperature)
        self.temperature = float(temperature)
        self.base_temperature = float(base_temperature)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss_views(features, labels, self.temperature, self.base_temperature)
