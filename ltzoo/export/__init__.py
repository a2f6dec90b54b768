"""Export: verified ONNX graphs (fp32, fp16, int8 QDQ), TensorRT readiness, and the per-split gate.

>>> from ltzoo.export import export, ExportOptions
>>> report = export("runs/demo", "exports/demo", ExportOptions(int8=True, verify="dataset"))
>>> report.passed, [str(failure) for failure in report.failures]

Modules: ``onnx_export`` (exporters), ``metadata`` (metadata_props), ``report`` (the typed
``export_report.json``), ``checks`` (graph, I/O, parity), ``fp16``, ``int8``, ``logit_adjust``, ``verify``
(dataset gate), ``tensorrt`` (+ ``trt_ops`` data), ``providers``, ``pipeline`` (export and recheck),
``cli`` (command lines and printing).

The pipeline is imported on first use: it pulls in ONNX Runtime's quantization tools and more than a
hundred modules, which the Hub code, reading one report or one file name, does not need.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ExportOptions": "ltzoo.export.options",
    "export": "ltzoo.export.pipeline",
    "recheck": "ltzoo.export.pipeline",
    "ExportReport": "ltzoo.export.report",
    "read_report": "ltzoo.export.report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ltzoo.export' has no attribute {name!r}")
