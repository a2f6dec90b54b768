import collections
import math

import numpy as np
import pytest
import torch

from ltzoo.data import build_sampler
from ltzoo.data.samplers import EFFECTIVE_NUMBER_BETA, effective_number_class_weights
from ltzoo.errors import BadHyperParameterError

COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
TARGETS = [c for c, n in enumerate(COUNTS) for _ in range(n)]


def class_histogram(sampler):
    return collections.Counter(TARGETS[i] for i in sampler)


def test_instance_sampler_is_a_permutation_per_epoch():
    sampler = build_sampler("instance", TARGETS, 10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(TARGETS)))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # reproducible: what resume relies on


def test_class_balanced_sampling_is_uniform_over_classes():
    sampler = build_sampler("class_balanced", TARGETS, 10, seed=0, num_samples=50_000)
    hist = class_histogram(sampler)
    # expected 5000 per class; binomial sd ~ 67, so +-5% is > 3.5 sd
    assert all(abs(hist[c] - 5000) < 250 for c in range(10)), hist


def test_sqrt_sampling_follows_square_root_of_counts():
    sampler = build_sampler("sqrt", TARGETS, 10, seed=0, num_samples=50_000)
    hist = class_histogram(sampler)
    total_sqrt = sum(math.sqrt(n) for n in COUNTS)
    for c, n in enumerate(COUNTS):
        expected = 50_000 * math.sqrt(n) / total_sqrt
        assert abs(hist[c] - expected) < 0.08 * expected + 40, (c, hist[c], expected)


def _official_class_probabilities(counts, beta=0.9999):
    """What the official ImbalancedDatasetSampler (Jianf-Wang/RSG utils.py) draws, per class: numpy
    per-class weights (1 - beta) / (1 - beta^n), one per sample, summed over each class's samples."""
    per_cls_weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    sample_weights = np.array([per_cls_weights[c] for c, n in enumerate(counts) for _ in range(n)])
    labels = np.repeat(np.arange(len(counts)), counts)
    per_class = np.bincount(labels, weights=sample_weights)
    return per_class / per_class.sum()


def test_effective_number_weights_equal_the_official_per_sample_weights():
    counts = [4980, 1280, 300, 20, 1]
    ours = effective_number_class_weights(torch.tensor(counts)).numpy()
    assert EFFECTIVE_NUMBER_BETA == 0.9999
    np.testing.assert_allclose(ours, _official_class_probabilities(counts), rtol=1e-12)
    # Relative to a one-image class: +6.5 % for ImageNet-LT's largest class, +27 % for Places-LT's.
    assert ours[1] / ours[4] == pytest.approx(1.0653, abs=1e-4)
    assert ours[0] / ours[4] == pytest.approx(1.2695, abs=1e-4)
    # A class without samples is never drawn.
    assert effective_number_class_weights(torch.tensor([5, 0, 3]))[1] == 0


def test_effective_number_sampling_matches_the_formula():
    # Large head classes, where the effective-number weights are far from uniform (5000: +27 %).
    counts = [5000, 2000, 500, 100, 10]
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    draws = 100_000
    sampler = build_sampler("effective_number", targets, len(counts), seed=0, num_samples=draws)
    hist = collections.Counter(targets[i] for i in sampler)
    expected = draws * _official_class_probabilities(counts)
    for c in range(len(counts)):
        sd = math.sqrt(expected[c] * (1 - expected[c] / draws))
        assert abs(hist[c] - expected[c]) < 4 * sd, (c, hist[c], expected[c])
    # The tolerance is tight enough to tell this sampler from uniform class sampling (20000 each).
    assert hist[0] - draws / len(counts) > 10 * math.sqrt(draws / len(counts))
    # Within a class, instances are drawn uniformly with replacement: every tail image shows up.
    assert {i for i in sampler if targets[i] == 4} == set(range(sum(counts) - 10, sum(counts)))


@pytest.mark.parametrize("kind", ["instance", "class_balanced", "sqrt", "effective_number"])
def test_rank_shards_partition_the_global_sequence(kind):
    world = 3
    single = list(build_sampler(kind, TARGETS, 10, seed=7, num_samples=3000))
    shards = [
        list(build_sampler(kind, TARGETS, 10, seed=7, rank=r, world_size=world, num_samples=3000)) for r in range(world)
    ]
    assert all(len(s) == 1000 for s in shards)
    interleaved = [shards[i % world][i // world] for i in range(3000)]
    assert interleaved == single


def test_bad_sampler_arguments():
    with pytest.raises(BadHyperParameterError, match="unknown sampler"):
        build_sampler("balanced", TARGETS, 10)
    with pytest.raises(BadHyperParameterError, match="rank 2 outside world size 2"):
        build_sampler("instance", TARGETS, 10, rank=2, world_size=2)
