"""Backbones: timm ResNet-50 / ResNeXt-50 (random init, never downloaded) and the CIFAR ResNet-32.

Every backbone has ``forward_features(x) -> feature map``, ``num_features`` and can be split into a
stem and stages (:func:`split_stages`), which training-only modules such as RSG use to insert
themselves after a stage.
"""

from __future__ import annotations

from collections.abc import Callable

import timm
from torch import nn

from ltzoo.errors import UnknownModelError
from ltzoo.models.resnet_cifar import ResNetCifar, resnet32


def _timm_backbone(arch: str) -> Callable[[int], nn.Module]:
    def build(in_chans: int = 3) -> nn.Module:
        # pretrained=False always: ltzoo weights come from ltzoo runs or the Hub, never timm's URLs.
        # timm's default zero_init_last=True zeroes the last BN weight of every residual block. That
        # matches DSCL (zero_init_residual=True) but not RSG (models/resnet.py) or WB (torchvision
        # ResNets), which leave it at 1; those recipes' notes record the departure.
        return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans)

    return build


# Backbones that are timm models: with a linear head, a run of one is a plain timm model (see
# ltzoo.models.timm_layout). resnet152 is RSG's Places-LT backbone (Jianf-Wang/RSG places_train.py).
TIMM_BACKBONES = ("resnet50", "resnext50_32x4d", "resnet152")

BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "resnet32": resnet32,
    **{arch: _timm_backbone(arch) for arch in TIMM_BACKBONES},
}


def build_backbone(arch: str, in_chans: int = 3) -> nn.Module:
    if arch not in BACKBONES:
        raise UnknownModelError(f"unknown architecture {arch!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[arch](in_chans)


def split_stages(backbone: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """Return (stem, stages) sharing the backbone's parameters; stem then stages == forward_features."""
    if isinstance(backbone, ResNetCifar):
        return backbone.stem, list(backbone.stages)
    if all(hasattr(backbone, name) for name in ("conv1", "bn1", "act1", "maxpool", "layer4")):
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool)
        return stem, [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    raise TypeError(f"cannot split {type(backbone).__name__} into stages")


def stage_channels(backbone: nn.Module) -> list[int]:
    """Output channels of each stage, e.g. [16, 32, 64] for ResNet-32."""
    if isinstance(backbone, ResNetCifar):
        return list(backbone.stage_channels)
    return [info["num_chs"] for info in backbone.feature_info if info["module"].startswith("layer")]
