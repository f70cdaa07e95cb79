"""Micro-batching: concurrent requests are gathered into one model call of up to
``max_batch`` texts, waiting at most ``max_wait_ms`` for more after the first arrives. While a
batch runs, new requests queue up, so batches grow (and throughput with them) as load rises.
Model calls run one at a time in a worker thread; the event loop stays free for HTTP.

Faults stay contained: when a batch fails, its jobs are retried one by one and only the
offending one gets the error. The queue is bounded (:class:`Overloaded` when full, the service
answers 503). If the worker dies, every waiting job fails with :class:`Unavailable` and
:attr:`MicroBatcher.alive` turns false (``/health`` answers 503); :meth:`MicroBatcher.stop`
drains the queue for a while, then fails what is left, without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future = field(repr=False)


class Rows(Protocol):
    """One row per text, sliceable: an (N, C) array, or the service's ``ScoredRows``."""

    def __len__(self) -> int: ...
    def __getitem__(self, rows: slice) -> Any: ...


class Overloaded(Exception):
    """The queue is full; retry after a moment."""


class Unavailable(Exception):
    """The batcher is stopped, stopping, or its worker died."""


class MicroBatcher:
    """``await submit(texts)`` → the rows of ``predict_fn``'s answer for those texts.

    ``predict_fn(texts) -> rows`` (an (N, C) array, or anything sliced the same way: one row
    per text) is called with the texts of several jobs at once;
    ``on_batch(size, seconds)`` is told about every call. A job larger than ``max_batch``
    runs alone; jobs are never split. At most ``max_queue`` jobs wait; more raise
    :class:`Overloaded`.
    """

    def __init__(self, predict_fn: Callable[[list[str]], Rows | np.ndarray], max_batch: int = 64,
                 max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, float], None] | None = None, max_queue: int = 1024):
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait_ms >= 0; got "
                             f"{max_batch}, {max_queue}, {max_wait_ms}")
        self.predict_fn = predict_fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Job | None = None
        self._running: list[_Job] = []  # the batch in the model now
        self._closing = False
        self.death: str | None = None  # why the worker died, if it did

    @property
    def alive(self) -> bool:
        """True while the worker runs and takes jobs."""
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def waiting(self) -> int:
        """Jobs queued (not yet in the model)."""
        return (self._queue.qsize() if self._queue else 0) + (self._carry is not None)

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._closing, self.death = False, None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zhcls-model")
        self._task = asyncio.create_task(self._run(), name="zhcls-batcher")
        self._task.add_done_callback(self._on_worker_exit)

    async def stop(self, drain_s: float = 10.0) -> None:
        """Refuse new jobs, let the worker finish the queued ones for up to ``drain_s``
        seconds, then fail whatever is left with :class:`Unavailable`."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while (self.waiting or self._running) and self._task is not None \
                and not self._task.done() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a death is logged
                await self._task
        self._fail_pending(Unavailable("the server is shutting down; retry on another "
                                       "instance"))
        if self._executor is not None:  # a model call still running finishes in its thread
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]) -> Any:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit before start()")
        if not self.alive:
            raise Unavailable(self.death or "the server is shutting down")
        job = _Job(texts, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are already waiting") from None
        return await job.future

    def _on_worker_exit(self, task: asyncio.Task) -> None:
        if task.cancelled():
            self.death = self.death or "the batching worker was stopped"
        elif task.exception() is not None:
            exc = task.exception()
            self.death = f"the batching worker died: {type(exc).__name__}: {exc}"
            logger.error("%s", self.death, exc_info=exc)
        self._fail_pending(Unavailable(self.death or "the batching worker stopped"))

    def _fail_pending(self, exc: Exception) -> None:
        jobs = list(self._running) + ([self._carry] if self._carry else [])
        self._running, self._carry = [], None
        while self._queue is not None and not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            self._running = jobs
            await self._execute(jobs)
            self._running = []

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

    async def _call(self, texts: list[str]) -> Rows:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        probs = await loop.run_in_executor(self._executor, self.predict_fn, texts)  # (N, C)
        if self.on_batch is not None:
            try:
                self.on_batch(len(texts), time.perf_counter() - start)
            except Exception:  # metrics must never stop the serving
                logger.exception("on_batch callback failed")
        return probs

    async def _execute(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.done()]  # drop requests already cancelled
        if not live:
            return
        try:
            probs = await self._call([t for j in live for t in j.texts])  # (N, C)
        except Exception as exc:
            if len(live) == 1:
                logger.exception("model call on %d texts failed", len(live[0].texts))
                if not live[0].future.done():
                    live[0].future.set_exception(exc)
                return
            logger.warning("model call on a batch of %d requests failed (%s: %s); retrying "
                           "them one by one", len(live), type(exc).__name__, exc)
            for job in live:  # isolate the offending request(s)
                await self._execute([job])
            return
        row = 0
        for job in live:
            if not job.future.done():
                job.future.set_result(probs[row:row + len(job.texts)])
            row += len(job.texts)
