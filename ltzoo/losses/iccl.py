"""ICCL: image interpolation and the centroid-contrastive (centroid retrieval) loss.

ICCL (Tiong et al., arXiv 2110.10048) interpolates an image from a class-agnostic sampler with one
from a class-aware sampler and trains the representation of the mix to retrieve the centroids of
*both* source classes. No official code has been published; only the openings of the full text and of
the patent application (US 2022/0156530 A1) could be read, and they fix no more than that (see
:mod:`ltzoo.methods.iccl`). Everything below is **ltzoo's choice** (``reference/methods.md`` section 2):

- the mix is mixup-style, ``x = lam * x_a + (1 - lam) * x_b`` with ``lam ~ Beta(alpha, alpha)`` drawn
  per sample (``lambda_mode="per_sample"``) or once per batch (``"per_batch"``, as mixup's code);
- the retrieval loss is a softmax over cosine similarities of the mixed projection to *all* class
  centroids at temperature ``tau``, with the two source classes as soft targets of weight
  ``lam`` and ``1 - lam``::

      L = -[ lam * log softmax_k(z . c_k / tau)[y_a] + (1 - lam) * log softmax_k(z . c_k / tau)[y_b] ]

- centroids enter as constants (no gradient flows into the centroid memory);
- classes whose centroid has not been seen yet are left out of the softmax, and a target on such a
  class contributes nothing (early in training with many classes, not every class has been drawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ltzoo.errors import BadHyperParameterError
from ltzoo.precision import full_precision

LAMBDA_MODES = ("per_sample", "per_batch", "none")


@dataclass
class InterpolatedBatch:
    """A mixed batch that keeps both source labels and the mixing weight of every sample."""

    images: torch.Tensor  # (B, C, H, W): lam * x_a + (1 - lam) * x_b
    targets_a: torch.Tensor  # (B,) labels of the class-agnostic (instance) stream
    targets_b: torch.Tensor  # (B,) labels of the class-aware (class-balanced) stream
    lam: torch.Tensor  # (B,) weight of x_a / y_a, float32 in [0, 1]


def sample_lambda(batch_size: int, alpha: float, mode: str, rng: np.random.Generator) -> torch.Tensor:
    """Mixing weights ``lam`` of shape (batch_size,).

    ``mode``:
      - ``"per_sample"``: an independent ``Beta(alpha, alpha)`` draw per sample (ltzoo's default);
      - ``"per_batch"``: one ``Beta(alpha, alpha)`` draw shared by the batch (mixup's official code);
      - ``"none"``: no interpolation. Each sample is *either* x_a or x_b (``lam`` in {0, 1},
        Bernoulli(0.5)), so the model sees the same half-instance / half-class-balanced data mix and
        the same compute as with interpolation; this is the "ICCL without interpolation" ablation.

    A numpy generator (not the global torch RNG) is used so the draws are reproducible from the
    run seed and the epoch, independently of anything else that consumes random numbers.
    """
    if mode not in LAMBDA_MODES:
        raise BadHyperParameterError(f"ICCL lambda_mode {mode!r} not in {LAMBDA_MODES}")
    if mode == "none":
        draws = rng.integers(0, 2, size=batch_size).astype(np.float32)
    else:
        if not alpha > 0:
            raise BadHyperParameterError(f"ICCL interpolation needs alpha > 0 for Beta(alpha, alpha), got {alpha}")
        if mode == "per_sample":
            draws = rng.beta(alpha, alpha, size=batch_size).astype(np.float32)
        else:
            draws = np.full(batch_size, rng.beta(alpha, alpha), dtype=np.float32)
    return torch.from_numpy(draws)


def interpolate_images(
    images_a: torch.Tensor, targets_a: torch.Tensor, images_b: torch.Tensor, targets_b: torch.Tensor, lam: torch.Tensor
) -> InterpolatedBatch:
    """Mix two equally sized batches sample by sample: ``lam * x_a + (1 - lam) * x_b``."""
    if images_a.shape != images_b.shape:
        raise BadHyperParameterError(
            f"ICCL interpolation needs two batches of the same shape, got {tuple(images_a.shape)} and "
            f"{tuple(images_b.shape)}; both samplers must draw the same batch size in lockstep"
        )
    if lam.shape != (images_a.shape[0],):
        raise BadHyperParameterError(f"lam must have shape ({images_a.shape[0]},), got {tuple(lam.shape)}")
    lam = lam.to(device=images_a.device, dtype=torch.float32)
    weight = lam.view(-1, *([1] * (images_a.dim() - 1))).to(images_a.dtype)
    mixed = weight * images_a + (1.0 - weight) * images_b
    return InterpolatedBatch(mixed, targets_a, targets_b, lam)


@full_precision
def interpolated_cross_entropy(
    logits: torch.Tensor, targets_a: torch.Tensor, targets_b: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """Mixup cross-entropy: ``mean_i[lam_i CE(logits_i, a_i) + (1 - lam_i) CE(logits_i, b_i)]``."""
    loss_a = F.cross_entropy(logits, targets_a, reduction="none")
    loss_b = F.cross_entropy(logits, targets_b, reduction="none")
    return (lam * loss_a + (1.0 - lam) * loss_b).mean()


@full_precision
def centroid_contrastive_loss(
    embeddings: torch.Tensor,
    centroids: torch.Tensor,
    targets_a: torch.Tensor,
    targets_b: torch.Tensor,
    lam: torch.Tensor,
    temperature: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """ICCL retrieval loss of the mixed embeddings against the class centroids (mean over the batch).

    ``embeddings`` (B, D) and ``centroids`` (K, D) are L2-normalised here, so the logits are cosine
    similarities divided by ``temperature``. ``valid`` (K,) marks centroids that exist; the others are
    excluded from the softmax and from the targets (a sample whose two targets are both invalid adds 0).
    """
    if not temperature > 0:
        raise BadHyperParameterError(f"ICCL temperature must be > 0, got {temperature}")
    z = F.normalize(embeddings, dim=1)
    c = F.normalize(centroids.detach().to(z.dtype), dim=1)
    logits = z @ c.t() / temperature
    lam = lam.to(logits.dtype)
    weight_a, weight_b = lam, 1.0 - lam
    if valid is not None:
        valid = valid.to(device=logits.device, dtype=torch.bool)
        if not bool(valid.any()):
            return embeddings.sum() * 0.0  # nothing to retrieve yet; keeps the graph connected
        logits = logits.masked_fill(~valid.unsqueeze(0), float("-inf"))
        weight_a = weight_a * valid[targets_a].to(logits.dtype)
        weight_b = weight_b * valid[targets_b].to(logits.dtype)
    log_prob = torch.log_softmax(logits, dim=1)
    # Index before weighting: a masked class has log_prob -inf, and 0 * -inf would be NaN.
    log_prob_a = log_prob.gather(1, targets_a.view(-1, 1)).squeeze(1)
    log_prob_b = log_prob.gather(1, targets_b.view(-1, 1)).squeeze(1)
    zero = torch.zeros_like(log_prob_a)
    log_prob_a = torch.where(weight_a > 0, log_prob_a, zero)
    log_prob_b = torch.where(weight_b > 0, log_prob_b, zero)
    return -(weight_a * log_prob_a + weight_b * log_prob_b).mean()
