"""MoCo-style training-only parts: a momentum key encoder with shuffled BN and a labelled queue.

Used by DSCL (``ltzoo.methods.dscl``); they live in the method's objective, never in the saved
inference model. Both work in a single process and under DDP. The official code
(``SY-Xuan/DSCL: dscl/DSCL.py``, from facebookresearch/moco) runs only under DDP because it calls
``torch.distributed`` unconditionally; here every collective is guarded by ``is_distributed()``.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.process_group import is_distributed


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order (no gradient).

    In a single process this is the tensor itself. Every rank must pass the same shape (the
    loaders drop the last incomplete batch, as the official code does).
    """
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class MomentumEncoder(nn.Module):
    """An exponential-moving-average copy of an online encoder, run without gradient.

    ``update(online)`` sets every parameter to ``m * key + (1 - m) * online`` (MoCo; m = 0.999 in
    DSCL). BN buffers are the copy's own: it runs in train mode, so its running statistics follow
    the key batches, as in MoCo.

    Shuffled BN (MoCo): the keys of a batch are normalised with batch statistics of a *different*
    grouping of images than their queries, so BN cannot leak which query goes with which key.
    Under DDP the batch is gathered, permuted with one permutation broadcast from rank 0, each rank
    encodes its slice, and the outputs are gathered and put back in order (as the official code).
    In a single process, permuting one batch would change nothing, so the permuted batch is
    encoded in ``bn_splits`` chunks, each with its own BN statistics, emulating ``bn_splits``
    devices (ltzoo's single-process path; the official code has none).
    """

    def __init__(self, online: nn.Module, momentum: float = 0.999, bn_splits: int = 1) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise BadHyperParameterError(f"momentum-encoder momentum must be in [0, 1), got {momentum}")
        if bn_splits < 1:
            raise BadHyperParameterError(f"bn_splits must be >= 1, got {bn_splits}")
        self.momentum = momentum
        self.bn_splits = bn_splits
        self.encoder = copy.deepcopy(online)
        for param in self.encoder.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        """EMA step towards ``online`` (the module this encoder was copied from)."""
        for key_param, online_param in zip(self.encoder.parameters(), online.parameters(), strict=True):
            key_param.mul_(self.momentum).add_(online_param.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if is_distributed() and dist.get_world_size() > 1:
            return self._forward_ddp(images)
        return self._forward_split(images)

    def _forward_split(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        splits = max(1, min(self.bn_splits, batch // 2))  # BN needs at least 2 samples per chunk
        order = torch.randperm(batch, device=images.device)
        outputs = [self.encoder(images[chunk]) for chunk in order.chunk(splits)]
        result = torch.empty((batch, *outputs[0].shape[1:]), dtype=outputs[0].dtype, device=outputs[0].device)
        result[order] = torch.cat(outputs, dim=0)
        return result

    def _forward_ddp(self, images: torch.Tensor) -> torch.Tensor:
        batch_this = images.shape[0]
        gathered = concat_all_gather(images)
        world = gathered.shape[0] // batch_this
        permutation = torch.randperm(gathered.shape[0], device=images.device)
        dist.broadcast(permutation, src=0)
        rank = dist.get_rank()
        mine = permutation.view(world, -1)[rank]
        encoded = concat_all_gather(self.encoder(gathered[mine]))
        # encoded[r] holds image permutation[r]; invert the permutation and take this rank's images.
        inverse = torch.argsort(permutation)
        return encoded[inverse.view(world, -1)[rank]]


class LabelledQueue(nn.Module):
    """A FIFO memory of ``size`` feature vectors and their labels.

    Departure from the official code, which starts the queue with random unit vectors and random
    labels (its own comment: "TODO: maybe should fill the queue at first"), so that for the first
    K / B steps fake positives and negatives enter the loss: here the queue starts empty and
    :meth:`contents` returns only the slots filled so far.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise BadHyperParameterError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        self.size = size
        self.register_buffer("features", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, labels) of the filled slots, copied: the caller's graph must not see later writes."""
        count = int(self.filled)
        return self.features[:count].clone(), self.labels[:count].clone()

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Write a batch (from every rank under DDP) at the pointer, overwriting the oldest entries."""
        features = concat_all_gather(features.detach())
        labels = concat_all_gather(labels.detach())
        if features.shape[0] != labels.shape[0]:
            raise ValueError(f"queue: {features.shape[0]} features but {labels.shape[0]} labels")
        if features.shape[0] > self.size:  # only the newest `size` entries would survive anyway
            features, labels = features[-self.size :], labels[-self.size :]
        count = features.shape[0]
        start = int(self.ptr)
        slots = (torch.arange(count, device=self.features.device) + start) % self.size
        self.features[slots] = features.to(self.features.dtype)
        self.labels[slots] = labels.to(self.labels.dtype)
        self.ptr.fill_((start + count) % self.size)
        self.filled.fill_(min(int(self.filled) + count, self.size))
