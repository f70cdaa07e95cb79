"""Batch samplers for contrastive training."""

from __future__ import annotations

import logging
import math
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
    ``DistributedSampler``. This is a single-process sampler (no sharding across ranks).

    Args:
        labels: class id of every dataset item, in dataset order.
        batch_size: target batch size, ``>= 2``.
        seed: non-negative base seed.
        drop_last: drop the trailing incomplete batch.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        labels_list = [int(y) for y in labels]
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
        self.batch_size = int(batch_size)
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

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle for ``epoch`` (call before iterating each epoch)."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(
                f"LabelAwareBatchSampler.set_epoch: expected a non-negative integer, "
                f"found {epoch!r}; pass the 0-based epoch number."
            )
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            full = self._num_samples // self.batch_size
        else:
            full = math.ceil(self._num_samples / self.batch_size)
        return min(full, self._num_chunks)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = self._make_chunks(rng)
        order = rng.permutation(len(chunks))
        chunks = [chunks[i] for i in order]
        ends = np.cumsum([len(c) for c in chunks])  # (n_chunks,) end offset of each chunk
        flat = np.concatenate(chunks)  # (N,)
        start = 0
        for stop in self._cut_points(ends):
            batch = flat[start:stop]
            yield [int(i) for i in rng.permutation(batch)]
            start = stop

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

    def _cut_points(self, ends: np.ndarray) -> list[int]:
        """Sample offsets where batches end: one per batch, at chunk boundaries."""
        n_batches = len(self)
        n_chunks = len(ends)
        cuts: list[int] = []
        prev = -1  # index of the chunk that ends the previous batch
        for k in range(1, n_batches + 1):
            last_batch = k == n_batches
            if last_batch and not self.drop_last:
                j = n_chunks - 1
            else:
                target = k * self.batch_size
                j = int(np.searchsorted(ends, target))  # first chunk ending at >= target
                j = min(j, n_chunks - 1)
                if j > 0 and target - ends[j - 1] <= ends[j] - target:
                    j -= 1  # the previous boundary is at least as close: prefer it
                # Each batch needs >= 1 chunk and the later batches need theirs too.
                j = max(j, prev + 1)
                j = min(j, n_chunks - 1 - (n_batches - k))
            cuts.append(int(ends[j]))
            prev = j
        assert len(cuts) == n_batches and all(b > a for a, b in zip([0, *cuts], cuts, strict=False))
        return cuts
