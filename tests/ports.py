"""Local TCP ports and torchrun command lines for the tests that start servers or process groups."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_command(nproc_per_node: int, *args: str) -> list[str]:
    """``python -m torch.distributed.run`` on one node with ``nproc_per_node`` processes and a fresh port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc_per_node),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]
