"""Bounded load test of ``zhcls serve`` on 127.0.0.1, all in one run: the same checkpoint is
served with micro-batching on (``--max-batch 64 --max-wait-ms 5``) and off (``--max-batch 1``),
and each server gets C concurrent clients x R requests (plus a single-client run, to show
throughput growing with load). Prints requests/s, texts/s, p50/p95/p99 latency, errors and the
mean model batch size read from ``/metrics``; exits 1 if any request failed.

    python bench/serve_load.py --checkpoint runs/x/best --clients 32 --requests 50

Every request goes to 127.0.0.1 only; the number of requests is fixed (C x R per scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from predict_fixtures import ServerProcess  # noqa: E402  (the tests' real-server helper)

TEXTS = [
    "中超联赛第十轮主队逆转取胜", "央行宣布下调存款准备金率", "新款智能手机搭载自研芯片",
    "北京二手房成交量环比上涨", "教育部公布高考报名人数", "《英雄联盟》全球总决赛门票开售",
    "周杰伦新专辑首周销量破百万", "沪指收涨百分之一 券商股领涨", "国务院常务会议部署稳就业",
    "男子持刀抢劫便利店被警方抓获",
]


async def client(http: httpx.AsyncClient, url: str, worker: int, requests: int, per_request: int,
                 latencies: list[float], errors: list[str]) -> None:
    for i in range(requests):
        texts = [TEXTS[(worker + i + j) % len(TEXTS)] for j in range(per_request)]
        start = time.perf_counter()
        try:
            r = await http.post(url + "/predict", json={"texts": texts})
            ok = r.status_code == 200 and len(r.json()["predictions"]) == per_request
            if not ok:
                errors.append(f"{r.status_code}: {r.text[:120]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - start)


async def load(url: str, clients: int, requests: int, per_request: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await http.post(url + "/predict", json={"texts": TEXTS[:2]})  # warm-up
        before = await batch_stats(http, url)
        start = time.perf_counter()
        await asyncio.gather(*(client(http, url, w, requests, per_request, latencies, errors)
                               for w in range(clients)))
        seconds = time.perf_counter() - start
        after = await batch_stats(http, url)
    q = statistics.quantiles(latencies, n=100)
    calls = after[0] - before[0]
    return {"requests": len(latencies), "seconds": seconds, "rps": len(latencies) / seconds,
            "tps": len(latencies) * per_request / seconds, "p50": statistics.median(latencies),
            "p95": q[94], "p99": q[98], "errors": errors,
            "mean_batch": (after[1] - before[1]) / calls if calls else 0.0}


async def batch_stats(http: httpx.AsyncClient, url: str) -> tuple[float, float]:
    text = (await http.get(url + "/metrics")).text
    values = {}
    for line in text.splitlines():
        for name in ("zhcls_batch_size_count", "zhcls_batch_size_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("zhcls_batch_size_count", 0.0), values.get("zhcls_batch_size_sum", 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint or ONNX export directory")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=50, help="requests per client")
    ap.add_argument("--texts-per-request", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="--threads for the servers (model CPU threads)")
    args = ap.parse_args()
    if args.clients * args.requests > 20_000:
        ap.error("keep the test bounded: clients x requests <= 20000")

    print(f"checkpoint {args.checkpoint}; {args.clients} clients x {args.requests} requests, "
          f"{args.texts_per_request} text(s) each, server threads {args.threads or 'default'}, "
          "server and clients on 127.0.0.1")
    print(f"\n{'server':<32} {'clients':>7} {'req/s':>8} {'texts/s':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'p99 ms':>7} {'batch':>6} {'errors':>6}")
    failed = 0
    scenarios = (("micro-batching (64 / 5 ms)", ["--max-batch", "64", "--max-wait-ms", "5"],
                  (1, args.clients)),
                 ("no batching (--max-batch 1)", ["--max-batch", "1", "--max-wait-ms", "0"],
                  (args.clients,)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags, client_counts in scenarios:
            threads = ["--threads", str(args.threads)] if args.threads else []
            server = ServerProcess(Path(args.checkpoint), Path(tmp) / "serve.log", "--device",
                                   args.device, *threads, *flags)
            try:
                for clients in client_counts:
                    requests = args.requests if clients > 1 else args.requests * 4
                    r = asyncio.run(load(server.url, clients, requests, args.texts_per_request))
                    failed += len(r["errors"])
                    print(f"{name:<32} {clients:>7} {r['rps']:>8.1f} {r['tps']:>8.1f} "
                          f"{r['p50'] * 1e3:>7.1f} {r['p95'] * 1e3:>7.1f} {r['p99'] * 1e3:>7.1f} "
                          f"{r['mean_batch']:>6.1f} {len(r['errors']):>6}")
                    for err in r["errors"][:3]:
                        print(f"    error: {err}")
                if not server.alive():
                    print(f"    server died:\n{(Path(tmp) / 'serve.log').read_text()}")
                    failed += 1
            finally:
                server.stop()
    print(f"\n{'OK: 0 errors' if not failed else f'FAILED: {failed} errors'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
