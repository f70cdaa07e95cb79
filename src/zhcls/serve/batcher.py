"""Micro-batching: concurrent requests are gathered into one model call of up to
``max_batch`` texts, waiting at most ``max_wait_ms`` for more after the first arrives. While a
batch runs, new requests queue up, so batches grow (and throughput with them) as load rises.
Model calls run one at a time in a worker thread; the event loop stays free for HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """``await submit(texts)`` → probability rows (len(texts), C) from ``predict_fn``.

    ``predict_fn(texts) -> (N, C)`` is called with the texts of several jobs at once;
    ``on_batch(size, seconds)`` is told about every call. A job larger than ``max_batch``
    runs alone; jobs are never split.
    """

    def __init__(self, predict_fn: Callable[[list[str]], np.ndarray], max_batch: int = 64,
                 max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, float], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0; got {max_batch}, "
                             f"{max_wait_ms}")
        self.predict_fn = predict_fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Job | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zhcls-model")
        self._task = asyncio.create_task(self._run(), name="zhcls-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str]) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit before start()")
        job = _Job(texts, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            await self._execute(jobs)

    async def _gather(self) -> list[_Job]:
        """The next batch: the first waiting job, then more until full or the wait is over."""
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        jobs, size = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            try:
                if self._queue.empty():
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    job = self._queue.get_nowait()
            except (TimeoutError, asyncio.TimeoutError):
                break
            if size + len(job.texts) > self.max_batch:
                self._carry = job  # first in the next batch
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    async def _execute(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.done()]  # drop requests already cancelled
        if not live:
            return
        texts = [t for j in live for t in j.texts]
        start = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            probs = await loop.run_in_executor(self._executor, self.predict_fn, texts)  # (N, C)
        except Exception as exc:  # the model failed: every waiting request gets the error
            logger.exception("model call on %d texts failed", len(texts))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(len(texts), time.perf_counter() - start)
        row = 0
        for job in live:
            if not job.future.done():
                job.future.set_result(probs[row:row + len(job.texts)])
            row += len(job.texts)
