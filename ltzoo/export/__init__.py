"""Export: verified ONNX graphs (fp32, fp16, int8 QDQ), TensorRT readiness, and the per-split gate.

>>> from ltzoo.export import export, ExportOptions
>>> report = export("runs/demo", "exports/demo", ExportOptions(int8=True, verify="dataset"))

Modules: ``onnx_export`` (exporters), ``metadata`` (metadata_props + report), ``checks`` (graph, I/O,
parity), ``fp16``, ``int8``, ``logit_adjust``, ``verify`` (dataset gate), ``tensorrt`` (+ ``trt_ops``
data), ``providers``, ``pipeline`` (the job), ``cli`` (command lines).
"""

from ltzoo.export.pipeline import ExportOptions, export, print_summary

__all__ = ["ExportOptions", "export", "print_summary"]
