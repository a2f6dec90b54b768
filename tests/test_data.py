import math

import numpy as np
import pytest
import torch

from ltzoo.data import build_dataset, exponential_profile, shot_split
from ltzoo.data.fmnist import longtail_indices
from ltzoo.data.idx import read_idx
from ltzoo.errors import BadDataError, CorruptFileError, DataNotFoundError


def test_profile_equals_formula():
    # floor(1000 * 100^(-i/9)), worked out by hand: 100^(1/9) = 1.6681
    assert exponential_profile(1000, 100, 10) == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    counts = exponential_profile(500, 100, 100)
    assert counts[0] == 500 and counts[-1] == 5
    assert all(counts[i] == math.floor(500 * 100 ** (-i / 99)) for i in range(100))


def test_fmnist_lt_counts_shots_and_sizes(fmnist):
    assert fmnist.class_counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert (fmnist.shots.many, fmnist.shots.medium, fmnist.shots.few) == ([0, 1, 2, 3, 4], [5, 6, 7], [8, 9])
    assert len(fmnist.train) == 2478 and len(fmnist.test) == 10_000
    assert fmnist.imbalance_factor == 100
    image, label = fmnist.train[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (1, 28, 28) and 0 <= label < 10
    assert len(fmnist.index_sha256) == 64


def test_val_is_balanced_and_disjoint_from_train(fmnist):
    assert np.bincount(fmnist.val.targets, minlength=10).tolist() == [100] * 10
    assert np.bincount(fmnist.test.targets, minlength=10).tolist() == [1000] * 10
    labels = np.repeat(np.arange(10), 6000)
    train_idx, val_idx = longtail_indices(labels, [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10], 100, seed=0)
    assert not set(train_idx) & set(val_idx)
    assert len(train_idx) == 2478 and len(val_idx) == 1000
    # the real split: no training image tensor appears among the val images at the same label
    train_bytes = {(bytes(img.numpy()), y) for img, y in zip(fmnist.train.images, fmnist.train.targets)}
    overlap = sum((bytes(img.numpy()), y) in train_bytes for img, y in zip(fmnist.val.images, fmnist.val.targets))
    assert overlap == 0


def test_index_sha_is_stable_across_builds(fmnist):
    again = build_dataset("fmnist_lt", cache=False)
    assert again.index_sha256 == fmnist.index_sha256


def test_shot_split_boundaries():
    split = shot_split([101, 100, 20, 19, 0])
    assert (split.many, split.medium, split.few) == ([0], [1, 2], [3, 4])


def test_missing_fashion_mnist_names_the_fix(tmp_path, monkeypatch):
    import ltzoo.data.fmnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("LTZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LTZOO_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.build_fmnist_lt(root=tmp_path / "empty")


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + (1000).to_bytes(4, "big") + bytes(10))
    with pytest.raises(CorruptFileError, match="truncated"):
        read_idx(path)


def test_missing_cifar_and_imagenet_lt_roots(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-100-python"):
        build_dataset("cifar100_lt", tmp_path, cache=False)
    with pytest.raises(DataNotFoundError, match="ImageNet_LT_train.txt"):
        build_dataset("imagenet_lt", tmp_path, cache=False)


def test_split_file_label_errors_name_the_line(tmp_path):
    from ltzoo.data.splitfile import read_split_file

    path = tmp_path / "x_train.txt"
    path.write_text("a.jpg 0\nb.jpg seven\n")
    with pytest.raises(BadDataError, match=r"x_train.txt:2: label 'seven' is not an integer"):
        read_split_file(path, 10)
    path.write_text("a.jpg 0\nb.jpg 12\n")
    with pytest.raises(BadDataError, match=r":2: label 12 is out of range \(labels must be in \[0, 10\)\)"):
        read_split_file(path, 10)
