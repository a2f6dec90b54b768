"""The per-split gate: every exported variant scored by the same evaluator as PyTorch, on val and test.

An exported graph can match PyTorch on random tensors and still lose the tail (a dynamo ResNet
export scored 0% on ImageNet, pytorch #169178; Optimum only warns on parity failures). So each
variant's ORT session goes through :func:`ltzoo.engine.evaluator.evaluate_split`, the code path that
scored the PyTorch model, and the gate fails when a variant's few-shot or overall top-1 drops by more
than its threshold (percentage points) on any split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ltzoo.engine.evaluator import Predictor, evaluate_split
from ltzoo.errors import BadHyperParameterError
from ltzoo.export.options import DEFAULT_MAX_DROP, SPLITS
from ltzoo.export.report import GROUPS, REFERENCE, Failure, gate_check

# Largest allowed drop in top-1 points, per variant, on the gated groups of every split.
GATED_GROUPS = ("all", "few")


def parse_max_drop(items: Sequence[str] | None) -> dict[str, float]:
    """``["int8=0.8", "fp16=0.3"]`` -> the default thresholds with those replaced."""
    thresholds = dict(DEFAULT_MAX_DROP)
    for item in items or ():
        variant, sep, value = item.partition("=")
        if not sep or variant not in DEFAULT_MAX_DROP:
            raise BadHyperParameterError(
                f"--max-drop {item!r}: expected VARIANT=POINTS with VARIANT in {list(DEFAULT_MAX_DROP)}"
            )
        try:
            points = float(value)
        except ValueError:
            points = math.nan
        if not math.isfinite(points) or points < 0:
            raise BadHyperParameterError(f"--max-drop {item!r}: POINTS must be a number >= 0")
        thresholds[variant] = points
    return thresholds


def evaluate_predictors(
    predictors: Mapping[str, Predictor], data: Any, splits: Sequence[str] = SPLITS, batch_size: int = 256
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{split: {name: result}}`` with the lead's evaluator (all/many/medium/few/per_class)."""
    return {
        split: {name: evaluate_split(predictor, data, split, batch_size) for name, predictor in predictors.items()}
        for split in splits
    }


def deltas(results: Mapping[str, Mapping[str, Any]], reference: str = REFERENCE) -> dict[str, dict[str, float | None]]:
    """Per name (other than the reference): variant minus reference, in points, for each group."""
    base = results[reference]
    out: dict[str, dict[str, float | None]] = {}
    for name, result in results.items():
        if name == reference:
            continue
        out[name] = {
            group: None if result.get(group) is None or base.get(group) is None else result[group] - base[group]
            for group in GROUPS
        }
    return out


def gate(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]], max_drop: Mapping[str, float], reference: str = REFERENCE
) -> tuple[dict[str, dict[str, dict[str, float | None]]], list[Failure]]:
    """Deltas per split, and one :class:`Failure` per (split, variant, group) that dropped too far."""
    all_deltas: dict[str, dict[str, dict[str, float | None]]] = {}
    failures: list[Failure] = []
    for split, split_results in results.items():
        split_deltas = deltas(split_results, reference)
        all_deltas[split] = split_deltas
        for variant, variant_deltas in split_deltas.items():
            if variant not in max_drop:
                continue  # e.g. the un-adjusted PyTorch row of --logit-adjust: shown, not gated
            for group in GATED_GROUPS:
                delta = variant_deltas[group]
                # A tiny epsilon so that a drop of exactly the threshold passes despite float rounding.
                if delta is not None and -delta > max_drop[variant] + 1e-9:
                    failures.append(
                        Failure(
                            variant,
                            gate_check(group),
                            split=split,
                            value=-delta,
                            limit=max_drop[variant],
                            reason=f"{group} top-1 {split_results[variant][group]:.2f} vs PyTorch "
                            f"{split_results[reference][group]:.2f}",
                        )
                    )
    return all_deltas, failures
