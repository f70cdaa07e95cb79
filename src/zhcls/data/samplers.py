"""Batch samplers for contrastive training."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

__all__ = ["LabelAwareBatchSampler"]


class LabelAwareBatchSampler(Sampler[list[int]]):
    """Shuffled batches in which every class present appears at least twice.

    Supervised contrastive losses need positives: an anchor whose class occurs once in
    the batch contributes nothing. This sampler guarantees that every class present in
    a batch appears at least twice, unless the class has a single sample in the whole
    dataset (such a sample necessarily appears alone).

    Algorithm (one epoch):

    1. shuffle the indices of each class;
    2. cut each class into chunks of 2; a leftover singleton joins the class's last
       chunk (chunk of 3); a class of size 1 is a chunk of 1;
    3. shuffle the chunks and lay them end to end;
    4. cut the sequence into batches at the chunk boundary nearest to
       ``batch_size, 2*batch_size, ...`` (ties go to the smaller batch) and shuffle
       inside each batch.

    Since batches are unions of whole chunks the invariant always holds. The price is
    that batch sizes are approximate: a cut is within 1 of its target, so a batch
    holds ``batch_size - 2`` to ``batch_size + 2`` indices (about 90% are
    ``batch_size`` or ``batch_size +- 1``; the batch before the last can drop to
    ``batch_size - 3`` when the last chunk must be kept for the last batch), and the
    last batch takes the remainder. Size GPU memory for ``batch_size + 2``.
    In exchange the number of batches does not depend on the shuffle or the epoch::

        len = min(ceil(N / batch_size), n_chunks)        (drop_last=False)
        len = min(N // batch_size, n_chunks)             (drop_last=True)

    where ``n_chunks = sum_c (1 if n_c == 1 else n_c // 2)`` is fixed by the class
    counts (it only binds for ``batch_size`` of 2 or 3, giving one chunk per batch).
    This keeps learning-rate schedules built from ``len(dataloader)`` exact.

    Every index appears exactly once per epoch with ``drop_last=False``; with
    ``drop_last=True`` the chunks after the last full batch are dropped (each index at
    most once). The shuffle depends on ``(seed, epoch)`` only: call
    :meth:`set_epoch` before each epoch to get a new order, as with
    ``DistributedSampler``.

    DDP: with ``num_replicas`` W > 1 every rank builds the same epoch, cut into *global*
    batches of about ``W * batch_size`` (each at least W chunks), and splits each global
    batch at chunk boundaries into W parts of about ``batch_size``; rank r yields part r.
    Each optimizer step thus sees one global batch, every rank takes the same number of
    steps, ``len = min(ceil(N / (W * batch_size)), n_chunks // W)`` (``N // (W *
    batch_size)`` with ``drop_last``), and across ranks every index appears exactly once
    per epoch, in a new share and order each epoch. Do not let another layer shard it
    again (accelerate's batch-sampler sharding drops batches whose size is not exactly
    ``batch_size``). ``num_replicas=1`` is the single-process sampler above.

    Multi-label: ``labels`` holds each item's list of class ids. Each item is grouped by
    its rarest label (the one with the fewest items in ``labels``, ties to the smaller id;
    items with no label form a group of their own), and the groups play the part of the
    classes above (see :func:`multilabel_groups`). So every item with a label has in its
    batch another item sharing that label (a positive under a label-overlap SupCon), and rare
    labels get their pairs first. Other labels of an item may still occur once in a batch.

    Args:
        labels: class id of every dataset item (or its list of class ids), in dataset order.
        batch_size: target batch size, ``>= 2``.
        seed: non-negative base seed.
        drop_last: drop the trailing incomplete batch.
        num_replicas: number of DDP ranks sharing the epoch (the world size).
        rank: this process's rank, ``0 <= rank < num_replicas``.
    """

    def __init__(
        self,
        labels: Sequence[int] | Sequence[Sequence[int]],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        labels_list = multilabel_groups(labels) if _is_multilabel(labels) else [
            int(y) for y in labels]
        if not labels_list:
            raise ValueError(
                "LabelAwareBatchSampler: expected at least one label, found an empty "
                "sequence; check that the training split is not empty."
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 2:
            raise ValueError(
                f"LabelAwareBatchSampler: expected an integer batch_size >= 2, found "
                f"{batch_size!r}; contrastive batches need room for pairs, use e.g. 32."
            )
        if int(seed) != seed or seed < 0:
            raise ValueError(
                f"LabelAwareBatchSampler: expected a non-negative integer seed, found "
                f"{seed!r}; pass e.g. seed=0."
            )
        if int(num_replicas) != num_replicas or num_replicas < 1:
            raise ValueError(
                f"LabelAwareBatchSampler: expected num_replicas >= 1 (the world size), found "
                f"{num_replicas!r}."
            )
        if int(rank) != rank or not 0 <= rank < num_replicas:
            raise ValueError(
                f"LabelAwareBatchSampler: expected a rank in [0, {num_replicas}), found {rank!r}."
            )
        self.batch_size = int(batch_size)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        by_class: dict[int, list[int]] = {}
        for idx, y in enumerate(labels_list):
            by_class.setdefault(y, []).append(idx)
        # Sorted by class id so the result does not depend on dict insertion order.
        self._classes: list[np.ndarray] = [
            np.asarray(by_class[y], dtype=np.int64) for y in sorted(by_class)
        ]
        self._num_samples = len(labels_list)
        self._num_chunks = sum(1 if len(c) == 1 else len(c) // 2 for c in self._classes)
        if self._num_chunks < self.num_replicas:
            raise ValueError(
                f"LabelAwareBatchSampler: {self._num_samples} examples make {self._num_chunks} "
                f"same-class groups, too few to give each of {self.num_replicas} ranks a batch; "
                "use fewer processes or more data."
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle for ``epoch`` (call before iterating each epoch)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(
                f"LabelAwareBatchSampler.set_epoch: expected a non-negative integer, "
                f"found {epoch!r}; pass the 0-based epoch number."
            )
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (= optimizer steps per epoch, before
        gradient accumulation); the same on every rank and in every epoch."""
        global_batch = self.batch_size * self.num_replicas
        if self.drop_last:
            full = self._num_samples // global_batch
        else:
            full = math.ceil(self._num_samples / global_batch)
        return min(full, self._num_chunks // self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = self._make_chunks(rng)
        order = rng.permutation(len(chunks))
        chunks = [chunks[i] for i in order]
        ends = np.cumsum([len(c) for c in chunks])  # (n_chunks,) end offset of each chunk
        flat = np.concatenate(chunks)  # (N,)
        world = self.num_replicas
        global_ends = _cut_points(ends, len(self), self.batch_size * world, world,
                                  take_rest=not self.drop_last)
        first = 0  # index of the first chunk of the current global batch
        for last in global_ends:
            base = int(ends[first - 1]) if first else 0
            part_ends = [last] if world == 1 else [
                first + j for j in _cut_points(ends[first:last + 1] - base, world,
                                               (int(ends[last]) - base) / world, 1, True)]
            start = base
            for rank, j in enumerate(part_ends):
                stop = int(ends[j])
                batch = [int(i) for i in rng.permutation(flat[start:stop])]
                if rank == self.rank:  # every rank draws the same numbers, yields its own
                    yield batch
                start = stop
            first = last + 1

    def _make_chunks(self, rng: np.random.Generator) -> list[np.ndarray]:
        chunks: list[np.ndarray] = []
        for members in self._classes:
            shuffled = rng.permutation(members)
            n = len(shuffled)
            if n == 1:
                chunks.append(shuffled)
                continue
            bounds = list(range(0, n - n % 2, 2)) + [n]  # last chunk absorbs the singleton
            chunks.extend(shuffled[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        assert sum(len(c) for c in chunks) == self._num_samples
        return chunks


def _is_multilabel(labels: Sequence) -> bool:
    return any(isinstance(y, (list, tuple)) for y in labels)


def multilabel_groups(label_sets: Sequence[Sequence[int]]) -> list[int]:
    """The group of each item of a multi-label dataset: its rarest label (fewest items in
    ``label_sets`` hold it; ties to the smaller id), or -1 for an item with no label."""
    counts = Counter(int(c) for ids in label_sets for c in ids)
    return [min((counts[int(c)], int(c)) for c in ids)[1] if len(ids) else -1
            for ids in label_sets]


def _cut_points(ends: np.ndarray, n_batches: int, size: float, min_chunks: int,
                take_rest: bool) -> list[int]:
    """Indices of the chunks that end each of ``n_batches`` batches of about ``size``
    samples, cut at the chunk boundary nearest to ``size, 2*size, ...`` (ties go to the
    smaller batch), each batch holding at least ``min_chunks`` chunks; with ``take_rest``
    the last batch ends at the last chunk. ``ends`` (n_chunks,) are the chunks' end offsets."""
    n_chunks = len(ends)
    assert n_batches * min_chunks <= n_chunks
    cuts: list[int] = []
    prev = -1  # index of the chunk that ends the previous batch
    for k in range(1, n_batches + 1):
        if k == n_batches and take_rest:
            j = n_chunks - 1
        else:
            target = k * size
            j = int(np.searchsorted(ends, target))  # first chunk ending at >= target
            j = min(j, n_chunks - 1)
            if j > 0 and target - ends[j - 1] <= ends[j] - target:
                j -= 1  # the previous boundary is at least as close: prefer it
            # Each batch needs its chunks and the later batches need theirs too.
            j = max(j, prev + min_chunks)
            j = min(j, n_chunks - 1 - (n_batches - k) * min_chunks)
        cuts.append(j)
        prev = j
    assert len(cuts) == n_batches and all(b - a >= min_chunks
                                          for a, b in zip([-1, *cuts], cuts, strict=False))
    return cuts


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices ordered by decreasing length, ties in index order (a stable sort): the order of
    evaluation batches (they pad little; a too-long batch fails at once) and of the groups of
    :class:`ShuffledLengthGroupedSampler`."""
    return np.argsort(-np.asarray(lengths), kind="stable").tolist()


class ShuffledLengthGroupedSampler(Sampler[int]):
    """Indices whose consecutive ``group_size`` slices hold examples of similar length, in a
    random order: shuffle, sort by length inside mega-batches of ``mega_batch_mult`` groups
    (ties stay in shuffled order), cut into groups, then shuffle the groups (the longest goes
    first, so an out-of-memory shows at step 1). Which examples share a group and the order of
    groups change every epoch (``set_epoch``); the order depends only on (seed, epoch), so
    every DDP rank computes the same one before the Trainer shards it.

    ``group_size`` should be the per-device batch x world size: the ranks' batches of one
    step then have similar lengths too (nobody waits for a long batch on another rank)."""

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int = 0,
                 mega_batch_mult: int = 50):
        if group_size < 1 or not len(lengths):
            raise ValueError(f"ShuffledLengthGroupedSampler: expected group_size >= 1 and a non-empty "
                             f"dataset, got group_size {group_size} and {len(lengths)} lengths")
        self.lengths = np.asarray(lengths, dtype=np.int64)  # (N,)
        self.group_size = int(group_size)
        self.mega = self.group_size * max(1, min(mega_batch_mult,
                                                 len(lengths) // (4 * self.group_size)))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))  # (N,)
        groups: list[np.ndarray] = []
        for start in range(0, len(order), self.mega):
            mega = order[start:start + self.mega]
            mega = mega[longest_first(self.lengths[mega])]
            groups.extend(mega[i:i + self.group_size] for i in range(0, len(mega), self.group_size))
        last = groups.pop() if len(order) % self.group_size else None  # keep the short one last
        groups = [groups[i] for i in rng.permutation(len(groups))]
        if groups:
            longest = max(range(len(groups)), key=lambda i: self.lengths[groups[i]].max())
            groups[0], groups[longest] = groups[longest], groups[0]
        if last is not None:
            groups.append(last)
        return iter(np.concatenate(groups).tolist())
