"""The CIFAR ResNet-32 of LDAM-DRW / RSG (kaidic/LDAM-DRW ``models/resnet_cifar.py``).

3 stages x 5 BasicBlocks, widths 16/32/64, option-A (zero-pad) shortcuts, Kaiming init and a 64-d
feature. Departures from the official code: ``in_chans`` is configurable (1 for Fashion-MNIST) and
pooling is adaptive so the graph works at any input size (the official code pools by the map size).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models._features import feature_take_indices  # what timm's own models use for `indices`
from torch import nn


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channels (no parameters)."""

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA(planes // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """Backbone only: ``stem`` + ``stages``; ``forward`` returns the last feature map."""

    def __init__(self, num_blocks: tuple[int, int, int] = (5, 5, 5), in_chans: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        widths = (16, 32, 64)
        strides = (1, 2, 2)
        in_planes = 16
        stages = []
        for width, stride, blocks in zip(widths, strides, num_blocks):
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(BasicBlock(in_planes, width, block_stride))
                in_planes = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.stage_channels = list(widths)
        self.num_features = widths[-1]
        # timm's feature metadata (what features_only / forward_intermediates return): stem, then each stage.
        self.feature_info = [{"num_chs": 16, "reduction": 1, "module": "stem"}] + [
            {"num_chs": width, "reduction": 2**i, "module": f"stages.{i}"} for i, width in enumerate(widths)
        ]
        for module in self.modules():
            # On the meta device (ltzoo.runs.load_run builds there, then adopts the saved tensors) there is
            # nothing to initialise, and torch runs meta-device init through slow Python reference kernels:
            # about 0.5 ms per layer, most of the time it takes to load a ResNet-32.
            if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.is_meta:
                nn.init.kaiming_normal_(module.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    forward = forward_features

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Any:
        """timm's feature API: the feature maps at ``indices`` of (stem, stage 1, 2, 3) (``norm`` has nothing
        to apply to here); with ``intermediates_only=False`` also the last map."""
        if output_fmt != "NCHW":
            raise ValueError(f"ResNet-32 gives NCHW feature maps, not {output_fmt}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take:
            intermediates.append(x)
        stages = self.stages[:max_index] if stop_early else self.stages
        for index, stage in enumerate(stages, start=1):
            x = stage(x)
            if index in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)


def resnet32(in_chans: int = 3) -> ResNetCifar:
    return ResNetCifar((5, 5, 5), in_chans=in_chans)
