"""``zhcls label --llm`` under faults the first version mishandled: empty ``choices``, answers
that name no class, an input that already has a teacher column, two runs on one cache.

Small in-process runs against the fault server of tests/llm_server.py (real HTTP, no mocks).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from llm_server import GOLD_P, REPO, UNKNOWN_NAME, LLMTestServer, headlines, make_dataset
from zhcls.errors import ZhclsError
from zhcls.label.llm import CACHE_NAME, label_with_llm

FAST = dict(timeout=2.0, max_retries=2, backoff_base=0.01, backoff_max=0.05, progress=False,
            api_key_env=None)


@pytest.fixture()
def small(tmp_path):
    names, rows = headlines(12)
    return names, rows, make_dataset(tmp_path / "data", names, rows), tmp_path / "out"


def lines(out):
    return [ln.split("\t") for ln in (out / "train.txt").read_text("utf-8").splitlines()]


def cached_failures(out) -> list[tuple[str, str]]:
    conn = sqlite3.connect(out / CACHE_NAME)
    try:
        return conn.execute("SELECT reason, detail FROM answers WHERE status='failed'").fetchall()
    finally:
        conn.close()


# ------------------------------------------------------------------ empty choices
def test_empty_choices_are_retried_like_a_500(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="empty_choices_once") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert report.labelled == 12 and report.failed == 0
    assert report.transient_errors == {"empty_choices": 12} and server.total_hits == 24


def test_empty_choices_every_time_fail_after_the_retries(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="empty_choices_always") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert report.failure_kinds == {"empty_choices": 12} and server.total_hits == 12 * 3
    assert all(len(c) == 2 for c in lines(out))


# ---------------------------------------------------------------- unknown classes
def test_misspelt_gold_class_is_repaired(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="misspelt") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert report.labelled == 12 and report.repairs["renamed"] == 12 and server.total_hits == 12
    for (_, label), cols in zip(rows, lines(out), strict=True):
        assert json.loads(cols[2])[label] == pytest.approx(GOLD_P, abs=1e-6)


def test_unknown_class_is_asked_again(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="unknown_once") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert server.injected["unknown_class"] == 12 and server.total_hits == 24
    assert report.labelled == 12 and report.parse_retries == 12
    for (_, label), cols in zip(rows, lines(out), strict=True):
        assert json.loads(cols[2])[label] == pytest.approx(GOLD_P, abs=1e-6)


def test_unknown_class_every_time_fails_the_row_with_the_reason(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), force_fault="unknown_always") as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                parse_retries=1, **FAST)
    assert server.total_hits == 24 and report.failure_kinds == {"unknown_class": 12}
    assert all(len(c) == 2 for c in lines(out))  # never written as a teacher row
    failures = cached_failures(out)
    assert len(failures) == 12
    assert all(reason == "unknown_class" and UNKNOWN_NAME in detail for reason, detail in failures)


# ------------------------------------------------------------ relabelling KD data
@pytest.mark.parametrize("column", ["[-2.5, 3.0, 0.1]", "[0.2, 0.8]", "not a list"])
def test_existing_teacher_column_is_ignored(small, column):
    names, rows, data, out = small
    body = "".join(f"{t}\t{label}\t{column}\n" for t, label in rows)
    (data / "train.txt").write_text(body, encoding="utf-8")  # e.g. logits of --emit logits
    with LLMTestServer(names, dict(rows), faults=False) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    assert report.labelled == 12 and server.total_hits == 12
    for (_, label), cols in zip(rows, lines(out), strict=True):
        assert json.loads(cols[2])[label] == pytest.approx(GOLD_P, abs=1e-6)


# ------------------------------------------------------------------ the cache lock
HOLD = """
import sys
from zhcls.label.cache import CacheLock
with CacheLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


def hold_lock(cache):
    env_path = str(REPO / "src")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(cache)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": env_path})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_a_locked_cache_refuses_and_names_the_holder(small, caplog):
    from zhcls.cli import main

    names, rows, data, out = small
    holder = hold_lock(out / CACHE_NAME)
    try:
        with LLMTestServer(names, dict(rows), faults=False) as server:
            start = time.monotonic()
            with pytest.raises(ZhclsError, match=f"PID {holder.pid}.*--wait-lock"):
                label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
            code = main(["label", "--llm", "m", "--base-url", server.base_url, "--data",
                         str(data), "--out", str(out), "--api-key-env", "none", "--no-progress"])
            assert time.monotonic() - start < 5  # refused at once, not after a timeout
            assert server.total_hits == 0  # nothing paid twice
        assert code == 2 and f"PID {holder.pid}" in caplog.text  # the CLI's one-line error
    finally:
        holder.communicate("")


def test_wait_lock_waits_for_the_holder(small):
    names, rows, data, out = small
    holder = hold_lock(out / CACHE_NAME)
    released = threading.Timer(0.5, holder.communicate, args=("",))
    released.start()
    try:
        with LLMTestServer(names, dict(rows), faults=False) as server:
            start = time.monotonic()
            report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                    wait_lock=True, **FAST)
        assert time.monotonic() - start >= 0.4 and report.labelled == 12
    finally:
        released.join()


def test_lock_is_released_after_a_run(small):
    names, rows, data, out = small
    with LLMTestServer(names, dict(rows), faults=False) as server:
        label_with_llm(data, "train", out, model="m", base_url=server.base_url, **FAST)
    holder = hold_lock(out / CACHE_NAME)  # refuses (no 'locked' line) if still held
    holder.communicate("")
    assert holder.returncode == 0
