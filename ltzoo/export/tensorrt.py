"""TensorRT readiness: a static check that runs everywhere, and an engine build where TensorRT and a GPU exist.

The static check reads the ONNX graph against TensorRT's published parser support
(:mod:`ltzoo.export.trt_ops`, from onnx-tensorrt ``docs/operators.md``): every op supported, the
opset in range, no double tensors, int64 constants that fit int32, Q/DQ zero points of 0, the
constant inputs the parser requires, and dynamic dims on the batch axis only. It also fixes the
optimization profile (min/opt/max batch) that a dynamic-batch engine needs (NVIDIA/TensorRT #1116).

The engine build (strongly typed, as TensorRT 11 requires) and its comparison with ORT at min/opt/max
batch run only where the ``tensorrt`` package and a CUDA GPU are present; otherwise that part is
skipped and the report says why. Engines are rebuilt on the target and never published: a plan is
tied to the GPU, TensorRT version and OS (NVIDIA/TensorRT #564, #2176).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ltzoo.errors import ExportCheckError
from ltzoo.export import trt_ops
from ltzoo.export.checks import PARITY_TOLERANCES, Tolerance, parity_inputs
from ltzoo.export.metadata import load_onnx
from ltzoo.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from ltzoo.export.options import Profile

_INT32 = np.iinfo(np.int32)
_DEFAULT_DOMAINS = ("", "ai.onnx")


def static_check(path: str | os.PathLike[str], profile: Profile | None = None) -> dict[str, Any]:
    """Check ``path`` against TensorRT's ONNX parser support; raises ``ExportCheckError`` listing every problem."""
    profile = profile or Profile()
    proto = load_onnx(path)
    graph = proto.graph
    constants = _constant_tensors(graph)
    opset = next((entry.version for entry in proto.opset_import if entry.domain in _DEFAULT_DOMAINS), None)
    ops = Counter(
        node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}" for node in graph.node
    )
    input_shape, shape_problems = _io_shapes(graph)
    problems = [
        *_opset_problems(opset),
        *_op_problems(ops),
        *_dtype_problems(graph, constants),
        *_node_problems(graph, constants),
        *shape_problems,
    ]
    result = {
        "trt_support_table": trt_ops.TRT_VERSION_OF_TABLE,
        "support_source": trt_ops.SOURCE,
        "opset": opset,
        "ops": dict(sorted(ops.items())),
        "optimization_profile": {"input": INPUT_NAME, **asdict(profile), "shapes": profile.shapes(input_shape)},
        "problems": problems,
        "passed": not problems,
    }
    if problems:
        error = ExportCheckError(f"{Path(path).name} is not TensorRT-ready: " + "; ".join(problems))
        raise _with_details(error, result)
    return result


def _opset_problems(opset: int | None) -> list[str]:
    low, high = trt_ops.PARSER_OPSET_RANGE
    if opset is None or not low <= opset <= high:
        return [f"opset {opset} is outside {low}-{high}, the range every TensorRT 10.x parser reads"]
    return []


def _op_problems(ops: Counter) -> list[str]:
    """Ops TensorRT's parser does not take (listed as unsupported, or not listed at all)."""
    problems = []
    for op, count in sorted(ops.items()):
        if op in trt_ops.SUPPORTED_OPS:
            continue
        why = "listed as unsupported" if op in trt_ops.UNSUPPORTED_OPS else "not in the support list"
        nodes = f"{count} node{'s' if count > 1 else ''}"
        problems.append(f"op {op} ({nodes}) is {why} by TensorRT {trt_ops.TRT_VERSION_OF_TABLE}'s ONNX parser")
    return problems


def _dtype_problems(graph: onnx.GraphProto, constants: dict[str, onnx.TensorProto]) -> list[str]:
    """float64 anywhere, and int64 constants that do not fit int32."""
    problems = []
    doubles = [name for name, tensor in constants.items() if tensor.data_type == onnx.TensorProto.DOUBLE]
    doubles += [
        value.name
        for value in (*graph.input, *graph.output, *graph.value_info)
        if value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    ]
    doubles += [
        f"{node.name or node.op_type} (Cast to double)"
        for node in graph.node
        if node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.DOUBLE for a in node.attribute)
    ]
    if doubles:
        problems.append(f"double (float64) tensors, which TensorRT casts down or rejects: {sorted(doubles)[:5]}")
    too_wide = []
    for name, tensor in constants.items():
        if tensor.data_type == onnx.TensorProto.INT64:
            values = onnx.numpy_helper.to_array(tensor)
            if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
                too_wide.append(name)
    if too_wide:
        problems.append(
            f"int64 constants that do not fit int32 (NVIDIA's import guide says sanitize them): {too_wide[:5]}"
        )
    return problems


