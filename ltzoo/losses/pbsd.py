"""PBSD: patch-based self-distillation (Xuan & Zhang, AAAI 2024), the second loss of DSCL + PBSD.

For L boxes inside the query view of each image:

- the **teacher** feature of a box is ROI-aligned (2x2) from the last feature map of the whole
  query view, mean-pooled, passed through the projection head and L2-normalised
  (:func:`roi_patch_features`);
- the **student** feature is the same box cropped from the view, resized (64x64 at paper scale),
  augmented and passed through the whole query encoder and head;
- both are compared with the image's own key and the queue; the teacher's softmax at temperature
  tau is the (detached) soft target of the student's::

      L = mean_{i, j} [ -sum_t p_t(c_ij) log q_t(s_ij) ],  t in {k_i} + queue

As ``SY-Xuan/DSCL: dscl/DSCL.py::PBSDLoss`` (the same-class mask it computes is never used, so it is
left out). Departures: only the filled part of the queue is passed in (see ``dscl.py``), and ROI
alignment uses ``aligned=True`` (see :func:`roi_patch_features`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from ltzoo.errors import BadHyperParameterError
from ltzoo.precision import full_precision

# The official ROIAlign output size; the 2x2 cells are then averaged.
ROI_OUTPUT_SIZE = (2, 2)


def roi_patch_features(feature_map: torch.Tensor, boxes: torch.Tensor, image_size: int) -> torch.Tensor:
    """Average features of the boxes: (B, C, h, w) map and (B, L, 4) boxes -> (B, L, C).

    Boxes are ``[x1, y1, x2, y2]`` in pixels of the (square) view of side ``image_size`` that made
    the map, so the scale is ``w / image_size`` (1/32 for ResNet-50 at 224, 1/4 for ResNet-32).
    Departure: the official code uses torchvision's default ``aligned=False``, which maps pixel x to
    feature coordinate x * scale although feature cell c is centred on pixel (c + 0.5) / scale, so it
    samples half a cell below and right of the box; ``aligned=True`` subtracts that half cell.
    """
    batch, num_boxes = boxes.shape[:2]
    scale = feature_map.shape[-1] / float(image_size)
    pooled = roi_align(
        feature_map, list(boxes.to(feature_map.dtype).unbind(0)), ROI_OUTPUT_SIZE, spatial_scale=scale, aligned=True
    )
    return pooled.mean(dim=(2, 3)).reshape(batch, num_boxes, -1)


def _logits_against_key_and_queue(
    features: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(B, L, D) features -> (B, L, 1 + K) logits: column 0 is the image's own key, then the queue."""
    own = (features * keys.unsqueeze(1)).sum(dim=-1, keepdim=True)
    others = features @ queue.to(features.dtype).T
    return torch.cat([own, others], dim=-1) / temperature


@full_precision
def pbsd_loss(
    teacher: torch.Tensor, student: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """Soft-target cross-entropy from teacher to student patch features.

    ``teacher``, ``student`` (B, L, D) L2-normalised; ``keys`` (B, D) the images' keys; ``queue``
    (K, D) the filled part of the queue. No gradient reaches the teacher (the target is detached).
    """
    if temperature <= 0:
        raise BadHyperParameterError(f"PBSD temperature must be > 0, got {temperature}")
    if teacher.shape != student.shape:
        raise ValueError(f"PBSD teacher {tuple(teacher.shape)} and student {tuple(student.shape)} shapes differ")
    keys = keys.detach()
    queue = queue.detach()
    target = F.softmax(_logits_against_key_and_queue(teacher.detach(), keys, queue, temperature), dim=-1)
    log_q = F.log_softmax(_logits_against_key_and_queue(student, keys, queue, temperature), dim=-1)
    return -(target * log_q).sum(dim=-1).mean()
