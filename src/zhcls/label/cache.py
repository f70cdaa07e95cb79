"""Persistent answer cache for LLM labelling: SQLite in WAL mode with ``synchronous=FULL``.

Every answer (success or final failure) is committed as soon as it arrives, so an
interrupted run (Ctrl-C, ``kill -9``, power loss) loses at most the requests in flight. Rows
are keyed by :func:`cache_key` = sha256 of (model, prompt hash, samples, temperature, text).
A row with ``status='ok'`` is never requested again; ``status='failed'`` rows are retried on
the next run unless the caller says otherwise.

:class:`CacheLock` keeps two runs off one cache (each would pay for every request): an
exclusive ``flock`` on ``<cache>.lock``, which holds the owner's PID. The kernel drops the
lock when its process ends, however it ends, so a stale lock file never blocks a re-run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    samples INTEGER NOT NULL,
    temperature REAL NOT NULL,
    text TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    probs TEXT,
    reason TEXT,
    detail TEXT,
    raw TEXT,
    notes TEXT NOT NULL DEFAULT '{}',
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
"""
_COLUMNS = ("key", "model", "prompt_hash", "samples", "temperature", "text", "status", "probs",
            "reason", "detail", "raw", "notes", "prompt_tokens", "completion_tokens",
            "requests", "created")


def cache_key(model: str, prompt_hash: str, samples: int, temperature: float, text: str) -> str:
    """Stable key of one labelling request."""
    payload = json.dumps([model, prompt_hash, int(samples), float(temperature), text],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Answer:
    """One cached outcome. ``probs`` is set when ``status == 'ok'``; failed rows carry the
    failure ``reason`` (a kind such as ``timeout``), a ``detail`` sentence and the ``raw``
    text of the last answer, if any."""

    key: str
    model: str
    prompt_hash: str
    samples: int
    temperature: float
    text: str
    status: str
    probs: list[float] | None = None
    reason: str | None = None
    detail: str | None = None
    raw: str | None = None
    notes: dict = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    created: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class AnswerCache:
    """Append-only (per key: last write wins) SQLite store of :class:`Answer` rows."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = threading.Lock()
            self._conn = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise ZhclsError(
                f"{self.path}: cannot open the label cache ({exc}); expected an SQLite file "
                "written by zhcls label. Delete it or pass another --cache path"
            ) from None

    def _check_version(self) -> None:
        row = self._conn.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        if row is None:
            with self._conn:
                self._conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise ZhclsError(f"{self.path}: label cache schema {row[0]}, this zhcls writes "
                             f"{SCHEMA_VERSION}; pass another --cache path")

    def put(self, answer: Answer) -> None:
        """Insert or replace one row and commit (fsync) before returning."""
        self.put_many([answer])

    def put_many(self, answers: list[Answer]) -> None:
        """Insert or replace rows in one transaction and commit (fsync) before returning.
        An ``ok`` row is never overwritten by a ``failed`` one."""
        rows = []
        for a in answers:
            a.created = a.created or time.time()
            rows.append((a.key, a.model, a.prompt_hash, a.samples, a.temperature, a.text,
                         a.status, json.dumps(a.probs) if a.probs is not None else None,
                         a.reason, a.detail, a.raw, json.dumps(a.notes, ensure_ascii=False),
                         a.prompt_tokens, a.completion_tokens, a.requests, a.created))
        placeholders = ", ".join("?" for _ in _COLUMNS)
        sql = (f"INSERT INTO answers ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
               "ON CONFLICT(key) DO UPDATE SET "
               + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:])
               + " WHERE answers.status != 'ok' OR excluded.status = 'ok'")
        with self._lock, self._conn:
            self._conn.executemany(sql, rows)

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        """Rows for the given keys (missing keys are absent from the result)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM answers WHERE key IN ({marks})",
                    chunk).fetchall()
            for row in rows:
                answer = _row_to_answer(row)
                found[answer.key] = answer
        return found

    def count(self, status: str | None = None) -> int:
        """Number of rows (with that status)."""
        where, args = ("", ()) if status is None else (" WHERE status=?", (status,))
        with self._lock:
            return self._conn.execute(f"SELECT COUNT(*) FROM answers{where}", args).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CacheLock:
    """Exclusive lock of one answer cache, for one run (``with CacheLock(path): ...``).

    Without ``wait`` a second holder gets a :class:`ZhclsError` at once that names the
    holder's PID; with ``wait`` it blocks until the holder is done. POSIX ``flock`` only:
    where ``fcntl`` is missing (Windows) the lock is skipped with a warning. ``flock`` is
    per machine: runs on two hosts sharing one network file system are not kept apart.
    """

    def __init__(self, cache_path: str | Path, *, wait: bool = False):
        self.path = Path(f"{cache_path}.lock")
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            logger.warning("no fcntl on this platform: %s is not locked; do not start two "
                           "runs on it", self.path)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._busy(fd, fcntl)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _busy(self, fd: int, fcntl: object) -> None:
        holder = _read_pid(fd)
        if not self.wait:
            raise ZhclsError(
                f"{self.path}: another zhcls label run ({holder}) is using this answer cache; "
                "two runs would pay for every request twice. Wait for it to finish, stop it, "
                "or pass --wait-lock to wait for it")
        logger.warning("%s is locked by %s; waiting for it to finish (--wait-lock)",
                       self.path, holder)
        fcntl.flock(fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"PID {raw}" if raw.isdigit() else "PID unknown"


class BackgroundWriter:
    """Commits answers for an asyncio event loop on a background thread, so ``fsync`` never
    blocks the loop. Answers that arrive while a commit runs are committed together (group
    commit). ``await writer.put(answer)`` returns once the row is on disk."""

    def __init__(self, cache: AnswerCache):
        self.cache = cache
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="zhcls-label-cache", daemon=True)
        self._thread.start()

    async def put(self, answer: Answer) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((answer, future, loop))
        await future

    def close(self) -> None:
        """Commit everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            items = [item for item in batch if item is not None]
            error: BaseException | None = None
            try:
                if items:
                    self.cache.put_many([answer for answer, _, _ in items])
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                error = exc
                logger.error("cannot write the label cache %s: %s", self.cache.path, exc)
            for _, future, loop in items:
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _row_to_answer(row: tuple) -> Answer:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["probs"] = json.loads(data["probs"]) if data["probs"] else None
    data["notes"] = json.loads(data["notes"] or "{}")
    return Answer(**data)
