"""One evaluator for PyTorch models and ONNX Runtime sessions: top-1 overall, many/medium/few, per class.

A predictor is any callable mapping a float32 NCHW numpy batch (already normalised, exactly the
exported graph's ``input``) to logits; :class:`TorchPredictor` and :class:`OrtPredictor` are the two
built in, so an exported graph is scored by the same code path as the model it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ltzoo.data.datasets import TransformedDataset
from ltzoo.data.longtail import ShotSplit
from ltzoo.engine.progress import progress_bar
from ltzoo.memory_format import batch_to, module_to, resolve_channels_last
from ltzoo.precision import exact_fp32

Predictor = Callable[[np.ndarray], np.ndarray]


class TorchPredictor:
    """An eval-mode PyTorch model in fp32. ``channels_last`` None: the device's default layout
    (:func:`ltzoo.memory_format.resolve_channels_last`); the model is converted in place."""

    def __init__(
        self, model: torch.nn.Module, device: str | torch.device = "cpu", channels_last: bool | None = None
    ) -> None:
        self.device = torch.device(device)
        self.channels_last = resolve_channels_last("auto", self.device) if channels_last is None else channels_last
        self.model = module_to(model.to(self.device).eval(), self.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with exact_fp32(self.device):  # on CUDA: no TF32, so the scores are the CPU's
            return self.model(batch_to(torch.from_numpy(batch), self.device, self.channels_last)).float().cpu().numpy()


class OrtPredictor:
    def __init__(self, session: Any, input_name: str = "input", output_name: str = "logits") -> None:
        self.session = session
        self.input_name = input_name
        self.output_name = output_name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0], dtype=np.float32)


def predict(
    predictor: Predictor, dataset: Dataset, transform: Callable[[Any], Any], batch_size: int = 256, desc: str = "eval"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets over a dataset, in dataset order."""
    loader = DataLoader(TransformedDataset(dataset, transform), batch_size=batch_size, shuffle=False)
    logits, targets = [], []
    for images, labels in progress_bar(loader, desc=desc):
        logits.append(predictor(np.ascontiguousarray(images.numpy(), dtype=np.float32)))
        targets.append(labels.numpy())
    if not logits:  # an empty split (own data without a test split): no predictions, no accuracy
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(logits), np.concatenate(targets)


def accuracy_report(predictions: np.ndarray, targets: np.ndarray, num_classes: int, shots: ShotSplit) -> dict[str, Any]:
    """Top-1 (%) overall, mean per class, per shot group (mean of per-class accuracies) and per class."""
    correct = predictions == targets
    per_class: list[float | None] = []
    for cls in range(num_classes):
        mask = targets == cls
        per_class.append(float(correct[mask].mean() * 100) if mask.any() else None)

    def group_mean(classes: list[int]) -> float | None:
        values = [per_class[c] for c in classes if per_class[c] is not None]
        return float(np.mean(values)) if values else None

    return {
        "all": float(correct.mean() * 100) if len(correct) else None,
        "many": group_mean(shots.many),
        "medium": group_mean(shots.medium),
        "few": group_mean(shots.few),
        "mean_class": group_mean(list(range(num_classes))),
        "per_class": per_class,
        "num_samples": int(len(targets)),
        "shot_thresholds": shots.thresholds(),
    }


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    transform: Callable[[Any], Any],
    num_classes: int,
    shots: ShotSplit,
    batch_size: int = 256,
    desc: str = "eval",
) -> dict[str, Any]:
    logits, targets = predict(predictor, dataset, transform, batch_size, desc)
    predictions = logits.argmax(axis=1) if len(logits) else np.zeros(0, dtype=np.int64)
    return accuracy_report(predictions, targets, num_classes, shots)


def format_table(rows: dict[str, dict[str, Any]], columns: tuple[str, ...] = ("all", "many", "medium", "few")) -> str:
    """A markdown table: one row per named result, top-1 % per column."""

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, result in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(result.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def evaluate_split(predictor: Predictor, data: Any, split: str, batch_size: int = 256) -> dict[str, Any]:
    """Evaluate on ``data.split(split)`` of an :class:`~ltzoo.data.LTDataset` with its eval transform."""
    from ltzoo.data.transforms import eval_transform

    result = evaluate(
        predictor,
        data.split(split),
        eval_transform(data.info),
        data.num_classes,
        data.shots,
        batch_size,
        desc=f"eval {split}",
    )
    result["split"] = split
    return result
