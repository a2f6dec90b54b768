"""Train/eval transforms per augmentation family, built from a dataset's :class:`DataInfo`.

In-memory datasets (fmnist_lt, CIFAR-LT) yield uint8 CHW tensors; file datasets yield PIL images.
torchvision's v2 transforms handle both, so one pipeline serves either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

from ltzoo.data.spec import DataInfo


def _to_normalised(info: DataInfo) -> list[Callable[[Any], Any]]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]


def train_transform(info: DataInfo) -> Callable[[Any], torch.Tensor]:
    """The standard augmentation of the dataset family (what CE and LDAM-DRW use)."""
    height, width = info.input_size
    if info.augment == "fmnist":
        ops: list[Callable[[Any], Any]] = [v2.RandomCrop((height, width), padding=2), v2.RandomHorizontalFlip()]
    elif info.augment == "cifar":
        ops = [v2.RandomCrop((height, width), padding=4), v2.RandomHorizontalFlip()]
    elif info.augment == "generic":
        # User images of any size: squash to the input size (as eval does, so nothing is cropped away:
        # a defect or lesion may sit at the border), then the CIFAR pad-and-crop (1/8 of the side) + flip.
        ops = [v2.Resize((height, width), antialias=True),
               v2.RandomCrop((height, width), padding=max(1, height // 8), padding_mode="reflect"),
               v2.RandomHorizontalFlip()]
    else:
        ops = [v2.RandomResizedCrop((height, width), antialias=True), v2.RandomHorizontalFlip()]
    if info.in_chans == 1:
        ops.append(v2.Grayscale(num_output_channels=1))
    return v2.Compose(ops + _to_normalised(info))


def eval_transform(info: DataInfo) -> Callable[[Any], torch.Tensor]:
    """Deterministic preprocessing; exported graphs expect exactly this tensor as ``input``."""
    height, width = info.input_size
    ops: list[Callable[[Any], Any]] = []
    if info.augment == "imagenet":
        resize = int(round(height / info.crop_pct))
        ops = [v2.Resize(resize, antialias=True), v2.CenterCrop((height, width))]
    elif info.augment not in ("fmnist", "cifar"):
        ops = [v2.Resize((height, width), antialias=True)]
    if info.in_chans == 1:
        ops.append(v2.Grayscale(num_output_channels=1))
    return v2.Compose(ops + _to_normalised(info))


class MultiView:
    """Apply several transforms to one image and return the views as a tuple (contrastive methods)."""

    def __init__(self, *transforms: Callable[[Any], Any]) -> None:
        self.transforms = transforms

    def __call__(self, image: Any) -> tuple[Any, ...]:
        return tuple(t(image) for t in self.transforms)
