"""``ltzoo export`` (= ``export/to_onnx.py``) and ``ltzoo trt`` (= ``export/to_tensorrt.py``)."""

from __future__ import annotations

import argparse

from ltzoo.export.cli import (
    EXPORT_DESCRIPTION,
    TRT_DESCRIPTION,
    add_export_arguments,
    add_tensorrt_arguments,
    run_export,
    run_tensorrt,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export to ONNX (fp32/fp16/int8) with checks and a per-split gate",
                              description=EXPORT_DESCRIPTION)
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    t = subparsers.add_parser("trt", help="TensorRT readiness check (and engine build where a GPU exists)",
                              description=TRT_DESCRIPTION)
    add_tensorrt_arguments(t)
    t.set_defaults(func=run_tensorrt)
