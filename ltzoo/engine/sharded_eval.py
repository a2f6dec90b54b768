"""Evaluation split over the processes of a run: each scores every ``world_size``-th image, the
predictions are gathered, and every process builds the same report from all of them.

The report is the evaluator's own (:func:`~ltzoo.engine.evaluator.accuracy_report`) on the
predictions of the whole split in dataset order, so it equals a one-process
:func:`~ltzoo.engine.evaluator.evaluate_split`, and every process gets the same numbers (which the
trainer needs: all processes must agree on the best epoch). In one process it *is* ``evaluate_split``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ltzoo.engine import distributed
from ltzoo.engine.evaluator import Predictor, accuracy_report, evaluate_split, predict


def _gather_in_dataset_order(values: np.ndarray, total: int) -> np.ndarray:
    """Shard r holds items r, r + W, r + 2W, ...; pad every shard to one length, gather, interleave."""
    world = distributed.world_size()
    per_rank = -(-total // world)
    padded = torch.full((per_rank,), -1, dtype=torch.long)
    padded[: len(values)] = torch.from_numpy(values.astype(np.int64))
    stacked = torch.stack(distributed.all_gather(padded))  # (W, per_rank): [r, j] is item j * W + r
    return stacked.t().reshape(-1)[:total].numpy()


def evaluate_split_sharded(predictor: Predictor, data: Any, split: str, batch_size: int = 256) -> dict[str, Any]:
    """:func:`~ltzoo.engine.evaluator.evaluate_split`, with the images shared out over the process group."""
    if distributed.world_size() == 1:
        return evaluate_split(predictor, data, split, batch_size)
    from ltzoo.data.transforms import eval_transform

    dataset = data.split(split)
    total = len(dataset)
    shard = Subset(dataset, range(distributed.rank(), total, distributed.world_size()))
    if len(shard):
        logits, targets = predict(predictor, shard, eval_transform(data.info), batch_size, desc=f"eval {split}")
        predictions = logits.argmax(axis=1)
    else:  # a split smaller than the process group leaves some processes nothing to score
        predictions = targets = np.zeros(0, dtype=np.int64)
    result = accuracy_report(
        _gather_in_dataset_order(predictions, total),
        _gather_in_dataset_order(targets, total),
        data.num_classes,
        data.shots,
    )
    result["split"] = split
    return result
