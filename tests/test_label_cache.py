"""The label answer cache (SQLite) and the KD dataset writer."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from zhcls.data.formats import read_split
from zhcls.errors import DataError, ZhclsError
from zhcls.label.cache import Answer, AnswerCache, BackgroundWriter, cache_key
from zhcls.label.writer import (
    LabelReport,
    format_probs,
    teacher_quality,
    write_json_atomic,
    write_labelled_dataset,
)

NAMES = ["财经", "房产", "体育"]


def answer(key: str, status: str = "ok", probs=(0.7, 0.2, 0.1), **kw) -> Answer:
    return Answer(key=key, model="m", prompt_hash="h", samples=1, temperature=0.0,
                  text=f"text {key}", status=status,
                  probs=list(probs) if status == "ok" else None, **kw)


# ------------------------------------------------------------------------------ cache
def test_cache_key_depends_on_every_field():
    base = ("m", "h", 1, 0.0, "文本")
    k = cache_key(*base)
    assert k == cache_key(*base) and len(k) == 64
    for i, other in enumerate(("m2", "h2", 2, 0.7, "文本2")):
        changed = list(base)
        changed[i] = other
        assert cache_key(*changed) != k


def test_roundtrip_and_persistence(tmp_path):
    path = tmp_path / "c.sqlite"
    with AnswerCache(path) as cache:
        cache.put(answer("a", notes={"percent": 1}, prompt_tokens=10, completion_tokens=5))
        cache.put(answer("b", status="failed", reason="timeout", detail="no response",
                         raw="{trunc"))
    with AnswerCache(path) as cache:
        got = cache.get_many(["a", "b", "missing"])
        assert set(got) == {"a", "b"}
        assert got["a"].ok and got["a"].probs == [0.7, 0.2, 0.1]
        assert got["a"].notes == {"percent": 1} and got["a"].prompt_tokens == 10
        assert not got["b"].ok and got["b"].reason == "timeout" and got["b"].raw == "{trunc"
        assert cache.count() == 2 and cache.count("ok") == 1


def test_ok_is_never_overwritten_by_failed_but_failed_is_replaced(tmp_path):
    with AnswerCache(tmp_path / "c.sqlite") as cache:
        cache.put(answer("a"))
        cache.put(answer("a", status="failed", reason="timeout"))
        assert cache.get_many(["a"])["a"].ok
        cache.put(answer("b", status="failed", reason="unparseable"))
        cache.put(answer("b", probs=(0.1, 0.1, 0.8)))
        assert cache.get_many(["b"])["b"].probs == [0.1, 0.1, 0.8]


def test_wal_and_full_sync(tmp_path):
    path = tmp_path / "c.sqlite"
    with AnswerCache(path) as cache:
        cache.put(answer("a"))
        assert cache._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cache._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        # a second process sees committed rows while the first is still open
        other = sqlite3.connect(path)
        assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 1
        other.close()


def test_many_keys_are_fetched_in_chunks(tmp_path):
    with AnswerCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([answer(str(i)) for i in range(1203)])
        assert len(cache.get_many([str(i) for i in range(1300)])) == 1203


def test_not_an_sqlite_file(tmp_path):
    bad = tmp_path / "c.sqlite"
    bad.write_text("this is not a database " * 100)
    with pytest.raises(ZhclsError, match="cannot open the label cache"):
        AnswerCache(bad)


def test_background_writer_commits_before_put_returns(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = AnswerCache(path)

    async def main():
        writer = BackgroundWriter(cache)
        try:
            await asyncio.gather(*(writer.put(answer(str(i))) for i in range(50)))
            other = sqlite3.connect(path)  # a different connection sees every row already
            assert other.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 50
            other.close()
        finally:
            writer.close()

    asyncio.run(main())
    cache.close()


# ----------------------------------------------------------------------------- writer
@pytest.fixture()
def dataset(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    (d / "train.txt").write_text("央行降准\t0\n楼市回暖\t1\n\n国足获胜\t2\n", encoding="utf-8")
    (d / "dev.txt").write_text("股市大涨\t0\n", encoding="utf-8")
    (d / "test.csv").write_text("text,label\n篮球比赛,体育\n", encoding="utf-8")
    return d


def test_write_labelled_dataset(dataset, tmp_path):
    out = tmp_path / "out"
    rows = [[0.9, 0.05, 0.05], None, [1 / 3, 1 / 3, 1 / 3]]
    path = write_labelled_dataset(dataset, "train", out, rows)
    assert path == out / "train.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ["央行降准\t0\t[0.900000, 0.050000, 0.050000]", "楼市回暖\t1",
                     "国足获胜\t2\t[0.333333, 0.333333, 0.333333]"]
    for name in ("class.txt", "dev.txt", "test.csv"):
        assert (out / name).read_bytes() == (dataset / name).read_bytes()
    assert not list(out.glob(".*.tmp"))
    split = read_split(path, NAMES, teacher_policy="normalize")
    assert [e.teacher is not None for e in split.examples] == [True, False, True]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_csv_and_jsonl_input_give_txt_output(tmp_path, suffix):
    d = tmp_path / "data"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(NAMES), encoding="utf-8")
    if suffix == ".csv":
        (d / "train.csv").write_text('text,label\n"含\t制表符",财经\n楼市,1\n', encoding="utf-8")
    else:
        (d / "train.jsonl").write_text(
            json.dumps({"text": "含\t制表符", "label": "财经"}, ensure_ascii=False) + "\n"
            + json.dumps({"text": "楼市", "label": 1}, ensure_ascii=False) + "\n",
            encoding="utf-8")
    out = tmp_path / "out"
    path = write_labelled_dataset(d, "train", out, [[1, 0, 0], [0, 1, 0]])
    assert path.name == "train.txt" and not (out / f"train{suffix}").exists()
    assert path.read_text(encoding="utf-8").splitlines() == [
        "含 制表符\t0\t[1.000000, 0.000000, 0.000000]", "楼市\t1\t[0.000000, 1.000000, 0.000000]"]


def test_writer_errors(dataset, tmp_path):
    with pytest.raises(DataError, match="output directory is the input"):
        write_labelled_dataset(dataset, "train", dataset, [None] * 3)
    with pytest.raises(ValueError, match="3 examples but 2 teacher rows"):
        write_labelled_dataset(dataset, "train", tmp_path / "o", [None, None])
    with pytest.raises(ValueError, match="teacher row has 2 values"):
        write_labelled_dataset(dataset, "train", tmp_path / "o", [[0.5, 0.5], None, None])
    with pytest.raises(ValueError, match="must hold finite numbers"):
        write_labelled_dataset(dataset, "train", tmp_path / "o", [[float("nan"), 0, 0], None, None])
    with pytest.raises(DataError, match="no dev2 split"):
        write_labelled_dataset(dataset, "dev2", tmp_path / "o", [])


def test_logits_may_be_negative(dataset, tmp_path):
    path = write_labelled_dataset(dataset, "train", tmp_path / "o", [[-1.5, 2, 0.25]] * 3)
    assert path.read_text("utf-8").splitlines()[0] == "央行降准\t0\t[-1.500000, 2.000000, 0.250000]"


def test_format_probs_and_quality():
    assert format_probs([0.1234567, 1]) == "[0.123457, 1.000000]"
    assert teacher_quality([0, 1, 2], [[0.9, 0.1, 0], [0.6, 0.4, 0], None]) == (0.5, 0.75)
    assert teacher_quality([0], [None]) == (None, None)


def test_report_json(tmp_path):
    report = LabelReport(split="train", model="m", output="o/train.txt", cache="c", rows=3,
                         unique_texts=3, labelled=2, failed=1,
                         failure_kinds={"timeout": 1}, failed_lines=[2])
    write_json_atomic(tmp_path / "r.json", report.to_dict())
    assert json.loads((tmp_path / "r.json").read_text())["failure_kinds"] == {"timeout": 1}
    assert "2/3 rows labelled" in report.summary() and "timeout" in report.summary()
