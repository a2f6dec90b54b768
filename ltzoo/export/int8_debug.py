"""``--int8-debug``: which tensors the int8 graph lost its accuracy in, from ONNX Runtime's ``qdq_loss_debug``.

Both graphs are augmented to output every float tensor (``modify_model_output_intermediate_tensors``),
run on the same calibration images (``collect_activations``) and matched by name
(``create_activation_matching``; weights: ``create_weight_matching``). Each tensor gets two SQNRs, in dB
(higher is better; ORT's ``compute_signal_to_quantization_noice_ratio``, 20 log10 |x| / |x - y|):

* ``sqnr_db``: the tensor before its QuantizeLinear against after its DequantizeLinear, in the int8
  graph: the error that rounding *this* tensor adds. The ranking uses it: it points at the culprit.
* ``sqnr_vs_fp32_db``: the int8 graph's tensor against the fp32 graph's: the error accumulated so far.

Activations are streamed a few images at a time and their squared norms summed, so the SQNR over all
images is exact (the norm of the concatenation) without holding every activation of every image. The
nodes next to the worst tensors (the one that writes it and those that read it) are the candidates for
``--int8-exclude`` (ORT's ``nodes_to_exclude``): the quantizer rounds a tensor as long as any of them is
quantized, so all of them stay float for the tensor to stay float.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations,
    compute_weight_error,
    create_activation_matching,
    create_weight_matching,
    modify_model_output_intermediate_tensors,
)
from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

from ltzoo.export.int8 import BatchReader
from ltzoo.export.onnx_export import quiet
from ltzoo.export.options import DEFAULT_INT8_DEBUG_WORST

DEBUG_IMAGES = 32  # drawn class-balanced from the calibration set
DEBUG_CHUNK = 8  # images per augmented-graph run (memory: every activation of a chunk is held at once)
_EPS = float(np.finfo(float).eps)  # as ORT's SQNR function


@dataclass
class _SquaredNorms:
    """One tensor's sums over every image: |pre|^2, |pre - post|^2 (rounding), |fp32|^2, |fp32 - post|^2."""

    pre: float = 0.0
    rounding: float = 0.0
    fp32: float = 0.0
    drift: float = 0.0
    matched_fp32: bool = False


def sqnr_db(signal_sq: float, noise_sq: float) -> float:
    """ORT's SQNR from summed squares: 20 log10 (max(|x|, eps) / max(|x - y|, eps))."""
    return 20 * math.log10(max(math.sqrt(signal_sq), _EPS) / max(math.sqrt(noise_sq), _EPS))


def int8_debug(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    chunks: Iterable[np.ndarray],
    worst: int = DEFAULT_INT8_DEBUG_WORST,
) -> dict[str, Any]:
    """Compare the fp32 and int8 graphs tensor by tensor on ``chunks`` (float32 NCHW batches)."""
    sums: dict[str, _SquaredNorms] = {}
    images = 0
    with tempfile.TemporaryDirectory() as tmp, quiet():
        float_aug, int8_aug = Path(tmp) / "fp32_all_outputs.onnx", Path(tmp) / "int8_all_outputs.onnx"
        modify_model_output_intermediate_tensors(str(fp32_path), str(float_aug))
        modify_model_output_intermediate_tensors(str(int8_path), str(int8_aug))
        for chunk in chunks:
            images += len(chunk)
            float_acts = collect_activations(str(float_aug), BatchReader([chunk]))
            int8_acts = collect_activations(str(int8_aug), BatchReader([chunk]))
            for name, match in create_activation_matching(int8_acts, float_acts).items():
                pre, post = _flat(match["pre_qdq"]), _flat(match["post_qdq"])
                ref = _flat(match["float"]) if match.get("float") else None
                acc = sums.setdefault(name, _SquaredNorms())
                acc.pre += float(pre @ pre)
                acc.rounding += float((pre - post) @ (pre - post))
                if ref is not None:
                    acc.matched_fp32 = True
                    acc.fp32 += float(ref @ ref)
                    acc.drift += float((ref - post) @ (ref - post))
        weights = compute_weight_error(create_weight_matching(str(fp32_path), str(int8_path)))

    graph = onnx.load(str(int8_path), load_external_data=False).graph
    consumers = _dequantized_consumers(graph)
    producers = {out: node.name for node in graph.node for out in node.output}
    activations = sorted(
        (
            {
                "tensor": name,
                "sqnr_db": round(sqnr_db(acc.pre, acc.rounding), 2),
                "sqnr_vs_fp32_db": round(sqnr_db(acc.fp32, acc.drift), 2) if acc.matched_fp32 else None,
                "producer": producers.get(name),  # None for the graph input
                "consumers": consumers.get(name, []),
            }
            for name, acc in sums.items()
        ),
        key=lambda row: row["sqnr_db"],
    )
    weight_rows = sorted(
        (
            {
                "tensor": name,
                "sqnr_db": round(float(value), 2),
                "consumers": consumers.get(name + TENSOR_NAME_QUANT_SUFFIX, consumers.get(name, [])),
            }
            for name, value in weights.items()
        ),
        key=lambda row: row["sqnr_db"],
    )
    candidates: list[str] = []
    for row in activations[:worst]:
        nodes = ([row["producer"]] if row["producer"] else []) + row["consumers"]
        candidates += [node for node in nodes if node not in candidates]
    return {
        "tool": "onnxruntime.quantization.qdq_loss_debug",
        "images": images,
        "metric": "SQNR in dB, higher is better: sqnr_db = int8 rounding of this tensor alone (the ranking); "
        "sqnr_vs_fp32_db = this tensor in the int8 graph against the fp32 graph (accumulated error)",
        "activations_compared": len(activations),
        "weights_compared": len(weight_rows),
        "worst_activations": activations[:worst],
        "worst_weights": weight_rows[:worst],
        "exclude_candidates": candidates,
    }


def _flat(tensors: Any) -> np.ndarray:
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors])


def _dequantized_consumers(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """For each quantized tensor (the input of a QuantizeLinear, or a weight initializer ``W_quantized``):
    the nodes that read its DequantizeLinear output (the quantizer's names, valid in ``nodes_to_exclude``)."""
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    by_output = {out: node for node in graph.node for out in node.output}
    found: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        quantize = by_output.get(source)
        tensor = quantize.input[0] if quantize is not None and quantize.op_type == "QuantizeLinear" else source
        nodes = [reader for out in node.output for reader in readers.get(out, [])]
        found.setdefault(tensor, [])
        found[tensor] += [n for n in nodes if n not in found[tensor]]
    return found
