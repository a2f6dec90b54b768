"""Train/eval transforms per augmentation family, built from a dataset's :class:`DataInfo`.

In-memory datasets (fmnist_lt, CIFAR-LT) yield uint8 CHW tensors; file datasets yield PIL images.
torchvision's v2 transforms handle both, so one pipeline serves either.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from ltzoo.data.datasets import convert_image
from ltzoo.data.preprocess import DataConfig
from ltzoo.data.spec import DataInfo
from ltzoo.errors import BadHyperParameterError


def _to_normalised(info: DataInfo | DataConfig) -> list[Callable[[Any], Any]]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]


VIEW_CROPS = ("rrc", "padcrop")


def pad_crop_padding(info: DataInfo) -> int:
    """The padding of the family's standard pad-and-crop (2 px at 28, 4 at 32, 1/8 of the side otherwise)."""
    return {"fmnist": 2, "cifar": 4}.get(info.augment, max(1, info.input_size[0] // 8))


def contrastive_crop(info: DataInfo, crop: str, scale_min: float) -> v2.Transform:
    """The geometric crop of a contrastive view: ``"rrc"``, RandomResizedCrop with area scale
    ``(scale_min, 1)`` and ratio 3/4-4/3 (SupContrast / MoCo), or ``"padcrop"``, the standard
    pad-and-crop, which keeps the object's size and shape (on 28-px garments the length and silhouette
    separate the classes that RandomResizedCrop confuses)."""
    height, width = info.input_size
    if crop == "padcrop":
        return v2.RandomCrop((height, width), padding=pad_crop_padding(info))
    if crop != "rrc":
        raise BadHyperParameterError(f"view crop {crop!r}: choose one of {list(VIEW_CROPS)}")
    if not 0 < scale_min <= 1:
        raise BadHyperParameterError(f"view_scale_min must be in (0, 1], got {scale_min}")
    return v2.RandomResizedCrop((height, width), scale=(scale_min, 1.0), antialias=True)


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
        ops = [
            v2.Resize((height, width), antialias=True),
            v2.RandomCrop((height, width), padding=max(1, height // 8), padding_mode="reflect"),
            v2.RandomHorizontalFlip(),
        ]
    else:
        ops = [v2.RandomResizedCrop((height, width), antialias=True), v2.RandomHorizontalFlip()]
    if info.in_chans == 1:
        ops.append(v2.Grayscale(num_output_channels=1))
    return v2.Compose(ops + _to_normalised(info))


class ToImageMode:
    """Convert a PIL image to the model's mode ("L" or "RGB", as the file datasets load them); tensors
    (in-memory datasets, already in the model's layout) pass through."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Any) -> Any:
        return convert_image(image, self.mode) if isinstance(image, Image.Image) else image

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def eval_transform(config: DataInfo | DataConfig) -> Callable[[Any], torch.Tensor]:
    """Deterministic preprocessing; exported graphs expect exactly this tensor as ``input``.

    The one eval pipeline: the evaluator (from the dataset's :class:`DataInfo`), and
    ``ltzoo.create_transform`` / ``ltzoo predict`` (from the model's :class:`DataConfig`) build it here.
    Sizes follow timm's ``transforms_imagenet_eval``: scale = floor(size / crop_pct), then a centre crop.
    """
    data = config if isinstance(config, DataConfig) else DataConfig.from_data_info(config)
    channels, height, width = data.input_size
    interpolation = v2.InterpolationMode(data.interpolation)
    if data.crop_mode == "squash":
        resize: Any = (math.floor(height / data.crop_pct), math.floor(width / data.crop_pct))
    else:  # "center": the shorter side, so that the crop fits inside the image
        resize = math.floor(max(height, width) / data.crop_pct)
    ops: list[Callable[[Any], Any]] = [
        ToImageMode(data.image_mode),
        # A same-size image passes both unchanged (torchvision and PIL return it as is).
        v2.Resize(resize, interpolation=interpolation, antialias=True),
        v2.CenterCrop((height, width)),
    ]
    if channels == 1:
        ops.append(v2.Grayscale(num_output_channels=1))  # 3-channel tensors of in-memory data
    return v2.Compose(ops + _to_normalised(data))


class MultiView:
    """Apply several transforms to one image and return the views as a tuple (contrastive methods)."""

    def __init__(self, *transforms: Callable[[Any], Any]) -> None:
        self.transforms = transforms

    def __call__(self, image: Any) -> tuple[Any, ...]:
        return tuple(t(image) for t in self.transforms)
