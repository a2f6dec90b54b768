"""Photometric augmentation of a whole batch, with every sample's own random parameters.

DSCL + PBSD augments 7 crops per image (query, key, 5 patches), each with colour jitter, grayscale
and blur. Done per crop with torchvision transforms in a DataLoader worker, this cost about 7 ms of
Python per image (0.49 s per batch of 64 on one core, 25x CE's augmentation), CPU time taken from
the training threads. Here the crops stay in the worker (cheap: geometry only) and the photometric
part runs as a few tensor operations on the stacked batch in the training step.

The distribution is torchvision's, operation by operation (``ColorJitter`` with a random order of
brightness / contrast / saturation / hue per sample, ``RandomGrayscale``, ``GaussianBlur`` with
torchvision's kernel and reflect padding, each under its own probability); each sample draws its own
parameters. One departure: the arithmetic is in float on [0, 1] images, without rounding to uint8
between operations as the per-image pipeline on uint8 images did. Random numbers come from the CPU
generator (checkpointed by the trainer, so a resumed run draws the same ones) and are then moved to
the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _uniform(count: int, low: float, high: float) -> torch.Tensor:
    return torch.empty(count).uniform_(low, high)


def _bernoulli(count: int, p: float) -> torch.Tensor:
    return torch.rand(count) < p


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma of RGB images (a 1-channel batch is its own grayscale)."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return values.to(images.device, images.dtype).view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_sample(ratio, images)
    return (images * ratio + other * (1 - ratio)).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return (images * _per_sample(factors, images)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factors)


def adjust_saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 1 else _blend(images, grayscale(images), factors)


def adjust_hue(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    hsv = _rgb_to_hsv(images)
    hue = (hsv[:, :1] + _per_sample(factors, images)) % 1.0
    return _hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


def gaussian_blur(images: torch.Tensor, kernel_size: int, sigmas: torch.Tensor) -> torch.Tensor:
    """torchvision's ``gaussian_blur`` (its kernel, reflect padding) with one sigma per sample."""
    batch, channels, height, width = images.shape
    lim = (kernel_size - 1) / (2.0 * 2.0**0.5)
    x = torch.linspace(-lim, lim, kernel_size, dtype=images.dtype, device=images.device)
    kernels = torch.softmax(-(x.view(1, -1) / _per_sample(sigmas, images).view(-1, 1)).pow(2), dim=1)
    kernels = kernels.repeat_interleave(channels, dim=0)  # (N * C, k): one kernel per sample and channel
    pad = kernel_size // 2
    flat = F.pad(images.reshape(1, batch * channels, height, width), [pad, pad, pad, pad], mode="reflect")
    flat = F.conv2d(flat, kernels.view(-1, 1, kernel_size, 1), groups=batch * channels)
    flat = F.conv2d(flat, kernels.view(-1, 1, 1, kernel_size), groups=batch * channels)
    return flat.view(batch, channels, height, width)


@dataclass(frozen=True)
class BatchedPhotometric:
    """Per-sample ``RandomApply([ColorJitter(b, c, s, h)], p=jitter_p)``, ``RandomGrayscale(grayscale_p)``
    and ``RandomApply([GaussianBlur(blur_kernel, (0.1, 2.0))], p=blur_p)``, in that order, on a float
    (N, C, H, W) batch in [0, 1]. A zero strength leaves its jitter operation out, as torchvision does."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        count = images.shape[0]
        operations = []  # (function, per-sample factors) in torchvision's fn_idx numbering
        for strength, function in (
            (self.brightness, adjust_brightness),
            (self.contrast, adjust_contrast),
            (self.saturation, adjust_saturation),
        ):
            operations.append((function, _uniform(count, max(0.0, 1 - strength), 1 + strength)) if strength else None)
        operations.append((adjust_hue, _uniform(count, -self.hue, self.hue)) if self.hue else None)
        jittered = _bernoulli(count, self.jitter_p)
        order = torch.argsort(torch.rand(count, 4), dim=1)  # a random permutation of the 4 operations per sample
        for slot in range(4):
            for index, operation in enumerate(operations):
                chosen = jittered & (order[:, slot] == index)
                if operation is None or not bool(chosen.any()):
                    continue
                function, factors = operation
                mask = chosen.to(images.device).view(-1, 1, 1, 1)
                images = torch.where(mask, function(images, factors), images)
        if self.grayscale_p:
            mask = _bernoulli(count, self.grayscale_p).to(images.device).view(-1, 1, 1, 1)
            images = torch.where(mask, grayscale(images).expand_as(images), images)
        if self.blur_p:
            mask = _bernoulli(count, self.blur_p).to(images.device).view(-1, 1, 1, 1)
            sigmas = _uniform(count, *self.blur_sigma)
            images = torch.where(mask, gaussian_blur(images, self.blur_kernel, sigmas), images)
        return images
