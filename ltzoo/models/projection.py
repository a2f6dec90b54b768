"""A small MLP projection head for contrastive learning (training only, never exported).

SupContrast's ``SupConResNet`` uses ``Linear(d, d) -> ReLU -> Linear(d, feat_dim)`` on the pooled
backbone feature; this is that head with the hidden width as a parameter so that other methods can
share it. The output is not normalised: contrastive losses normalise their inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ltzoo.errors import BadHyperParameterError


class ProjectionHead(nn.Module):
    """``Linear(in_dim, hidden_dim) -> ReLU -> Linear(hidden_dim, out_dim)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise BadHyperParameterError(
                f"projection head sizes must be positive, got in={in_dim} hidden={hidden_dim} out={out_dim}"
            )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)
