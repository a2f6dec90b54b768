"""Post-hoc logit adjustment by the training class prior pi.

Two forms, as HN410/Exploring-Weight-Balancing... ``utils/model_units.py::LogitAdjuster`` has them
at inference time:

- multiplicative (the one-stage method's choice): logits * exp(-tau * log pi) = logits * pi^(-tau);
- additive (Menon et al. 2021): logits - tau * log pi.

tau = 0 leaves the logits unchanged in both forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ltzoo.errors import BadHyperParameterError

MODES = ("multiplicative", "additive")


def log_prior(class_counts: Sequence[int]) -> torch.Tensor:
    """log pi_k = log(n_k / sum n) as float32, shape (K,)."""
    counts = [float(n) for n in class_counts]
    # Checked on the Python values: heads are also built on the meta device (``ltzoo.load``), where a
    # tensor has no values to test.
    if not counts or min(counts) <= 0:
        raise BadHyperParameterError("logit adjustment needs a positive training count for every class")
    total = sum(counts)
    return torch.tensor([math.log(n / total) for n in counts], dtype=torch.float32)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BadHyperParameterError(f"logit adjustment mode {mode!r} not in {MODES}")
    return mode


def adjust_logits(logits: torch.Tensor, log_pi: torch.Tensor, tau: float, mode: str = "multiplicative") -> torch.Tensor:
    """Apply the adjustment to (B, K) logits given log pi of shape (K,)."""
    check_mode(mode)
    if mode == "multiplicative":
        return logits * torch.exp(-tau * log_pi)
    return logits - tau * log_pi
