"""Backbones: the CIFAR ResNet-32, and any timm architecture (random init, never downloaded here: pretrained
weights come from ltzoo runs, the Hub or a timm checkpoint, through ``ltzoo train --init``).

Every backbone has ``forward_features(x)`` and ``num_features``; a timm backbone also pools with its own
``forward_head(x, pre_logits=True)`` (a CNN's average pool, a ViT's class token). ResNets can be split into a
stem and stages (:func:`split_stages`), which training-only modules such as RSG use to insert themselves after
a stage; other layouts cannot, and :func:`split_stages` says so. :func:`trainable_groups` gives the groups that
``--trainable last:N`` counts (a CNN's stages, a ViT's blocks).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import timm
from torch import nn

from ltzoo.errors import BadHyperParameterError, UnknownModelError
from ltzoo.models.resnet_cifar import ResNetCifar, resnet32


def _timm_backbone(arch: str) -> Callable[[int], nn.Module]:
    def build(in_chans: int = 3) -> nn.Module:
        # pretrained=False always: ltzoo weights come from ltzoo runs or the Hub, never timm's URLs.
        # timm's default zero_init_last=True zeroes the last BN weight of every residual block. That
        # matches DSCL (zero_init_residual=True) but not RSG (models/resnet.py) or WB (torchvision
        # ResNets), which leave it at 1; those recipes' notes record the departure.
        return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans)

    return build


# The paper-scale ResNets of the zoo's recipes. With a linear head, a run of any timm backbone is a plain timm
# model (see ltzoo.models.timm_layout). resnet152 is RSG's Places-LT backbone (Jianf-Wang/RSG places_train.py).
TIMM_BACKBONES = ("resnet50", "resnext50_32x4d", "resnet152")
# timm backbones that ltzoo registers with timm under ``ltzoo_<arch>`` (for its cosine / ETF / logit-adjusted
# heads), besides TIMM_BACKBONES: the LIFT recipes' backbones and common fine-tuning starts. A run of another timm
# architecture with such a head loads with ``ltzoo.load`` (and plain timm when its head is linear).
REGISTERED_TIMM_ARCHS = (
    *TIMM_BACKBONES,
    "resnet18",
    "convnext_atto",
    "convnext_tiny",
    "efficientnet_b0",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
)

BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "resnet32": resnet32,
    **{arch: _timm_backbone(arch) for arch in TIMM_BACKBONES},
}


def is_timm_arch(arch: str) -> bool:
    """A timm architecture (``resnet32`` is ltzoo's own, although ``import ltzoo`` registers it with timm)."""
    return arch in TIMM_BACKBONES or (arch not in BACKBONES and timm.is_model(arch))


def build_backbone(arch: str, in_chans: int = 3) -> nn.Module:
    if arch in BACKBONES:
        return BACKBONES[arch](in_chans)
    if is_timm_arch(arch):
        # timm's own pooling (global_pool default): what its pretrained weights were trained with.
        return timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans)
    close = difflib.get_close_matches(arch, [*BACKBONES, *timm.list_models()], n=4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown architecture {arch!r}: neither ltzoo's resnet32 nor a timm model.{hint}")


def split_stages(backbone: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """Return (stem, stages) sharing the backbone's parameters; stem then stages == forward_features."""
    if isinstance(backbone, ResNetCifar):
        return backbone.stem, list(backbone.stages)
    if all(hasattr(backbone, name) for name in ("conv1", "bn1", "act1", "maxpool", "layer4")):
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.act1, backbone.maxpool)
        return stem, [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    raise BadHyperParameterError(
        f"this method inserts a module between the stages of a ResNet (RSG's feature-map generator), and a "
        f"{type(backbone).__name__} backbone has no such stages; train it with a method that needs only features "
        "and a head (CE, LDAM-DRW, SCL, DSCL, ICCL, WB, LIFT)"
    )


def stage_channels(backbone: nn.Module) -> list[int]:
    """Output channels of each stage, e.g. [16, 32, 64] for ResNet-32."""
    if isinstance(backbone, ResNetCifar):
        return list(backbone.stage_channels)
    return [info["num_chs"] for info in backbone.feature_info if info["module"].startswith("layer")]


def trainable_groups(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's groups in depth order, which ``--trainable last:N`` counts from the end: a ResNet's stages,
    a ViT's blocks, a ConvNeXt's or EfficientNet's stages."""
    if isinstance(backbone, ResNetCifar):
        return list(backbone.stages)
    for name in ("layer4",):
        if hasattr(backbone, name):
            return [backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4]
    for name in ("blocks", "stages"):
        groups = getattr(backbone, name, None)
        if isinstance(groups, (nn.Sequential, nn.ModuleList)) and len(groups) > 0:
            return list(groups)
    raise BadHyperParameterError(
        f"--trainable last:N needs a backbone of stages or blocks; {type(backbone).__name__} has neither: "
        "use --trainable all or head"
    )


def trained_part(backbone: nn.Module, train: str) -> list[nn.Module]:
    """The modules of the backbone that a stage trains: all of it (``all``), none (``head``), or its last N groups
    (``last:N``). The rest is frozen and kept in eval mode (its BatchNorm statistics with it)."""
    if train == "all":
        return [backbone]
    if train == "head":
        return []
    count = int(train.split(":")[1])
    groups = trainable_groups(backbone)
    if count > len(groups):
        raise BadHyperParameterError(
            f"--trainable {train}, but the backbone has {len(groups)} groups (stages or blocks); use last:1 to "
            f"last:{len(groups)}, all or head"
        )
    return groups[-count:]
