"""ONNX Runtime execution providers: TensorRT > CUDA > CPU, picked automatically, or forced by name."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from ltzoo.errors import BadHyperParameterError, CorruptFileError, ExportCheckError
from ltzoo.export.options import PROVIDER_CHOICES, PROVIDERS


def select_providers(force: str | None = None) -> list[str]:
    """ORT providers for a session: the best available first, CPU always last as the fallback.

    ``force`` ("tensorrt", "cuda" or "cpu") uses exactly that provider (plus nothing else) and fails
    if this onnxruntime build does not have it, so a forced GPU check can never silently run on CPU.
    """
    available = ort.get_available_providers()
    if force in (None, "", "auto"):
        return [name for name in PROVIDERS.values() if name in available]
    if force not in PROVIDERS:
        raise BadHyperParameterError(f"unknown provider {force!r}; choose one of {list(PROVIDER_CHOICES)}")
    wanted = PROVIDERS[force]
    if wanted not in available:
        raise BadHyperParameterError(
            f"provider {force!r} ({wanted}) is not available in this onnxruntime build (available: "
            f"{available}); install onnxruntime-gpu with CUDA/TensorRT, or use --provider auto/cpu"
        )
    return [wanted]


def create_session(
    path: str | os.PathLike[str], provider: str | None = None, threads: int | None = None
) -> ort.InferenceSession:
    """An ORT session for ``path`` with :func:`select_providers`; unreadable graphs raise ``CorruptFileError``."""
    path = Path(path)
    if not path.is_file():
        raise ExportCheckError(f"ONNX file {path} does not exist; export one first with export/to_onnx.py")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings would drown the report
    # No busy-waiting worker threads: checks and evaluation share the machine with other work, and
    # spinning only buys latency, which nothing here measures (benchmarks/inference.py makes its own).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=select_providers(provider))
    except Exception as error:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        raise CorruptFileError(
            f"ONNX Runtime cannot load {path}: {str(error).strip().splitlines()[0]}. "
            "The file is corrupt or not an ONNX model; re-run the export."
        ) from error
