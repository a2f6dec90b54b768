"""``ltzoo.data_config`` and ``ltzoo.create_transform``: the eval preprocessing of a model, as timm's
``resolve_model_data_config`` and ``create_transform`` give it for a timm model.

The transform is the evaluator's own (:func:`ltzoo.data.transforms.eval_transform`), so what it makes of
an image is exactly the tensor the evaluator, the export gate and the exported graph were checked on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import nn

from ltzoo.data.preprocess import DataConfig
from ltzoo.data.transforms import eval_transform
from ltzoo.errors import LtzooError

if TYPE_CHECKING:
    import onnxruntime as ort

ModelOrSource = Union[nn.Module, str, "os.PathLike[str]", DataConfig, "ort.InferenceSession"]


def data_config(model_or_source: ModelOrSource) -> DataConfig:
    """The eval preprocessing (timm's data config fields) of:

    - a model from ``ltzoo.load`` / ``ltzoo.create_model``, or any timm model (its ``pretrained_cfg``,
      read with timm's ``resolve_model_data_config``);
    - a source ``ltzoo.load`` takes (zoo name, run directory, ``local-dir:``, ``hf-hub:``);
    - an ONNX Runtime session of an exported graph (its ``metadata_props``).
    """
    if isinstance(model_or_source, DataConfig):
        return model_or_source
    if isinstance(model_or_source, nn.Module):
        return _model_data_config(model_or_source)
    if hasattr(model_or_source, "get_modelmeta"):  # onnxruntime.InferenceSession, without importing it
        from ltzoo.export.metadata import data_config_from_metadata, decode_metadata

        return data_config_from_metadata(decode_metadata(model_or_source.get_modelmeta().custom_metadata_map))
    if isinstance(model_or_source, (str, os.PathLike)):
        return _source_data_config(str(model_or_source))
    raise LtzooError(
        f"cannot tell the preprocessing of a {type(model_or_source).__name__}; pass a model, a source name "
        "(zoo name, run directory, local-dir:PATH, hf-hub:ORG/REPO) or an ONNX Runtime session"
    )


def create_transform(model_or_source: ModelOrSource) -> Callable[[Any], torch.Tensor]:
    """The eval transform of a model or source (see :func:`data_config`): a PIL image of any mode and size
    (or a uint8 CHW tensor) -> the float32 CHW tensor the model takes."""
    return eval_transform(data_config(model_or_source))


def _model_data_config(model: nn.Module) -> DataConfig:
    if not getattr(model, "pretrained_cfg", None):
        raise LtzooError(
            f"this {type(model).__name__} has no pretrained_cfg, so its preprocessing is unknown; build it with "
            "ltzoo.load / ltzoo.create_model (or timm.create_model), or pass its source name instead"
        )
    from timm.data import resolve_model_data_config

    return DataConfig.from_dict(resolve_model_data_config(model))


def _source_data_config(source: str) -> DataConfig:
    from ltzoo.loading import resolve_run_dir
    from ltzoo.models.timm_layout import data_config_from_config
    from ltzoo.runs import read_config
    from ltzoo.source import parse_source

    parsed = parse_source(source)
    if parsed.kind == "zoo":
        from ltzoo.data.spec import dataset_spec
        from ltzoo.registry import get_entry

        entry = get_entry(source)
        if entry.weights is None:  # a recipe only: its training set says how its models see images
            return DataConfig.from_data_info(dataset_spec(entry.recipe().dataset))
    return data_config_from_config(read_config(resolve_run_dir(parsed)))
