"""PyTorch -> ONNX: eval mode, BN folded, dynamic batch, ``input``/``logits``, one self-contained file.

Both exporters of torch 2.14 are offered and the report records which one made the graph:

* ``dynamo`` (torch.export based, torch's default since 2.9): needs an example batch of at least 2,
  otherwise the batch is specialised to a constant 1 (pytorch #133653, #157621), and it saves weights
  as external data unless told otherwise, which ORT's quantization pre-processing cannot read.
* ``torchscript`` (the legacy exporter, deprecated but still present): ``dynamic_axes``.

Neither is trusted blindly: a dynamo ResNet export that scored 0% on ImageNet (pytorch #169178) is why
every graph is checked for parity and, with ``--verify dataset``, for per-split accuracy.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ltzoo.errors import BadHyperParameterError, ExportCheckError
from ltzoo.export.options import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, SUPPORTED_OPSETS
from ltzoo.fileio import atomic_path

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
EXPORT_BATCH = 2
# Protobuf cannot serialise a message of 2 GiB or more; only then are weights moved to a side file.
EXTERNAL_DATA_LIMIT = 2**31 - 1
_INT32 = np.iinfo(np.int32)


_CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx", "onnxruntime")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter/optimizer/quantizer progress chatter (prints, INFO logs, warnings).

    Their failures still arrive as exceptions, and everything that matters goes in the report.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@dataclass
class ExportedGraph:
    """What :func:`export_onnx` wrote and how."""

    path: Path
    exporter: str
    opset: int
    export_batch: int
    node_counts: dict[str, int]
    external_data: bool
    sanitized: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "file": self.path.name,
            "exporter": self.exporter,
            "opset": self.opset,
            "export_batch": self.export_batch,
            "node_counts": self.node_counts,
            "external_data": self.external_data,
            "sanitized": self.sanitized,
        }


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_shape: tuple[int, int, int],
    *,
    opset: int = DEFAULT_OPSET,
    exporter: str = DEFAULT_EXPORTER,
    export_batch: int = EXPORT_BATCH,
) -> ExportedGraph:
    """Export ``model`` (CHW ``input_shape``) to ``path``; the model's train/eval mode is restored after."""
    if exporter not in EXPORTERS:
        raise BadHyperParameterError(f"unknown exporter {exporter!r}; choose one of {list(EXPORTERS)}")
    if opset not in SUPPORTED_OPSETS:
        raise BadHyperParameterError(
            f"opset {opset} is outside {SUPPORTED_OPSETS[0]}-{SUPPORTED_OPSETS[-1]}, the range TensorRT 10 "
            f"parses and ltzoo tests; use --opset {DEFAULT_OPSET}"
        )
    if export_batch < 2:
        raise BadHyperParameterError(
            f"export batch {export_batch} < 2: a batch of 1 lets the exporter specialise the batch axis to "
            "a constant (pytorch #133653); use 2 or more"
        )
    path = Path(path)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(export_batch, *input_shape, generator=generator)
    was_training = model.training
    model.eval()  # eval mode: BN uses running stats, so the exporters fold it into the convolutions
    try:
        with torch.no_grad(), quiet():  # deprecation and constant-folding chatter; checks follow
            if exporter == "dynamo":
                proto = _export_dynamo(model, example, opset)
            else:
                proto = _export_torchscript(model, example, opset)
    except ExportCheckError:
        raise
    except Exception as error:
        raise ExportCheckError(
            f"the {exporter} exporter failed on {type(model).__name__}: {str(error).strip().splitlines()[0]}. "
            f"Try --exporter {'torchscript' if exporter == 'dynamo' else 'dynamo'}."
        ) from error
    finally:
        model.train(was_training)
    actual = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)
    if actual != opset:
        # The dynamo exporter builds at 18 and converts down; when onnx's version converter lacks an
        # adapter (e.g. Pad to 17) it keeps 18 with only a log line. A file must be what was asked for.
        raise ExportCheckError(
            f"the {exporter} exporter produced opset {actual}, not the requested {opset} (the ONNX version "
            f"converter could not convert this graph); use --opset {actual} or --exporter "
            f"{'torchscript' if exporter == 'dynamo' else 'dynamo'}"
        )
    sanitized = sanitize_graph(proto)
    external = save_model(proto, path)
    counts = Counter(node.op_type for node in proto.graph.node)
    return ExportedGraph(path, exporter, opset, export_batch, dict(sorted(counts.items())), external, sanitized)


def _export_dynamo(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    # dynamic_shapes as a tuple matches forward()'s positional argument whatever it is called, so the
    # input_names rename cannot break it (pytorch #166001).
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim(BATCH_DIM, min=1)},),
        opset_version=opset,
        optimize=True,  # constant folding, which is what folds BN into Conv
        verbose=False,
    )
    # model_proto holds the weights inline; saving the program itself would default to external data.
    return program.model_proto


def _export_torchscript(model: nn.Module, example: torch.Tensor, opset: int) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(tmp_path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
        )
        return onnx.load(str(tmp_path), load_external_data=True)


def sanitize_graph(proto: onnx.ModelProto) -> list[str]:
    """Exporter quirks fixed in place; returns what was changed, for the report.

    * per-node ``metadata_props`` (the dynamo exporter stores stack traces with local file paths);
    * ``Slice`` starts/ends of INT64_MAX-style sentinels, clamped to int32 (ONNX clamps them to the
      dimension anyway, so the graph computes the same thing) so that every int64 initialiser fits
      int32 for TensorRT (NVIDIA's import guide; onnx-tensorrt #432);
    * the name of the dynamic batch dimension, which the exporters may rename (pytorch #165748).
    """
    changes: list[str] = []
    stripped = sum(1 for node in proto.graph.node if node.metadata_props)
    for node in proto.graph.node:
        del node.metadata_props[:]
    if stripped:
        changes.append(f"removed exporter metadata (stack traces) from {stripped} nodes")

    # Slice bounds come as initialisers (dynamo) or Constant nodes (torchscript).
    constants: dict[str, onnx.TensorProto] = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    clamped = 0
    for node in proto.graph.node:
        if node.op_type != "Slice":
            continue
        for name in node.input[1:3]:
            tensor = constants.get(name)
            if tensor is None or tensor.data_type != onnx.TensorProto.INT64:
                continue
            values = onnx.numpy_helper.to_array(tensor)
            if values.size and (values.min() < _INT32.min or values.max() > _INT32.max):
                fitted = np.clip(values, _INT32.min, _INT32.max).astype(np.int64)
                tensor.CopyFrom(onnx.numpy_helper.from_array(fitted, tensor.name))
                clamped += 1
    if clamped:
        changes.append(f"clamped {clamped} Slice start/end initialisers to the int32 range")

    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param") and dims[0].dim_param != BATCH_DIM:
            changes.append(f"renamed batch dim {dims[0].dim_param!r} of {value.name!r} to {BATCH_DIM!r}")
            dims[0].dim_param = BATCH_DIM
    return changes


def save_model(proto: onnx.ModelProto, path: Path) -> bool:
    """Write one self-contained file (atomically); weights go to ``<file>.data`` only above 2 GiB.

    Returns whether external data was used. ORT's quantization tools cannot read external data, so
    the int8 variant of a model that large cannot be made.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    weight_bytes = sum(len(init.raw_data) or init.ByteSize() for init in proto.graph.initializer)
    external = weight_bytes > EXTERNAL_DATA_LIMIT
    with atomic_path(path) as tmp:
        onnx.save_model(
            proto, str(tmp), save_as_external_data=external, all_tensors_to_one_file=True, location=path.name + ".data"
        )
    return external
