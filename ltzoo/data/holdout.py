"""A balanced validation split held out from the training images, for data that comes without one.

ltzoo's rule (no paper fixes one): about a tenth of the training set goes to val, the same number K
from every class (K = round(0.1 * N / C), at least 1), but no class gives more than a fifth of its
images, and a class with fewer than 3 images gives none (it has too little to learn from already).
So val is balanced wherever the counts allow, and the tail keeps most of its few images. The draw is
seeded, so rebuilding the dataset (for ``ltzoo eval`` or an export) holds out the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VAL_FRACTION = 0.1
MAX_CLASS_SHARE_DIVISOR = 5  # a class gives at most n // 5 images
MIN_IMAGES_FOR_VAL = 3  # below this a class keeps all its images for training
HOLDOUT_SEED = 0


def holdout_sizes(class_counts: Sequence[int]) -> list[int]:
    """Images each class gives to val (see the module docstring)."""
    total, num_classes = sum(class_counts), len(class_counts)
    target = max(1, round(VAL_FRACTION * total / max(num_classes, 1)))
    return [min(target, max(n // MAX_CLASS_SHARE_DIVISOR, 1 if n >= MIN_IMAGES_FOR_VAL else 0)) for n in class_counts]


def hold_out(labels: Sequence[int], num_classes: int, seed: int = HOLDOUT_SEED) -> tuple[list[int], list[int]]:
    """``(train_indices, val_indices)`` into ``labels``, both sorted; val takes :func:`holdout_sizes` per class."""
    labels_array = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels_array, minlength=num_classes).tolist()
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for cls, size in enumerate(holdout_sizes(counts)):
        members = np.flatnonzero(labels_array == cls)
        val.extend(rng.permutation(members)[:size].tolist())
    val_set = set(val)
    return [i for i in range(len(labels_array)) if i not in val_set], sorted(val)
