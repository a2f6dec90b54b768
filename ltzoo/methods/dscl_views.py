"""The multi-view inputs of DSCL / DSCL + PBSD: query and key views, patch crops and their boxes.

After ``SY-Xuan/DSCL: dscl/loader_roi.py`` (``SmallGlobalRandomResizedCrop``,
``MultiCropsROITransform``) and the augmentation lists of ``main.py``:

1. two RandomResizedCrops of the image (the query and the key view); the query view is flipped
   with probability 0.5 *before* the patch boxes are drawn, so the boxes are in its coordinates;
2. L boxes are drawn inside the query view, RandomResizedCrop-style (area scale 0.05-0.6, ratio
   3/4-4/3), as ``[x1, y1, x2, y2]`` pixels, and each box is cropped and resized to the patch size;
3. each view gets its own photometric augmentation (query: jitter p=0.8, grayscale p=0.2, blur
   p=0.5; key: jitter without hue, always, and a flip; patches: flip, jitter, grayscale, blur).

One call returns ``(query, key)`` or, with patches, ``(query, key, patches (L, C, P, P), boxes (L, 4))``;
the default collate turns that into batched tensors.

Scale choices of ltzoo (the official code has only the ImageNet setting, 224 views / 64 patches):

- fmnist_lt (1x28x28) and CIFAR (3x32x32): patch side = half the view (14 / 16 px), so ResNet-32
  still sees a 4x4 map; view crop scale 0.2-1 (SupContrast's CIFAR setting) rather than 0.08-1,
  which would leave a few pixels of a 28-px image;
- fmnist_lt is grayscale: the jitter changes brightness and contrast only, and there is no grayscale
  step;
- blur: torchvision's Gaussian blur with sigma in [0.1, 2] and a kernel of 10% of the side (odd,
  >= 3; SimCLR's convention) stands in for the official PIL ``ImageFilter.GaussianBlur(radius=sigma)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import RandomResizedCrop, v2
from torchvision.transforms.v2 import functional as TF

from ltzoo.data.spec import DataInfo
from ltzoo.data.transforms import train_transform
from ltzoo.errors import BadHyperParameterError

PAPER_PATCH_SIZE = 64  # at 224 px views
PATCH_SCALE = (0.05, 0.6)
PATCH_RATIO = (3.0 / 4.0, 4.0 / 3.0)
VIEW_SCALE = {"imagenet": (0.08, 1.0), "cifar": (0.2, 1.0), "fmnist": (0.2, 1.0)}


def default_patch_size(info: DataInfo) -> int:
    """64 px at ImageNet scale (official), half the view side for the small datasets (ltzoo)."""
    return PAPER_PATCH_SIZE if info.augment == "imagenet" else info.input_size[0] // 2


def _blur_kernel(side: int) -> int:
    kernel = max(3, int(round(0.1 * side)))
    return kernel if kernel % 2 else kernel + 1


def _jitter(info: DataInfo, hue: float) -> v2.Transform:
    if info.in_chans == 1:
        return v2.ColorJitter(brightness=0.4, contrast=0.4)
    return v2.ColorJitter(0.4, 0.4, 0.4, hue)


def _grayscale(info: DataInfo) -> list[v2.Transform]:
    return [] if info.in_chans == 1 else [v2.RandomGrayscale(p=0.2)]


def _normalise(info: DataInfo) -> list[Callable[[Any], Any]]:
    channels = [v2.Grayscale(num_output_channels=1)] if info.in_chans == 1 else []
    return [*channels, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(info.mean), list(info.std))]


def query_augment(info: DataInfo, side: int) -> v2.Compose:
    """Photometric augmentation of the query view (official ``q_augmentation``), also used for the
    stage-2 view (``equal_lincls.py``)."""
    return v2.Compose(
        [
            v2.RandomApply([_jitter(info, hue=0.1)], p=0.8),
            *_grayscale(info),
            v2.RandomApply([v2.GaussianBlur(_blur_kernel(side), sigma=(0.1, 2.0))], p=0.5),
            *_normalise(info),
        ]
    )


def key_augment(info: DataInfo) -> v2.Compose:
    """Official ``k_augmentation``: jitter without hue, always applied, then a flip."""
    return v2.Compose([_jitter(info, hue=0.0), v2.RandomHorizontalFlip(), *_normalise(info)])


def patch_augment(info: DataInfo, side: int) -> v2.Compose:
    """Official ``small_augmentation``: flip, jitter p=0.8, grayscale p=0.2, blur p=0.5."""
    return v2.Compose([v2.RandomHorizontalFlip(), query_augment(info, side)])


def sample_box(image: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a RandomResizedCrop-style box inside ``image`` (torchvision's sampler,
    which ``loader_roi.py`` re-implements with the same 10 tries and centre-crop fallback)."""
    return RandomResizedCrop.get_params(image, list(scale), list(ratio))


