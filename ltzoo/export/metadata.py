"""What a deployed graph must carry about itself: ``metadata_props`` in the ONNX file, kept consistent with
``export_report.json`` (:mod:`ltzoo.export.report` stores the exact dict written into each file).

Values in ``metadata_props`` are strings; lists and dicts are JSON, so any ONNX consumer (C++, JS,
TensorRT tooling) can read them without ltzoo.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from ltzoo.errors import CorruptFileError, LtzooError
from ltzoo.names import CONFIG_BLOCK, WEIGHTS_SHA256_KEY
from ltzoo.portable import portable_dataset
from ltzoo.version import __version__

if TYPE_CHECKING:
    from ltzoo.data.preprocess import DataConfig

# Keys whose value is JSON in metadata_props (everything else is a plain string).
_JSON_KEYS = (
    "label_names",
    "mean",
    "std",
    "input_size",
    "class_counts",
    "shot_thresholds",
    "shot_classes",
    "num_classes",
    "opset",
    "logit_adjust_tau",
    "crop_pct",
)
# Data-config fields besides input_size/mean/std that the graph's metadata carries (timm's names).
PREPROCESSING_EXTRA = ("interpolation", "crop_pct", "crop_mode")


@dataclass
class ModelInfo:
    """What the export needs to know about a model besides its weights (from the run's config.json).

    ``input_size`` is (C, H, W); ``shot_thresholds`` is e.g. ``{"many": 100, "few": 20}`` (training
    images per class: many > 100, few < 20) and ``shot_classes`` maps many/medium/few to class ids.
    """

    name: str
    arch: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_names: list[str]
    class_counts: list[int] | None = None
    shot_thresholds: dict[str, Any] | None = None
    shot_classes: dict[str, list[int]] | None = None
    dataset: str | None = None
    weights_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_info_from_config(config: dict[str, Any], name: str) -> ModelInfo:
    """A :class:`ModelInfo` from a run's ``config.json`` (timm layout + ``ltzoo`` block, see ltzoo.runs)."""
    from ltzoo.models.timm_layout import data_config_from_config, spec_from_config

    lt = config.get(CONFIG_BLOCK, {})
    shots = lt.get("shot_split") or {}
    try:
        data = data_config_from_config(config)
    except LtzooError as error:
        raise CorruptFileError(
            f"config of {name} lacks the preprocessing (pretrained_cfg input_size/mean/std) that the exported "
            f"graph's users need ({error})"
        ) from error
    return ModelInfo(
        name=lt.get("name") or name,
        arch=spec_from_config(config).arch,
        num_classes=int(config["num_classes"]),
        input_size=data.input_size,
        mean=data.mean,
        std=data.std,
        label_names=list(config.get("label_names") or [str(i) for i in range(int(config["num_classes"]))]),
        class_counts=lt.get("class_counts"),
        shot_thresholds=(
            {"many": shots["many_threshold"], "few": shots["few_threshold"], "rule": shots.get("rule", "absolute")}
            if shots
            else None
        ),
        shot_classes={group: shots[group] for group in ("many", "medium", "few")} if shots else None,
        dataset=lt.get("dataset"),
        weights_sha256=lt.get(WEIGHTS_SHA256_KEY),
        extra={key: value for key, value in data.to_dict().items() if key in PREPROCESSING_EXTRA},
    )


def library_versions() -> dict[str, str]:
    """Versions of everything that shaped the graph, for the report and ``metadata_props``."""
    import numpy
    import onnxruntime
    import torch

    versions = {
        "ltzoo": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    except ImportError:  # only the dynamo exporter needs it
        pass
    return versions


def build_metadata(
    info: ModelInfo,
    *,
    variant: str,
    exporter: str,
    opset: int,
    logit_adjust_tau: float | None = None,
    int8_target: str | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` for one variant (fp32/fp16/int8) of ``info``'s model."""
    versions = library_versions()
    values: dict[str, Any] = {
        "model_name": info.name,
        "arch": info.arch,
        "variant": variant,
        "dataset": portable_dataset(info.dataset) or "",  # a user's data by folder name, never its local path
        "num_classes": info.num_classes,
        "label_names": list(info.label_names),
        "input_size": list(info.input_size),
        "input_layout": "NCHW",
        # The graph takes the eval transform's output: resized/cropped to input_size, then
        # (pixel / 255 - mean) / std, float32 NCHW.
        "input_preprocessing": "float32 NCHW, (pixel/255 - mean) / std after the eval resize/crop",
        **{key: info.extra.get(key) for key in PREPROCESSING_EXTRA},
        "mean": list(info.mean),
        "std": list(info.std),
        "class_counts": list(info.class_counts) if info.class_counts is not None else None,
        "shot_thresholds": info.shot_thresholds,
        "shot_classes": info.shot_classes,
        "source_weights_sha256": info.weights_sha256 or "",
        "exporter": exporter,
        "opset": opset,
        "ltzoo_version": versions["ltzoo"],
        "torch_version": versions["torch"],
        "onnx_version": versions["onnx"],
        "logit_adjust_tau": logit_adjust_tau,
        # Which runtime the int8 graph was quantized for (see ltzoo.export.int8.INT8_TARGETS).
        "int8_target": int8_target if variant == "int8" else None,
    }
    return {
        key: json.dumps(value) if key in _JSON_KEYS else str(value)
        for key, value in values.items()
        if value is not None
    }


def write_metadata_props(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``metadata`` (and name ltzoo as the producer)."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_name = "ltzoo"
    proto.producer_version = __version__


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``metadata_props`` of an ONNX file, JSON values decoded (the inverse of :func:`build_metadata`)."""
    proto = load_onnx(path, load_weights=False)
    raw = {prop.key: prop.value for prop in proto.metadata_props}
    return decode_metadata(raw)


def decode_metadata(raw: dict[str, str]) -> dict[str, Any]:
    return {key: json.loads(value) if key in _JSON_KEYS else value for key, value in raw.items()}


def data_config_from_metadata(metadata: dict[str, Any]) -> DataConfig:
    """The preprocessing an exported graph declares (decoded ``metadata_props``, see :func:`build_metadata`)."""
    from ltzoo.data.preprocess import DataConfig
    from ltzoo.data.sources import is_source_name

    values = dict(metadata)
    if "crop_mode" not in values:
        # Graphs exported before crop_mode was written: the evaluator squashed user images, cropped the rest.
        values["crop_mode"] = "squash" if is_source_name(str(values.get("dataset", ""))) else "center"
    try:
        return DataConfig.from_dict(values)
    except LtzooError as error:
        raise CorruptFileError(
            f"the ONNX graph's metadata_props lack its preprocessing ({error}); re-export it with export/to_onnx.py"
        ) from error


def load_onnx(path: str | os.PathLike[str], load_weights: bool = True) -> onnx.ModelProto:
    """``onnx.load`` with a readable error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"ONNX file {path} does not exist; export one with export/to_onnx.py")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as error:  # protobuf DecodeError and friends
        raise CorruptFileError(
            f"{path} is not a readable ONNX model ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt: re-run the export"
        ) from error
