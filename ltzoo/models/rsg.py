"""RSG, the Rare-class Sample Generator (Wang et al., CVPR 2021), a training-only module.

Follows Jianf-Wang/RSG ``Imbalanced_Classification/models/RSG.py``. RSG sits on a feature map
``F`` (B, C, H, W) after one backbone stage and

1. **centre estimation**: every class y has ``n_center`` learnable centres ``c_{y,k}`` in R^C
   (broadcast over H x W) and a per-class soft assignment
   ``gamma = softmax(W_y . GAP(F) + b_y)``; the centre loss is
   ``sum_{n,k} gamma_{n,k} ||F_n - c_{y_n,k}||^2 / B``;
2. **contrastive module**: ``Conv1x1(2C->d) -> ReLU -> Conv3x3(d->d) -> GAP -> Linear(d->2)``
   predicts whether two maps (concatenated on channels) share a class; it is trained on the first
   half of the batch against the second half while ``epoch <= epoch_thresh``. The centre loss plus
   this pair cross-entropy is CESC;
3. **vector transformation**: ``T = Conv3x3(C->C)`` maps a head sample's variation
   ``v = F_head - c_head`` (centre picked by argmax gamma) to ``T(v)``;
4. **generation** (only when ``epoch > epoch_thresh``): ``F_new = F_tail + T(v)`` carries the tail
   sample's label and is appended to the batch; the MV loss is
   ``CE(frozen contrastive([F_head, T(v)]), "different") + (sum | ||T(v)|| - ||v|| |
   + sum | n(F_tail - c_tail) * n(T(v)) - 1 |) / P``, averaged over segments.

The backbone map is detached before it enters RSG (as in the official code), so CESC and MV train
only RSG's own parameters; the classifier loss on the generated maps trains ``T`` and the layers
after the insertion point.

Departures from the official code (each also noted where it happens):

* the squared distance ``||F - c||^2`` is expanded as ``sum F^2 - 2 c.sum_hw F + HW ||c||^2`` instead
  of materialising a (B, n_center, C, H, W) tensor (same value; ImageNet-size maps would need GBs);
* the norm and alignment terms of MV use per-location channel vectors (``(B, C, H, W)`` ->
  ``(B*H*W, C)``). The official ``.view(-1, C)`` on a contiguous NCHW tensor never gives channel
  vectors: each row is C consecutive memory elements, i.e. a run along W then H *within* one
  channel's map (CIFAR, C = 32 on 16 x 16 maps: two image rows of one channel), running on into the
  next channel's map when ``H*W`` is not a multiple of C (ImageNet-LT, C = 1024 on 14 x 14: about
  five channels' maps). The audit measured MV 6556.9 (official) vs 6548.5 (ltzoo) on the same inputs;
  CESC, the generated maps and the expanded targets are identical;
* pooling is a global mean instead of ``AvgPool2d(H)`` so the module does not need the map size;
* an odd batch drops its last sample from the pair term. The official code cannot take one: its
  halves have B//2 and B - B//2 rows, and ``torch.cat`` of the pair raises a shape error (its
  loaders drop the last batch and use even batch sizes, so it never meets one);
* ``segment`` is capped so that every segment has a full slice of samples (the official code breaks
  for ``transfer_strength > 1``);
* no ``.cuda()`` / ``.double()``: the module runs on whatever device its input is on.

Every piece of RSG state is a parameter updated by gradient (no running statistics), so under DDP
its gradients all-reduce like any other parameter and the replicas stay identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ltzoo.errors import BadHyperParameterError
from ltzoo.precision import full_precision

# The contrastive module's labels: the official code uses torch.eq(target1, target2).long().
PAIR_DIFFERENT, PAIR_SAME = 0, 1


def head_classes_by_count(class_counts: Sequence[int], head_ratio: float = 0.2) -> list[int]:
    """The ``int(num_classes * head_ratio)`` most frequent classes (ties: lower index first).

    Mirrors the ImageNet-LT / iNat / Places scripts (repeated ``index(max(...))``); on CIFAR-LT,
    whose classes are sorted by count, it equals the official ``range(int(C * ratio))``.
    """
    num_head = int(len(class_counts) * head_ratio)
    if not 1 <= num_head < len(class_counts):
        raise BadHyperParameterError(
            f"RSG head_ratio {head_ratio} gives {num_head} head classes out of {len(class_counts)}; "
            "it must leave at least one head and one tail class (the official value is 0.2)"
        )
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    return sorted(order[:num_head])


@dataclass
class RSGOutput:
    features: torch.Tensor  # (B + G, C, H, W): the input map, then G generated tail maps
    targets: torch.Tensor  # (B + G,): the expanded targets
    cesc: torch.Tensor  # scalar
    mv: torch.Tensor  # scalar (0 when nothing was generated)
    num_generated: int


class _PairClassifier(nn.Module):
    """The contrastive module: same-class / different-class logits for a channel-concatenated pair."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(2 * channels, dim, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=3, padding=1),
        )
        self.fc = nn.Linear(dim, 2)

    def forward(self, pair_maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(pair_maps).mean(dim=(2, 3)))


