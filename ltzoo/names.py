"""The names of ltzoo's files, keys and source prefixes, each defined here once.

A run directory and a repo pushed by ltzoo hold the same files (a pushed repo is a run), so the loader,
the trainer, the exporter and the Hub code all read these names from this one place and cannot drift
apart. Names that only a Hub repo has (card, plot, the ONNX folder) are in :mod:`ltzoo.hub.layout`.
"""

from __future__ import annotations

# A run directory (written by ltzoo.runs.save_run) and a repo pushed by ltzoo.
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CALIBRATION_PLOT = "calibration.png"  # a calibrated run's val curves (ltzoo calibrate), pushed with it
# A run in training: one checkpoint per epoch in CHECKPOINT_DIR, the newest as LAST_CHECKPOINT (what --resume reads).
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"

# In config.json: the block that marks a config as ltzoo's (next to timm's fields), and inside it the
# sha256 of MODEL_FILE that every load checks.
CONFIG_BLOCK = "ltzoo"
WEIGHTS_SHA256_KEY = "weights_sha256"

# An export folder (ltzoo.export): one ONNX graph per variant and the report of their checks.
VARIANT_FILES = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}
REPORT_FILE = "export_report.json"

# Command-line choices that the parsers need before torch is imported (``ltzoo --help`` answers at once):
# training precision (ltzoo.precision) and the channels-last switch (ltzoo.memory_format).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")

# Source prefixes of ltzoo.load (timm's): a run folder and a Hub repo.
LOCAL_PREFIX = "local-dir:"
HUB_PREFIX = "hf-hub:"
# ``--init timm:NAME``: a timm model name whose pretrained weights timm resolves from the Hub.
TIMM_PREFIX = "timm:"
