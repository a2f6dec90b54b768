"""File names inside a repo pushed by ltzoo (one place, so push and download cannot drift apart)."""

from __future__ import annotations

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
PLOT = "per_class_accuracy.png"
# ONNX variants and their export report go in a folder, as transformers.js / Optimum repos do.
ONNX_DIR = "onnx"
EXPORT_REPORT = "export_report.json"
LTZOO_BLOCK = "ltzoo"  # the config.json key that marks a repo as ltzoo's
WEIGHTS_SHA256_KEY = "weights_sha256"  # inside the ltzoo block; written at push time