class RSG(nn.Module):
    """Rare-class Sample Generator; see the module docstring. Call ``rsg(fmap, targets, epoch)``."""

    def __init__(
        self,
        num_classes: int,
        channels: int,
        head_classes: Sequence[int],
        n_center: int = 15,
        contrastive_dim: int = 256,
        transfer_strength: float = 1.0,
        epoch_thresh: int = 159,
    ) -> None:
        super().__init__()
        head_classes = sorted(set(int(c) for c in head_classes))
        if n_center < 1 or contrastive_dim < 1 or channels < 1:
            raise BadHyperParameterError(
                f"RSG needs n_center, contrastive_dim and channels >= 1 (got {n_center}, {contrastive_dim}, {channels})"
            )
        if not transfer_strength > 0:
            raise BadHyperParameterError(f"RSG transfer_strength must be > 0, got {transfer_strength} (official 1.0)")
        if epoch_thresh < -1:
            raise BadHyperParameterError(f"RSG epoch_thresh must be >= -1, got {epoch_thresh}")
        if not head_classes or not 0 <= head_classes[0] <= head_classes[-1] < num_classes:
            raise BadHyperParameterError(f"RSG head classes {head_classes} must be non-empty class ids < {num_classes}")
        if len(head_classes) >= num_classes:
            raise BadHyperParameterError("RSG needs at least one tail class (head_classes covers every class)")
        self.num_classes = num_classes
        self.channels = channels
        self.n_center = n_center
        self.transfer_strength = float(transfer_strength)
        self.epoch_thresh = int(epoch_thresh)
        self.register_buffer("head_classes", torch.tensor(head_classes, dtype=torch.long), persistent=False)

        # Official init: assignment weights randn, biases ones, centres zeros.
        self.assign_weight = nn.Parameter(torch.randn(num_classes, channels, n_center))
        self.assign_bias = nn.Parameter(torch.ones(num_classes, n_center))
        self.centres = nn.Parameter(torch.zeros(num_classes, n_center, channels))
        self.vector_transform = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.pair_classifier = _PairClassifier(channels, contrastive_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight)
                nn.init.zeros_(module.bias)

    # ----- schedule ---------------------------------------------------------------------------
    def trains_pair_classifier(self, epoch: int) -> bool:
        return epoch <= self.epoch_thresh

    def generates(self, epoch: int) -> bool:
        return epoch > self.epoch_thresh

    # ----- pieces -----------------------------------------------------------------------------
    def assignment(self, fmap: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Soft assignment gamma (N, n_center) of each map to its own class's centres."""
        pooled = fmap.mean(dim=(2, 3))
        logits = torch.bmm(pooled.unsqueeze(1), self.assign_weight[targets]).squeeze(1) + self.assign_bias[targets]
        return logits.softmax(dim=1)

    @full_precision
    def centre_loss(self, fmap: torch.Tensor, targets: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """sum_{n,k} gamma_{n,k} ||F_n - c_{y_n,k}||^2 / N, with the centre broadcast over H x W."""
        num, _, height, width = fmap.shape
        centres = self.centres[targets]  # (N, K, C)
        sum_sq = fmap.pow(2).sum(dim=(1, 2, 3))  # (N,)
        spatial_sum = fmap.sum(dim=(2, 3))  # (N, C)
        # Expanded square instead of the official (N, K, C, H, W) broadcast: same value, O(N*K*C) memory.
        dist = sum_sq.unsqueeze(1) - 2 * torch.einsum("nkc,nc->nk", centres, spatial_sum)
        dist = dist + height * width * centres.pow(2).sum(dim=2)
        return (gamma * dist).sum() / num

    @full_precision
    def pair_loss(self, fmap: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the contrastive module on (first half, second half) pairs of the batch."""
        half = fmap.shape[0] // 2
        if half == 0:
            return fmap.new_zeros(())
        # An odd batch drops its last sample here (the official torch.cat of unequal halves raises).
        pairs = torch.cat([fmap[:half], fmap[half : 2 * half]], dim=1)
        same = (targets[:half] == targets[half : 2 * half]).long()
        return F.cross_entropy(self.pair_classifier(pairs), same)

    def _frozen_pair_logits(self, pair_maps: torch.Tensor) -> torch.Tensor:
        # MV must not train the contrastive module (the official code sets requires_grad=False);
        # detached parameters keep the gradient flowing into T(v) only.
        params = {name: p.detach() for name, p in self.pair_classifier.named_parameters()}
        return functional_call(self.pair_classifier, params, (pair_maps,))

    def _picked_centre(self, fmap: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The centre with the largest assignment for each map, (N, C, 1, 1), without gradient."""
        with torch.no_grad():
            nearest = self.assignment(fmap, targets).argmax(dim=1)
            return self.centres[targets, nearest].detach()[:, :, None, None]

    @full_precision
    def transfer(
        self, head_maps: torch.Tensor, head_targets: torch.Tensor, tail_maps: torch.Tensor, tail_targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate ``tail + T(head - c_head)`` for paired rows; return (new maps, MV loss)."""
        variation = head_maps - self._picked_centre(head_maps, head_targets)
        transformed = self.vector_transform(variation)
        generated = tail_maps + transformed

        pair_logits = self._frozen_pair_logits(torch.cat([head_maps, transformed], dim=1))
        different = torch.full((head_maps.shape[0],), PAIR_DIFFERENT, dtype=torch.long, device=head_maps.device)
        contrast = F.cross_entropy(pair_logits, different)

        # Per-location channel vectors. The official .view(-1, C) on NCHW memory groups spatial runs
        # within a channel instead, in every configuration (see the module docstring).
        def locations(x: torch.Tensor) -> torch.Tensor:
            return x.permute(0, 2, 3, 1).reshape(-1, self.channels)

        norm_term = (locations(transformed).norm(dim=1) - locations(variation).norm(dim=1)).abs().sum()
        tail_direction = F.normalize(locations(tail_maps - self._picked_centre(tail_maps, tail_targets)), dim=1)
        align_term = (tail_direction * F.normalize(locations(transformed), dim=1) - 1).abs().sum()
        return generated, contrast + (norm_term + align_term) / tail_maps.shape[0]

    # ----- forward ----------------------------------------------------------------------------
    def forward(self, fmap: torch.Tensor, targets: torch.Tensor, epoch: int) -> RSGOutput:
        detached = fmap.detach()  # CESC and MV never reach the backbone (official)
        gamma = self.assignment(detached, targets)
        cesc = self.centre_loss(detached, targets, gamma)
        if self.trains_pair_classifier(epoch):
            cesc = cesc + self.pair_loss(detached, targets)

        mv = fmap.new_zeros(())
        features, expanded = [fmap], [targets]
        is_head = torch.isin(targets, self.head_classes)
        head_maps, head_targets = detached[is_head], targets[is_head]
        tail_maps, tail_targets = detached[~is_head], targets[~is_head]
        num_head, num_tail = head_maps.shape[0], tail_maps.shape[0]
        if self.generates(epoch) and num_head > 0 and num_tail > 0:
            if num_head >= num_tail:
                # Each tail sample gets `segment` copies, each from a different slice of heads.
                segment = max(1, min(int(num_head * self.transfer_strength / num_tail), num_head // num_tail))
                slices = [(slice(j * num_tail, (j + 1) * num_tail), slice(None)) for j in range(segment)]
            else:
                # More tails than heads: every head sample transfers to `segment` slices of tails.
                segment = max(1, min(int(num_tail * self.transfer_strength / num_head), num_tail // num_head))
                slices = [(slice(None), slice(j * num_head, (j + 1) * num_head)) for j in range(segment)]
            for head_part, tail_part in slices:
                new_maps, mv_part = self.transfer(
                    head_maps[head_part], head_targets[head_part], tail_maps[tail_part], tail_targets[tail_part]
                )
                features.append(new_maps)
                expanded.append(tail_targets[tail_part])
                mv = mv + mv_part
            mv = mv / segment
        num_generated = sum(t.shape[0] for t in expanded[1:])
        return RSGOutput(torch.cat(features), torch.cat(expanded), cesc, mv, num_generated)