@dataclass
class DSCLViews:
    """Per-sample transform: ``image -> (query, key)`` or ``(query, key, patches, boxes)``."""

    info: DataInfo
    num_patches: int = 0
    patch_size: int = 0  # 0: :func:`default_patch_size`
    view_scale: tuple[float, float] | None = None  # None: the family's VIEW_SCALE
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        if self.num_patches < 0:
            raise BadHyperParameterError(f"num_patches must be >= 0, got {self.num_patches}")
        self.side = self.info.input_size[0]
        self.patch_size = self.patch_size or default_patch_size(self.info)
        self.view_scale = tuple(self.view_scale or VIEW_SCALE.get(self.info.augment, (0.08, 1.0)))
        self._query = query_augment(self.info, self.side)
        self._key = key_augment(self.info)
        self._patch = patch_augment(self.info, self.patch_size)

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        top, left, height, width = sample_box(image, self.view_scale, (3.0 / 4.0, 4.0 / 3.0))
        return TF.resized_crop(image, top, left, height, width, [self.side, self.side], antialias=True)

    def __call__(self, image: Any) -> tuple[torch.Tensor, ...]:
        image = TF.to_image(image)  # uint8 tensor image, from a tensor or a PIL image
        query_view = self._crop(image)
        if torch.rand(1).item() < self.flip_p:
            query_view = TF.horizontal_flip(query_view)
        key_view = self._crop(image)
        query, key = self._query(query_view), self._key(key_view)
        if not self.num_patches:
            return query.as_subclass(torch.Tensor), key.as_subclass(torch.Tensor)
        patches, boxes = [], []
        for _ in range(self.num_patches):
            top, left, height, width = sample_box(query_view, PATCH_SCALE, PATCH_RATIO)
            boxes.append([left, top, left + width, top + height])
            crop = TF.resized_crop(query_view, top, left, height, width, [self.patch_size] * 2, antialias=True)
            patches.append(self._patch(crop).as_subclass(torch.Tensor))
        return (
            query.as_subclass(torch.Tensor),
            key.as_subclass(torch.Tensor),
            torch.stack(patches),
            torch.tensor(boxes, dtype=torch.float32),
        )


CLASSIFIER_AUGMENTS = ("official", "standard")


def classifier_view(info: DataInfo, augment: str = "official") -> Callable[[Any], Any]:
    """The stage-2 (linear probe) training augmentation.

    ``"official"``: ``equal_lincls.py``'s RandomResizedCrop, query photometrics and flip.
    ``"standard"``: the dataset family's standard augmentation (what CE trains with). On 28-32 px
    images a linear probe fitted to RandomResizedCrops (scale down to 0.2) sees objects it never meets
    at evaluation: on fmnist_lt, stage 2 on a fixed DSCL + PBSD backbone reached about 68 % val top-1
    with ``"official"`` and about 73 % with ``"standard"`` (6 epochs, lr 0.03 to 1; chosen on val).
    """
    if augment == "standard":
        return train_transform(info)
    side = info.input_size[0]
    scale = VIEW_SCALE.get(info.augment, (0.08, 1.0))
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(side, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            query_augment(info, side),
        ]
    )
