"""``zhcls label --llm`` against a real HTTP server (tests/llm_server.py), no mocks of httpx.

The big runs go through the CLI in a subprocess, so the server (a thread of this process)
does not share the GIL with the client; the small ones call ``label_with_llm`` directly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

import pytest

from llm_server import (
    GOLD_P,
    REPO,
    LLMTestServer,
    expected_outcome,
    fault_for,
    headlines,
    make_dataset,
)
from zhcls.errors import ZhclsError
from zhcls.label.llm import CACHE_NAME, label_with_llm

KEY_ENV = "ZHCLS_TEST_LLM_KEY"
KEY = "sk-zhcls-FAKE-7f3a9c1e5b2d4a6f8e0c-do-not-leak"
TIMEOUT, SLOW = 1.5, 2.0  # client timeout vs. the server's injected slow answers
FAST = dict(timeout=TIMEOUT, max_retries=2, backoff_base=0.01, backoff_max=0.05,
            progress=False, api_key_env=KEY_ENV)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def cli(server: LLMTestServer, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zhcls", "label", "--llm", "test-model", "--base-url",
            server.base_url, "--api-key-env", KEY_ENV, "--data", str(data), "--out", str(out),
            "--timeout", str(TIMEOUT), "--max-retries", "2", "--backoff-base", "0.01",
            "--backoff-max", "0.05", "--no-progress", *extra]


def env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, KEY_ENV: KEY, "PYTHONPATH": path}


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_no_key(out: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def read_lines(out: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in (out / "train.txt").read_text("utf-8").splitlines()]


@pytest.mark.slow
# ------------------------------------------------------------------- the big end-to-end
def test_2000_sentences_with_faults_lose_nothing(tmp_path):
    names, rows = headlines(2000)
    data, out = make_dataset(tmp_path / "data", names, rows), tmp_path / "out"
    gold = dict(rows)
    faults = Counter(fault_for(t) for t in gold)
    with LLMTestServer(names, gold, slow_seconds=SLOW) as server:
        start = time.monotonic()
        proc = run(cli(server, data, out, "--concurrency", "16", "--price-in", "1",
                       "--price-out", "2"))
        wall = time.monotonic() - start
        report = json.loads((out / "label_report.json").read_text("utf-8"))
        print(f"\n2000-sentence run: {wall:.1f}s wall, {report['http_requests']} requests, "
              f"{report['requests_per_second']:.0f} req/s, injected {dict(server.injected)}, "
              f"failures {report['failure_kinds']}")

        lines = read_lines(out)  # nothing lost: every line, in order, gold label kept
        assert [(c[0], int(c[1])) for c in lines] == rows
        expected = Counter(expected_outcome(f) for f in faults.elements()) - Counter()
        del expected[None]
        assert report["failure_kinds"] == dict(expected)
        assert report["failed"] == sum(expected.values()) == sum(len(c) == 2 for c in lines)
        failed_lines = [i for i, (t, _) in enumerate(rows, 1) if expected_outcome(fault_for(t))]
        assert report["failed_lines"] == failed_lines[:20]
        for (text, label), cols in zip(rows, lines, strict=True):
            if len(cols) == 3:  # the answered class keeps its mass: none went to a non-class
                probs = json.loads(cols[2])
                want = (label + 1) % len(names) if fault_for(text) == "wrong" else label
                assert max(range(len(probs)), key=probs.__getitem__) == want
                assert probs[want] >= GOLD_P - 0.01  # (sum_801 rounds to 3 decimals)

        # what the client counted matches what the server injected
        assert server.injected["429"] == faults["rate_limit_once"] + 3 * faults["rate_limit_always"]
        assert server.injected["500"] == faults["server_error_once"] + 3 * faults["server_error_always"]
        assert report["transient_errors"].get("http_429", 0) == server.injected["429"]
        assert report["transient_errors"].get("http_500", 0) == server.injected["500"]
        assert server.injected["empty_choices"] == (faults["empty_choices_once"]
                                                    + 3 * faults["empty_choices_always"])
        assert report["transient_errors"]["empty_choices"] == server.injected["empty_choices"]
        assert report["transient_errors"].get("timeout", 0) >= server.injected["slow"]
        assert report["transient_errors"].get("timeout", 0) <= server.injected["slow"] + 10
        assert report["parse_retries"] == (faults["truncated_once"] + 2 * faults["truncated_always"]
                                           + faults["unknown_once"] + 2 * faults["unknown_always"])
        assert report["repairs"]["unknown_names"] == 2 * faults["unknown_zero"]
        assert report["repairs"]["renamed"] == faults["misspelt"]
        assert report["repairs"]["renormalised"] >= faults["sum_80"] + faults["sum_801"]
        labelled = report["labelled"]
        assert report["agreement"] == pytest.approx((labelled - faults["wrong"]) / labelled)
        assert report["prompt_tokens"] == server.usage["prompt_tokens"] > 0
        assert report["completion_tokens"] == server.usage["completion_tokens"] > 0
        assert report["estimated_cost"] == pytest.approx(
            (report["prompt_tokens"] + 2 * report["completion_tokens"]) / 1e6)
        assert server.auth_headers == {f"Bearer {KEY}"}

        hits = server.total_hits  # a re-run that keeps the failures makes no call at all
        again = run(cli(server, data, out, "--concurrency", "16", "--no-retry-failed"))
        report2 = json.loads((out / "label_report.json").read_text("utf-8"))
        assert server.total_hits == hits and report2["http_requests"] == 0
        assert report2["from_cache"] == report2["labelled"] == labelled
        assert read_lines(out) == lines
    assert_no_key(out, proc.stdout, proc.stderr, again.stdout, again.stderr)


# --------------------------------------------------------------------- kill -9 and resume
def committed_texts(cache: Path) -> set[str]:
    conn = sqlite3.connect(cache)
    try:
        return {r[0] for r in conn.execute("SELECT text FROM answers WHERE status='ok'")}
    finally:
        conn.close()


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path):
    names, rows = headlines(600)
    data, out = make_dataset(tmp_path / "data", names, rows), tmp_path / "out"
    with LLMTestServer(names, dict(rows), faults=False, delay=0.01) as server:
        with open(tmp_path / "first.log", "w") as log:
            proc = subprocess.Popen(cli(server, data, out, "--concurrency", "4"), env=env(),
                                    stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while sum(server.successes.values()) < 150:
                assert proc.poll() is None, "labeller finished before it could be killed"
                assert time.monotonic() < deadline, "server saw too few requests"
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        served = Counter(server.successes)
        done = committed_texts(out / CACHE_NAME)
        assert 0 < len(done) < len(rows)
        assert all(served[t] == 1 for t in done)
        in_flight = set(served) - done  # answered by the server, not yet on disk at the kill
        assert len(in_flight) <= 8

        second = run(cli(server, data, out, "--concurrency", "4"))
        assert all(server.successes[t] == 1 for t in done), "a completed text was re-requested"
        report = json.loads((out / "label_report.json").read_text("utf-8"))
        assert report["from_cache"] == len(done)
        assert report["requested"] == len(rows) - len(done)
        lines = read_lines(out)
        assert [(c[0], int(c[1])) for c in lines] == rows and all(len(c) == 3 for c in lines)

        hits = server.total_hits  # same settings again: no request at all
        third = run(cli(server, data, out, "--concurrency", "4"))
        assert server.total_hits == hits
        assert json.loads((out / "label_report.json").read_text("utf-8"))["requested"] == 0
    assert_no_key(out, (tmp_path / "first.log").read_text(), second.stdout, second.stderr,
                  third.stdout, third.stderr)


# ------------------------------------------------------------- small in-process scenarios
@pytest.fixture()
def small(tmp_path):
    names, rows = headlines(30)
    return names, rows, make_dataset(tmp_path / "data", names, rows), tmp_path / "out"


def test_samples_use_n_when_the_server_supports_it(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), faults=False) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                samples=3, **FAST)
    assert server.total_hits == 30 and {b["n"] for b in server.bodies} == {3}
    assert {b["temperature"] for b in server.bodies} == {0.7}
    assert report.labelled == 30 and report.agreement == 1.0


@pytest.mark.parametrize("how", ["ignored", "rejected"])
def test_samples_fall_back_to_separate_requests(small, how):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), faults=False, support_n=False,
                       reject_n=how == "rejected") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                samples=3, concurrency=1, **FAST)
    assert server.total_hits == 90 and report.labelled == 30 and report.failed == 0
    assert len(server.bodies) == 90 + (how == "rejected")  # one n=3 request was refused


def test_use_logprobs(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), faults=False) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                use_logprobs=True, **FAST)
    body = server.bodies[0]
    assert body["logprobs"] is True and body["top_logprobs"] == 10 and body["max_tokens"] == 1
    assert "0. " in body["messages"][0]["content"]
    probs = json.loads(read_lines(out)[0][2])
    assert probs[rows[0][1]] == pytest.approx(0.85) and report.agreement == 1.0


def test_retry_after_is_honoured(small):
    names, rows, data, out = small
    few = make_dataset(data.parent / "few", names, rows[:3])
    with LLMTestServer(names, dict(rows), force_fault="rate_limit_once",
                       retry_after="1") as server:
        start = time.monotonic()
        report = label_with_llm(few, "train", out, model="m", base_url=server.base_url,
                                concurrency=3, **FAST)
        elapsed = time.monotonic() - start
    assert elapsed >= 1.0 and report.labelled == 3
    assert report.transient_errors == {"http_429": 3} and server.total_hits == 6


def test_rejected_key_stops_the_run_without_showing_it(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), fatal_status=401) as server, \
            pytest.raises(ZhclsError, match="HTTP 401.*--api-key-env") as err:
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert KEY not in str(err.value) and "***" in str(err.value)


def test_connection_errors_abort_and_are_recorded(small):
    names, rows, data, out = small
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ZhclsError, match="5 texts in a row failed.*connection_error"):
        label_with_llm(data, "train", out, model="m", base_url=url, concurrency=1,
                       abort_after_failures=5, **FAST)
    report = label_with_llm(data, "train", out, model="m", base_url=url, concurrency=4,
                            abort_after_failures=0, **FAST)
    assert report.failure_kinds == {"connection_error": 30} and report.labelled == 0
    assert all(len(c) == 2 for c in read_lines(out))


def test_failed_rows_are_retried_on_rerun(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="truncated_always") as server:
        first = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                               parse_retries=1, **FAST)
        assert first.failure_kinds == {"unparseable": 30} and server.total_hits == 60
        conn = sqlite3.connect(out / CACHE_NAME)
        assert conn.execute("SELECT COUNT(*) FROM answers WHERE raw LIKE '{%'").fetchone()[0] == 30
        conn.close()
        kept = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                              parse_retries=1, retry_failed=False, **FAST)
        assert server.total_hits == 60 and kept.failed == 30
        server.force_fault, server.faults = None, False
        again = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                               parse_retries=1, **FAST)
    assert server.total_hits == 90 and again.labelled == 30 and again.requested == 30


def test_dry_run_sends_nothing(small, capsys):
    names, rows, data, out = small
    from zhcls.cli import main

    with LLMTestServer(names, dict(rows), faults=False) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                dry_run=True, **FAST)
        assert server.total_hits == 0 and report.estimated_requests == 30
        assert rows[0][0] in report.prompt_preview and names[0] in report.prompt_preview
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
        code = main(["label", "--llm", "m", "--base-url", server.base_url, "--data", str(data),
                     "--out", str(out), "--api-key-env", KEY_ENV, "--dry-run"])
        assert code == 0 and server.total_hits == 30
    printed = capsys.readouterr().out
    assert "first prompt" in printed and "0 requests needed" in printed


def test_duplicates_are_asked_once_and_all_lines_written(small):
    names, rows, data, out = small
    dup = make_dataset(data.parent / "dup", names, rows[:10] + rows[:10] + rows[3:5])
    with LLMTestServer(names, dict(rows), faults=False) as server:
        report = label_with_llm(dup, "train", out, model="m", base_url=server.base_url, **FAST)
    assert server.total_hits == 10 and report.rows == 22 and report.labelled == 22


def test_error_bodies_echoing_the_key_are_redacted(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="echo_key_400") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert report.failure_kinds == {"http_400": 30} and server.total_hits == 30
    conn = sqlite3.connect(out / CACHE_NAME)
    details = [r[0] for r in conn.execute("SELECT detail FROM answers")]
    conn.close()
    assert all("Bearer ***" in d for d in details)
    assert_no_key(out)


def test_prompt_options_reach_the_server(small, tmp_path):
    names, rows, data, out = small
    (tmp_path / "desc.json").write_text(json.dumps({names[0]: "DESC-0"}), encoding="utf-8")
    (tmp_path / "t.txt").write_text("{classes}\n{examples}\n<<<\n{text}\n>>>\n{{json}}",
                                    encoding="utf-8")
    with LLMTestServer(names, dict(rows), faults=False) as server:
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, few_shot=2,
                       descriptions=tmp_path / "desc.json", prompt=tmp_path / "t.txt",
                       json_mode=True, extra_body={"enable_thinking": False}, **FAST)
        content = server.bodies[0]["messages"][0]["content"]
        assert f"- {names[0]}：DESC-0" in content and "示例" in content
        assert content.endswith("{json}")
        assert server.bodies[0]["response_format"] == {"type": "json_object"}
        assert server.bodies[0]["enable_thinking"] is False
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert server.total_hits == 60  # other settings, other cache keys


def test_no_key_sends_no_authorization(small, monkeypatch):
    names, rows, data, out = small
    monkeypatch.delenv(KEY_ENV)
    with LLMTestServer(names, dict(rows), faults=False) as server:
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert server.auth_headers == {None}


def test_out_must_differ_from_data(small):
    names, rows, data, out = small
    with pytest.raises(ZhclsError, match="is the input dataset directory"):
        label_with_llm(data, "train", data, model="m", base_url="http://127.0.0.1:9/v1", **FAST)


# ------------------------------------------------------------------------------- CLI
def test_cli_wires_teacher_mode(monkeypatch, tmp_path):
    from zhcls.cli import main

    calls = []
    fake = types.ModuleType("zhcls.label.local")
    fake.label_with_checkpoint = lambda *a, **kw: calls.append((a, kw))
    monkeypatch.setitem(sys.modules, "zhcls.label.local", fake)
    assert main(["label", "--teacher", "ckpt", "--data", "d", "--out", "o", "--split", "dev",
                 "--emit", "logits", "--batch-size", "8", "--device", "cpu"]) == 0
    assert calls == [(("ckpt", "d", "dev", "o"),
                      {"emit": "logits", "batch_size": 8, "device": "cpu"})]


@pytest.mark.parametrize("argv", [
    ["label", "--data", "d", "--out", "o"],
    ["label", "--llm", "m", "--teacher", "c", "--data", "d", "--out", "o"],
])
def test_cli_needs_exactly_one_teacher(argv, capsys):
    from zhcls.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "--llm" in capsys.readouterr().err


def test_cli_rejects_bad_extra_body(small):
    from zhcls.cli import main

    names, rows, data, out = small
    assert main(["label", "--llm", "m", "--data", str(data), "--out", str(out),
                 "--extra-body", "[1]"]) == 2
