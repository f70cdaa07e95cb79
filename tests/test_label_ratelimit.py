"""``--rpm`` / ``--tpm`` token buckets on a fake clock: what is admitted when, and the
``--tpm`` accounting with the real ``usage.total_tokens`` of each response; backoff delays
and ``Retry-After``."""

from __future__ import annotations

import asyncio
import email.utils
from datetime import datetime, timedelta, timezone

import pytest

from zhcls.label.client import ChatClient, RunStats
from zhcls.label.options import LLMOptions
from zhcls.label.ratelimit import (
    RateLimiter,
    TokenBucket,
    backoff_delay,
    estimate_tokens,
    parse_retry_after,
)


class FakeClock:
    """``clock()`` reads the fake time; ``await clock.sleep(s)`` advances it at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_bucket_admits_the_burst_then_one_per_interval():
    clock = FakeClock()
    bucket = TokenBucket(60, burst_seconds=5, clock=clock, sleep=clock.sleep)  # 1/s, holds 5

    async def main() -> list[float]:
        return [await bucket.take(1) for _ in range(8)]

    waits = asyncio.run(main())
    assert waits[:5] == [0.0] * 5  # the burst
    assert waits[5:] == pytest.approx([1.0, 1.0, 1.0]) and clock.now == pytest.approx(3.0)


def test_bucket_refills_while_idle_but_not_beyond_its_capacity():
    clock = FakeClock()
    bucket = TokenBucket(60, burst_seconds=5, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        waits = [await bucket.take(5)]      # empties it
        clock.now += 2.0                    # 2 units back
        waits.append(await bucket.take(2))  # no wait
        clock.now += 100.0                  # full again, but only 5
        waits += [await bucket.take(5), await bucket.take(1)]
        return waits

    assert asyncio.run(main()) == pytest.approx([0.0, 0.0, 0.0, 1.0])


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_then_goes_into_debt():
    clock = FakeClock()
    bucket = TokenBucket(60, burst_seconds=5, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        return [await bucket.take(1), await bucket.take(50), await bucket.take(1)]

    # 1 s to refill to 5, then the debt of 45 plus one unit: 46 s
    assert asyncio.run(main()) == pytest.approx([0.0, 1.0, 46.0])


def test_settle_refunds_and_charges_the_difference():
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock, sleep=clock.sleep)  # 10 tokens/s, holds 50

    async def main() -> list[float]:
        await limiter.acquire(40)
        limiter.settle(40, 10)              # used 10 of the 40 reserved: 40 left
        start = clock.now
        await limiter.acquire(40)           # no wait thanks to the refund
        no_wait = clock.now - start
        limiter.settle(40, 100)             # used 100: charged 60 more, level -60
        await limiter.acquire(10)           # waits for 70 tokens: 7 s
        return [no_wait, clock.now - start]

    assert asyncio.run(main()) == pytest.approx([0.0, 7.0])


# ----------------------------------------------------------- through the real client
class FakeResponse:
    status_code, headers, text = 200, {}, ""

    def __init__(self, body: dict) -> None:
        self.body = body

    def json(self) -> dict:
        return self.body


class FakeHTTP:
    """Answers every request at once with ``usage.total_tokens = used`` (None: no usage)."""

    def __init__(self, used: int | None) -> None:
        self.used = used

    async def post(self, url: str, json: dict) -> FakeResponse:
        body = {"choices": [{"index": 0, "message": {"content": '{"a": 1}'}}]}
        if self.used is not None:
            body["usage"] = {"prompt_tokens": self.used - 5, "completion_tokens": 5,
                             "total_tokens": self.used}
        return FakeResponse(body)


PROMPT = "请判断新闻类别" * 4
TPM, MAX_TOKENS = 60_000, 512


def admitted_in_a_minute(used: int | None) -> int:
    opts = LLMOptions(model="m", base_url="http://test/v1", tpm=TPM, max_tokens=MAX_TOKENS,
                      api_key_env=None).resolved()
    clock = FakeClock()
    limiter = RateLimiter(tpm=TPM, clock=clock, sleep=clock.sleep)
    client = ChatClient(opts, FakeHTTP(used), limiter, RunStats())

    async def main() -> int:
        count = 0
        while clock.now < 60.0:
            await client.complete(PROMPT, 1)
            count += 1
        return count

    return asyncio.run(main())


def test_tpm_admits_by_real_usage_not_by_max_tokens():
    reserved = estimate_tokens(PROMPT) + MAX_TOKENS
    budget = TPM + TPM / 60 * 5  # one minute plus the 5 s burst
    assert admitted_in_a_minute(None) == pytest.approx(budget / reserved, rel=0.05)
    small = admitted_in_a_minute(50)  # the answers are 10x shorter than max_tokens allows
    assert small == pytest.approx(budget / 50, rel=0.05) and small > 8 * budget / reserved
    assert admitted_in_a_minute(2000) == pytest.approx(budget / 2000, rel=0.1)  # charged more


# ------------------------------------------------------------- backoff and estimates
def test_estimate_tokens():
    assert estimate_tokens("央行降准") == 4 and estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("") == 0


def test_backoff_and_retry_after():
    for attempt in range(6):
        delay = backoff_delay(attempt, 1.0, 8.0)
        ceiling = min(8.0, 2.0 ** attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(3, 1.0, 8.0, retry_after=2.5) == 2.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "99999"}) == 300.0
    future = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30),
                                         usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": future}) <= 30
