"""Class-centroid memory for ICCL: per-class running means of L2-normalised projected features.

A training-only module (it lives in the ICCL objective, is checkpointed with it for resume, and is
never part of the inference model). The update rule is **ltzoo's choice**: no ICCL code has been
published, and the readable opening of the patent application (US 2022/0156530 A1) says only that a
centroid is the average embedding of the samples of its class (see :mod:`ltzoo.methods.iccl` for how
this rule may depart from it):

- every step, each class present in the batch gets its batch mean ``mu_k = sum_i w_ik z_i / sum_i w_ik``
  of the L2-normalised features ``z_i`` with (soft) assignment weights ``w_ik``; ICCL assigns a mixed
  image to its two source classes with weights ``lam`` and ``1 - lam``;
- the first time a class is seen its centroid is set to ``mu_k``; afterwards
  ``c_k <- m * c_k + (1 - m) * mu_k`` (momentum ``m``);
- classes absent from the batch keep their centroid;
- under DDP (a process group is initialised) the per-class sums and weights are all-reduced before
  the division, so every rank holds the same centroids, equal to what one process would compute on
  the global batch. Without a process group it is a plain single-process update.

Stored centroids are means of unit vectors (norm <= 1); the ICCL loss normalises them itself.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.process_group import is_distributed


class CentroidMemory(nn.Module):
    """Momentum-updated class centroids; buffers ``centroids`` (K, D) and ``initialised`` (K,)."""

    def __init__(self, num_classes: int, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise BadHyperParameterError(f"centroid memory needs num_classes, dim >= 1, got {num_classes}, {dim}")
        if not 0.0 <= momentum < 1.0:
            raise BadHyperParameterError(f"centroid momentum must be in [0, 1), got {momentum}")
        self.num_classes = num_classes
        self.dim = dim
        self.momentum = momentum
        self.register_buffer("centroids", torch.zeros(num_classes, dim))
        self.register_buffer("initialised", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: torch.Tensor, weights: torch.Tensor) -> None:
        """Fold one batch into the centroids.

        ``features`` (B, D) are normalised here; ``weights`` (B, K) are non-negative assignment
        weights (one-hot rows for hard labels; see :func:`soft_assignment` for ICCL's mixed samples).
        """
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise BadHyperParameterError(
                f"centroid update expects features (B, {self.dim}), got {tuple(features.shape)}"
            )
        if weights.shape != (features.shape[0], self.num_classes):
            raise BadHyperParameterError(
                f"centroid update expects weights ({features.shape[0]}, {self.num_classes}), got {tuple(weights.shape)}"
            )
        z = F.normalize(features.detach().float(), dim=1)
        w = weights.detach().float().to(z.device)
        sums = w.t() @ z  # (K, D)
        counts = w.sum(dim=0)  # (K,)
        if is_distributed():
            # One all-reduce for both: the global batch decides, and all ranks stay identical.
            packed = torch.cat([sums, counts.unsqueeze(1)], dim=1)
            dist.all_reduce(packed)
            sums, counts = packed[:, :-1], packed[:, -1]
        seen = counts > 0
        if not bool(seen.any()):
            return
        batch_means = sums[seen] / counts[seen].unsqueeze(1)
        old = self.centroids[seen]
        was_initialised = self.initialised[seen].unsqueeze(1)
        blended = self.momentum * old + (1.0 - self.momentum) * batch_means.to(old.dtype)
        self.centroids[seen] = torch.where(was_initialised, blended, batch_means.to(old.dtype))
        self.initialised[seen] = True


def soft_assignment(
    targets_a: torch.Tensor, targets_b: torch.Tensor, lam: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """(B, K) weights: ``lam`` on class ``y_a`` and ``1 - lam`` on ``y_b`` (summed when they coincide)."""
    lam = lam.float()
    weights = F.one_hot(targets_a, num_classes).float() * lam.unsqueeze(1)
    return weights + F.one_hot(targets_b, num_classes).float() * (1.0 - lam).unsqueeze(1)
