"""CIFAR-10/100-LT built the LDAM-DRW way (kaidic/LDAM-DRW ``imbalance_cifar.py``) from local pickles.

Train: per class in label order, ``np.random.seed(0)``-shuffled indices, the first
n_i = int(n_max * (1/IR)^(i/(C-1))) of them. Departure from LDAM-DRW: the head class uses every
training image it has, so no balanced val split can come from unused training images. ltzoo carves a
balanced val split (seeded) out of the official test set and evaluates test on the rest, so no choice
is ever made on the images that test reports on.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ltzoo.data.datasets import LTDataset, TensorImageDataset, index_sha256
from ltzoo.data.spec import dataset_spec
from ltzoo.errors import CorruptFileError, DataNotFoundError

VAL_PER_CLASS = {"cifar10_lt": 100, "cifar100_lt": 20}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """The CIFAR python pickles hold numpy arrays and lists; refuse anything else (no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if (module, name) not in self._ALLOWED:
            raise CorruptFileError(f"refusing to unpickle {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict:
    if not path.is_file():
        raise DataNotFoundError(
            f"CIFAR file {path} not found. Fix: extract the CIFAR python version (cifar-10-python.tar.gz / "
            "cifar-100-python.tar.gz) under --data-root."
        )
    try:
        with open(path, "rb") as handle:
            return _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CorruptFileError(f"{path} is not a readable CIFAR batch: {exc}") from exc


def _to_tensor(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))


def ldam_longtail_indices(labels: np.ndarray, num_classes: int, imbalance_ratio: float, seed: int = 0) -> list[int]:
    n_max = len(labels) // num_classes
    np.random.seed(seed)  # the global seed, exactly as LDAM-DRW does, so the subset matches its subset
    selected: list[int] = []
    for cls in range(num_classes):
        n = int(n_max * ((1.0 / imbalance_ratio) ** (cls / (num_classes - 1.0))))
        idx = np.where(labels == cls)[0]
        np.random.shuffle(idx)
        selected += idx[:n].tolist()
    return selected


def build_cifar_lt(name: str, root: str | os.PathLike[str] | None, imbalance_ratio: float = 100.0) -> LTDataset:
    if root is None:
        root = os.environ.get("LTZOO_DATA")
    if root is None:
        raise DataNotFoundError(f"{name} needs --data-root (or $LTZOO_DATA) pointing at the CIFAR python pickles")
    root = Path(root)
    num_classes = dataset_spec(name).num_classes
    if num_classes == 10:
        folder = root / "cifar-10-batches-py"
        batches = [_load_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        train_x = np.concatenate([b[b"data"] for b in batches])
        train_y = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
        test = _load_batch(folder / "test_batch")
        test_x, test_y = test[b"data"], np.asarray(test[b"labels"])
        names = [n.decode() for n in _load_batch(folder / "batches.meta")[b"label_names"]]
    else:
        folder = root / "cifar-100-python"
        train = _load_batch(folder / "train")
        test = _load_batch(folder / "test")
        train_x, train_y = train[b"data"], np.asarray(train[b"fine_labels"])
        test_x, test_y = test[b"data"], np.asarray(test[b"fine_labels"])
        names = [n.decode() for n in _load_batch(folder / "meta")[b"fine_label_names"]]
    train_idx = ldam_longtail_indices(train_y, num_classes, imbalance_ratio)
    rng = np.random.RandomState(1)
    val_idx: list[int] = []
    for cls in range(num_classes):
        idx = np.flatnonzero(test_y == cls)
        rng.shuffle(idx)
        val_idx += idx[: VAL_PER_CLASS[name]].tolist()
    val_set = set(val_idx)
    test_idx = [i for i in range(len(test_y)) if i not in val_set]
    sha = index_sha256({"dataset": name, "ir": imbalance_ratio, "train": train_idx, "val": val_idx, "test": test_idx})
    return LTDataset(
        name=name,
        train=TensorImageDataset(_to_tensor(train_x[train_idx]), train_y[train_idx].tolist()),
        val=TensorImageDataset(_to_tensor(test_x[val_idx]), test_y[val_idx].tolist()),
        test=TensorImageDataset(_to_tensor(test_x[test_idx]), test_y[test_idx].tolist()),
        label_names=names,
        info=dataset_spec(name),
        index_sha256=sha,
        source={
            "files": str(folder),
            "profile": f"LDAM-DRW exp, IR={imbalance_ratio}, np.random.seed(0)",
            "val": f"{VAL_PER_CLASS[name]}/class carved from the official test set (seed 1)",
            "test": "official test set minus the val images",
        },
    )
