"""Graph checks; each returns a JSON-able dict of what it saw, or raises ``ExportCheckError`` saying why.

* :func:`check_graph`: ``onnx.checker`` full check and strict shape inference (by path, so >2 GB works);
* :func:`check_io`: names ``input``/``logits``, float32, and a symbolic batch axis shared by both;
* :func:`check_bn_folded`: no BatchNormalization left (eval-mode export folded it into Conv);
* :func:`check_parity`: ORT against a reference at batch sizes other than the export batch, with a
  tolerance and top-1 agreement. Running several batch sizes through one session is also what proves
  the batch axis really is dynamic.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ltzoo.errors import ExportCheckError
from ltzoo.export.metadata import load_onnx
from ltzoo.export.onnx_export import INPUT_NAME, OUTPUT_NAME

PARITY_BATCHES = (1, 3, 17)  # never the export batch (2): a graph frozen to it would pass there
TIE_RTOL = 0.05  # top-1/top-2 margins below 5% of the logit scale count as ties in the agreement test


@dataclass(frozen=True)
class Tolerance:
    """|ort - ref| <= atol + rtol * scale, where scale is each sample's largest |reference logit|.

    Scaling by the sample's logit magnitude (not elementwise |ref| as in ``np.allclose``) because an
    elementwise relative test is meaningless for logits near zero, while an error that is small
    against the logit range cannot change a decision. ``min_top1_agreement`` is the fraction of
    samples whose argmax must match, counted over samples that are not near-ties in the reference:
    top-1 and top-2 closer than ``atol + min(rtol, TIE_RTOL) * scale``, where either answer is right
    (capped so that a loose int8 tolerance does not excuse clear decisions).
    """

    atol: float
    rtol: float
    min_top1_agreement: float


# fp32 must match PyTorch to float rounding. fp16 and int8 are judged against the fp32 model; their
# real gate is the per-split dataset accuracy (verify.py), these only catch a broken graph.
PARITY_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, min_top1_agreement=1.0),
    "fp16": Tolerance(atol=1e-3, rtol=2e-2, min_top1_agreement=0.95),
    "int8": Tolerance(atol=1e-3, rtol=0.5, min_top1_agreement=0.80),
}


def check_graph(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``onnx.checker`` (full) and strict shape inference; returns the inferred ``logits`` shape."""
    path = Path(path)
    load_onnx(path, load_weights=False)  # a readable CorruptFileError first for garbage files
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise ExportCheckError(f"onnx.checker rejected {path.name}: {_first_line(error)}") from error
    with tempfile.TemporaryDirectory() as tmp:
        inferred_path = Path(tmp) / "inferred.onnx"
        try:
            onnx.shape_inference.infer_shapes_path(
                str(path), str(inferred_path), check_type=True, strict_mode=True, data_prop=True
            )
        except Exception as error:
            raise ExportCheckError(f"strict shape inference failed on {path.name}: {_first_line(error)}") from error
        inferred = onnx.load(str(inferred_path), load_external_data=False)
    output = {value.name: _shape(value) for value in inferred.graph.output}
    return {"checker": "full_check passed", "shape_inference": "strict passed", "inferred_outputs": output}


# metadata_props that describe the model (versions and exporter may legitimately differ on re-check).
MODEL_METADATA_KEYS = (
    "arch",
    "variant",
    "dataset",
    "num_classes",
    "label_names",
    "input_size",
    "mean",
    "std",
    "class_counts",
    "shot_thresholds",
    "shot_classes",
    "source_weights_sha256",
    "logit_adjust_tau",
    "int8_target",
)


