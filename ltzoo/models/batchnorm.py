"""BatchNorm running statistics re-estimated on a stream of batches (no gradient, no weight change)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def reestimate_batchnorm(
    module: nn.Module, batches: Iterable[torch.Tensor], forward: Callable[[torch.Tensor], Any] | None = None
) -> int:
    """Replace the running mean and variance of every BatchNorm in ``module`` by their cumulative
    average over ``batches``: each batch's mean and unbiased variance weigh equally (PyTorch's
    ``momentum=None``). ``forward`` (default: ``module`` itself) is called on each batch with the
    BatchNorm layers in train mode; their momentum and train/eval mode are restored afterwards.
    Returns the number of batches seen."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(norm.momentum, norm.training) for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    forward = forward or module
    seen = 0
    try:
        for images in batches:
            forward(images)
            seen += 1
    finally:
        for norm, (momentum, training) in zip(norms, saved, strict=True):
            norm.momentum = momentum
            norm.train(training)
    return seen