def _node_problems(graph: onnx.GraphProto, constants: dict[str, onnx.TensorProto]) -> list[str]:
    """Q/DQ zero points TensorRT cannot take, and inputs that must be build-time constants; one line per kind."""
    by_kind: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in trt_ops.QDQ_OPS and len(node.input) > 2 and node.input[2]:
            why = _zero_point_problem(constants.get(node.input[2]))
            if why:
                by_kind.setdefault(f"{node.op_type}: {why}", []).append(node.name)
        for index in trt_ops.CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                why = f"{node.op_type}: input {index} must be a build-time constant"
                by_kind.setdefault(why, []).append(node.name)
    return [
        f"{why} ({len(names)} node{'s' if len(names) > 1 else ''}, e.g. {names[0]!r})" for why, names in by_kind.items()
    ]


def _zero_point_problem(zero: onnx.TensorProto | None) -> str:
    if zero is None:
        return "zero point is not a constant"
    if np.any(onnx.numpy_helper.to_array(zero) != 0):
        return "zero point is not 0 (TensorRT needs symmetric Q/DQ)"
    if zero.data_type != onnx.TensorProto.INT8:
        return f"quantized type {onnx.helper.tensor_dtype_to_np_dtype(zero.data_type)}, TensorRT expects int8"
    return ""


def _io_shapes(graph: onnx.GraphProto) -> tuple[tuple[int, ...], list[str]]:
    """The input's shape without the batch axis, and the inputs/outputs with a dynamic axis other than the batch."""
    input_shape: tuple[int, ...] = ()
    problems = []
    initializers = {init.name for init in graph.initializer}
    for value in (*graph.input, *graph.output):
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        dynamic = [i for i, dim in enumerate(dims) if i > 0 and not dim.HasField("dim_value")]
        if dynamic:
            problems.append(
                f"{value.name!r} has dynamic dims at axes {dynamic}; only the batch axis (0) may be dynamic"
            )
        if value.name == INPUT_NAME:
            input_shape = tuple(dim.dim_value for dim in dims[1:])
    return input_shape, problems


def _with_details(error: ExportCheckError, details: dict[str, Any]) -> ExportCheckError:
    """Attach the check's findings so that the caller can still put them in the report."""
    error.details = details  # type: ignore[attr-defined]
    return error


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node values (and DQ outputs of constants: Q/DQ'd weights)."""
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = attribute.t
    return constants


def tensorrt_unavailable_reason() -> str | None:
    """Why an engine cannot be built here, or None when TensorRT and a CUDA GPU are present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install tensorrt on a machine with an NVIDIA GPU)"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
    except Exception as error:  # a broken CUDA install should skip, not crash the export
        return f"CUDA is not usable: {error}"
    return None


def build_and_compare(
    path: str | os.PathLike[str],
    profile: Profile,
    reference: Any,
    tolerance: Tolerance = PARITY_TOLERANCES["fp16"],
    workspace_bytes: int = 1 << 30,
) -> dict[str, Any]:
    """Build a strongly typed engine from ``path`` and compare it with ``reference`` (a callable on float32
    batches, normally the ORT session of the same file) at min/opt/max batch.

    Returns ``{"skipped": reason}`` where TensorRT or a GPU is missing. The engine lives only in memory.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        return {"skipped": reason}
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportCheckError(f"TensorRT's ONNX parser rejected {Path(path).name}: {'; '.join(errors[:5])}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    input_shape = tuple(network.get_input(0).shape)[1:]
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(
        INPUT_NAME, (profile.min, *input_shape), (profile.opt, *input_shape), (profile.max, *input_shape)
    )
    config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportCheckError(f"TensorRT could not build an engine from {Path(path).name} (see the log above)")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    problems, per_batch = [], []
    for index, batch in enumerate((profile.min, profile.opt, profile.max)):
        x = parity_inputs(input_shape, batch, seed=100 + index)
        device_input = torch.from_numpy(x).cuda()
        context.set_input_shape(INPUT_NAME, tuple(x.shape))
        output_shape = tuple(context.get_tensor_shape(OUTPUT_NAME))
        device_output = torch.empty(output_shape, dtype=torch.float32, device="cuda")
        context.set_tensor_address(INPUT_NAME, device_input.data_ptr())
        context.set_tensor_address(OUTPUT_NAME, device_output.data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            raise ExportCheckError(f"TensorRT execution failed at batch {batch}")
        stream.synchronize()
        got = device_output.cpu().numpy()
        want = np.asarray(reference(x), dtype=np.float32)
        scale = np.abs(want).max(axis=1, keepdims=True)
        error = np.abs(got - want)
        top1 = float((got.argmax(1) == want.argmax(1)).mean())
        per_batch.append({"batch": batch, "max_abs_diff": float(error.max()), "top1_agreement": top1})
        if not np.all(np.isfinite(got)) or np.any(error > tolerance.atol + tolerance.rtol * scale):
            problems.append(f"batch {batch}: TensorRT differs from ORT by up to {float(error.max()):.3g}")
    result = {
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        "strongly_typed": True,
        "profile": asdict(profile),
        "tolerance": asdict(tolerance),
        "per_batch": per_batch,
        "engine_published": False,
    }
    if problems:
        error = ExportCheckError("TensorRT engine disagrees with ONNX Runtime: " + "; ".join(problems))
        raise _with_details(error, result)
    return result
