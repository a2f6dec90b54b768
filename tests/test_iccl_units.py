"""ICCL building blocks: interpolation, the centroid-retrieval loss, the centroid memory (also under DDP)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ports import free_port

from ltzoo.errors import BadHyperParameterError
from ltzoo.losses.iccl import centroid_contrastive_loss, interpolate_images, interpolated_cross_entropy, sample_lambda
from ltzoo.models.centroids import CentroidMemory, soft_assignment

# ----- interpolation ----------------------------------------------------------------------------


def test_interpolation_keeps_both_labels_and_lambda() -> None:
    images_a = torch.ones(2, 1, 2, 2)
    images_b = torch.full((2, 1, 2, 2), 3.0)
    targets_a = torch.tensor([4, 7])
    targets_b = torch.tensor([1, 7])
    lam = torch.tensor([0.25, 1.0])
    batch = interpolate_images(images_a, targets_a, images_b, targets_b, lam)
    # 0.25 * 1 + 0.75 * 3 = 2.5 ; 1.0 * 1 + 0 * 3 = 1
    assert torch.allclose(batch.images[0], torch.full((1, 2, 2), 2.5))
    assert torch.allclose(batch.images[1], torch.ones(1, 2, 2))
    assert batch.targets_a.tolist() == [4, 7]
    assert batch.targets_b.tolist() == [1, 7]
    assert batch.lam.tolist() == [0.25, 1.0]


def test_interpolation_rejects_batches_of_different_size() -> None:
    with pytest.raises(BadHyperParameterError, match="same batch size"):
        interpolate_images(
            torch.zeros(2, 1, 2, 2),
            torch.zeros(2, dtype=torch.long),
            torch.zeros(3, 1, 2, 2),
            torch.zeros(3, dtype=torch.long),
            torch.ones(2),
        )


def test_lambda_modes() -> None:
    per_sample = sample_lambda(4000, 1.0, "per_sample", np.random.default_rng(0))
    assert per_sample.shape == (4000,) and per_sample.dtype == torch.float32
    assert 0.0 <= float(per_sample.min()) and float(per_sample.max()) <= 1.0
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12.
    assert abs(float(per_sample.mean()) - 0.5) < 0.02
    assert abs(float(per_sample.var()) - 1 / 12) < 0.01
    per_batch = sample_lambda(8, 0.4, "per_batch", np.random.default_rng(1))
    assert torch.all(per_batch == per_batch[0])
    hard = sample_lambda(1000, 1.0, "none", np.random.default_rng(2))
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert 400 < int(hard.sum()) < 600
    # The same generator seed gives the same draws (resume reproduces them).
    again = sample_lambda(4000, 1.0, "per_sample", np.random.default_rng(0))
    assert torch.equal(per_sample, again)
    with pytest.raises(BadHyperParameterError, match="lambda_mode"):
        sample_lambda(2, 1.0, "mixup", np.random.default_rng(0))
    with pytest.raises(BadHyperParameterError, match="alpha > 0"):
        sample_lambda(2, 0.0, "per_sample", np.random.default_rng(0))


def test_interpolated_cross_entropy_weights_both_labels() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    lam = torch.tensor([0.3])
    log_z = math.log(math.exp(2.0) + 2.0)
    expected = 0.3 * (log_z - 2.0) + 0.7 * log_z  # CE to class 0 and to class 1
    got = interpolated_cross_entropy(logits, torch.tensor([0]), torch.tensor([1]), lam)
    assert got.item() == pytest.approx(expected, rel=1e-6)


# ----- centroid-retrieval loss -----------------------------------------------------------------


def test_retrieval_loss_lower_for_true_pair_than_wrong_pair() -> None:
    centroids = torch.eye(4)  # class k sits on axis k
    embedding = torch.tensor([[1.0, 1.0, 0.0, 0.0]])  # halfway between classes 0 and 1
    lam = torch.tensor([0.5])
    true_pair = centroid_contrastive_loss(embedding, centroids, torch.tensor([0]), torch.tensor([1]), lam, 1.0)
    wrong_pair = centroid_contrastive_loss(embedding, centroids, torch.tensor([2]), torch.tensor([3]), lam, 1.0)
    s = 1 / math.sqrt(2)  # cosine to centroids 0 and 1; 0 to centroids 2 and 3
    assert true_pair.item() == pytest.approx(math.log(2 + 2 * math.exp(-s)), rel=1e-6)
    assert wrong_pair.item() == pytest.approx(math.log(2 * math.exp(s) + 2), rel=1e-6)
    assert true_pair < wrong_pair


def test_retrieval_loss_lambda_weights_and_temperature() -> None:
    centroids = torch.eye(3)
    embedding = torch.tensor([[0.0, 0.0, 5.0]])  # normalised to e_2: cosines (0, 0, 1)
    lam = torch.tensor([0.8])
    loss = centroid_contrastive_loss(embedding, centroids, torch.tensor([2]), torch.tensor([0]), lam, 0.5)
    log_z = math.log(math.exp(2.0) + 2.0)  # logits (0, 0, 1/0.5)
    assert loss.item() == pytest.approx(0.8 * (log_z - 2.0) + 0.2 * log_z, rel=1e-6)


def test_retrieval_loss_skips_centroids_not_seen_yet() -> None:
    centroids = torch.eye(3)
    embedding = torch.tensor([[1.0, 0.0, 0.0]])
    valid = torch.tensor([True, True, False])
    lam = torch.tensor([0.6])
    loss = centroid_contrastive_loss(embedding, centroids, torch.tensor([0]), torch.tensor([2]), lam, 1.0, valid)
    # Class 2 leaves the softmax (logits 1, 0) and its 0.4 target weight is dropped.
    assert loss.item() == pytest.approx(0.6 * math.log(1 + math.exp(-1.0)), rel=1e-6)
    none_valid = centroid_contrastive_loss(
        embedding.requires_grad_(),
        centroids,
        torch.tensor([0]),
        torch.tensor([2]),
        lam,
        1.0,
        torch.zeros(3, dtype=torch.bool),
    )
    assert none_valid.item() == 0.0
    none_valid.backward()  # still a graph: no error, zero gradient
    assert torch.all(embedding.grad == 0)


def test_retrieval_loss_gradient_does_not_reach_centroids() -> None:
    centroids = torch.eye(3).requires_grad_()
    embedding = torch.randn(2, 3, requires_grad=True)
    loss = centroid_contrastive_loss(
        embedding, centroids, torch.tensor([0, 1]), torch.tensor([2, 2]), torch.tensor([0.5, 0.5]), 0.1
    )
    loss.backward()
    assert centroids.grad is None
    assert embedding.grad is not None and torch.isfinite(embedding.grad).all()


# ----- centroid memory -------------------------------------------------------------------------


def test_soft_assignment() -> None:
    weights = soft_assignment(torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([0.3, 0.6]), 3)
    assert torch.allclose(weights, torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.0, 1.0]]))


def test_centroid_first_update_then_momentum() -> None:
    memory = CentroidMemory(num_classes=3, dim=2, momentum=0.5)
    features = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # normalised: (0.6, 0.8) and (0, 1)
    memory.update(features, torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]))
    assert torch.allclose(memory.centroids[0], torch.tensor([0.3, 0.9]))
    assert memory.initialised.tolist() == [True, False, False]
    memory.update(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0, 0]]))
    assert torch.allclose(memory.centroids[0], torch.tensor([0.5 * 0.3 + 0.5 * 1.0, 0.5 * 0.9 + 0.5 * 0.0]))
    assert torch.all(memory.centroids[1:] == 0)  # never seen: untouched


def _fixed_features(
    seed: int = 0, n: int = 600, num_classes: int = 3, dim: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    offsets = torch.randn(num_classes, dim, generator=gen) * 3
    features = offsets[labels] + torch.randn(n, dim, generator=gen)
    return features, labels


def _class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    unit = torch.nn.functional.normalize(features, dim=1)
    return torch.stack([unit[labels == k].mean(0) for k in range(num_classes)])


def test_centroids_converge_to_class_means_full_batches() -> None:
    features, labels = _fixed_features()
    means = _class_means(features, labels, 3)
    memory = CentroidMemory(3, features.shape[1], momentum=0.8)
    memory.update(features[:30], torch.nn.functional.one_hot(labels[:30], 3).float())  # biased start
    error0 = (memory.centroids - means).norm(dim=1)
    assert float(error0.min()) > 1e-3
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    for _ in range(20):
        memory.update(features, one_hot)
    # Each full-data update shrinks the error by the momentum: e_t = m^t e_0.
    assert torch.allclose((memory.centroids - means).norm(dim=1), error0 * 0.8**20, atol=1e-6)


def test_centroids_converge_to_class_means_random_minibatches() -> None:
    features, labels = _fixed_features(seed=1)
    means = _class_means(features, labels, 3)
    memory = CentroidMemory(3, features.shape[1], momentum=0.95)
    gen = torch.Generator().manual_seed(2)
    for _ in range(400):
        idx = torch.randperm(len(labels), generator=gen)[:64]
        memory.update(features[idx], torch.nn.functional.one_hot(labels[idx], 3).float())
    assert float((memory.centroids - means).norm(dim=1).max()) < 0.05
    assert float((torch.zeros_like(means) - means).norm(dim=1).min()) > 0.5  # the tolerance is meaningful


def test_centroid_memory_rejects_bad_shapes_and_momentum() -> None:
    with pytest.raises(BadHyperParameterError, match="momentum"):
        CentroidMemory(3, 4, momentum=1.0)
    memory = CentroidMemory(3, 4)
    with pytest.raises(BadHyperParameterError, match="features"):
        memory.update(torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(BadHyperParameterError, match="weights"):
        memory.update(torch.zeros(2, 4), torch.zeros(2, 2))


def test_centroid_memory_is_checkpointed() -> None:
    memory = CentroidMemory(2, 2)
    memory.update(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    restored = CentroidMemory(2, 2)
    restored.load_state_dict(memory.state_dict())
    assert torch.equal(restored.centroids, memory.centroids)
    assert restored.initialised.tolist() == [False, True]


# ----- DDP: two real gloo processes -------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        features, labels = _fixed_features(seed=3, n=40)
        memory = CentroidMemory(3, features.shape[1], momentum=0.7)
        one_hot = torch.nn.functional.one_hot(labels, 3).float()
        for step in range(3):
            # Each rank sees its half of each global batch of 20.
            lo = (step % 2) * 20 + rank * 10
            memory.update(features[lo : lo + 10], one_hot[lo : lo + 10])
        torch.save(
            {"centroids": memory.centroids, "initialised": memory.initialised}, os.path.join(out_dir, f"rank{rank}.pt")
        )
    finally:
        dist.destroy_process_group()


def test_centroids_under_ddp_match_single_process(tmp_path) -> None:
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    features, labels = _fixed_features(seed=3, n=40)
    single = CentroidMemory(3, features.shape[1], momentum=0.7)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    for step in range(3):
        lo = (step % 2) * 20
        single.update(features[lo : lo + 20], one_hot[lo : lo + 20])
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["centroids"], single.centroids, atol=1e-6)
        assert got["initialised"].tolist() == [True, True, True]
