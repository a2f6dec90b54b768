"""Dataset containers shared by every long-tailed dataset."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ltzoo.data.longtail import ShotSplit, imbalance_factor, shot_split
from ltzoo.data.spec import DataInfo
from ltzoo.errors import BadDataError


class TensorImageDataset(Dataset):
    """Images held in memory as a uint8 (N, C, H, W) tensor."""

    def __init__(self, images: torch.Tensor, targets: Sequence[int]) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorImageDataset needs a uint8 (N, C, H, W) tensor")
        self.images = images
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


# Modes whose pixels are not 8-bit: PIL's convert() clips them at 255 (a 16-bit scan turns white),
# so they are rescaled to 8 bit first.
_HIGH_BIT_DEPTH_SCALE = {"I;16": 257.0, "I;16L": 257.0, "I;16B": 257.0, "I;16N": 257.0, "I": 257.0, "F": 1.0}


def convert_image(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` ("RGB" or "L"); 16-bit integer images are scaled by 1/257, float ones clipped
    to [0, 255]."""
    scale = _HIGH_BIT_DEPTH_SCALE.get(image.mode)
    if scale is not None:
        import numpy as np

        pixels = np.clip(np.asarray(image, dtype=np.float64) / scale, 0, 255).round().astype(np.uint8)
        image = Image.fromarray(pixels)  # 2-D uint8: mode "L"
    return image.convert(mode)


class FileImageDataset(Dataset):
    """Images read from files (``root / relative_path``) as PIL images in RGB or L mode."""

    def __init__(self, root: Path, paths: Sequence[str], targets: Sequence[int], mode: str = "RGB") -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.targets = [int(t) for t in targets]
        self.mode = mode

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.root / self.paths[index]
        try:
            with Image.open(path) as image:
                return convert_image(image, self.mode), self.targets[index]
        except (OSError, ValueError) as exc:
            raise BadDataError(f"cannot read image {path}: {exc}") from exc


class TransformedDataset(Dataset):
    """Applies a per-sample transform to the image of an (image, label) dataset."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Any]) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, target = self.base[index]
        return self.transform(image), target


def index_sha256(payload: dict[str, Any]) -> str:
    """sha256 of a canonical JSON rendering of a dataset index (which files/indices are in which split)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class LTDataset:
    """A long-tailed dataset: train/val/test splits plus the facts every result is stored with."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    label_names: list[str]
    info: DataInfo
    index_sha256: str
    shots: ShotSplit = field(init=False)
    source: dict[str, Any] = field(default_factory=dict)  # where the files came from, how it was built

    def __post_init__(self) -> None:
        counts = [0] * self.info.num_classes
        for target in self.train.targets:  # type: ignore[attr-defined]
            counts[target] += 1
        self.info = replace(self.info, class_counts=tuple(counts), train_size=sum(counts))
        self.shots = shot_split(counts)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def class_counts(self) -> list[int]:
        return list(self.info.class_counts)

    @property
    def imbalance_factor(self) -> float:
        return imbalance_factor(self.class_counts)

    def split(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def summary(self) -> dict[str, Any]:
        """The long-tail facts stored in a run's config.json."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "class_counts": self.class_counts,
            "imbalance_factor": self.imbalance_factor,
            "split_sizes": {s: len(self.split(s)) for s in ("train", "val", "test")},  # type: ignore[arg-type]
            "shot_split": self.shots.to_dict(),
            "index_sha256": self.index_sha256,
            "source": self.source,
        }
