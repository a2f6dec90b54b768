"""channels_last (NHWC) for the convolutional backbones: where it is on by default, and the conversions.

``auto`` turns channels_last on where it measured faster: on CUDA (cuDNN's tensor-core kernels are
NHWC), and on CPUs with AVX-512, whose oneDNN convolution kernels prefer NHWC (1.20x in fp32 and
2.11x against 1.70x in bf16 on an AMX machine, for the ResNet-32 training step). On an AVX2-only CPU
it measured 0.97x (slower), so ``auto`` leaves it off there. ``benchmarks/training_cost.py`` measures
both layouts on the machine it runs on and says when this rule is wrong for it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.names import CHANNELS_LAST_CHOICES
from ltzoo.precision import cpu_flags


def resolve_channels_last(choice: str, device: torch.device | str) -> bool:
    """Whether to train/evaluate in channels_last on ``device`` (``choice``: auto, on or off)."""
    if choice not in CHANNELS_LAST_CHOICES:
        raise BadHyperParameterError(f"channels_last {choice!r} is not one of {list(CHANNELS_LAST_CHOICES)}")
    if choice != "auto":
        return choice == "on"
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and "avx512f" in cpu_flags()


def module_to(module: nn.Module, channels_last: bool) -> nn.Module:
    """Convert a module's 4-D parameters and buffers to the layout (in place, like ``Module.to``)."""
    return module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def batch_to(obj: Any, device: torch.device, channels_last: bool) -> Any:
    """Move a batch (tensors, or lists/tuples/dicts of them) to ``device``; 4-D float tensors (image
    batches) go to channels_last when asked. Other tensors (labels, boxes, 5-D patch stacks) only move."""
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.dim() == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(batch_to(o, device, channels_last) for o in obj)
    if isinstance(obj, dict):
        return {k: batch_to(v, device, channels_last) for k, v in obj.items()}
    return obj
