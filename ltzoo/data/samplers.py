"""Instance, class-balanced, square-root and effective-number samplers, sharded by rank like
``DistributedSampler``.

Each epoch's global index sequence is drawn from a generator seeded by (seed, epoch), so every rank
draws the same sequence and takes its ``rank::world_size`` slice; a resumed run redraws exactly the
same order.

Every kind but "instance" draws with replacement: first a class from the kind's class distribution,
then an instance uniformly within it. For a per-sample weight that depends on the class only (as in
the "effective_number" kind) this is the same distribution as the official ``torch.multinomial`` over
per-sample weights, drawn from the run's seeded generator instead of the global one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from ltzoo.errors import BadHyperParameterError

SAMPLER_KINDS = ("instance", "class_balanced", "sqrt", "effective_number")

# The beta of the "effective_number" kind, hard-coded in the official ImbalancedDatasetSampler
# (Jianf-Wang/RSG and kaidic/LDAM-DRW ``utils.py``).
EFFECTIVE_NUMBER_BETA = 0.9999


def effective_number_class_weights(counts: torch.Tensor, beta: float = EFFECTIVE_NUMBER_BETA) -> torch.Tensor:
    """Class probabilities of the official ``ImbalancedDatasetSampler``, float64, summing to 1.

    The official sampler gives every sample of class c the weight ``(1 - beta) / (1 - beta**n_c)`` (one
    over the class's effective number) and draws samples with replacement in proportion to it, so class
    c is drawn with probability proportional to ``n_c (1 - beta) / (1 - beta**n_c)``. That is close to
    uniform over classes for small counts (the factor tends to 1) and grows roughly like
    ``1 + n_c (1 - beta) / 2`` for large ones: at beta 0.9999 a 1,280-image class (ImageNet-LT's largest)
    is drawn 6.5 % more often than a 1-image class, a 4,980-image class (Places-LT) 27 % more often.
    Classes without samples get probability 0.
    """
    counts = counts.double()
    present = counts > 0
    per_sample = torch.zeros_like(counts)
    per_sample[present] = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts[present]))
    weights = counts * per_sample
    return weights / weights.sum()


class LongTailSampler(Sampler[int]):
    """``kind``: "instance" (a permutation), "class_balanced" (uniform class, then uniform instance,
    as DSCL's ``equal_sampling``), "sqrt" (class drawn with probability proportional to sqrt(n_c)), or
    "effective_number" (the official LDAM-DRW / RSG ``ImbalancedDatasetSampler``: with replacement,
    class probability proportional to n_c (1 - beta) / (1 - beta^n_c), beta 0.9999; see
    :func:`effective_number_class_weights`)."""

    def __init__(
        self,
        kind: str,
        targets: Sequence[int],
        num_classes: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_samples: int | None = None,
    ) -> None:
        if kind not in SAMPLER_KINDS:
            raise BadHyperParameterError(f"unknown sampler {kind!r}; choose one of {SAMPLER_KINDS}")
        if not 0 <= rank < world_size:
            raise BadHyperParameterError(f"rank {rank} outside world size {world_size}")
        self.kind = kind
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        targets_t = torch.as_tensor(list(targets), dtype=torch.long)
        self.dataset_size = len(targets_t)
        order = torch.argsort(targets_t, stable=True)
        counts = torch.bincount(targets_t, minlength=num_classes)
        self._by_class = order
        self._class_start = torch.cumsum(counts, 0) - counts
        self._class_count = counts
        present = counts > 0
        if kind == "sqrt":
            weights = counts.double().sqrt()
        elif kind == "effective_number":
            weights = effective_number_class_weights(counts)
        else:
            weights = present.double()
        self._class_weights = weights / weights.sum()
        total = self.dataset_size if num_samples is None else num_samples
        self.num_samples = math.ceil(total / world_size)  # per rank
        self.total_size = self.num_samples * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _global_indices(self) -> torch.Tensor:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.kind == "instance":
            reps = math.ceil(self.total_size / self.dataset_size)
            perms = [torch.randperm(self.dataset_size, generator=generator) for _ in range(reps)]
            return torch.cat(perms)[: self.total_size]
        classes = torch.multinomial(self._class_weights, self.total_size, replacement=True, generator=generator)
        offsets = (
            torch.rand(self.total_size, generator=generator, dtype=torch.float64) * self._class_count[classes]
        ).long()
        return self._by_class[self._class_start[classes] + offsets]

    def __iter__(self) -> Iterator[int]:
        indices = self._global_indices()[self.rank : self.total_size : self.world_size]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples


def build_sampler(
    kind: str,
    targets: Sequence[int],
    num_classes: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_samples: int | None = None,
) -> LongTailSampler:
    return LongTailSampler(kind, targets, num_classes, seed, rank, world_size, num_samples)
