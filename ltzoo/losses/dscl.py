"""DSCL: the decoupled supervised contrastive loss (Xuan & Zhang, AAAI 2024, arXiv 2403.06151).

The anchors are the L2-normalised query projections z_i of a batch. The candidates are the other
queries, the keys (the second view, from the momentum encoder) and the feature queue. With
p(t | i) = softmax over the candidates of z_t . z_i / tau (the anchor itself left out), the loss is::

    L_i = -[ alpha * log p(i+ | i) + (1 - alpha) / |P_i| * sum_{t in P_i} log p(t | i) ]

where i+ is the anchor's own key and P_i the other same-class candidates. Its optimum puts
p(i+ | i) = alpha whatever the class size, while SCL (equal weights 1/(|P_i| + 1), the special case
``alpha="scl"``) puts it at 1/(|P_i| + 1), which favours the own view of tail samples.

Following ``SY-Xuan/DSCL: dscl/DSCL.py::DSCLLoss``: the loss is ``sum w log p / sum w`` over the
positives, so an anchor with no other positive falls back to ``-log p(i+ | i)``. The official code
weighs the own key 1 and every other positive ``beta / |P_i|`` (``--contrastive_beta 8``), which is
``alpha = 1 / (1 + beta)`` here (:func:`ltzoo.recipes.dscl.beta_to_alpha`). Its ``tau / base_tau`` factor is 1 and is
left out. Departure: the official candidates include the queue's never-filled slots (random features
with random labels); here the caller passes only the filled part (see ``ltzoo.models.momentum``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ltzoo.errors import BadHyperParameterError
from ltzoo.precision import full_precision

# ``alpha="scl"``: the own view weighs as much as each other positive, i.e. the plain SCL loss.
SCL_ALPHA = "scl"
Alpha = float | torch.Tensor | str


def _check_alpha(alpha: Alpha) -> None:
    if isinstance(alpha, str):
        if alpha != SCL_ALPHA:
            raise BadHyperParameterError(f"DSCL alpha must be a number in (0, 1] or {SCL_ALPHA!r}, got {alpha!r}")
        return
    values = torch.as_tensor(alpha, dtype=torch.float64)
    if not bool(((values > 0) & (values <= 1)).all()):
        raise BadHyperParameterError(
            "DSCL alpha must be in (0, 1] (the official beta = 8 is alpha = 1/9, ltzoo.recipes.dscl.beta_to_alpha), "
            f"got {alpha}"
        )


def dscl_weights(positives: torch.Tensor, own: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """Per-candidate weights: ``alpha`` on the own view, ``(1 - alpha) / |P|`` on each other positive.

    ``positives`` (B, N) marks the other same-class candidates (not the own view, not the anchor),
    ``own`` (B, N) marks the own view. ``alpha`` is a number, a (B,) tensor, or ``"scl"``, which
    gives every positive (own view included) the weight 1 / (|P| + 1).
    """
    _check_alpha(alpha)
    positives = positives.float()
    num_positives = positives.sum(dim=1, keepdim=True)
    if isinstance(alpha, str):
        alpha_col = 1.0 / (num_positives + 1.0)
    else:
        alpha_col = torch.as_tensor(alpha, dtype=positives.dtype, device=positives.device).reshape(-1, 1)
    share = (1.0 - alpha_col) / num_positives.clamp(min=1.0)
    return own.float() * alpha_col + positives * share


def weighted_contrastive_nll(logits: torch.Tensor, weights: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum_t w_t log p_t / sum_t w_t``, the softmax taken over ``candidates`` only.

    ``logits``, ``weights`` (B, N); ``candidates`` (B, N) bool, False for columns outside the softmax
    (the anchor itself). Every row needs a positive weight on some candidate.
    """
    logits = logits.masked_fill(~candidates, float("-inf"))
    log_prob = F.log_softmax(logits, dim=1)
    # 0 * -inf would be NaN: columns outside the softmax carry no weight, so drop them explicitly.
    weighted = torch.where(weights > 0, weights * log_prob, torch.zeros_like(log_prob))
    return -(weighted.sum(dim=1) / weights.sum(dim=1)).mean()


@full_precision
def dscl_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    queue: torch.Tensor,
    queue_labels: torch.Tensor,
    alpha: Alpha,
    temperature: float = 0.07,
) -> torch.Tensor:
    """The DSCL loss of a batch.

    ``queries`` and ``keys`` (B, D) are L2-normalised projections of the two views of the same B
    images (keys without gradient), ``labels`` (B,); ``queue`` (K, D) and ``queue_labels`` (K,) are
    the filled part of the memory queue (K may be 0).
    """
    if temperature <= 0:
        raise BadHyperParameterError(f"DSCL temperature must be > 0, got {temperature}")
    batch = queries.shape[0]
    candidates = torch.cat([queries, keys, queue.to(queries.dtype)], dim=0)
    candidate_labels = torch.cat([labels, labels, queue_labels.to(labels.dtype)], dim=0)
    logits = queries @ candidates.T / temperature

    rows = torch.arange(batch, device=queries.device)
    is_anchor = torch.zeros_like(logits, dtype=torch.bool)
    is_anchor[rows, rows] = True
    own = torch.zeros_like(is_anchor)
    own[rows, rows + batch] = True
    same_class = labels.view(-1, 1) == candidate_labels.view(1, -1)
    positives = same_class & ~is_anchor & ~own

    weights = dscl_weights(positives, own, alpha)
    return weighted_contrastive_nll(logits, weights, ~is_anchor)


class DSCLLoss(nn.Module):
    """:func:`dscl_loss` with its hyper-parameters fixed (alpha, temperature)."""

    def __init__(self, alpha: Alpha = 1.0 / 9.0, temperature: float = 0.07) -> None:
        super().__init__()
        _check_alpha(alpha)
        if temperature <= 0:
            raise BadHyperParameterError(f"DSCL temperature must be > 0, got {temperature}")
        self.alpha = alpha
        self.temperature = temperature

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        labels: torch.Tensor,
        queue: torch.Tensor,
        queue_labels: torch.Tensor,
    ) -> torch.Tensor:
        return dscl_loss(queries, keys, labels, queue, queue_labels, self.alpha, self.temperature)
