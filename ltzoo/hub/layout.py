"""Names that only a repo pushed by ltzoo has (the run's own files are named in :mod:`ltzoo.names`)."""

from __future__ import annotations

CARD = "README.md"
PLOT = "per_class_accuracy.png"
# ONNX variants and their export report go in a folder, as transformers.js / Optimum repos do.
ONNX_DIR = "onnx"
