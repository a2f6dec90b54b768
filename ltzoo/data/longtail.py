"""Long-tail profiles and the many/medium/few split of classes by training count."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ltzoo.errors import BadHyperParameterError

# The OLTR / Decoupling convention (classifier-balancing utils.py::shot_acc): many > 100 training
# images, few < 20, medium in between (inclusive).
DEFAULT_MANY_THRESHOLD = 100
DEFAULT_FEW_THRESHOLD = 20


def exponential_profile(n_max: int, imbalance_ratio: float, num_classes: int) -> list[int]:
    """n_i = floor(n_max * IR^(-i / (C - 1))) for i = 0..C-1 (the LDAM-DRW CIFAR-LT profile)."""
    if num_classes < 2 or n_max < 1 or imbalance_ratio < 1:
        raise BadHyperParameterError("profile needs num_classes >= 2, n_max >= 1 and imbalance_ratio >= 1")
    return [int(math.floor(n_max * imbalance_ratio ** (-i / (num_classes - 1)))) for i in range(num_classes)]


@dataclass
class ShotSplit:
    """Which classes are many/medium/few-shot, and by which rule. Stored with every result."""

    many: list[int]
    medium: list[int]
    few: list[int]
    many_threshold: int = DEFAULT_MANY_THRESHOLD
    few_threshold: int = DEFAULT_FEW_THRESHOLD
    rule: str = "absolute"  # "absolute" (>many / <few training images) or "terciles" (issue: own data)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShotSplit:
        return cls(**data)

    def thresholds(self) -> dict[str, Any]:
        return {"many": self.many_threshold, "few": self.few_threshold, "rule": self.rule}


SHOT_RULES = ("absolute", "terciles")


def tercile_thresholds(class_counts: Sequence[int]) -> tuple[int, int]:
    """(many, few) thresholds that put the classes, ranked by count, into thirds (sizes as
    ``numpy.array_split``: the extra classes go to many, then medium).

    With counts sorted descending s_0 >= s_1 >= ..., many > s_a and few < s_b with a = ceil(C / 3)
    and b = ceil(2C / 3) - 1; classes tied with a boundary count fall into medium. For small datasets
    where the absolute rule leaves a group empty (ltzoo's own rule; the OLTR convention is absolute).
    """
    if len(class_counts) < 2:
        raise BadHyperParameterError(f"the terciles rule needs at least 2 classes, got {len(class_counts)}")
    ranked = sorted((int(n) for n in class_counts), reverse=True)
    size = len(ranked)
    return ranked[math.ceil(size / 3)], ranked[math.ceil(2 * size / 3) - 1]


def shot_split(
    class_counts: Sequence[int],
    many_threshold: int = DEFAULT_MANY_THRESHOLD,
    few_threshold: int = DEFAULT_FEW_THRESHOLD,
    rule: str = "absolute",
) -> ShotSplit:
    """Split classes by training count: many (> many_threshold), few (< few_threshold), medium otherwise.

    ``rule="terciles"`` ignores the given thresholds and uses :func:`tercile_thresholds`.
    """
    if rule not in SHOT_RULES:
        raise BadHyperParameterError(f"unknown shot rule {rule!r}; use one of {SHOT_RULES}")
    if rule == "terciles":
        many_threshold, few_threshold = tercile_thresholds(class_counts)
    if few_threshold > many_threshold:
        raise BadHyperParameterError(f"few threshold {few_threshold} is above many threshold {many_threshold}")
    many = [c for c, n in enumerate(class_counts) if n > many_threshold]
    few = [c for c, n in enumerate(class_counts) if n < few_threshold]
    medium = [c for c, n in enumerate(class_counts) if few_threshold <= n <= many_threshold]
    return ShotSplit(many, medium, few, many_threshold, few_threshold, rule)


def imbalance_factor(class_counts: Sequence[int]) -> float:
    nonzero = [n for n in class_counts if n > 0]
    return float(max(nonzero)) / float(min(nonzero)) if nonzero else 0.0
