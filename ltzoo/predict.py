"""Top-k predictions for image files (what ``ltzoo predict`` prints).

Images go through the model's own eval transform (:func:`ltzoo.create_transform`) and the evaluator's
predictors, so a file gives the prediction the evaluator would give the same image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ltzoo.errors import BadDataError

Predictor = Callable[[np.ndarray], np.ndarray]  # float32 NCHW batch -> logits (ltzoo.engine.evaluator)


@dataclass(frozen=True)
class ClassScore:
    index: int
    label: str
    probability: float  # softmax of the model's logits


@dataclass(frozen=True)
class ImagePrediction:
    image: str
    top_k: list[ClassScore]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file (a truncated file fails here, not halfway through a batch)."""
    path = Path(path)
    if not path.exists():
        raise BadDataError(f"{path}: no such file")
    if not path.is_file():
        raise BadDataError(f"{path}: not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except UnidentifiedImageError:
        raise BadDataError(f"{path}: not an image file that Pillow can decode") from None
    except (OSError, ValueError) as exc:
        raise BadDataError(f"{path}: cannot decode the image ({exc}); the file is truncated or corrupt") from None


def read_images(paths: Sequence[str | os.PathLike[str]]) -> list[Image.Image]:
    """All images, or one error that names every file that could not be read."""
    images, problems = [], []
    for path in paths:
        try:
            images.append(read_image(path))
        except BadDataError as exc:
            problems.append(str(exc))
    if problems:
        raise BadDataError(
            f"cannot read {len(problems)} of {len(paths)} image(s):\n  - "
            + "\n  - ".join(problems)
            + "\nfix or remove those files and run again"
        )
    return images


def predict_images(
    predictor: Predictor,
    transform: Callable[[Any], torch.Tensor],
    images: Sequence[Image.Image],
    names: Sequence[str],
    label_names: Sequence[str],
    top_k: int = 5,
    batch_size: int = 32,
) -> list[ImagePrediction]:
    """The ``top_k`` classes of each image, ranked by logit (ties: the lower class index, as argmax)."""
    results = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([transform(image) for image in images[start : start + batch_size]]).numpy()
        logits = predictor(np.ascontiguousarray(batch, dtype=np.float32)).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        for name, row, probs in zip(names[start : start + batch_size], logits, probabilities):
            order = np.argsort(-row, kind="stable")[:top_k]
            results.append(
                ImagePrediction(name, [ClassScore(int(i), str(label_names[i]), float(probs[i])) for i in order])
            )
    return results