def check_metadata(found: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The file's decoded ``metadata_props`` describe the model being checked (and survived the round trip)."""
    wrong = [key for key in MODEL_METADATA_KEYS if found.get(key) != expected.get(key)]
    if wrong:
        details = "; ".join(f"{key}: file {found.get(key)!r} vs model {expected.get(key)!r}" for key in wrong[:4])
        raise ExportCheckError(f"metadata_props do not match the model: {details}")
    return {"keys_compared": [key for key in MODEL_METADATA_KEYS if key in expected]}


def check_io(proto: onnx.ModelProto, input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """One float32 NCHW ``input`` and one float32 ``logits`` (batch, num_classes), batch symbolic."""
    problems: list[str] = []
    inputs = [value for value in proto.graph.input if value.name not in {i.name for i in proto.graph.initializer}]
    outputs = list(proto.graph.output)
    if [value.name for value in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[v.name for v in inputs]}, expected [{INPUT_NAME!r}]")
    if [value.name for value in outputs] != [OUTPUT_NAME]:
        problems.append(f"outputs are {[v.name for v in outputs]}, expected [{OUTPUT_NAME!r}]")
    seen: dict[str, Any] = {}
    batch_symbols = []
    for value, expected in ((inputs[:1], [None, *input_shape]), (outputs[:1], [None, num_classes])):
        if not value:
            continue
        value = value[0]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = _shape(value)
        seen[value.name] = {"dtype": str(dtype), "shape": shape}
        if dtype != np.float32:
            problems.append(f"{value.name!r} is {dtype}, expected float32 (fp16/int8 variants keep fp32 I/O)")
        if len(shape) != len(expected):
            problems.append(f"{value.name!r} has rank {len(shape)}, expected {len(expected)}")
            continue
        if not isinstance(shape[0], str) or not shape[0]:
            problems.append(
                f"batch axis of {value.name!r} is {shape[0]!r}, not symbolic: the graph is frozen to one batch size"
            )
        batch_symbols.append(shape[0])
        if list(shape[1:]) != list(expected[1:]):
            problems.append(f"{value.name!r} has shape {shape}, expected [batch, {', '.join(map(str, expected[1:]))}]")
    if len(batch_symbols) == 2 and batch_symbols[0] != batch_symbols[1]:
        problems.append(f"input batch {batch_symbols[0]!r} and output batch {batch_symbols[1]!r} are different symbols")
    if problems:
        raise ExportCheckError("I/O check failed: " + "; ".join(problems))
    return seen


def check_bn_folded(proto: onnx.ModelProto) -> dict[str, Any]:
    """An eval-mode export folds every BatchNormalization into the preceding Conv."""
    left = sum(1 for node in proto.graph.node if node.op_type == "BatchNormalization")
    if left:
        raise ExportCheckError(
            f"{left} BatchNormalization nodes left in the graph: the model was exported in training mode "
            "or BN follows something other than a convolution; export from model.eval()"
        )
    return {"batch_norm_nodes": 0}


def parity_inputs(input_shape: Sequence[int], batch: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """A float32 batch: rows of ``pool`` (real preprocessed images) when given, else seeded N(0, 1)."""
    if pool is not None and len(pool):
        start = (seed * 7919) % len(pool)
        index = (start + np.arange(batch)) % len(pool)
        return np.ascontiguousarray(pool[index], dtype=np.float32)
    return np.random.default_rng(seed).standard_normal((batch, *input_shape), dtype=np.float32)


def check_parity(
    session: ort.InferenceSession,
    reference: Callable[[np.ndarray], np.ndarray],
    input_shape: Sequence[int],
    tolerance: Tolerance,
    batches: Sequence[int] = PARITY_BATCHES,
    pool: np.ndarray | None = None,
    export_batch: int = 2,
) -> dict[str, Any]:
    """Run ``session`` and ``reference`` on the same batches; fail on tolerance, top-1, NaN or shape."""
    if export_batch in batches or len(batches) < 2:
        raise ExportCheckError(
            f"parity needs >= 2 batch sizes other than the export batch {export_batch}, got {batches}"
        )
    problems: list[str] = []
    per_batch = []
    agree = compared = ties = 0
    worst_abs = worst_rel = 0.0
    for index, batch in enumerate(batches):
        x = parity_inputs(input_shape, batch, seed=index, pool=pool)
        try:
            got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        except Exception as error:
            raise ExportCheckError(f"ONNX Runtime failed at batch {batch}: {_first_line(error)}") from error
        want = np.asarray(reference(x), dtype=np.float32)
        if got.shape != want.shape:
            problems.append(f"batch {batch}: output shape {list(got.shape)} != reference {list(want.shape)}")
            continue
        if not np.all(np.isfinite(got)):
            problems.append(f"batch {batch}: {int((~np.isfinite(got)).sum())} non-finite logits (NaN/Inf)")
            continue
        scale = np.abs(want).max(axis=1, keepdims=True)
        allowed = tolerance.atol + tolerance.rtol * scale
        tie = tolerance.atol + min(tolerance.rtol, TIE_RTOL) * scale[:, 0]
        error = np.abs(got.astype(np.float64) - want)
        sorted_ref = np.sort(want, axis=1)
        margin = sorted_ref[:, -1] - sorted_ref[:, -2] if want.shape[1] > 1 else np.full(len(want), np.inf)
        clear = margin > tie
        same = got.argmax(axis=1) == want.argmax(axis=1)
        agree += int((same & clear).sum())
        compared += int(clear.sum())
        ties += int((~clear).sum())
        max_abs = float(error.max())
        max_rel = float((error / np.maximum(scale, 1e-12)).max())
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        if np.any(error > allowed):
            problems.append(
                f"batch {batch}: max |diff| {max_abs:.3g} exceeds atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x "
                f"logit scale (max relative {max_rel:.3g})"
            )
        per_batch.append({"batch": batch, "max_abs_diff": max_abs, "max_rel_diff": max_rel})
    agreement = agree / compared if compared else 1.0
    if agreement < tolerance.min_top1_agreement:
        problems.append(
            f"top-1 agreement {agreement:.4f} over {compared} clear samples < {tolerance.min_top1_agreement:g}"
        )
    result = {
        "tolerance": asdict(tolerance),
        "batches": list(batches),
        "inputs": "real preprocessed images" if pool is not None and len(pool) else "seeded N(0,1)",
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "top1_agreement": agreement,
        "near_ties_excluded": ties,
        "per_batch": per_batch,
    }
    if problems:
        raise ExportCheckError("parity with PyTorch failed: " + "; ".join(problems))
    return result


def _shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [dim.dim_param if dim.HasField("dim_param") else dim.dim_value for dim in value.type.tensor_type.shape.dim]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = [
    "PARITY_BATCHES",
    "PARITY_TOLERANCES",
    "Tolerance",
    "check_bn_folded",
    "check_graph",
    "check_io",
    "check_metadata",
    "check_parity",
    "parity_inputs",
]
