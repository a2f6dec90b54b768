"""This machine's achievable peak, measured in the same run as the benchmark that divides by it.

A "% of peak" column needs a peak that the machine can actually reach. The theoretical one (cores x
clock x FLOPs per cycle) depends on a clock that a virtual machine does not report truthfully (boost
clocks) and on the FMA width of each CPU family; the first version of this file showed ORT fp32 at
131 % and int8 at 423 % of it. So the peak is measured: large square GEMMs (2048², best of several)

- fp32: the best of PyTorch's ``torch.mm`` (MKL/oneDNN) and ONNX Runtime's ``MatMul`` (MLAS);
- bf16: ``torch.mm`` in bf16, only where the CPU computes bf16 natively (AMX / AVX512_BF16);
- int8: ONNX Runtime's ``MatMulInteger`` (uint8 x int8, what its int8 QDQ convolutions run on).

Convolutions can still beat a square GEMM's rate in places (different blocking, or a model's FLOP count
that is 2 x MACs while a kernel uses a cheaper algorithm); a table whose column passes 100 % prints the
reason under it (:func:`over_peak_note`). The nominal theoretical peak is recorded for reference.
"""

from __future__ import annotations

import os
import time
from typing import Any

GEMM_SIZE = 2048


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def nominal_fp32_peak() -> dict[str, Any]:
    """cores x the kernel's reported clock x fp32 FLOPs per cycle (2 FMA pipes of the vector width)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    family = int(info.get("cpu family", "0") or 0)
    amd = "AMD" in info.get("vendor_id", "") + info.get("model name", "")
    if "avx512f" in flags:
        per_cycle = 32 if amd and family < 26 else 64  # Zen 4 runs AVX-512 on 256-bit pipes
    elif {"avx2", "fma"} <= flags:
        per_cycle = 32
    else:
        per_cycle = 8
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ghz = float(info.get("cpu MHz", "0") or 0) / 1000
    return {
        "cpu": info.get("model name", "unknown"),
        "cores": cores,
        "ghz": ghz,
        "flops_per_cycle": per_cycle,
        "peak_gflops": cores * ghz * per_cycle,
    }


def _best_seconds(function: Any, repeats: int) -> float:
    function()  # warm-up: kernel selection, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def _torch_gemm_gflops(dtype: Any, size: int, repeats: int) -> float:
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return 2 * size**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def _ort_session(model: Any, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _ort_gemm_gflops(kind: str, size: int, threads: int, repeats: int) -> float:
    import numpy as np
    from onnx import TensorProto, helper

    if kind == "fp32":
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"]
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
        feed = {"a": np.random.rand(size, size).astype(np.float32), "b": np.random.rand(size, size).astype(np.float32)}
    else:
        inputs = [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
            helper.make_tensor_value_info("b", TensorProto.INT8, [size, size]),
        ]
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        output = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
        rng = np.random.default_rng(0)
        feed = {
            "a": rng.integers(0, 255, (size, size), dtype=np.uint8),
            "b": rng.integers(-127, 127, (size, size), dtype=np.int8),
        }
    model = helper.make_model(
        helper.make_graph([node], "gemm", inputs, [output]), opset_imports=[helper.make_opsetid("", 17)]
    )
    session = _ort_session(model, threads)
    return 2 * size**3 / _best_seconds(lambda: session.run(None, feed), repeats) / 1e9


def measured_peaks(threads: int, size: int = GEMM_SIZE, repeats: int = 5) -> dict[str, Any]:
    """GFLOP/s (GOP/s for int8) of large GEMMs at ``threads`` threads: the achievable peaks of this machine."""
    import torch

    from ltzoo.precision import cpu_bf16_features

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch_fp32 = _torch_gemm_gflops(torch.float32, size, repeats)
        ort_fp32 = _ort_gemm_gflops("fp32", size, threads, repeats)
        features = cpu_bf16_features()
        bf16 = _torch_gemm_gflops(torch.bfloat16, size, repeats) if features else None
        int8 = _ort_gemm_gflops("int8", size, threads, repeats)
    finally:
        torch.set_num_threads(before)
    return {
        "threads": threads,
        "gemm_size": size,
        "fp32_gflops": max(torch_fp32, ort_fp32),
        "fp32_torch_gflops": torch_fp32,
        "fp32_ort_gflops": ort_fp32,
        "bf16_gflops": bf16,
        "bf16_features": features,
        "int8_gops": int8,
        "nominal_fp32": nominal_fp32_peak(),
    }


def peak_for(peaks: dict[str, Any], precision: str) -> float:
    """The measured peak a computation in ``precision`` (fp32, bf16, int8) is compared with; bf16 on a CPU
    without native bf16 runs through fp32 units, so its peak is the fp32 one."""
    if precision == "int8":
        return peaks["int8_gops"]
    if precision == "bf16" and peaks.get("bf16_gflops"):
        return peaks["bf16_gflops"]
    return peaks["fp32_gflops"]


def describe_peaks(peaks: dict[str, Any]) -> str:
    nominal = peaks["nominal_fp32"]
    parts = [
        f"fp32 {peaks['fp32_gflops']:.0f} GFLOP/s (torch.mm {peaks['fp32_torch_gflops']:.0f}, "
        f"ORT MatMul {peaks['fp32_ort_gflops']:.0f})"
    ]
    if peaks.get("bf16_gflops"):
        parts.append(f"bf16 {peaks['bf16_gflops']:.0f} GFLOP/s ({', '.join(peaks['bf16_features'])})")
    else:
        parts.append("no bf16 GEMM (no native bf16 on this CPU)")
    parts.append(f"int8 {peaks['int8_gops']:.0f} GOP/s (ORT MatMulInteger u8 x s8)")
    return (
        f"Peaks measured in this run ({peaks['gemm_size']}² GEMMs, {peaks['threads']} threads, best of several): "
        + "; ".join(parts)
        + f". For reference, the nominal fp32 peak is {nominal['cores']} cores x "
        f"{nominal['ghz']:.2f} GHz x {nominal['flops_per_cycle']} FLOPs/cycle = {nominal['peak_gflops']:.0f} GFLOP/s."
    )


def over_peak_note(fractions: list[float]) -> str | None:
    """The explanation printed under a table when a "% of peak" value passes 100 %."""
    top = max(fractions, default=0.0)
    if top <= 1.0:
        return None
    return (
        f"Note: a value passes 100 % (up to {100 * top:.0f} %). The peak is a measured 2048² GEMM; convolution "
        "kernels block differently and can sustain a higher rate on some shapes, and the model's FLOPs are counted "
        "as 2 x MACs of a direct convolution, which a kernel using a cheaper algorithm (e.g. Winograd) does not "
        "perform. Such a value says the backend is at the machine's limit, not beyond it."
    )


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
