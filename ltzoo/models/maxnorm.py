"""MaxNorm constraint on classifier rows by projected gradient descent (weight balancing, stage 2).

As ShadeAlsha/LTR-weight-balancing ``utils/regularizers.py::MaxNorm_via_PGD`` (``LpNorm=2``,
``tau=1``): once, before fine-tuning, the radius is fixed from the stage-1 rows,

    delta = min_k ||w_k|| + thresh * (max_k ||w_k|| - min_k ||w_k||),

and after every training *epoch* (``utils/trainval.py``) each row with ||w_k|| > delta is rescaled to
norm delta; the other rows are left as they are. The bias has radius infinity there, so it is never
projected and is not handled here.

The radius is a buffer so that it travels with the objective's ``state_dict`` on resume (a resumed
run must keep the radius measured on the stage-1 weights, not re-measure it on fine-tuned ones).
"""

from __future__ import annotations

import torch
from torch import nn

from ltzoo.errors import BadHyperParameterError


class MaxNormPGD(nn.Module):
    def __init__(self, thresh: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= thresh <= 1.0:
            raise BadHyperParameterError(f"MaxNorm thresh must be in [0, 1], got {thresh}")
        self.thresh = thresh
        self.register_buffer("radius", torch.tensor(float("nan")))

    @property
    def has_radius(self) -> bool:
        return bool(torch.isfinite(self.radius))

    @torch.no_grad()
    def set_radius(self, weight: torch.Tensor) -> float:
        """Fix the radius from a (K, D) weight's row norms; returns it."""
        norms = _row_norms(weight)
        radius = norms.min() + self.thresh * (norms.max() - norms.min())
        self.radius.fill_(float(radius))
        return float(radius)

    @torch.no_grad()
    def project(self, weight: torch.Tensor) -> int:
        """Rescale, in place, the rows whose norm exceeds the radius; returns how many were projected."""
        if not self.has_radius:
            raise BadHyperParameterError("MaxNormPGD.project called before set_radius (the stage-1 weights)")
        norms = _row_norms(weight)
        over = norms > self.radius
        if over.any():
            scale = (self.radius / norms[over]).to(weight.dtype)
            weight[over] *= scale.view(-1, *([1] * (weight.dim() - 1)))
        return int(over.sum())


def _row_norms(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() < 2:
        raise BadHyperParameterError(f"MaxNorm needs a (K, D) weight, got shape {tuple(weight.shape)}")
    return torch.linalg.vector_norm(weight.reshape(weight.shape[0], -1), ord=2, dim=1)
