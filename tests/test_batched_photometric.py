"""The batched photometric augmentation of DSCL's views equals torchvision's, sample by sample."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ltzoo.methods import batched_photometric as bp


def _images(channels: int, count: int = 6, side: int = 14) -> torch.Tensor:
    return torch.rand(count, channels, side, side, generator=torch.Generator().manual_seed(channels))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "name,reference,low,high",
    [
        ("adjust_brightness", TF.adjust_brightness, 0.6, 1.4),
        ("adjust_contrast", TF.adjust_contrast, 0.6, 1.4),
        ("adjust_saturation", TF.adjust_saturation, 0.6, 1.4),
        ("adjust_hue", TF.adjust_hue, -0.1, 0.1),
    ],
)
def test_each_jitter_operation_matches_torchvision_per_sample(channels, name, reference, low, high):
    images = _images(channels)
    factors = torch.linspace(low, high, len(images))
    batched = getattr(bp, name)(images, factors)
    expected = torch.stack([reference(image, float(f)) for image, f in zip(images, factors)])
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,kernel", [(1, 3), (3, 5)])
def test_blur_matches_torchvision_per_sample(channels, kernel):
    images = _images(channels, side=16)
    sigmas = torch.linspace(0.1, 2.0, len(images))
    batched = bp.gaussian_blur(images, kernel, sigmas)
    expected = torch.stack([TF.gaussian_blur(image, [kernel, kernel], [float(s)]) for image, s in zip(images, sigmas)])
    torch.testing.assert_close(batched, expected, rtol=1e-5, atol=1e-5)


def test_probabilities_and_ranges():
    images = _images(3, count=4000, side=4)
    torch.manual_seed(0)
    assert torch.equal(bp.BatchedPhotometric(jitter_p=0.0)(images), images)  # nothing applied
    out = bp.BatchedPhotometric(jitter_p=0.8, grayscale_p=0.0)(images)
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert abs(changed - 0.8) < 0.03  # each sample draws its own coin
    gray = bp.BatchedPhotometric(jitter_p=0.0, grayscale_p=0.2)(images)
    is_gray = ((gray[:, 0] == gray[:, 1]) & (gray[:, 1] == gray[:, 2])).flatten(1).all(dim=1).float().mean().item()
    assert abs(is_gray - 0.2) < 0.03
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # Per-sample factors: two samples never share a brightness unless by chance.
    bright = bp.BatchedPhotometric(contrast=0.0, saturation=0.0, jitter_p=1.0)(torch.full((50, 1, 2, 2), 0.5))
    assert bright.flatten(1)[:, 0].unique().numel() > 40
    assert 0.3 - 1e-6 <= float(bright.min()) and float(bright.max()) <= 0.7 + 1e-6  # 0.5 x [0.6, 1.4]


def test_patch_crops_cut_the_boxes_out_of_the_views():
    from ltzoo.methods.dscl_views import crop_patches

    views = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    # A 14 x 14 box at (x 3, y 5) needs no resampling: the crop is exactly those pixels.
    boxes = torch.tensor([[[3.0, 5.0, 17.0, 19.0]], [[0.0, 0.0, 14.0, 14.0]]])
    crops = crop_patches(views, boxes, 14)
    assert crops.shape == (2, 1, 1, 14, 14)
    torch.testing.assert_close(crops[0, 0], views[0, :, 5:19, 3:17])
    torch.testing.assert_close(crops[1, 0], views[1, :, 0:14, 0:14])
    # A 28 x 28 box shrunk to 14 x 14 averages 2 x 2 blocks (antialiased, like a box filter).
    whole = crop_patches(views, torch.tensor([[[0.0, 0.0, 28.0, 28.0]]] * 2), 14)
    torch.testing.assert_close(whole[:, 0], torch.nn.functional.avg_pool2d(views, 2))


def test_padcrop_views_keep_the_object_size():
    from ltzoo.data.spec import dataset_spec
    from ltzoo.data.transforms import contrastive_crop
    from ltzoo.errors import BadHyperParameterError
    from ltzoo.methods.dscl_views import DSCLViews

    info = dataset_spec("fmnist_lt")
    image = torch.randint(1, 256, (1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(0)
    query, key = DSCLViews(info, view_crop="padcrop", flip_p=0.0)(image)
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    shifts = [
        (dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[:, dy : dy + 28, dx : dx + 28], query)
    ]
    assert len(shifts) == 1  # a translated copy at full size, nothing resized
    with pytest.raises(BadHyperParameterError, match="view crop 'zoom'"):
        contrastive_crop(info, "zoom", 0.2)
