"""Two data loaders drawn in lockstep: each step yields one batch of each (ICCL's instance and
class-balanced streams).

The loaders come from the trainer's ``make_loader(sampler_kind, transform)``, which gives every loader
of a stage its own sampler seed (``seed * 100 + stage * 10 + loader number``) and re-seeds all of a
stage's samplers per epoch. So the two streams are independent of each other, yet each is fixed by
(seed, stage, epoch): a resumed run redraws the same pairs. This module only pairs them up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

from ltzoo.errors import BadHyperParameterError


class LockstepLoader:
    """Iterate two loaders together; an epoch ends when the shorter one does.

    The trainer's loaders draw ``len(train set)`` samples per rank in batches of the stage's batch
    size, so both have the same number of batches and the epoch length is the usual one.
    """

    def __init__(self, first: Iterable[Any], second: Iterable[Any]) -> None:
        if isinstance(first, Sized) and isinstance(second, Sized) and min(len(first), len(second)) == 0:
            raise BadHyperParameterError("a lockstep loader needs two non-empty loaders (is the train split empty?)")
        self.first = first
        self.second = second

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return zip(self.first, self.second)

    def __len__(self) -> int:
        if not (isinstance(self.first, Sized) and isinstance(self.second, Sized)):
            raise TypeError("LockstepLoader has a length only when both loaders do")
        return min(len(self.first), len(self.second))
