"""Whether this process is one of a torch.distributed process group: the one fact about the group that both
the engine and the training-only modules ask.

DSCL's queue and key encoder and ICCL's centroids (``ltzoo.models``) gather or reduce across processes
when a group runs, and work alone otherwise. They sit below the engine that trains them, so the fact
lives here, below both; starting and stopping the group, and the engine's collectives, are in
:mod:`ltzoo.engine.distributed`.
"""

from __future__ import annotations

import torch.distributed as dist


def is_distributed() -> bool:
    """A default process group is running (torchrun started this process and the engine joined the group)."""
    return dist.is_available() and dist.is_initialized()
