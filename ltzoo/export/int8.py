"""int8 variant: ORT static quantization, QDQ format, int8 per-channel weights, for one of two targets.

Recipe (after the ORT quantization guide, docs/performance/model-optimizations/quantization.md):
``quant_pre_process`` (symbolic shape inference, ORT basic optimisation, ONNX shape inference; without
the symbolic part where ORT's inference fails on the graph, as on a cosine head), then
``quantize_static`` in QDQ format with symmetric int8 weights per output channel. The activations
depend on where the graph will run, because no single int8 graph is good for both:

* ``tensorrt`` (default): int8 activations, symmetric, so every zero point is 0 (TensorRT's Q/DQ
  restriction, onnx-tensorrt docs/operators.md), and float biases (``QuantizeBias=False``): TensorRT's
  DequantizeLinear takes int8 only, ORT's int32 bias DQ fails its parser (onnx-tensorrt #850,
  NVIDIA/TensorRT #3360). ORT's CPU kernels fuse only part of this graph (measured: ~1.3x fp32 on
  ResNet-50), because a symmetric int8 ReLU output cannot be folded away.
* ``cpu``: uint8 activations with asymmetric ranges (U8S8, the pairing x86 VNNI kernels implement)
  and int32 biases. After a ReLU the zero point sits at 0 = qmin, so ORT removes the ReLU and fuses
  every Conv into QLinearConv (measured: ~3x fp32). TensorRT cannot take it, so its static
  TensorRT check is not run and the report says why.

ltzoo's own choices (no anchor gates quantized models on tail accuracy):
* the calibration set is class-balanced from the *training* split with a fixed seed
  (:func:`class_balanced_indices`), so the rare classes' activations shape the ranges;
* the classifier head (every node after the last convolution: pooling, the linear/cosine layer, a
  baked logit adjustment) stays fp32. Quantizing logits to 256 levels can flip close decisions, which
  is where tail classes lose, and the head is well under 1% of the compute.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ltzoo.errors import BadHyperParameterError, ExportCheckError
from ltzoo.export.metadata import load_onnx
from ltzoo.export.onnx_export import INPUT_NAME, quiet
from ltzoo.export.options import CALIBRATION_METHOD_NAMES, DEFAULT_CALIB_SEED, DEFAULT_INT8_TARGET, INT8_TARGET_NAMES

# ORT's calibrators by ltzoo's names (ltzoo.export.options.CALIBRATION_METHOD_NAMES, in the same order).
CALIBRATION_METHODS = dict(
    zip(
        CALIBRATION_METHOD_NAMES,
        (CalibrationMethod.MinMax, CalibrationMethod.Percentile, CalibrationMethod.Entropy),
        strict=True,
    )
)
# Images per calibration batch. MinMax keeps only per-tensor min/max per batch; the histogram methods
# (percentile, entropy) keep every activation of the whole calibration set in ORT 1.32.
CALIBRATION_BATCH = 16
# What each of ltzoo.export.options.INT8_TARGET_NAMES quantizes to.
INT8_TARGETS: dict[str, dict[str, Any]] = {
    "tensorrt": {
        "activation_type": QuantType.QInt8,
        "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        "activations": "int8, symmetric (zero point 0), per tensor",
        "biases": "float32 (not quantized)",
    },
    "cpu": {
        "activation_type": QuantType.QUInt8,
        "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True, "QuantizeBias": True},
        "activations": "uint8, asymmetric, per tensor",
        "biases": "int32",
    },
}
assert tuple(INT8_TARGETS) == INT8_TARGET_NAMES, "ltzoo.export.options.INT8_TARGET_NAMES is out of step"


def class_balanced_indices(
    targets: Sequence[int], num_classes: int, size: int, seed: int = DEFAULT_CALIB_SEED
) -> np.ndarray:
    """``size`` indices into ``targets``, as equal per class as the class counts allow.

    Water-filling: every class gets ``min(n_c, q)`` images for the largest quota ``q`` that fits, and
    the few left over go one each to randomly chosen classes that still have images. A tail class
    with fewer than ``q`` images contributes all of them. Deterministic for a given ``seed``.
    """
    if size < 1:
        raise BadHyperParameterError(f"calibration size must be >= 1, got {size}")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(targets == label)) for label in range(num_classes)]
    counts = np.array([len(pool) for pool in pools])
    if size >= counts.sum():
        take = counts.copy()
    else:
        quota = 0
        while np.minimum(counts, quota + 1).sum() <= size:
            quota += 1
        take = np.minimum(counts, quota)
        left = size - int(take.sum())
        room = np.flatnonzero(counts > take)
        take[rng.choice(room, size=left, replace=False)] += 1
    chosen = np.concatenate([pool[:n] for pool, n in zip(pools, take)]) if num_classes else np.array([], int)
    return np.sort(chosen).astype(np.int64)


class BatchReader(CalibrationDataReader):
    """Streams float32 NCHW batches to ORT's calibrator (nothing is materialised up front)."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)
        self.images = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.images += len(batch)
        return {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def head_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes after the last Conv in topological order (the classifier head).

    ONNX node lists are topologically sorted, so for a CNN these are the last residual add, the
    pooling and the head. A graph without Conv keeps only the node that produces the output.
    """
    nodes = list(proto.graph.node)
    conv_positions = [index for index, node in enumerate(nodes) if node.op_type in ("Conv", "ConvTranspose")]
    if conv_positions:
        return [node.name for node in nodes[conv_positions[-1] + 1 :]]
    outputs = {value.name for value in proto.graph.output}
    return [node.name for node in nodes if outputs & set(node.output)]


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration_batches: Iterable[np.ndarray],
    method: str,
    target: str = DEFAULT_INT8_TARGET,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Write the QDQ int8 variant of ``src`` for ``target`` to ``dst``; returns the recipe for the report.

    ``exclude`` names more nodes to keep in float (``nodes_to_exclude``; ``--int8-debug`` lists candidates)."""
    if method not in CALIBRATION_METHODS:
        raise BadHyperParameterError(
            f"unknown calibration method {method!r}; choose one of {list(CALIBRATION_METHODS)}"
        )
    if target not in INT8_TARGETS:
        raise BadHyperParameterError(f"unknown int8 target {target!r}; choose one of {list(INT8_TARGETS)}")
    flavour = INT8_TARGETS[target]
    src, dst = Path(src), Path(dst)
    source = load_onnx(src, load_weights=False)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in source.graph.initializer):
        raise ExportCheckError(
            f"{src.name} keeps its weights as external data (a model above 2 GB), which ORT quantization "
            "cannot read; the int8 variant is not available for models that large"
        )
    reader = BatchReader(calibration_batches)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, pre_process = _pre_process(src, Path(tmp) / "prepared.onnx")
        keep_fp32 = _nodes_kept_fp32(prepared, exclude)
        try:
            with quiet():
                quantize_static(
                    str(prepared),
                    str(dst),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=flavour["activation_type"],
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=keep_fp32,
                    calibrate_method=CALIBRATION_METHODS[method],
                    extra_options=dict(flavour["extra_options"]),
                )
        except Exception as error:
            raise ExportCheckError(f"int8 quantization of {src.name} failed: {error}") from error
    if reader.images == 0:
        raise ExportCheckError("int8 calibration got no images; the calibration set is empty")
    quantized = onnx.load(str(dst))
    return {
        "tool": "onnxruntime.quantization (quant_pre_process + quantize_static)",
        "pre_process": pre_process,
        "format": "QDQ",
        "target": target,
        "weights": "int8, symmetric, per output channel",
        "activations": flavour["activations"],
        "biases": flavour["biases"],
        "calibration_method": method,
        "calibration_images": reader.images,
        "nodes_kept_fp32": keep_fp32,
        "nodes_excluded_by_request": list(exclude),
        "qdq_nodes": sum(1 for node in quantized.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")),
    }


def _pre_process(src: Path, prepared: Path) -> tuple[Path, str]:
    """ORT's quantization pre-processing of ``src`` into ``prepared``, every node named (the quantizer addresses
    nodes by name); returns the file and what was done, for the report."""
    pre_process = "symbolic shape inference + ORT basic optimisation + ONNX shape inference"
    try:
        with quiet():
            quant_pre_process(str(src), str(prepared))
    except Exception as first_error:
        # ORT's symbolic shape inference fails on some graphs (e.g. the Expand that F.normalize becomes
        # in a cosine head: "object of type 'NoneType' has no len()"). It only matters for models with
        # symbolic non-batch shapes; ONNX shape inference covers a CNN, so retry without it.
        try:
            with quiet():
                quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception as error:
            raise ExportCheckError(f"quant_pre_process failed on {src.name}: {error}") from error
        pre_process = (
            f"ORT basic optimisation + ONNX shape inference (symbolic shape inference skipped: "
            f"{type(first_error).__name__}: {first_error})"
        )
    proto = onnx.load(str(prepared))
    for index, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    onnx.save(proto, str(prepared))
    return prepared, pre_process


def _nodes_kept_fp32(prepared: Path, exclude: Sequence[str]) -> list[str]:
    """The head (kept in float for the tail classes' sake) and the nodes the user excluded, checked by name."""
    proto = onnx.load(str(prepared))
    keep_fp32 = head_nodes(proto)
    names = {node.name for node in proto.graph.node}
    unknown = [name for name in exclude if name not in names]
    if unknown:
        raise ExportCheckError(
            f"--int8-exclude names no node of the graph being quantized: {unknown}; node names look like "
            f"{sorted(names)[:3]} (--int8-debug lists the candidates by these names)"
        )
    return keep_fp32 + [name for name in exclude if name not in keep_fp32]
