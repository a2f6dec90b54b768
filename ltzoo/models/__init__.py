"""Models: backbones, heads and the :class:`LTClassifier` wrapper."""

from ltzoo.models import timm_models  # noqa: F401  (registers ltzoo's models with timm)
from ltzoo.models.backbones import BACKBONES, build_backbone, split_stages, stage_channels
from ltzoo.models.classifier import LTClassifier, build_model
from ltzoo.models.heads import HEADS, build_head, register_head
from ltzoo.models.timm_layout import ModelSpec

__all__ = [
    "BACKBONES",
    "HEADS",
    "LTClassifier",
    "ModelSpec",
    "build_backbone",
    "build_head",
    "build_model",
    "register_head",
    "split_stages",
    "stage_channels",
]
