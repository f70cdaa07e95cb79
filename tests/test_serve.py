"""``zhcls serve`` as a real process on 127.0.0.1: endpoints, identical numbers to the Python
API, 4xx JSON errors for bad requests (and the service stays up), Prometheus metrics,
micro-batching under concurrent load; plus the batcher on its own."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import numpy as np
import pytest

from predict_fixtures import ServerProcess, sample_texts, trained_checkpoint
from zhcls.inference.classifier import Classifier
from zhcls.serve.batcher import MicroBatcher


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model, tiny_data):
    return trained_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)


@pytest.fixture(scope="module")
def server(ckpt, tmp_path_factory):
    proc = ServerProcess(ckpt, tmp_path_factory.mktemp("serve") / "serve.log", "--device", "cpu",
                         "--max-texts", "16", "--max-chars", "100", "--max-batch", "32",
                         "--max-wait-ms", "20")
    yield proc
    proc.stop()


def post(server, body, **kw) -> httpx.Response:
    return httpx.post(server.url + "/predict", json=body, timeout=30, **kw)


def test_health_labels_docs(server):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["backend"] == "torch" and health["num_labels"] == 3
    assert httpx.get(server.url + "/labels").json() == {"labels": ["体育", "财经", "科技"]}
    assert httpx.get(server.url + "/docs").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/predict" in spec["paths"] and "PredictRequest" in spec["components"]["schemas"]


def test_predictions_equal_the_python_api(server, ckpt):
    texts = sample_texts(7)
    clf = Classifier.load(ckpt, "cpu")
    r = post(server, {"texts": texts, "top_k": 2, "probs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = [p.to_dict() for p in clf.predict(texts, top_k=2)]
    got = [{k: v for k, v in p.items() if k != "probs"} for p in body["predictions"]]
    assert got == expected  # same labels, same float32 scores, same ranking
    assert [p["probs"] for p in body["predictions"]] == clf.predict_proba(texts).tolist()
    assert body["labels"] == clf.labels
    single = post(server, {"texts": [texts[0]]}).json()["predictions"][0]
    assert set(single) == {"label", "label_id", "score"}


BAD_REQUESTS = [
    ("malformed JSON", b'{"texts": ["a"', 400, "malformed JSON"),
    ("not an object", b"[1, 2]", 422, "valid dictionary"),
    ("texts missing", b'{"top_k": 1}', 422, "texts: Field required"),
    ("texts not a list", b'{"texts": "abc"}', 422, "texts: Input should be a valid list"),
    ("wrong item type", b'{"texts": ["a", 3]}', 422, "texts[1]: Input should be a valid string"),
    ("empty list", b'{"texts": []}', 422, "texts is empty"),
    ("empty text", b'{"texts": ["a", "  "]}', 422, "texts[1]: empty text"),
    ("too many texts", json.dumps({"texts": ["好"] * 17}).encode(), 422, "too many texts: 17 > 16"),
    ("text too long", json.dumps({"texts": ["好" * 101]}).encode(), 422,
     "texts[0] has 101 characters"),
    ("top_k zero", b'{"texts": ["a"], "top_k": 0}', 422, "top_k must be an integer from 1 to 3"),
    ("top_k string", b'{"texts": ["a"], "top_k": "2"}', 422, "top_k: Input should be a valid int"),
    ("unknown field", b'{"texts": ["a"], "x": 1}', 422, "x: Extra inputs are not permitted"),
    ("huge body", b'{"texts": ["' + b"a" * 2_000_000 + b'"]}', 413, "over the limit"),
]


@pytest.mark.parametrize(("name", "body", "status", "message"), BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_4xx_json_and_the_service_stays_up(server, name, body, status, message):
    r = httpx.post(server.url + "/predict", content=body, timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert server.alive()
    assert post(server, {"texts": ["中超联赛"]}).status_code == 200


def test_chunked_oversize_body_gets_413_without_being_read(server):
    """No Content-Length: the server counts what arrives and answers 413 at the limit, not a
    400/422 after reading and parsing 8 MB."""
    def body():
        yield b'{"texts": ["'
        for _ in range(128):
            yield b"a" * 65_536

    r = httpx.post(server.url + "/predict", content=body(), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "over the limit" in r.json()["error"]
    assert server.alive() and post(server, {"texts": ["中超联赛"]}).status_code == 200


def test_random_methods_do_not_grow_the_metrics(server):
    for i in range(20):
        httpx.request(f"XMETHOD{i}", server.url + f"/x{i}")
    text = httpx.get(server.url + "/metrics").text
    assert "XMETHOD" not in text and "/x1" not in text
    assert 'method="other"' in text


def test_wrong_method_and_path_are_json_4xx(server):
    r = httpx.get(server.url + "/predict")
    assert r.status_code == 405 and r.json()["error"] == "Method Not Allowed"
    assert httpx.get(server.url + "/nope").status_code == 404


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_concurrent_load_is_micro_batched_with_no_errors(server):
    """32 concurrent clients x 10 requests: every answer right and 200, fewer model calls
    than requests (requests were gathered into batches)."""
    before = httpx.get(server.url + "/metrics").text
    texts = sample_texts(40)
    errors: list[str] = []

    def client(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            for i in range(10):
                batch = [texts[(worker + i) % 40], texts[(worker * 3 + i) % 40]]
                r = http.post(server.url + "/predict", json={"texts": batch})
                if r.status_code != 200 or len(r.json()["predictions"]) != 2:
                    errors.append(f"{r.status_code} {r.text[:100]}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and server.alive()
    after = httpx.get(server.url + "/metrics").text
    calls = metric(after, "zhcls_batch_size_count") - metric(before, "zhcls_batch_size_count")
    texts_done = metric(after, "zhcls_batch_size_sum") - metric(before, "zhcls_batch_size_sum")
    assert texts_done == 640
    assert calls < 320, f"{calls} model calls for 320 requests: no micro-batching happened"


def test_metrics_are_prometheus_text(server):
    post(server, {"texts": ["好"]})
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE zhcls_requests_total counter" in text
    assert "# TYPE zhcls_request_latency_seconds histogram" in text
    assert "# TYPE zhcls_batch_size histogram" in text
    assert metric(text, 'zhcls_requests_total{endpoint="/predict",method="POST",status="200"}') >= 1
    assert 'zhcls_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"' in text


# ---- the batcher on its own ---------------------------------------------------------------

def run_batcher(job_sizes: list[int], max_batch: int, max_wait_ms: float, delay: float = 0.0):
    calls: list[int] = []

    def predict(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        time.sleep(delay)
        return np.array([[float(t), -float(t)] for t in texts])  # row i belongs to text i

    async def main():
        batcher = MicroBatcher(predict, max_batch, max_wait_ms)
        await batcher.start()
        jobs = [[str(100 * j + i) for i in range(n)] for j, n in enumerate(job_sizes)]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.stop()
        return jobs, results

    jobs, results = asyncio.run(main())
    for job, rows in zip(jobs, results, strict=True):
        np.testing.assert_array_equal(rows[:, 0], [float(t) for t in job])
    return calls


def test_batcher_gathers_concurrent_jobs_and_routes_rows_back():
    calls = run_batcher([2, 3, 1, 4, 2], max_batch=64, max_wait_ms=50)
    assert calls == [12]


def test_batcher_respects_max_batch_without_splitting_jobs():
    calls = run_batcher([3, 3, 3, 3, 5], max_batch=7, max_wait_ms=50)
    assert calls == [6, 6, 5] and max(calls) <= 7
    assert run_batcher([9, 1], max_batch=4, max_wait_ms=10) == [9, 1]  # big job runs alone


def test_batcher_without_waiting_still_answers_every_job():
    calls = run_batcher([1] * 20, max_batch=1, max_wait_ms=0)
    assert calls == [1] * 20

# (a failing text fails only its own request: tests/test_serve_faults.py)
