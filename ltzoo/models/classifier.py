"""The inference model every recipe produces: backbone -> global average pool -> head.

Only what inference needs lives here (and so in ``model.safetensors`` and the ONNX graph);
training-only parts (projection heads, RSG, momentum encoders) live in the method's objective.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ltzoo.models.backbones import build_backbone
from ltzoo.models.heads import build_head


class LTClassifier(nn.Module):
    """timm-style classifier: ``forward_features`` (map), ``forward_head`` and ``forward`` (logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = num_features
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (B, C, H, W)."""
        return self.backbone.forward_features(x)

    def forward_head(self, feature_map: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the backbone's features; return the pooled features when ``pre_logits`` else the logits.

        A timm backbone pools with its own head (a ViT's class token and norm, a ConvNeXt's norm); what is still
        a feature map (ResNet-32, ltzoo's paper-scale ResNets, built without a pool) is averaged over H and W."""
        backbone_head = getattr(self.backbone, "forward_head", None)
        pooled = backbone_head(feature_map, pre_logits=True) if backbone_head is not None else feature_map
        if pooled.ndim == 4:
            pooled = pooled.mean(dim=(2, 3))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's feature metadata of the backbone (channels, stride, module), named within this model."""
        return [{**info, "module": f"backbone.{info['module']}"} for info in self.backbone.feature_info]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Any:
        """timm's feature API (what ``timm.create_model(..., features_only=True)`` calls): the backbone's."""
        return self.backbone.forward_intermediates(
            x,
            indices=indices,
            norm=norm,
            stop_early=stop_early,
            output_fmt=output_fmt,
            intermediates_only=intermediates_only,
        )

    def reset_classifier(self, num_classes: int, head: dict[str, Any] | None = None) -> None:
        """Replace the head for a new class count (fine-tuning on other data)."""
        self.head = build_head(head or {"type": "linear"}, self.num_features, num_classes)
        self.num_classes = num_classes


def build_model(arch: str, num_classes: int, in_chans: int = 3, head: dict[str, Any] | None = None) -> LTClassifier:
    """Build an :class:`LTClassifier` from the fields stored in a run's ``config.json``."""
    backbone = build_backbone(arch, in_chans=in_chans)
    num_features = int(backbone.num_features)
    head_module = build_head(head or {"type": "linear"}, num_features, num_classes)
    return LTClassifier(backbone, head_module, num_features, num_classes)
