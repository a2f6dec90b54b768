"""fp16 variant: a real fp16 graph (fp16 weights and activations) with fp32 ``input``/``logits``.

TensorRT 11 builds strongly typed networks only, so reduced precision has to be in the ONNX types,
not a builder flag (NVIDIA/TensorRT README, anchors §2.5). Conversion is onnxconverter-common's
``convert_float_to_float16`` with I/O kept fp32 and an op block list: normalisation, reductions and
softmax-like ops stay fp32 because they overflow or lose the tail of small logits in fp16
(NVIDIA/TensorRT #2564, #3101, #4111). ModelOpt AutoCast does the same with measured ranges but is
not installed here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ltzoo.errors import ExportCheckError
from ltzoo.export.metadata import load_onnx
from ltzoo.export.onnx_export import quiet, save_model

FP16_MAX = float(np.finfo(np.float16).max)

# Ops computed in fp32 inside the fp16 graph (Casts are inserted around them).
KEEP_FP32_OPS = (
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "ReduceMean",  # the global average pool: a long sum in fp16 loses precision
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "Softmax",
    "LogSoftmax",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Div",  # cosine heads divide by a norm computed in fp32
)


def convert_fp16(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], keep_fp32_ops: tuple[str, ...] = KEEP_FP32_OPS
) -> dict[str, Any]:
    """Write the fp16 variant of ``src`` to ``dst``; returns the recipe for the report."""
    # Imported here: the fp32 and int8 exports need no onnxconverter-common (a GPU image may lack it).
    from onnxconverter_common import float16

    proto = load_onnx(src)
    overflowing = [
        init.name
        for init in proto.graph.initializer
        if init.data_type == onnx.TensorProto.FLOAT
        and np.abs(onnx.numpy_helper.to_array(init)).max(initial=0) > FP16_MAX
    ]
    block_list = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    try:
        with quiet():  # per-value truncation warnings for weights below fp16's smallest subnormal
            converted = float16.convert_float_to_float16(
                proto,
                keep_io_types=True,
                op_block_list=block_list,
                max_finite_val=FP16_MAX,  # the library's default (1e4) would clip legitimate weights
            )
    except Exception as error:
        raise ExportCheckError(f"fp16 conversion failed: {error}") from error
    save_model(converted, Path(dst))
    fp16_weights = sum(1 for init in converted.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16)
    kept = sorted({node.op_type for node in proto.graph.node} & set(keep_fp32_ops))
    return {
        "tool": "onnxconverter_common.float16.convert_float_to_float16",
        "keep_io_types": True,
        "ops_kept_fp32_in_this_graph": kept,
        "op_block_list": list(keep_fp32_ops),
        "fp16_initializers": fp16_weights,
        "weights_clipped_to_fp16_range": overflowing,
    }
