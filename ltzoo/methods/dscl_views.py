"""The multi-view inputs of DSCL / DSCL + PBSD: query and key views, patch crops and their boxes.

After ``SY-Xuan/DSCL: dscl/loader_roi.py`` (``SmallGlobalRandomResizedCrop``,
``MultiCropsROITransform``) and the augmentation lists of ``main.py``:

1. two RandomResizedCrops of the image (the query and the key view); the query view is flipped
   with probability 0.5 *before* the patch boxes are drawn, so the boxes are in its coordinates;
2. L boxes are drawn inside the query view, RandomResizedCrop-style (area scale 0.05-0.6, ratio
   3/4-4/3), as ``[x1, y1, x2, y2]`` pixels, and each box is cropped and resized to the patch size;
3. each view gets its own photometric augmentation (query: jitter p=0.8, grayscale p=0.2, blur
   p=0.5; key: jitter without hue, always, and a flip; patches: flip, jitter, grayscale, blur).

Step 1 and the boxes of step 2 run per image in the data loader (:class:`DSCLViews`, uint8 views);
the patch crops and step 3 run on the whole batch in the training step (:class:`DSCLPhotometric`, on
:mod:`ltzoo.methods.batched_photometric`), where they cost a few tensor operations instead of about
35 torchvision calls per image (0.49 s of one core per batch of 64 before, 0.04 s now). The key's
flip comes after its jitter in the official list; flips and these photometric operations commute, so
it is drawn with the geometry. Departure: the patches are cut out of the query view by ROI-align
(bilinear sampling with ``ceil(box / patch)`` samples per output pixel, averaged, which also
antialiases a shrinking crop) instead of the official per-crop PIL resize.

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
from torchvision.ops import roi_align
from torchvision.transforms import RandomResizedCrop, v2
from torchvision.transforms.v2 import functional as TF

from ltzoo.data.spec import DataInfo
from ltzoo.data.transforms import contrastive_crop, train_transform
from ltzoo.errors import BadHyperParameterError
from ltzoo.methods.batched_photometric import BatchedPhotometric
from ltzoo.precision import full_precision

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
    """Photometric augmentation of the query view (official ``q_augmentation``), per image: the
    stage-2 view of ``equal_lincls.py`` (:func:`classifier_view`)."""
    return v2.Compose(
        [
            v2.RandomApply([_jitter(info, hue=0.1)], p=0.8),
            *_grayscale(info),
            v2.RandomApply([v2.GaussianBlur(_blur_kernel(side), sigma=(0.1, 2.0))], p=0.5),
            *_normalise(info),
        ]
    )


def sample_box(
    image: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a RandomResizedCrop-style box inside ``image`` (torchvision's sampler,
    which ``loader_roi.py`` re-implements with the same 10 tries and centre-crop fallback)."""
    return RandomResizedCrop.get_params(image, list(scale), list(ratio))


@dataclass
class DSCLViews:
    """Per-sample geometry: ``image -> (query, key)`` or ``(query, key, patches, boxes)`` as uint8 crops
    with the model's channel count (the photometric part is :class:`DSCLPhotometric`'s, per batch)."""

    info: DataInfo
    num_patches: int = 0
    patch_size: int = 0  # 0: :func:`default_patch_size`
    view_scale: tuple[float, float] | None = None  # None: the family's VIEW_SCALE
    flip_p: float = 0.5
    view_crop: str = "rrc"  # or "padcrop": the standard pad-and-crop (ltzoo.data.transforms.contrastive_crop)

    def __post_init__(self) -> None:
        if self.num_patches < 0:
            raise BadHyperParameterError(f"num_patches must be >= 0, got {self.num_patches}")
        self.side = self.info.input_size[0]
        self.patch_size = self.patch_size or default_patch_size(self.info)
        self.view_scale = tuple(self.view_scale or VIEW_SCALE.get(self.info.augment, (0.08, 1.0)))
        self._geometry = contrastive_crop(self.info, self.view_crop, self.view_scale[0])

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        if self.view_crop == "padcrop":
            return self._geometry(image)
        top, left, height, width = sample_box(image, self.view_scale, (3.0 / 4.0, 4.0 / 3.0))
        return TF.resized_crop(image, top, left, height, width, [self.side, self.side], antialias=True)

    def _flip(self, image: torch.Tensor) -> torch.Tensor:
        return TF.horizontal_flip(image) if torch.rand(1).item() < self.flip_p else image

    def __call__(self, image: Any) -> tuple[torch.Tensor, ...]:
        image = TF.to_image(image).as_subclass(torch.Tensor)  # uint8 tensor image, from a tensor or a PIL image
        if self.info.in_chans == 1 and image.shape[0] == 3:
            image = TF.rgb_to_grayscale(image)
        query = self._flip(self._crop(image))
        key = self._flip(self._crop(image))
        if not self.num_patches:
            return query, key
        boxes = []
        for _ in range(self.num_patches):
            top, left, height, width = sample_box(query, PATCH_SCALE, PATCH_RATIO)
            boxes.append([left, top, left + width, top + height])
        return query, key, torch.tensor(boxes, dtype=torch.float32)


def crop_patches(views: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) views and (B, L, 4) pixel boxes ``[x1, y1, x2, y2]`` -> (B, L, C, size, size) crops."""
    batch, count = boxes.shape[:2]
    crops = roi_align(
        views, list(boxes.to(views.dtype).unbind(0)), (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )
    return crops.view(batch, count, *crops.shape[1:])


class DSCLPhotometric:
    """Patch crops, flips and the official per-view photometric augmentations on a batch, then normalisation."""

    def __init__(self, info: DataInfo, patch_size: int, flip_p: float = 0.5) -> None:
        rgb = info.in_chans == 3
        colour = {"saturation": 0.4 if rgb else 0.0}
        self.query = BatchedPhotometric(
            **colour,
            hue=0.1 if rgb else 0.0,
            jitter_p=0.8,
            grayscale_p=0.2 if rgb else 0.0,
            blur_p=0.5,
            blur_kernel=_blur_kernel(info.input_size[0]),
        )
        self.key = BatchedPhotometric(**colour, hue=0.0, jitter_p=1.0)
        self.patch = BatchedPhotometric(
            **colour,
            hue=0.1 if rgb else 0.0,
            jitter_p=0.8,
            grayscale_p=0.2 if rgb else 0.0,
            blur_p=0.5,
            blur_kernel=_blur_kernel(patch_size),
        )
        self.patch_size = patch_size
        self.flip_p = flip_p
        self.mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(info.std).view(1, -1, 1, 1)

    def _finish(self, augment: BatchedPhotometric, images: torch.Tensor) -> torch.Tensor:
        images = augment(images)
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    @full_precision  # augmentation is data preparation: never in the training step's bf16 region
    def __call__(self, views: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """``[query, key(, boxes (B, L, 4))]`` uint8 views -> ``[query, key(, patches (B, L, C, P, P), boxes)]``,
        augmented and normalised."""
        query = views[0].float() / 255.0
        out = [self._finish(self.query, query), self._finish(self.key, views[1].float() / 255.0)]
        if len(views) > 2:
            boxes = views[2]
            patches = crop_patches(query, boxes, self.patch_size).flatten(0, 1)
            flip = (torch.rand(patches.shape[0]) < self.flip_p).to(patches.device).view(-1, 1, 1, 1)
            patches = torch.where(flip, patches.flip(-1), patches)  # official small_augmentation: flip first
            flat = self._finish(self.patch, patches)
            out += [flat.view(*boxes.shape[:2], *flat.shape[1:]), boxes]
        return out


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
