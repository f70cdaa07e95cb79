"""Tests for LabelAwareBatchSampler."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from torch.utils.data import DataLoader

from zhcls.data.samplers import LabelAwareBatchSampler


def _random_labels(rng: random.Random) -> list[int]:
    n = rng.randrange(1, 150)
    k = rng.randrange(1, 30)
    labels = [rng.randrange(k) for _ in range(n)]
    # Force some singleton classes and odd-sized classes.
    labels += [1000 + i for i in range(rng.randrange(0, 3))]
    labels += [2000] * rng.choice([3, 5])
    rng.shuffle(labels)
    return labels


def _check_invariant(labels: list[int], batches: list[list[int]]) -> None:
    totals = Counter(labels)
    for batch in batches:
        assert batch, "empty batch"
        counts = Counter(labels[i] for i in batch)
        for cls, c in counts.items():
            assert c >= 2 or totals[cls] == 1, (cls, c, batch)


@pytest.mark.parametrize("drop_last", [False, True])
def test_invariant_and_coverage_over_random_label_sets(drop_last: bool) -> None:
    rng = random.Random(1234)
    for trial in range(300):
        labels = _random_labels(rng)
        batch_size = rng.randrange(2, 40)
        sampler = LabelAwareBatchSampler(labels, batch_size, seed=trial, drop_last=drop_last)
        sampler.set_epoch(rng.randrange(5))
        batches = list(sampler)
        assert len(batches) == len(sampler)
        _check_invariant(labels, batches)
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)), "an index appears twice"
        if not drop_last:
            assert sorted(seen) == list(range(len(labels)))
        else:
            assert set(seen) <= set(range(len(labels)))
            assert len(batches) <= len(labels) // batch_size
        if batch_size >= 4:
            for b in batches[:-1]:
                assert batch_size - 3 <= len(b) <= batch_size + 2


def test_len_is_exact_and_epoch_independent() -> None:
    labels = [i % 7 for i in range(101)]
    sampler = LabelAwareBatchSampler(labels, 16)
    assert len(sampler) == 7  # ceil(101 / 16)
    for epoch in range(6):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == 7
    assert len(LabelAwareBatchSampler(labels, 16, drop_last=True)) == 6


def test_hand_example_pairs() -> None:
    # Classes of size 2 with batch_size 4: every batch is exactly two full classes.
    labels = [0, 1, 2, 3, 0, 1, 2, 3]
    batches = list(LabelAwareBatchSampler(labels, 4, seed=3))
    assert [len(b) for b in batches] == [4, 4]
    for b in batches:
        assert sorted(Counter(labels[i] for i in b).values()) == [2, 2]


def test_epochs_differ_and_seed_is_deterministic() -> None:
    labels = [i % 5 for i in range(64)]
    a = LabelAwareBatchSampler(labels, 8, seed=11)
    b = LabelAwareBatchSampler(labels, 8, seed=11)
    assert list(a) == list(b)
    assert list(a) == list(a)  # same epoch, same order
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LabelAwareBatchSampler(labels, 8, seed=12)) != first


def test_works_as_dataloader_batch_sampler() -> None:
    labels = [0, 0, 1, 1, 1, 2, 2, 3]
    data = list(range(len(labels)))
    loader = DataLoader(data, batch_sampler=LabelAwareBatchSampler(labels, 4))
    got = sorted(int(x) for batch in loader for x in batch)
    assert got == data
    assert len(loader) == 2


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        LabelAwareBatchSampler([0, 0], 1)
    with pytest.raises(ValueError, match="at least one label"):
        LabelAwareBatchSampler([], 4)
    with pytest.raises(ValueError, match="seed"):
        LabelAwareBatchSampler([0, 0], 4, seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        LabelAwareBatchSampler([0, 0], 4).set_epoch(-2)


# --- DDP: each rank takes a disjoint share of every epoch's batches ---

def _rank_batches(labels, batch_size, world, epoch, seed=0, drop_last=False):
    out = []
    for rank in range(world):
        sampler = LabelAwareBatchSampler(labels, batch_size, seed=seed, drop_last=drop_last,
                                         num_replicas=world, rank=rank)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_cover_every_index_once_per_epoch(world: int) -> None:
    rng = random.Random(world)
    for trial in range(60):
        labels = _random_labels(rng)
        batch_size = rng.randrange(2, 24)
        if sum(1 if n == 1 else n // 2 for n in Counter(labels).values()) < world:
            continue
        per_rank = _rank_batches(labels, batch_size, world, epoch=trial % 4, seed=trial)
        n_steps = len(LabelAwareBatchSampler(labels, batch_size, num_replicas=world))
        assert n_steps >= 1
        assert [len(b) for b in per_rank] == [n_steps] * world  # same number of steps per rank
        seen = [i for batches in per_rank for b in batches for i in b]
        assert sorted(seen) == list(range(len(labels)))  # each index exactly once
        for batches in per_rank:
            _check_invariant(labels, batches)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_share_a_global_batch_of_world_times_batch_size(world: int) -> None:
    labels = [i % 7 for i in range(1001)] + [7, 7, 7]  # 1004: odd classes make chunks of 3
    per_rank = _rank_batches(labels, 16, world, epoch=0)
    # One optimizer step per global batch of world x 16: ceil(1004 / (world x 16)) steps.
    assert len(per_rank[0]) == -(-len(labels) // (16 * world))
    for step in range(len(per_rank[0]) - 1):  # the last step takes the remainder
        for batches in per_rank:
            assert 16 - 4 <= len(batches[step]) <= 16 + 4
        assert abs(sum(len(b[step]) for b in per_rank) - 16 * world) <= 2


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_get_a_new_share_and_order_every_epoch(world: int) -> None:
    labels = [i % 5 for i in range(203)]
    first, second = _rank_batches(labels, 8, world, 0), _rank_batches(labels, 8, world, 1)
    assert first == _rank_batches(labels, 8, world, 0)  # (seed, epoch) decides, nothing else
    for a, b in zip(first, second, strict=True):
        assert a != b
        if world > 1:
            assert {i for x in a for i in x} != {i for x in b for i in x}


def test_one_replica_is_the_single_process_sampler() -> None:
    labels = [i % 9 for i in range(301)]
    for epoch in range(3):
        plain = LabelAwareBatchSampler(labels, 12, seed=4)
        ddp = LabelAwareBatchSampler(labels, 12, seed=4, num_replicas=1, rank=0)
        plain.set_epoch(epoch)
        ddp.set_epoch(epoch)
        assert list(plain) == list(ddp)


def test_drop_last_under_ddp_keeps_ranks_equal() -> None:
    labels = [i % 4 for i in range(150)]
    per_rank = _rank_batches(labels, 8, 2, epoch=2, drop_last=True)
    assert [len(b) for b in per_rank] == [150 // 16] * 2
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) <= 150


def test_invalid_replica_arguments_raise() -> None:
    with pytest.raises(ValueError, match="num_replicas"):
        LabelAwareBatchSampler([0, 0], 4, num_replicas=0)
    with pytest.raises(ValueError, match="rank"):
        LabelAwareBatchSampler([0, 0, 1, 1], 4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="3 ranks"):  # 2 pairs cannot feed 3 ranks
        LabelAwareBatchSampler([0, 0, 1, 1], 4, num_replicas=3, rank=0)
