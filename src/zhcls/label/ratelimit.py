"""Client-side rate limits (requests and tokens per minute) as asyncio token buckets, and
the retry delays (exponential backoff with jitter, ``Retry-After``).

Each bucket refills continuously at ``per_minute / 60`` per second and holds at most
``burst_seconds`` worth of tokens, so a run starts at most that burst and then settles to
the configured rate instead of hitting the provider's per-minute window and getting 429s.
A request larger than the bucket (a very long prompt under a small ``--tpm``) waits for a
full bucket and then drives it negative, so it is never blocked forever.

``--tpm`` is accounted with what the server reports: a request reserves its estimate
before it is sent, and :meth:`RateLimiter.settle` refunds the difference to the real
``usage.total_tokens`` (or charges it, driving the bucket negative when the answer was
longer than estimated). Clock and sleep are injectable, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import logging
import random
import time
import unicodedata
from collections.abc import Awaitable, Callable

from zhcls.utils import is_cjk

logger = logging.getLogger(__name__)

BURST_SECONDS = 5.0
_EPSILON = 1e-6  # units: a deficit this small counts as paid


def estimate_tokens(text: str) -> int:
    """Rough token count for ``--tpm`` accounting: one token per CJK ideograph
    (:func:`zhcls.utils.is_cjk`) or other wide character (full-width punctuation, kana), one
    per four other characters (close to BPE tokenizers of DeepSeek, Qwen, GPT-4o on Chinese)."""
    cjk = sum(1 for c in text if is_cjk(c) or unicodedata.east_asian_width(c) in "WF")
    return cjk + (len(text) - cjk + 3) // 4


class TokenBucket:
    """A bucket of ``per_minute`` units per minute; :meth:`take` waits until it can pay.
    ``clock`` (seconds, monotonic) and ``sleep`` default to the real ones."""

    def __init__(self, per_minute: float, burst_seconds: float = BURST_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        if per_minute <= 0:
            raise ValueError(f"rate must be > 0 per minute, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self._clock, self._sleep = clock, sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: float = 1.0) -> float:
        """Wait until ``amount`` units are available (FIFO) and take them; returns the
        seconds waited."""
        waited = 0.0
        async with self._lock:
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need - _EPSILON:  # float dust must not spin the loop
                delay = (need - self.level) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
            self.level -= amount
        return waited

    def give_back(self, amount: float) -> None:
        """Return ``amount`` units (negative: take more), never above the capacity."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits together (either may be None)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.requests = TokenBucket(rpm, clock=clock, sleep=sleep) if rpm else None
        self.tokens = TokenBucket(tpm, clock=clock, sleep=sleep) if tpm else None
        self.waited = 0.0

    async def acquire(self, tokens: int) -> None:
        """Wait for one request slot and ``tokens`` tokens."""
        if self.requests is not None:
            self.waited += await self.requests.take(1.0)
        if self.tokens is not None:
            self.waited += await self.tokens.take(float(tokens))

    def settle(self, reserved: int, used: int | None) -> None:
        """A response reported ``used`` tokens for a request that reserved ``reserved``:
        refund (or charge) the difference. ``used=None`` (no usage) keeps the estimate."""
        if self.tokens is not None and used is not None:
            self.tokens.give_back(float(reserved - used))


MAX_RETRY_AFTER = 300.0


def parse_retry_after(headers: dict[str, str] | object) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP
    date); None when absent or unreadable. Capped at :data:`MAX_RETRY_AFTER`."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get("retry-after-ms")
    if value is not None:
        try:
            return min(MAX_RETRY_AFTER, max(0.0, float(value) / 1000.0))
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    delta = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return min(MAX_RETRY_AFTER, max(0.0, delta))


def backoff_delay(attempt: int, base: float, maximum: float,
                  retry_after: float | None = None) -> float:
    """Delay before retry number ``attempt + 1``: the server's ``Retry-After`` when given,
    else exponential backoff ``base * 2**attempt`` capped at ``maximum``, with "equal
    jitter" (a uniformly random half) so concurrent clients do not retry in lockstep."""
    if retry_after is not None:
        return retry_after
    ceiling = min(maximum, base * (2 ** attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)
