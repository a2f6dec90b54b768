#!/usr/bin/env python
"""TensorRT readiness of an exported graph: ``python export/to_tensorrt.py --onnx FILE [--check-only]``.

A thin command line over :mod:`ltzoo.export.tensorrt` (the same as ``ltzoo trt``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ltzoo.cli.export import main_tensorrt  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_tensorrt())
