"""Bad input to ``zhcls predict`` / ``zhcls serve`` ends in exit code 2 and one log line that
names the file, line or flag: never a traceback. One process: every case calls
``zhcls.cli.main`` directly."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from predict_fixtures import head_checkpoint
from zhcls.cli import main


def _cut_before(file: Path, line: str) -> None:
    text = file.read_text(encoding="utf-8")
    file.write_text(text[: text.index(f"\n{line}") + 1], encoding="utf-8")  # still valid YAML


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _garbage(file: Path) -> None:
    file.write_bytes(b"\xff\xfe\x00garbage\x9c\x80" * 8)


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda ckpt: (ckpt / name).write_text(text, encoding="utf-8")


def _reorder_labels(ckpt: Path) -> None:
    labels = json.loads((ckpt / "labels.json").read_text(encoding="utf-8"))["labels"]
    (ckpt / "labels.json").write_text(json.dumps({"labels": labels[::-1]}), encoding="utf-8")


def _duplicate_labels(ckpt: Path) -> None:
    labels = json.loads((ckpt / "labels.json").read_text(encoding="utf-8"))["labels"]
    (ckpt / "labels.json").write_text(json.dumps({"labels": [labels[0], *labels[:-1]]}),
                                      encoding="utf-8")


# A damaged checkpoint: (case id, how to damage the copy, words the message must hold).
DAMAGED = [
    ("safetensors-truncated", lambda c: _truncate(c / "model.safetensors"), "model.safetensors"),
    ("safetensors-garbage", lambda c: _garbage(c / "model.safetensors"), "model.safetensors"),
    ("labels-truncated", lambda c: _truncate(c / "labels.json"), "labels.json"),
    ("labels-garbage", lambda c: _garbage(c / "labels.json"), "labels.json"),
    ("labels-list", _write("labels.json", '["a", "b", "c"]'), "labels.json"),
    ("labels-numbers", _write("labels.json", '{"labels": [1, 2, 3]}'), "labels.json"),
    ("labels-duplicate", _duplicate_labels, "labels.json"),
    ("labels-reordered", _reorder_labels, "labels.json"),
    ("yaml-truncated", lambda c: _truncate(c / "zhcls.yaml"), "zhcls.yaml"),
    ("yaml-garbage", lambda c: _garbage(c / "zhcls.yaml"), "zhcls.yaml"),
    ("yaml-list", _write("zhcls.yaml", "- a\n- b\n"), "zhcls.yaml"),
    ("yaml-cut-at-a-line-end", lambda c: _cut_before(c / "zhcls.yaml", "objective:"),
     "found no objective"),
    ("yaml-broken", _write("zhcls.yaml", "model: {head: [\n"), "zhcls.yaml"),
    ("encoder-truncated", lambda c: _truncate(c / "encoder_config.json"), "encoder_config.json"),
    ("encoder-garbage", lambda c: _garbage(c / "encoder_config.json"), "encoder_config.json"),
    ("encoder-list", _write("encoder_config.json", "[1, 2]"), "encoder_config.json"),
    ("encoder-no-type", _write("encoder_config.json", '{"hidden_size": 32}'),
     "encoder_config.json"),
    ("meta-newer", _write("meta.json", '{"format": 7, "zhcls_version": "9.0"}'), "meta.json"),
    ("meta-garbage", lambda c: _garbage(c / "meta.json"), "meta.json"),
    ("tokenizer-garbage", _write("tokenizer.json", "nope\n"), "tokenizer"),
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model) -> Path:
    return head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")


def run(caplog, argv: list[str]) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        code = main(argv)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return code, "\n".join(errors)


@pytest.mark.parametrize("name, damage, names", DAMAGED, ids=[d[0] for d in DAMAGED])
def test_damaged_checkpoint_is_a_one_line_error(tmp_path, caplog, ckpt, name, damage, names):
    copy = shutil.copytree(ckpt, tmp_path / "ckpt")
    damage(copy)
    code, message = run(caplog, ["predict", str(copy), "中超联赛", "--device", "cpu"])
    assert code == 2, message
    assert names in message and "\n" not in message, message


def _options(tmp_path: Path, ckpt: Path) -> list[tuple[str, list[str], list[str]]]:
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("体育新闻\n财经新闻\n".encode("gbk"))
    invisible = tmp_path / "invisible.txt"
    invisible.write_text("体育新闻\n\u200b\ufeff\n", encoding="utf-8")
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "好"}\n{"text": "\\u200b"}\n', encoding="utf-8")
    accents = tmp_path / "accents.txt"
    accents.write_text("体育\n好\n\u0301\u0301\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    shutil.copytree(ckpt, run_dir / "best")
    (tmp_path / "Tiny-Model").mkdir()
    p = ["predict", str(ckpt), "--device", "cpu"]
    return [
        ("serve-port", ["serve", str(ckpt), "--port", "99999"], ["--port", "99999"]),
        ("serve-port-negative", ["serve", str(ckpt), "--port", "-1"], ["--port"]),
        ("batch-size-0", [*p, "--batch-size", "0", "好"], ["--batch-size"]),
        ("chunk-size-0", [*p, "--chunk-size", "0", "好"], ["--chunk-size"]),
        ("threads-0", [*p, "--threads", "0", "好"], ["--threads"]),
        ("gbk-file", [*p, "--file", str(gbk)], [f"{gbk}:1", "--encoding gbk"]),
        ("unknown-encoding", [*p, "--file", str(gbk), "--encoding", "klingon"], ["--encoding"]),
        ("invisible-line", [*p, "--file", str(invisible)], [f"{invisible}:2", "U+200B"]),
        ("invisible-jsonl", [*p, "--file", str(jsonl)], [f"{jsonl}:2", "empty text"]),
        ("accents-only-line", [*p, "--file", str(accents), "--chunk-size", "2"],
         [f"{accents}:3", "empty text"]),
        ("invisible-argument", [*p, "好", "\u200b"], ["text 2: ", "empty text"]),  # from 1
        ("long-argument", [*p, "--long-text", "error", "好", "长" * 600],
         ["text 2: ", "longer than the model's limit"]),
        ("missing-path", ["predict", str(tmp_path / "tiny-model"), "好"],
         ["does not exist", str(tmp_path / "Tiny-Model")]),
        ("run-dir", ["predict", str(run_dir), "好"], [str(run_dir / "best")]),
    ]


OPTION_IDS = ["serve-port", "serve-port-negative", "batch-size-0", "chunk-size-0", "threads-0",
              "gbk-file", "unknown-encoding", "invisible-line", "invisible-jsonl",
              "accents-only-line", "invisible-argument", "long-argument", "missing-path",
              "run-dir"]


@pytest.mark.parametrize("case", OPTION_IDS)
def test_bad_option_or_input_is_a_one_line_error(tmp_path, caplog, ckpt, case):
    cases = {name: (argv, words) for name, argv, words in _options(tmp_path, ckpt)}
    argv, words = cases[case]
    code, message = run(caplog, argv)
    assert code == 2, message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_gbk_file_predicts_with_the_encoding_flag(tmp_path, caplog, capsys, ckpt):
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("体育新闻\n财经新闻\n".encode("gbk"))
    code, message = run(caplog, ["predict", str(ckpt), "--file", str(gbk), "--encoding", "gbk",
                                 "--format", "jsonl", "--device", "cpu"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0, message
    assert [r["text"] for r in rows] == ["体育新闻", "财经新闻"]


def test_abbreviated_options_are_not_guessed(caplog, ckpt):
    """``--text`` is not silently read as ``--text-field`` (which would predict nothing)."""
    code, message = run(caplog, ["predict", str(ckpt), "--text", "股市"])
    assert code == 2 and "--text" in message and "\n" not in message, message



def test_out_naming_the_input_file_is_refused_and_the_input_kept(tmp_path, caplog, ckpt):
    texts = tmp_path / "texts.txt"
    texts.write_text("体育新闻\n财经新闻\n", encoding="utf-8")
    before = texts.read_bytes()
    same = str(tmp_path / "." / "texts.txt")  # the same file under another spelling
    code, message = run(caplog, ["predict", str(ckpt), "--file", str(texts), "--out", same,
                                 "--format", "jsonl", "--device", "cpu"])
    assert code == 2 and "--out" in message and "--file" in message and "\n" not in message
    assert texts.read_bytes() == before


def test_a_failed_prediction_leaves_no_partial_output_and_keeps_an_old_one(tmp_path, caplog,
                                                                           ckpt):
    bad = tmp_path / "bad.txt"  # the empty text of line 5 comes after a first chunk of 2
    bad.write_text("体育\n财经\n股市\n足球\n\u200b\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    out.write_text("an earlier result\n", encoding="utf-8")
    code, message = run(caplog, ["predict", str(ckpt), "--file", str(bad), "--out", str(out),
                                 "--format", "jsonl", "--chunk-size", "2", "--device", "cpu"])
    assert code == 2 and f"{bad}:5" in message, message
    assert out.read_text(encoding="utf-8") == "an earlier result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "pred.jsonl"]


def test_a_missing_input_file_prints_nothing_on_stdout(tmp_path, caplog, capsys, ckpt):
    code, message = run(caplog, ["predict", str(ckpt), "--file", str(tmp_path / "no.txt"),
                                 "--device", "cpu"])
    assert code == 2 and str(tmp_path / "no.txt") in message, message
    assert capsys.readouterr().out == ""


def test_out_as_a_directory_is_refused_and_a_device_is_written_in_place(tmp_path, caplog, ckpt):
    code, message = run(caplog, ["predict", str(ckpt), "体育新闻", "--out", str(tmp_path),
                                 "--device", "cpu"])
    assert code == 2 and "--out" in message and "directory" in message, message
    assert list(tmp_path.iterdir()) == []
    import os

    fifo = tmp_path / "fifo"  # like /dev/null: not a regular file, so not renamed over
    os.mkfifo(fifo)
    import threading

    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    code, message = run(caplog, ["predict", str(ckpt), "体育新闻", "--out", str(fifo),
                                 "--format", "jsonl", "--device", "cpu"])
    reader.join(timeout=60)
    assert code == 0, message
    assert fifo.exists() and not fifo.is_file() and '"体育新闻"' in got[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]
