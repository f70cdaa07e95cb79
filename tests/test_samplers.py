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
