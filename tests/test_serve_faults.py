"""The service under hostile input, faults and load, in process (the app from ``create_app``
driven over ASGI, its lifespan run by hand): bodies cut at the size limit as they arrive,
a failing text that fails only its own request, bounded Prometheus labels, a bounded queue
(503 + Retry-After), ``/health`` when the batching worker died, shutdown that leaves no request
pending, optional API key, ``/docs`` without a CDN."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx
import numpy as np
import pytest

from predict_fixtures import trained_checkpoint
from zhcls.inference.classifier import Classifier
from zhcls.serve.app import ServeSettings, create_app
from zhcls.serve.batcher import MicroBatcher, Overloaded, Unavailable
from zhcls.serve.metrics import ServiceMetrics


@pytest.fixture(scope="module")
def clf(tmp_path_factory, tiny_model, tiny_data) -> Classifier:
    return Classifier.load(trained_checkpoint(tmp_path_factory.getbasetemp(), tiny_model,
                                              tiny_data), "cpu")


def call(app, requests, timeout: float = 20.0):
    """Run ``requests(client)`` against ``app`` with its lifespan (batcher) started."""
    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://zhcls") as c:
                return await asyncio.wait_for(requests(c), timeout)
    return asyncio.run(main())


# ---- 1. body limit ------------------------------------------------------------------------

def test_chunked_body_over_the_limit_is_cut_and_gets_413(clf):
    """No Content-Length (chunked): the bytes are counted as they arrive and reading stops
    just past the limit."""
    settings = ServeSettings(max_texts=4, max_chars=100)
    app = create_app(clf, settings)
    chunk, chunks, sent = b"a" * 65_536, 200, []  # 12.8 MB offered

    async def receive():
        sent.append(1)
        if len(sent) == 1:
            return {"type": "http.request", "body": b'{"texts": ["', "more_body": True}
        return {"type": "http.request", "body": chunk, "more_body": len(sent) < chunks}

    answer: list[dict] = []

    async def send(message):
        answer.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"content-type", b"application/json"),
                                                      (b"transfer-encoding", b"chunked")]}
    asyncio.run(app(scope, receive, send))
    assert answer[0]["status"] == 413
    assert b"over the limit" in answer[1]["body"]
    assert len(sent) <= settings.max_body_bytes // len(chunk) + 2  # stopped at the limit


# ---- 2. failure isolation ------------------------------------------------------------------

def test_one_failing_text_fails_only_its_own_request():
    calls: list[int] = []

    def predict(texts):
        calls.append(len(texts))
        if "bad" in texts:
            raise RuntimeError("model exploded on 'bad'")
        return np.array([[float(len(t)), 0.0] for t in texts])  # (N, 2)

    async def main():
        batcher = MicroBatcher(predict, 8, 50)
        await batcher.start()
        out = await asyncio.gather(batcher.submit(["a"]), batcher.submit(["bad", "bb"]),
                                   batcher.submit(["ccc"]), return_exceptions=True)
        after = await batcher.submit(["dddd"])  # the same batcher keeps serving
        await batcher.stop()
        return out, after

    (a, bad, c), after = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and "exploded" in str(bad)
    assert a.tolist() == [[1.0, 0.0]] and c.tolist() == [[3.0, 0.0]]  # innocent ones answered
    assert after.tolist() == [[4.0, 0.0]]
    assert calls[0] == 4 and sorted(calls[1:4]) == [1, 1, 2]  # one batch, then one by one


# ---- 3. bounded metric labels ----------------------------------------------------------------

def test_unknown_methods_and_paths_do_not_create_metric_series():
    metrics = ServiceMetrics()
    for i in range(300):
        metrics.observe_request(f"M{i}ETHOD", f"/random/{i}", 404, 0.001)
    metrics.observe_request("POST", "/predict", 200, 0.01)
    text = metrics.render()[0].decode()
    series = [ln for ln in text.splitlines() if ln.startswith("zhcls_requests_total{")]
    assert len(series) == 2, series
    assert 'method="other"' in text and "M1ETHOD" not in text and "/random/" not in text
    assert 'zhcls_requests_total{endpoint="other",method="other",status="404"} 300.0' in text


# ---- 4. overload ---------------------------------------------------------------------------

def test_full_queue_answers_503_with_retry_after(clf):
    app = create_app(clf, ServeSettings(max_batch=1, max_wait_ms=0, max_queue=2))

    score = app.state.batcher.predict_fn

    def slow(texts):
        time.sleep(0.2)
        return score(texts)

    app.state.batcher.predict_fn = slow

    async def requests(c):
        return await asyncio.gather(*(c.post("/predict", json={"texts": ["中超联赛"]})
                                      for _ in range(8)))

    answers = call(app, requests)
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2  # the queue holds 2
    busy = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"].isdigit() and "overloaded" in r.json()["error"]
               for r in busy)


def test_batcher_queue_is_bounded():
    async def main():
        batcher = MicroBatcher(lambda t: (time.sleep(0.2), np.zeros((len(t), 2)))[1], 1, 0,
                               max_queue=2)
        await batcher.start()
        jobs = [asyncio.create_task(batcher.submit([str(i)])) for i in range(5)]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return out

    out = asyncio.run(main())
    assert sum(isinstance(o, Overloaded) for o in out) >= 2
    assert sum(isinstance(o, np.ndarray) for o in out) >= 2


# ---- 5. worker death, shutdown ---------------------------------------------------------------

def test_health_is_503_and_requests_fail_fast_when_the_worker_died(clf, monkeypatch):
    async def broken(self):
        raise RuntimeError("worker bug")

    monkeypatch.setattr(MicroBatcher, "_gather", broken)
    app = create_app(clf)

    async def requests(c):
        await asyncio.sleep(0.05)
        return await c.get("/health"), await c.post("/predict", json={"texts": ["中超"]})

    health, predict = call(app, requests, timeout=10)
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert "worker bug" in health.json()["reason"]
    assert predict.status_code == 503 and "worker bug" in predict.json()["error"]


def test_dead_worker_fails_the_requests_it_held():
    def predict(texts):
        time.sleep(0.1)
        return np.zeros((len(texts), 2))

    async def main():
        batcher = MicroBatcher(predict, 1, 0)
        await batcher.start()
        jobs = [asyncio.create_task(batcher.submit([str(i)])) for i in range(4)]
        await asyncio.sleep(0.02)
        batcher._task.cancel()  # the worker dies while jobs wait
        done, pending = await asyncio.wait(jobs, timeout=2)
        alive = batcher.alive
        await batcher.stop()
        return done, pending, alive

    done, pending, alive = asyncio.run(main())
    assert not pending and not alive
    assert all(isinstance(j.exception(), Unavailable) for j in done)


def test_stop_leaves_no_request_pending_and_does_not_block_the_loop():
    def predict(texts):
        time.sleep(0.5)
        return np.zeros((len(texts), 2))

    async def main():
        batcher = MicroBatcher(predict, 1, 0)
        await batcher.start()
        jobs = [asyncio.create_task(batcher.submit([str(i)])) for i in range(5)]
        await asyncio.sleep(0.05)  # the first is in the model, four wait
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        start = time.perf_counter()
        await batcher.stop(drain_s=0.1)
        seconds = time.perf_counter() - start
        await asyncio.sleep(0)
        tick.cancel()
        refused = await asyncio.gather(batcher.submit(["x"]), return_exceptions=True)
        return jobs, seconds, ticks, refused

    jobs, seconds, ticks, refused = asyncio.run(main())
    assert all(j.done() for j in jobs)
    assert sum(isinstance(j.exception(), Unavailable) for j in jobs) >= 3
    assert seconds < 0.45 and ticks >= 5  # did not wait for the model call on the loop
    assert isinstance(refused[0], Unavailable)


# ---- 6. API key ------------------------------------------------------------------------------

def test_api_key_guards_every_route_but_health(clf, caplog):
    key = "k3y-0f-the-test-123"
    app = create_app(clf, ServeSettings(api_key=key))
    good = {"authorization": f"Bearer {key}"}

    async def requests(c):
        out = {"health": await c.get("/health")}
        for path in ("/labels", "/metrics", "/docs", "/openapi.json"):
            out[path] = await c.get(path)
        out["none"] = await c.post("/predict", json={"texts": ["中超"]})
        out["wrong"] = await c.post("/predict", json={"texts": ["中超"]},
                                    headers={"authorization": "Bearer nope"})
        out["raw"] = await c.post("/predict", json={"texts": ["中超"]},
                                  headers={"authorization": key})
        out["good"] = await c.post("/predict", json={"texts": ["中超"]}, headers=good)
        out["labels ok"] = await c.get("/labels", headers=good)
        return out

    with caplog.at_level(logging.DEBUG):
        out = call(app, requests)
    assert out["health"].status_code == 200
    for name in ("/labels", "/metrics", "/docs", "/openapi.json", "none", "wrong", "raw"):
        assert out[name].status_code == 401, name
        assert out[name].headers["www-authenticate"] == "Bearer"
    assert "API key" in out["none"].json()["error"]
    assert out["good"].status_code == 200 and out["labels ok"].status_code == 200
    assert key not in caplog.text and key not in repr(app.state.settings)


def test_cli_api_key_env_unset_is_a_one_line_error(tmp_path, monkeypatch, caplog):
    from zhcls.cli import main

    monkeypatch.delenv("ZHCLS_TEST_NO_KEY", raising=False)
    assert main(["serve", str(tmp_path), "--api-key-env", "ZHCLS_TEST_NO_KEY"]) == 2
    err = caplog.text
    assert "ZHCLS_TEST_NO_KEY is not set" in err and "Traceback" not in err


# ---- 7. docs offline -------------------------------------------------------------------------

def test_docs_load_without_internet(clf):
    app = create_app(clf)

    async def requests(c):
        page = await c.get("/docs")
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        return page, {a: await c.get(a) for a in assets}

    page, assets = call(app, requests)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    assert not re.search(r"https?://", page.text), "the page loads something from the internet"
    js = [a for a in assets if a.endswith(".js")]
    css = [a for a in assets if a.endswith(".css")]
    assert js and css
    for url, r in assets.items():
        assert r.status_code == 200 and len(r.content) > 1000, url


def test_a_text_the_tokenizer_drops_entirely_is_a_422_not_a_500(clf):
    """U+FFFD passes the visible-character check, but the BERT normaliser drops it: the
    error surfaced inside the batcher and the client got a 500."""
    app = create_app(clf, ServeSettings(max_wait_ms=0))

    async def requests(c):
        return await c.post("/predict", json={"texts": ["央行降准", "\ufffd"]})

    r = call(app, requests)
    assert r.status_code == 422, r.text
    assert "texts[1]" in r.json()["error"] and "empty text" in r.json()["error"]


# ---- 8. request content -----------------------------------------------------------------------

def test_a_body_that_is_not_sent_as_json_is_a_415_naming_its_content_type(clf):
    """curl -d sends application/x-www-form-urlencoded: FastAPI did not parse the (valid)
    JSON and the client got a misleading 422 "Input should be a valid dictionary"."""
    app = create_app(clf, ServeSettings(max_wait_ms=0))
    body = '{"texts": ["央行"]}'.encode()

    async def requests(c):
        out = {}
        for kind in ("text/plain", "application/x-www-form-urlencoded",
                     "application/json; charset=utf-8", "application/problem+json", None):
            headers = {"content-type": kind} if kind else {}
            out[kind] = await c.post("/predict", content=body, headers=headers)
        return out

    out = call(app, requests)
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        r = out[kind]
        assert r.status_code == 415, (kind, r.text)
        assert (kind or "no Content-Type") in r.json()["error"]
        assert "'Content-Type: application/json'" in r.json()["error"]
    for kind in ("application/json; charset=utf-8", "application/problem+json"):
        assert out[kind].status_code == 200, (kind, out[kind].text)


def test_an_all_unknown_text_carries_the_same_warning_as_predict(clf):
    """Every token [UNK]: `zhcls predict` and the API warn that the label is a guess; the
    service answered without the warning."""
    rare = "ꙮ🙂ᚠ"
    app = create_app(clf, ServeSettings(max_wait_ms=0))

    async def requests(c):
        return (await c.post("/predict", json={"texts": [rare, "中超联赛"], "top_k": 2}),
                await c.get("/openapi.json"))

    r, spec = call(app, requests)
    assert r.status_code == 200, r.text
    expected = [p.to_dict() for p in clf.predict([rare, "中超联赛"], top_k=2)]
    assert expected[0]["warning"].startswith("every token is [UNK]")
    assert r.json()["predictions"] == expected  # the warning, and only on the first text
    schema = spec.json()["components"]["schemas"]["PredictionOut"]["properties"]
    assert "warning" in schema
