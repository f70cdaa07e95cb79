"""Bounded load test of ``zhcls serve`` on 127.0.0.1, with hostile traffic mixed in.

For every client count in ``--clients`` the checkpoint is served with micro-batching on
(``--max-batch 64 --max-wait-ms 5``) and, unless ``--no-baseline``, off (``--max-batch 1``).
Each of C concurrent clients sends R requests; of all requests:

* ``--malformed-frac`` (default 0.2) are malformed (broken JSON, wrong types, empty or too
  many texts, bad ``top_k``, unknown fields, invalid UTF-8, a body over the size limit, ...):
  every one must get a 4xx;
* one in ``--oversize-every`` (default 100) is a chunked body (no ``Content-Length``) of
  ``--oversize-mb`` MB: it must get a 413 without the server reading it all;
* the rest are good requests: each must get a 200 with one prediction per text, or a 503
  with ``Retry-After`` when the server sheds load.

Prints per scenario: requests/s, p50/p95/p99 latency of the good requests, status-code counts,
transport errors (no HTTP answer at all), malformed requests that did not get a 4xx, the mean
model batch size from ``/metrics`` and the server's RSS before, at peak and after. Exits 1 on
any transport error, any wrong answer or a dead server.

    python bench/serve_load.py --checkpoint runs/x/best --clients 64 128 --requests 30

Every request goes to 127.0.0.1 only; the number of requests is fixed (C x R per scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from predict_fixtures import ServerProcess  # noqa: E402  (the tests' real-server helper)

TEXTS = [
    "中超联赛第十轮主队逆转取胜", "央行宣布下调存款准备金率", "新款智能手机搭载自研芯片",
    "北京二手房成交量环比上涨", "教育部公布高考报名人数", "《英雄联盟》全球总决赛门票开售",
    "周杰伦新专辑首周销量破百万", "沪指收涨百分之一 券商股领涨", "国务院常务会议部署稳就业",
    "男子持刀抢劫便利店被警方抓获",
]
JSON = {"content-type": "application/json"}
MALFORMED: list[tuple[str, bytes, dict]] = [
    ("broken JSON", b'{"texts": ["a"', JSON),
    ("not an object", b"[1, 2]", JSON),
    ("texts missing", b'{"top_k": 1}', JSON),
    ("texts not a list", b'{"texts": "abc"}', JSON),
    ("item not a string", b'{"texts": ["a", 3]}', JSON),
    ("empty list", b'{"texts": []}', JSON),
    ("empty text", b'{"texts": ["a", "  "]}', JSON),
    ("too many texts", json.dumps({"texts": ["好"] * 65}).encode(), JSON),
    ("text too long", json.dumps({"texts": ["好" * 2001]}).encode(), JSON),
    ("top_k zero", b'{"texts": ["a"], "top_k": 0}', JSON),
    ("unknown field", b'{"texts": ["a"], "x": 1}', JSON),
    ("invalid UTF-8", b'{"texts": ["\xff\xfe"]}', JSON),
    ("deep nesting", b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}", JSON),
    ("not JSON at all", b"texts=a", {"content-type": "application/x-www-form-urlencoded"}),
    ("body over the limit", b'{"texts": ["' + b"a" * 1_000_000 + b'"]}', JSON),
]


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # good requests answered 200
    statuses: collections.Counter = field(default_factory=collections.Counter)
    transport: collections.Counter = field(default_factory=collections.Counter)
    wrong: list[str] = field(default_factory=list)  # answers that break the contract
    no_retry_after: int = 0


def oversize_body(megabytes: int):
    chunk = b"a" * 65_536

    async def gen():
        yield b'{"texts": ["'
        for _ in range(megabytes * 16):  # 64 KiB chunks of one never-ending text
            yield chunk
    return gen()


async def one_request(http: httpx.AsyncClient, url: str, kind: str, n: int, args, t: Tally,
                      rng: random.Random) -> None:
    start = time.perf_counter()
    try:
        if kind == "oversize":
            r = await http.post(url, content=oversize_body(args.oversize_mb), headers=JSON)
            if r.status_code != 413:
                t.wrong.append(f"chunked oversize body: {r.status_code} {r.text[:80]}")
        elif kind == "malformed":
            name, body, headers = rng.choice(MALFORMED)
            r = await http.post(url, content=body, headers=headers)
            if not 400 <= r.status_code < 500:
                t.wrong.append(f"malformed ({name}): {r.status_code} {r.text[:80]}")
        else:
            texts = [TEXTS[(n + j) % len(TEXTS)] for j in range(args.texts_per_request)]
            r = await http.post(url, json={"texts": texts})
            if r.status_code == 200:
                if len(r.json()["predictions"]) != len(texts):
                    t.wrong.append(f"good request: {r.text[:80]}")
                t.latencies.append(time.perf_counter() - start)
            elif r.status_code == 503:
                t.no_retry_after += "retry-after" not in r.headers
            else:
                t.wrong.append(f"good request: {r.status_code} {r.text[:80]}")
        t.statuses[r.status_code] += 1
    except httpx.HTTPError as exc:
        cause = exc.__cause__ or exc.__context__
        t.transport[f"{kind}: {type(exc).__name__} ({cause!r})"[:160]] += 1


async def client(http, url, worker, counter, args, t: Tally) -> None:
    rng = random.Random(worker)
    for _ in range(args.requests):
        n = next(counter)
        if n % args.oversize_every == args.oversize_every - 1:
            kind = "oversize"
        else:
            kind = "malformed" if rng.random() < args.malformed_frac else "good"
        await one_request(http, url + "/predict", kind, n, args, t, rng)


async def sample_rss(proc: psutil.Process, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        await asyncio.sleep(0.1)


async def load(server: ServerProcess, clients: int, args) -> dict:
    t = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    proc = psutil.Process(server.proc.pid)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await http.post(server.url + "/predict", json={"texts": TEXTS[:2]})  # warm-up
        before = await batch_stats(http, server.url)
        rss_before = proc.memory_info().rss
        peak, stop = [rss_before], asyncio.Event()
        sampler = asyncio.create_task(sample_rss(proc, peak, stop))
        counter = iter(range(10**9))
        start = time.perf_counter()
        await asyncio.gather(*(client(http, server.url, w, counter, args, t)
                               for w in range(clients)))
        seconds = time.perf_counter() - start
        stop.set()
        await sampler
        after = await batch_stats(http, server.url)
    lat = sorted(t.latencies) or [float("nan")]
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    calls = after[0] - before[0]
    return {"tally": t, "requests": sum(t.statuses.values()) + sum(t.transport.values()),
            "rps": clients * args.requests / seconds, "p50": statistics.median(lat),
            "p95": q[94], "p99": q[98], "rss": (rss_before, peak[0], proc.memory_info().rss),
            "mean_batch": (after[1] - before[1]) / calls if calls else 0.0}


async def batch_stats(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    text = (await http.get(url + "/metrics")).text
    values = {}
    for line in text.splitlines():
        for name in ("zhcls_batch_size_count", "zhcls_batch_size_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("zhcls_batch_size_count", 0.0), values.get("zhcls_batch_size_sum", 0.0)


def report(name: str, clients: int, r: dict) -> int:
    t: Tally = r["tally"]
    mb = [x / 2**20 for x in r["rss"]]
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(t.statuses.items()))
    print(f"{name:<28} {clients:>7} {r['requests']:>6} {r['rps']:>7.1f} {r['p50'] * 1e3:>7.1f} "
          f"{r['p95'] * 1e3:>7.1f} {r['p99'] * 1e3:>7.1f} {r['mean_batch']:>6.1f} "
          f"{sum(t.transport.values()):>6} {len(t.wrong):>6}  "
          f"{mb[0]:.0f}/{mb[1]:.0f}/{mb[2]:.0f}  {statuses}")
    for what, count in t.transport.most_common(5):
        print(f"    transport error x{count}: {what}")
    for what in t.wrong[:5]:
        print(f"    wrong answer: {what}")
    if t.no_retry_after:
        print(f"    {t.no_retry_after} answers 503 without Retry-After")
    return sum(t.transport.values()) + len(t.wrong) + t.no_retry_after


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint or ONNX export directory")
    ap.add_argument("--clients", type=int, nargs="+", default=[32],
                    help="concurrent client counts, one run each (default 32)")
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--texts-per-request", type=int, default=1)
    ap.add_argument("--malformed-frac", type=float, default=0.2,
                    help="fraction of malformed requests (default 0.2)")
    ap.add_argument("--oversize-every", type=int, default=100,
                    help="one chunked oversize body per this many requests (default 100)")
    ap.add_argument("--oversize-mb", type=int, default=16, help="size of that body (16 MB)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the server without micro-batching (--max-batch 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="--threads for the servers (model CPU threads)")
    ap.add_argument("--server-args", default="", help="extra `zhcls serve` flags, one string")
    args = ap.parse_args()
    if max(args.clients) * args.requests > 20_000:
        ap.error("keep the test bounded: clients x requests <= 20000")

    print(f"checkpoint {args.checkpoint}; {args.requests} requests per client, "
          f"{args.texts_per_request} text(s) per good request, {args.malformed_frac:.0%} "
          f"malformed, 1 chunked {args.oversize_mb} MB body per {args.oversize_every}; "
          f"server threads {args.threads or 'default'}; server and clients on 127.0.0.1")
    print(f"\n{'server':<28} {'clients':>7} {'reqs':>6} {'req/s':>7} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'batch':>6} {'transp':>6} {'wrong':>6}  "
          "RSS MB before/peak/after  status counts")
    failed = 0
    scenarios = [("micro-batching (64 / 5 ms)", ["--max-batch", "64", "--max-wait-ms", "5"])]
    if not args.no_baseline:
        scenarios.append(("no batching (--max-batch 1)", ["--max-batch", "1", "--max-wait-ms",
                                                          "0"]))
    threads = ["--threads", str(args.threads)] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in scenarios:
            server = ServerProcess(Path(args.checkpoint), Path(tmp) / "serve.log", "--device",
                                   args.device, *threads, *flags, *args.server_args.split())
            try:
                for clients in args.clients:
                    failed += report(name, clients, asyncio.run(load(server, clients, args)))
                if not server.alive():
                    print(f"    server died:\n{(Path(tmp) / 'serve.log').read_text()}")
                    failed += 1
            finally:
                server.stop()
    print(f"\n{'OK: 0 transport errors, 0 wrong answers' if not failed else f'FAILED: {failed}'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
