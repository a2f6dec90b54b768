import collections
import math

import pytest

from ltzoo.data import build_sampler
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


@pytest.mark.parametrize("kind", ["instance", "class_balanced", "sqrt"])
def test_rank_shards_partition_the_global_sequence(kind):
    world = 3
    single = list(build_sampler(kind, TARGETS, 10, seed=7, num_samples=3000))
    shards = [list(build_sampler(kind, TARGETS, 10, seed=7, rank=r, world_size=world, num_samples=3000)) for r in range(world)]
    assert all(len(s) == 1000 for s in shards)
    interleaved = [shards[i % world][i // world] for i in range(3000)]
    assert interleaved == single


def test_bad_sampler_arguments():
    with pytest.raises(BadHyperParameterError, match="unknown sampler"):
        build_sampler("balanced", TARGETS, 10)
    with pytest.raises(BadHyperParameterError, match="rank 2 outside world size 2"):
        build_sampler("instance", TARGETS, 10, rank=2, world_size=2)
