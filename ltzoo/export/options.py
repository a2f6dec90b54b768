"""What an export can be asked for: :class:`ExportOptions` (the typed record of every ``to_onnx.py`` option),
the TensorRT optimization :class:`Profile`, and the choices and defaults the command line offers.

This module imports neither torch nor ONNX (Runtime): the ``ltzoo export`` parser is built from it, so
``ltzoo --help`` answers at once; the modules that do the work read their defaults from here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ltzoo.errors import BadHyperParameterError, LtzooError

# torch.onnx exporters and opsets. TensorRT 10.0 parses opsets 9-20 (onnx-tensorrt docs/operators.md); 17 is
# the first with LayerNormalization, which keeps transformer heads on TensorRT's native layer.
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "dynamo"
DEFAULT_OPSET = 18
SUPPORTED_OPSETS = (17, 18, 19, 20)

# int8: what the activations target (ltzoo.export.int8.INT8_TARGETS holds each one's settings), the
# calibration draw, and the calibration methods in the order ``auto`` tries them (ltzoo.export.calibration).
INT8_TARGET_NAMES = ("tensorrt", "cpu")
DEFAULT_INT8_TARGET = "tensorrt"
DEFAULT_CALIB_SIZE = 512
DEFAULT_CALIB_SEED = 0
CALIBRATION_METHOD_NAMES = ("minmax", "percentile", "entropy")
AUTO_CALIBRATION = "auto"
CALIBRATION_CHOICES = (AUTO_CALIBRATION, *CALIBRATION_METHOD_NAMES)
DEFAULT_CALIBRATION = AUTO_CALIBRATION
DEFAULT_INT8_DEBUG_WORST = 10  # --int8-debug with no N: the 10 worst tensors by SQNR

# ONNX Runtime providers: short names accepted on the command line -> ORT's names, in order of preference.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)

# The per-split gate: the most top-1 points each variant may lose (overall and few-shot), on these splits.
VERIFY_MODES = ("none", "parity", "dataset")
DEFAULT_MAX_DROP: dict[str, float] = {"fp32": 0.1, "fp16": 0.5, "int8": 1.0}
SPLITS = ("val", "test")


@dataclass(frozen=True)
class Profile:
    """Batch sizes of the TensorRT optimization profile for the dynamic batch axis."""

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise BadHyperParameterError(
                f"TensorRT profile needs 1 <= min <= opt <= max batch, got {self.min}/{self.opt}/{self.max}"
            )

    def shapes(self, input_shape: tuple[int, ...]) -> dict[str, list[int]]:
        batches = (("min", self.min), ("opt", self.opt), ("max", self.max))
        return {name: [batch, *input_shape] for name, batch in batches}


def check_tau(tau: float) -> float:
    if not math.isfinite(tau) or tau <= 0:
        raise BadHyperParameterError(f"--logit-adjust TAU must be a positive number (typically 1.0), got {tau}")
    return float(tau)


@dataclass
class ExportOptions:
    """Everything ``export/to_onnx.py`` can set (see ``--help`` there for the meaning of each)."""

    opset: int = DEFAULT_OPSET
    exporter: str = DEFAULT_EXPORTER
    fp16: bool = False
    int8: bool = False
    int8_target: str = DEFAULT_INT8_TARGET
    calib_size: int = DEFAULT_CALIB_SIZE
    calib_method: str = DEFAULT_CALIBRATION
    calib_seed: int = DEFAULT_CALIB_SEED
    int8_exclude: tuple[str, ...] = ()
    int8_debug: int | None = None  # report the N worst tensors of int8 against fp32 (qdq_loss_debug)
    lint: bool = True  # polygraphy check lint on every graph, when polygraphy is installed
    logit_adjust: float | None = None  # the older spelling of a fixed additive adjustment (kept for old commands)
    target_prior: str | None = None  # uniform | train | FILE: a deployment prior folded in (ltzoo.calibration)
    estimate_prior: str | None = None  # a folder of unlabeled deployment images: the prior estimated by EM
    verify: str = "parity"
    data_root: str | None = None
    max_drop: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MAX_DROP))
    splits: tuple[str, ...] = SPLITS
    provider: str | None = None
    device: str = "cpu"  # where the PyTorch reference of parity and the gate runs (the graphs run on `provider`)
    trt_profile: Profile = field(default_factory=Profile)
    batch_size: int = 256

    def validate(self) -> None:
        if self.verify not in VERIFY_MODES:
            raise LtzooError(f"--verify {self.verify!r}: choose one of {list(VERIFY_MODES)}")
        if self.logit_adjust is not None:
            check_tau(self.logit_adjust)
        given = [
            name
            for name, value in (
                ("--logit-adjust", self.logit_adjust),
                ("--target-prior", self.target_prior),
                ("--estimate-prior", self.estimate_prior),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise LtzooError(f"{' and '.join(given)} each set the adjustment baked into the graph: give one")
        if self.int8_target not in INT8_TARGET_NAMES:
            raise LtzooError(f"--int8-target {self.int8_target!r}: choose one of {list(INT8_TARGET_NAMES)}")
        if self.calib_method not in CALIBRATION_CHOICES:
            raise LtzooError(f"--calib-method {self.calib_method!r}: choose one of {list(CALIBRATION_CHOICES)}")
        if self.calib_size < 1:
            raise LtzooError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.int8_debug is not None and self.int8_debug < 1:
            raise LtzooError(
                f"--int8-debug N must be >= 1 (how many of the worst tensors to report), got {self.int8_debug}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as the report records them: a --data-root by its folder's name (no local path)."""
        values = asdict(self)
        values["splits"] = list(self.splits)
        values["int8_exclude"] = list(self.int8_exclude)
        for key in ("data_root", "target_prior", "estimate_prior"):  # by name: no path of this machine
            if values[key] and Path(values[key]).is_absolute():
                values[key] = Path(values[key]).name
        return values
