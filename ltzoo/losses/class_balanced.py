"""Class-balanced weights of Cui et al. (2019), used by DRW (LDAM-DRW) and weight balancing."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ltzoo.errors import BadHyperParameterError


def class_balanced_weights(class_counts: Sequence[int], beta: float) -> torch.Tensor:
    """Per-class weights w_j = (1 - beta) / (1 - beta**n_j), normalised to sum to the class count.

    This is the "effective number of samples" re-weighting as in kaidic/LDAM-DRW ``cifar_train.py``
    and ShadeAlsha/LTR-weight-balancing. ``beta = 0`` gives uniform weights (all ones).
    """
    if not 0.0 <= beta < 1.0:
        raise BadHyperParameterError(f"class-balanced beta must be in [0, 1), got {beta}")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if (counts <= 0).any():
        raise BadHyperParameterError("class-balanced weights need every class count > 0")
    effective_num = 1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)
    weights = (1.0 - beta) / effective_num
    weights = weights / weights.sum() * len(counts)
    return weights.float()
