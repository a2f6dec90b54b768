"""Dataset builders by name: ``build_dataset("fmnist_lt")``."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from ltzoo.data.cifar import build_cifar_lt
from ltzoo.data.datasets import LTDataset
from ltzoo.data.fmnist import build_fmnist_lt
from ltzoo.data.sources import SourceSpec, build_source_dataset, is_source_name
from ltzoo.data.splitfile import build_split_file_dataset
from ltzoo.errors import UnknownModelError

DatasetBuilder = Callable[[str | os.PathLike[str] | None], LTDataset]

DATASETS: dict[str, DatasetBuilder] = {
    "fmnist_lt": build_fmnist_lt,
    "cifar10_lt": partial(build_cifar_lt, "cifar10_lt"),
    "cifar100_lt": partial(build_cifar_lt, "cifar100_lt"),
    "imagenet_lt": partial(build_split_file_dataset, "imagenet_lt"),
    "places_lt": partial(build_split_file_dataset, "places_lt"),
    "inat2018": partial(build_split_file_dataset, "inat2018"),
}

_CACHE: dict[tuple[str, str | None], LTDataset] = {}


def build_dataset(
    source: str | SourceSpec, root: str | os.PathLike[str] | None = None, cache: bool = True
) -> LTDataset:
    """Build (or reuse, within this process) a long-tailed dataset: a zoo dataset by name, or a user source, as a
    parsed :class:`~ltzoo.data.sources.SourceSpec` or its name ``imagefolder:PATH`` / ``splits:ROOT``. The name is
    the cache key (and what a run records); a spec given parsed is not parsed again."""
    spec = source if isinstance(source, SourceSpec) else None
    name = spec.name if spec is not None else source
    user_source = spec is not None or is_source_name(name)
    if not user_source and name not in DATASETS:
        raise UnknownModelError(
            f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}, or your own as imagefolder:PATH / "
            "splits:ROOT"
        )
    key = (name, None if root is None else str(root))
    if cache and key in _CACHE:
        return _CACHE[key]
    dataset = build_source_dataset(spec or name, root) if user_source else DATASETS[name](root)
    if cache:
        _CACHE[key] = dataset
    return dataset
