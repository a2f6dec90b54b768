"""Static facts about a dataset that models and methods need, known without reading its files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ltzoo.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataInfo:
    """What a model and a method may know about the data (never anything from the test set)."""

    num_classes: int
    in_chans: int
    input_size: tuple[int, int]  # (H, W) fed to the network
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str  # augmentation family: "fmnist", "cifar", "imagenet", "generic" (user images)
    class_counts: tuple[int, ...] = ()
    train_size: int = 0
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataInfo:
        """The inverse of :meth:`to_dict` (as stored in a run's ``config.json``, lists for tuples)."""
        known = {f.name for f in fields(cls)}
        kwargs = {key: value for key, value in values.items() if key in known}
        for key in ("input_size", "mean", "std", "class_counts"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


# Datasets the zoo knows by name. Counts are filled in when the dataset is built.
DATASET_SPECS: dict[str, DataInfo] = {
    "fmnist_lt": DataInfo(10, 1, (28, 28), (0.2860,), (0.3530,), "fmnist"),
    "cifar10_lt": DataInfo(10, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "cifar"),
    "cifar100_lt": DataInfo(100, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar"),
    "imagenet_lt": DataInfo(1000, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD, "imagenet", crop_pct=0.875),
    "places_lt": DataInfo(365, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD, "imagenet", crop_pct=0.875),
    "inat2018": DataInfo(8142, 3, (224, 224), IMAGENET_MEAN, IMAGENET_STD, "imagenet", crop_pct=0.875),
}


def dataset_spec(name: str) -> DataInfo:
    if name not in DATASET_SPECS:
        raise UnknownModelError(f"unknown dataset {name!r}; known datasets: {sorted(DATASET_SPECS)}")
    return DATASET_SPECS[name]
