"""The CPU's theoretical fp32 peak and a model's FLOPs, for "fraction of peak" columns.

peak = cores x clock x fp32 FLOPs per cycle per core, where FLOPs/cycle = FMA pipes x vector lanes x 2
(an FMA is two FLOPs). Vector width comes from /proc/cpuinfo flags; the clock is the "cpu MHz" the
kernel reports (a virtual machine shows the nominal clock; turbo is not counted, so a fraction above
100 % means the core ran above its nominal clock). The FMA width comes from the CPU family: AMD Zen 4
(family 25) runs AVX-512 on two 256-bit FMA pipes (32 FLOPs/cycle); AMD Zen 5 server cores (family 26,
EPYC 9005) have two full 512-bit FMA pipes (64), as do Intel server cores with AVX-512; AVX2 + FMA cores
have two 256-bit pipes (32); otherwise SSE (8). (The first version of this file took every AVX-512 AMD
core for a Zen 4 and showed ORT fp32 at 114 % of a halved peak on this Zen 5 EPYC.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def fp32_peak() -> dict[str, Any]:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    model = info.get("model name", "unknown")
    vendor = info.get("vendor_id", "")
    family = int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags and "AMD" in vendor + model and family < 26:
        per_cycle, how = 32, f"AVX-512 on 2x256-bit FMA pipes (AMD family {family}, Zen 4): 2 pipes x 8 lanes x 2"
    elif "avx512f" in flags and "AMD" in vendor + model:
        per_cycle, how = 64, f"AVX-512 on 2x512-bit FMA pipes (AMD family {family}, Zen 5 server): 2 pipes x 16 lanes x 2"
    elif "avx512f" in flags:
        per_cycle, how = 64, "AVX-512, 2 FMA pipes: 2 x 16 lanes x 2"
    elif {"avx2", "fma"} <= flags:
        per_cycle, how = 32, "AVX2 + FMA, 2 pipes: 2 x 8 lanes x 2"
    else:
        per_cycle, how = 8, "SSE: 4 lanes x (add + mul)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ghz = float(info.get("cpu MHz", "0") or 0) / 1000
    return {"cpu": model, "cores": cores, "ghz": ghz, "flops_per_cycle": per_cycle, "how": how,
            "peak_gflops": cores * ghz * per_cycle}


def model_gflops(model: Any, input_shape: tuple[int, ...]) -> float:
    """Forward GFLOPs per image (2 x multiply-accumulates of convolutions and linear layers)."""
    import torch
    from torch import nn

    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() // output.shape[0] * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() // output.shape[0] * module.in_features

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return 2 * macs / 1e9
