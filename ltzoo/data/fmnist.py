"""``fmnist_lt``: a long-tailed Fashion-MNIST built from the real idx files.

Profile n_i = floor(1000 * 100^(-i/9)) (1000 ... 10; 5 many / 3 medium / 2 few), a balanced val split
held out from the unused training images, and the official balanced 10k test set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ltzoo.data.datasets import LTDataset, TensorImageDataset, index_sha256
from ltzoo.data.idx import read_idx
from ltzoo.data.longtail import exponential_profile
from ltzoo.data.spec import dataset_spec
from ltzoo.errors import DataNotFoundError

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
LABEL_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
N_MAX = 1000
IMBALANCE_RATIO = 100
VAL_PER_CLASS = 100
SPLIT_SEED = 0


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (
        directory / stem,
        directory / f"{stem}.gz",
        directory / "raw" / stem,
        directory / "raw" / f"{stem}.gz",
    ):
        if candidate.is_file():
            return candidate
    return None


def locate_fashion_mnist(root: str | os.PathLike[str] | None = None, download: bool = False) -> dict[str, Path]:
    """Find the idx files: in ``root`` when it is given (and nowhere else: a --data-root that holds no
    Fashion-MNIST is an error, not a silent fall-back to another copy); otherwise ``$LTZOO_DATA``, then the
    Debian package, then torchvision's download."""
    if root is not None:
        given = [Path(root), Path(root) / "fashion-mnist", Path(root) / "FashionMNIST"]
        for directory in given:
            found = {key: _find(directory, stem) for key, stem in FILES.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        raise DataNotFoundError(
            f"--data-root {root}: no Fashion-MNIST idx files there (searched {', '.join(str(p) for p in given)}). "
            "Fix: point --data-root at the folder holding train-images-idx3-ubyte[.gz] and the other three files, "
            "or leave it out to use $LTZOO_DATA or the system copy (`apt-get install dataset-fashion-mnist`)."
        )
    candidates: list[Path] = []
    if os.environ.get("LTZOO_DATA"):
        env = Path(os.environ["LTZOO_DATA"])
        candidates += [env, env / "fashion-mnist", env / "FashionMNIST"]
    candidates.append(SYSTEM_DIR)
    cache = Path(os.environ.get("LTZOO_CACHE", Path.home() / ".cache" / "ltzoo")) / "data"
    candidates.append(cache / "FashionMNIST")
    for directory in candidates:
        found = {key: _find(directory, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    if download:
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(cache), train=True, download=True)
            FashionMNIST(str(cache), train=False, download=True)
        except Exception as exc:  # torchvision raises RuntimeError/URLError on no network
            raise DataNotFoundError(_missing_message(candidates) + f" The download also failed: {exc}") from exc
        return locate_fashion_mnist(cache, download=False)
    raise DataNotFoundError(_missing_message(candidates))


def _missing_message(searched: list[Path]) -> str:
    where = ", ".join(str(p) for p in searched)
    return (
        f"Fashion-MNIST idx files not found (searched {where}). Fix: `apt-get install dataset-fashion-mnist` "
        "(or `make setup`), or point --data-root / $LTZOO_DATA at a folder holding train-images-idx3-ubyte[.gz] etc."
    )


def longtail_indices(
    labels: np.ndarray, counts: list[int], val_per_class: int, seed: int
) -> tuple[list[int], list[int]]:
    """Per class, shuffle its indices with a fixed seed; the first n_c go to train, the next val_per_class to val."""
    rng = np.random.RandomState(seed)
    train, val = [], []
    for cls, n_train in enumerate(counts):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        if n_train + val_per_class > len(idx):
            raise DataNotFoundError(f"class {cls} has only {len(idx)} images; need {n_train + val_per_class}")
        train += idx[:n_train].tolist()
        val += idx[n_train : n_train + val_per_class].tolist()
    return sorted(train), sorted(val)


def build_fmnist_lt(root: str | os.PathLike[str] | None = None, download: bool = False) -> LTDataset:
    files = locate_fashion_mnist(root, download=download)
    train_images = torch.from_numpy(read_idx(files["train_images"]).copy()).unsqueeze(1)
    train_labels = read_idx(files["train_labels"]).astype(np.int64)
    test_images = torch.from_numpy(read_idx(files["test_images"]).copy()).unsqueeze(1)
    test_labels = read_idx(files["test_labels"]).astype(np.int64)
    if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
        raise DataNotFoundError("Fashion-MNIST image and label files disagree in length; re-install them")
    counts = exponential_profile(N_MAX, IMBALANCE_RATIO, len(LABEL_NAMES))
    train_idx, val_idx = longtail_indices(train_labels, counts, VAL_PER_CLASS, SPLIT_SEED)
    sha = index_sha256({"dataset": "fmnist_lt", "train": train_idx, "val": val_idx, "test": "t10k-all"})
    return LTDataset(
        name="fmnist_lt",
        train=TensorImageDataset(train_images[train_idx], train_labels[train_idx].tolist()),
        val=TensorImageDataset(train_images[val_idx], train_labels[val_idx].tolist()),
        test=TensorImageDataset(test_images, test_labels.tolist()),
        label_names=list(LABEL_NAMES),
        info=dataset_spec("fmnist_lt"),
        index_sha256=sha,
        source={
            "files": str(files["train_images"].parent),
            "profile": f"exp, n_max={N_MAX}, IR={IMBALANCE_RATIO}",
            "val": f"{VAL_PER_CLASS}/class held out from unused training images (seed {SPLIT_SEED})",
            "test": "official 10k test set",
        },
    )
