"""Training precision: which one a device runs fast, the autocast region, and the fp32 islands.

``auto`` (the default of every recipe and of ``ltzoo train --precision``) means bf16 autocast where
the hardware computes bf16 natively: a CUDA device that supports it, or a CPU with AMX or
AVX512_BF16 (detected from the CPU's own feature flags, never guessed from its name); fp32 elsewhere.
On a CPU without native bf16, oneDNN emulates bf16 through fp32 and a bf16 step measured no faster
than fp32 (``benchmarks/results/training_cost.md``). fp16 runs only on CUDA, with a gradient scaler.

Autocast covers the network (convolutions, linear layers). The numerically delicate parts stay in
fp32 whatever the precision: every loss in :mod:`ltzoo.losses` runs under :func:`full_precision`,
which leaves autocast and upcasts its tensor arguments (a contrastive logit at tau = 0.07 is
``cosine / 0.07``, and bf16 keeps about three significant digits); embeddings are upcast before they
are L2-normalised; queues and centroids are fp32 buffers.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

from ltzoo.errors import BadHyperParameterError
from ltzoo.recipe import check_precision

RESOLVED = ("fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

F = TypeVar("F", bound=Callable[..., Any])


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_features() -> list[str]:
    """The native bf16 features of this CPU (``amx_bf16``, ``avx512_bf16``); empty when it has none.

    PyTorch's own CPU capability probe (cpuinfo) is asked first; /proc/cpuinfo's flags second (a
    kernel that hides a feature from one hides it from both)."""
    found: set[str] = set()
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if callable(capabilities):
        try:
            caps = capabilities()
            found |= {name for name in ("amx_bf16", "avx512_bf16") if caps.get(name)}
        except Exception:  # a private probe: any failure falls back to the kernel's flags
            pass
    found |= {name for name in ("amx_bf16", "avx512_bf16") if name in cpu_flags()}
    return sorted(found)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (so that bf16 autocast is faster, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(cpu_bf16_features())
    return False


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """The precision a run uses on ``device``: ``fp32``, ``bf16`` or ``fp16``."""
    device = torch.device(device)
    check_precision(requested)
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "fp16" and device.type != "cuda":
        raise BadHyperParameterError(
            f"precision fp16 needs a CUDA device (got {device.type}); on a CPU use bf16 or fp32 (or auto)"
        )
    return requested


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """The autocast region of a resolved precision (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


@contextlib.contextmanager
def exact_fp32(device: torch.device | str) -> Iterator[None]:
    """fp32 that is fp32 on CUDA too: TF32 off for cuDNN convolutions and matmuls inside the block.

    PyTorch lets cuDNN run fp32 convolutions in TF32 by default (about three significant digits), which
    is fine for training but not for evaluation: the export's fp32 parity (1e-4) and the promise that
    ``ltzoo eval --device cuda`` reports what the CPU reports need the full mantissa. A no-op on the CPU."""
    if torch.device(device).type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32, matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def grad_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler:
    """A gradient scaler that is active for fp16 only (bf16 has fp32's exponent range)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _upcast(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_upcast(v) for v in value)
    return value


@contextlib.contextmanager
def _no_autocast() -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
        yield


def full_precision(function: F) -> F:
    """Run ``function`` in fp32: outside any autocast region, with half-precision tensor arguments upcast.

    For losses and other numerically delicate steps; a no-op cost in fp32 training."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _no_autocast():
            return function(*_upcast(args), **{k: _upcast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
