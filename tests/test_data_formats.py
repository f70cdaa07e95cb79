"""Reading THUCNews / CSV / JSONL files: good input, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from conftest import THUCNEWS, requires_thucnews
from zhcls.data.formats import find_split_file, read_class_names, read_split
from zhcls.errors import DataError

CLASSES = ["体育", "财经", "科技"]


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_reads_ids_names_and_teacher(tmp_path):
    path = write(tmp_path, "train.txt",
                 "男篮夺冠\t0\n央行降息\t财经\t[0.1, 0.8, 0.1]\n\n芯片突破\t2\t[10, 10, 80]\n")
    split = read_split(path, CLASSES)
    assert [e.label for e in split.examples] == [0, 1, 2]
    assert [e.line for e in split.examples] == [1, 2, 4]
    assert split.examples[0].teacher is None
    assert split.examples[1].teacher == pytest.approx([0.1, 0.8, 0.1])
    assert split.examples[2].teacher == pytest.approx([0.1, 0.1, 0.8])  # percentages
    assert split.teacher_report.percentages == [4]


def test_class_txt_without_final_newline(tmp_path):
    path = write(tmp_path, "class.txt", "finance\nrealty\nstocks")
    assert read_class_names(path) == ["finance", "realty", "stocks"]


@pytest.mark.parametrize("content,needle", [
    ("", "class.txt is empty"),
    ("a\nb\na\n", "duplicate class name 'a'"),
    ("a\n\nb\n", "empty class name"),
])
def test_bad_class_txt(tmp_path, content, needle):
    path = write(tmp_path, "class.txt", content)
    with pytest.raises(DataError, match=needle):
        read_class_names(path)


def test_missing_class_txt(tmp_path):
    with pytest.raises(DataError, match="class.txt not found"):
        read_class_names(tmp_path / "class.txt")


@pytest.mark.parametrize("line,needle", [
    ("只有一列", "expected 2 or 3 tab-separated columns.*found 1"),
    ("a\t0\t[0.1,0.8,0.1]\textra", "found 4"),
    ("文本\t3", "label id 3 out of range.*3 classes"),
    ("文本\t-1", "label id -1 out of range"),
    ("文本\t1.5", "neither an integer id nor a class name"),
    ("文本\t汽车", "'汽车' is neither an integer id nor a class name"),
    ("   \t0", "empty text"),
    ("\u200b\ufeff\t0", "empty text after normalisation.*U\\+200B U\\+FEFF"),
    ("\ufffd \u0301\t0", "empty text after normalisation.*U\\+0301 U\\+FFFD"),
    ("文本\t0\t[0.5, 0.5]", "2 values but class.txt names 3"),
    ("文本\t0\t[0.5, 0.5", "not a JSON list"),
    ("文本\t0\t[0.5, -0.1, 0.6]", "must be >= 0"),
    ("文本\t0\t[3, 4, 801]", "sum to 808"),
    ('文本\t0\t{"a": 1}', "JSON object"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, needle):
    path = write(tmp_path, "train.txt", f"好文本\t0\n{line}\n")
    with pytest.raises(DataError, match=needle) as info:
        read_split(path, CLASSES)
    assert f"{path}:2:" in str(info.value)
    assert info.value.line == 2


def test_undecodable_bytes_name_encoding_and_line(tmp_path):
    path = write(tmp_path, "train.txt", "好文本\t0\n".encode() + "坏文本\t1\n".encode("gbk"))
    with pytest.raises(DataError, match=r"train.txt:2: cannot decode .* as utf-8"):
        read_split(path, CLASSES)
    gbk = write(tmp_path, "dev.txt", "好文本\t0\n坏文本\t1\n".encode("gbk"))
    split = read_split(gbk, CLASSES, encoding="gb18030")  # the hint in the message works
    assert split.texts == ["好文本", "坏文本"]


def test_skip_bad_lines_reports_count_and_lines(tmp_path, caplog):
    path = write(tmp_path, "train.txt", "好\t0\n坏\t9\n好\t1\n\t0\n好\t2\n")
    split = read_split(path, CLASSES, on_bad_line="skip")
    assert len(split.examples) == 3
    assert split.skipped == [2, 4]
    assert "skipped 2 bad lines (first: 2, 4)" in caplog.text


def test_teacher_policies(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\t[0.2, 0.2, 0.2]\nb\t1\t[0.1, 0.8, 0.1]\n")
    with pytest.raises(DataError, match="sum to 0.6"):
        read_split(path, CLASSES)
    normalized = read_split(path, CLASSES, teacher_policy="normalize")
    assert normalized.examples[0].teacher == pytest.approx([1 / 3] * 3)
    assert normalized.teacher_report.normalized == [1]
    skipped = read_split(path, CLASSES, teacher_policy="skip")
    assert skipped.examples[0].teacher is None and skipped.teacher_report.skipped == [1]
    logits = read_split(path, CLASSES, teacher_kind="logits")  # logits are not probabilities
    assert logits.examples[0].teacher == [0.2, 0.2, 0.2]


def test_csv_and_jsonl(tmp_path):
    csv_path = write(tmp_path, "train.csv",
                     'text,label,teacher_probs\n"男篮, 夺冠",体育,\n央行降息,1,"[0.1,0.8,0.1]"\n')
    split = read_split(csv_path, CLASSES)
    assert split.texts == ["男篮, 夺冠", "央行降息"] and split.labels == [0, 1]
    assert split.examples[1].teacher == pytest.approx([0.1, 0.8, 0.1])
    rows = [{"text": "芯片突破", "label": "科技", "teacher_probs": [0.1, 0.1, 0.8]},
            {"text": "男篮夺冠", "label": 0}]
    jl = write(tmp_path, "dev.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    split = read_split(jl, CLASSES)
    assert split.labels == [2, 0] and split.examples[0].teacher == pytest.approx([0.1, 0.1, 0.8])


def test_csv_and_jsonl_errors(tmp_path):
    with pytest.raises(DataError, match="missing \\['label'\\]"):
        read_split(write(tmp_path, "a.csv", "text,y\n文本,0\n"), CLASSES)
    with pytest.raises(DataError, match=r"b.jsonl:2: invalid JSON"):
        read_split(write(tmp_path, "b.jsonl", '{"text": "文本", "label": 0}\n{"text": \n'), CLASSES)
    with pytest.raises(DataError, match=r"c.jsonl:1: expected a JSON object"):
        read_split(write(tmp_path, "c.jsonl", '["文本", 0]\n'), CLASSES)


def test_find_split_file(tmp_path):
    write(tmp_path, "dev.jsonl", "")
    assert find_split_file(tmp_path, "dev").name == "dev.jsonl"
    with pytest.raises(DataError, match="looked for train.txt, train.tsv, train.csv, train.jsonl"):
        find_split_file(tmp_path, "train")


@requires_thucnews
def test_reads_shared_thucnews():
    classes = read_class_names(THUCNEWS / "class.txt")
    assert len(classes) == 10 and classes[0] == "finance"
    split = read_split(THUCNEWS / "train.txt", classes)
    assert len(split.examples) == 33590
    assert sorted(set(split.labels)) == list(range(10))
