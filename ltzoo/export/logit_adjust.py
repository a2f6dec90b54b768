"""``--logit-adjust TAU``: bake post-hoc logit adjustment into the exported graph.

Additive form of Menon et al. 2021 (logits - tau * log prior, prior = training class frequencies),
computed by :func:`ltzoo.losses.logit_adjustment.adjust_logits`. The model is wrapped before export,
so the graph ends in a constant subtraction and the PyTorch reference used for parity and the dataset
gate is the adjusted model; the effect of the adjustment itself (adjusted vs plain PyTorch, per
split) goes in the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.export.options import check_tau
from ltzoo.losses.logit_adjustment import adjust_logits, log_prior


class LogitAdjusted(nn.Module):
    """``model(x) - tau * log prior``; the prior is a buffer, so it is a constant in the graph."""

    def __init__(self, model: nn.Module, class_counts: Sequence[int], tau: float) -> None:
        super().__init__()
        check_tau(tau)
        if type(getattr(model, "head", None)).__name__ == "LogitAdjustedHead":
            raise BadHyperParameterError(
                "the model's head already applies a logit adjustment (LogitAdjustedHead); --logit-adjust would "
                "adjust twice: export without it"
            )
        num_classes = getattr(model, "num_classes", len(class_counts))
        if len(class_counts) != num_classes:
            raise BadHyperParameterError(
                f"logit adjustment got {len(class_counts)} class counts for a {num_classes}-class model"
            )
        self.model = model
        self.tau = float(tau)
        self.num_classes = num_classes
        self.register_buffer("log_prior", log_prior(class_counts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adjust_logits(self.model(x), self.log_prior, self.tau, mode="additive")
