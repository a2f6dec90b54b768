"""The process group: start it from torchrun's environment, the facts about it, and the few collectives
the trainer needs. Everything here also works without a process group (one process, rank 0 of 1).
Whether a group runs at all is :func:`ltzoo.process_group.is_distributed`, which the models layer asks too.

Launch (see the README's "Distributed training"): ``torchrun --nproc_per_node N -m ltzoo train NAME ...``.
torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_from_env` reads them and starts NCCL for CUDA devices, gloo for the CPU.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ltzoo.errors import LtzooError
from ltzoo.process_group import is_distributed

log = logging.getLogger("ltzoo.distributed")

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


# ----- start and stop ---------------------------------------------------------------------------
def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise LtzooError(f"${name}={value!r} is not an integer; launch with torchrun, which sets it") from None


def init_from_env(device: str = "cpu") -> torch.device:
    """Start the default process group if this process was launched by torchrun with more than one process.

    Returns the device this process trains on: ``device`` itself for the CPU, ``cuda:LOCAL_RANK``
    when ``device`` is ``"cuda"`` (one GPU per process). The backend is NCCL for CUDA and gloo for
    the CPU. Without torchrun's variables, or with ``WORLD_SIZE=1``, nothing is started.
    """
    requested = torch.device(device)
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1 or is_distributed():
        return requested
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise LtzooError(
            f"WORLD_SIZE is set but {', '.join(missing)} are not: launch with "
            "`torchrun --nproc_per_node N -m ltzoo train ...` (it sets all of them)"
        )
    local_rank = _env_int("LOCAL_RANK")
    if requested.type == "cuda":
        if not torch.cuda.is_available():
            raise LtzooError(
                "--device cuda was given but this torch build or machine has no CUDA GPU; use --device cpu"
            )
        if requested.index is not None and requested.index != local_rank:
            raise LtzooError(
                f"--device {device} under torchrun: pass --device cuda; each process uses the GPU of its "
                f"LOCAL_RANK (this one would use cuda:{local_rank})"
            )
        if local_rank >= torch.cuda.device_count():
            raise LtzooError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: start at most one "
                "process per GPU (--nproc_per_node)"
            )
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
        dist.init_process_group("nccl", device_id=chosen)
    elif requested.type == "cpu":
        chosen = requested
        dist.init_process_group("gloo")
    else:
        raise LtzooError(f"distributed training supports --device cpu (gloo) and cuda (NCCL), not {device!r}")
    log.debug("process group: rank %d of %d, backend %s, device %s", rank(), world_size(), dist.get_backend(), chosen)
    return chosen


def shutdown(clean: bool = True) -> None:
    """Leave the process group. ``clean``: first wait for every process (the normal end of a run); after
    an error the other processes may be gone, so there is no barrier."""
    if not is_distributed():
        return
    if clean:
        barrier()
    dist.destroy_process_group()


@contextmanager
def process_group_from_env(device: str = "cpu") -> Iterator[torch.device]:
    """``with process_group_from_env(args.device) as device: ...``: :func:`init_from_env`, then
    :func:`shutdown` on the way out (with a barrier only if the block succeeded)."""
    started = not is_distributed()
    chosen = init_from_env(device)
    ok = False
    try:
        yield chosen
        ok = True
    finally:
        if started:
            shutdown(clean=ok)


# ----- collectives (no-ops in one process) --------------------------------------------------------
def _comm_device() -> torch.device:
    # NCCL moves only CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all processes, as a new tensor (no gradient)."""
    result = tensor.detach().clone()
    if world_size() == 1:
        return result
    moved = result.to(_comm_device())
    dist.all_reduce(moved)
    return (moved / world_size()).to(tensor.device)


def all_gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """``tensor`` from every process, in rank order (every process passes the same shape and dtype)."""
    if world_size() == 1:
        return [tensor.detach().clone()]
    moved = tensor.detach().to(_comm_device()).contiguous()
    parts = [torch.empty_like(moved) for _ in range(world_size())]
    dist.all_gather(parts, moved)
    return [part.to(tensor.device) for part in parts]


def broadcast_json(obj: Any, src: int = 0) -> Any:
    """``obj`` (anything JSON can hold) as process ``src`` has it, on every process; no pickle involved."""
    if world_size() == 1:
        return obj
    device = _comm_device()
    payload = json.dumps(obj).encode() if rank() == src else b""
    length = torch.tensor([len(payload)], dtype=torch.long, device=device)
    dist.broadcast(length, src)
    buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=device)
    if rank() == src:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src)
    return json.loads(buffer.cpu().numpy().tobytes().decode())


@torch.no_grad()
def broadcast_module_state(module: nn.Module, src: int = 0, parameters: bool = True) -> None:
    """Overwrite every buffer of ``module`` (and every parameter, unless ``parameters=False``) with
    process ``src``'s values, in place."""
    if world_size() == 1:
        return
    device = _comm_device()
    for tensor in [*(module.parameters() if parameters else ()), *module.buffers()]:
        if tensor.device == device:
            dist.broadcast(tensor.data, src)
        else:
            moved = tensor.data.to(device)
            dist.broadcast(moved, src)
            tensor.data.copy_(moved)
