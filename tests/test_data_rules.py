"""Data rules: unambiguous labels, skippable bad lines, one line splitter, class coverage,
dataset directory layout, and the teacher column as real LLM output comes."""

from __future__ import annotations

import json

import pytest

from zhcls.data.formats import (
    find_split_file,
    read_split,
    resolve_data_dir,
    warn_class_coverage,
)
from zhcls.data.teacher import TeacherRules
from zhcls.errors import DataError

CLASSES = ["体育", "财经", "科技"]
NUMERIC = [str(i) for i in range(1, 11)]  # class.txt holding 1..10


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


# -- numeric class names and data.label_format ---------------------------------------------

def test_auto_refuses_labels_readable_as_id_and_as_name(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\nb\t1\nc\t9\n")  # 0-based ids, names 1..10
    with pytest.raises(DataError, match=r"train.txt:2: label '1' is ambiguous.*"
                                        r"data.label_format id.*or name") as info:
        read_split(path, NUMERIC)
    assert info.value.line == 2


def test_ambiguous_labels_are_not_skipped_as_bad_lines(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\nb\t1\nc\t9\n")
    with pytest.raises(DataError, match="ambiguous"):
        read_split(path, NUMERIC, on_bad_line="skip")


def test_label_format_id_and_name(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\nb\t1\nc\t9\n")
    assert read_split(path, NUMERIC, label_format="id").labels == [0, 1, 9]
    names = write(tmp_path, "dev.txt", "a\t1\nb\t2\nc\t10\n")
    assert read_split(names, NUMERIC, label_format="name").labels == [0, 1, 9]
    with pytest.raises(DataError, match=r"dev.txt:3: label id 10 out of range"):
        read_split(names, NUMERIC, label_format="id")
    with pytest.raises(DataError, match=r"train.txt:1: label '0' is not a class name"):
        read_split(path, NUMERIC, label_format="name")
    text_names = write(tmp_path, "test.txt", "a\t体育\n")
    with pytest.raises(DataError, match="'体育' is not an integer id.*label_format is id"):
        read_split(text_names, CLASSES, label_format="id")


def test_auto_still_reads_unambiguous_files(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\nb\t10\n")  # '0' only an id, '10' only a name
    assert read_split(path, NUMERIC).labels == [0, 9]
    same = write(tmp_path, "dev.txt", "a\t0\nb\t2\n")  # names '0'..'2' in id order agree
    assert read_split(same, ["0", "1", "2"]).labels == [0, 2]


# -- on_bad_line: skip covers every kind of bad line ---------------------------------------

def test_skip_covers_wrong_column_count_and_broken_json(tmp_path, caplog):
    tsv = write(tmp_path, "train.txt", "好\t0\n只有一列\n好\t1\na\t0\t[0.1,0.8,0.1]\tx\n")
    split = read_split(tsv, CLASSES, on_bad_line="skip")
    assert split.labels == [0, 1] and split.skipped == [2, 4]
    jl = write(tmp_path, "dev.jsonl", '{"text": "好", "label": 0}\n{"text": \n["x", 0]\n'
                                      '{"text": "好", "label": 2}\n')
    split = read_split(jl, CLASSES, on_bad_line="skip")
    assert split.labels == [0, 2] and split.skipped == [2, 3]
    csv_path = write(tmp_path, "test.csv", "text,label\n好,0\n好,1,extra\n只有一列\n好,2\n")
    split = read_split(csv_path, CLASSES, on_bad_line="skip")
    assert split.labels == [0, 2] and split.skipped == [3, 4]


def test_csv_wrong_column_count_names_line(tmp_path):
    path = write(tmp_path, "train.csv", "text,label\n好,0\n好,1,extra\n")
    with pytest.raises(DataError, match=r"train.csv:3: expected 2 comma-separated columns.*found 3"):
        read_split(path, CLASSES)


@pytest.mark.parametrize("row,needle", [(",0", "empty text"), ("好,", "empty label")])
def test_empty_csv_cell_is_a_data_error_with_line(tmp_path, row, needle):
    path = write(tmp_path, "train.csv", f"text,label\n好,0\n{row}\n")
    with pytest.raises(DataError, match=rf"train.csv:3: {needle}"):
        read_split(path, CLASSES)


@pytest.mark.parametrize("sep", ["\u2028", "\u0085", "\f", "\u2029", "\x1c", "\r"])
def test_only_newline_ends_a_line(tmp_path, sep):
    from zhcls.inference.io import iter_records

    text = f"上半句{sep}下半句"
    tsv = write(tmp_path, "train.txt", f"{text}\t0\n第二行\t1\r\n")
    split = read_split(tsv, CLASSES)
    assert split.texts == [text, "第二行"] and [e.line for e in split.examples] == [1, 2]
    row = json.dumps({"text": text, "label": 0}, ensure_ascii=False)
    jl = write(tmp_path, "dev.jsonl", row + "\n")
    assert read_split(jl, CLASSES).texts == [text]
    if sep != "\r":
        csv_path = write(tmp_path, "test.csv", f"text,label\n{text},0\n")
        assert read_split(csv_path, CLASSES).texts == [text]
    # prediction reads the same lines
    assert [r.text for r in iter_records(tsv)] == [text, "第二行"]
    assert [r.text for r in iter_records(jl)] == [text]


def test_class_txt_splits_on_newline_only(tmp_path):
    from zhcls.data.formats import read_class_names

    path = write(tmp_path, "class.txt", "体育\u2028新闻\n财经\r\n")
    assert read_class_names(path) == ["体育\u2028新闻", "财经"]


# -- class coverage and ambiguous directories ----------------------------------------------

def test_warns_about_classes_missing_from_train(tmp_path, caplog):
    train = read_split(write(tmp_path, "train.txt", "a\t0\nb\t0\n"), CLASSES)
    dev = read_split(write(tmp_path, "dev.txt", "a\t0\nb\t2\n"), CLASSES)
    warnings = warn_class_coverage({"train": train, "dev": dev}, CLASSES)
    assert len(warnings) == 2
    assert "no training examples of 2 of 3 classes: 财经, 科技" in caplog.text
    assert "dev has examples of classes that train has none of: 科技" in caplog.text


def test_refuses_two_formats_of_one_split(tmp_path):
    write(tmp_path, "train.txt", "a\t0\n")
    write(tmp_path, "train.csv", "text,label\na,0\n")
    with pytest.raises(DataError, match="train.txt and train.csv both exist"):
        find_split_file(tmp_path, "train")


# -- the research layout and missing directories -------------------------------------------

def test_research_layout_dir_data(tmp_path):
    inner = tmp_path / "THUCNews" / "data"
    inner.mkdir(parents=True)
    write(inner, "class.txt", "a\nb\n")
    assert resolve_data_dir(tmp_path / "THUCNews") == inner
    assert resolve_data_dir(inner) == inner


def test_missing_directory_suggests_close_names(tmp_path):
    (tmp_path / "thucnews").mkdir()
    with pytest.raises(DataError, match=r"THUCNews: dataset directory does not exist.*--data.*"
                                        r"did you mean .*thucnews\?"):
        resolve_data_dir(tmp_path / "THUCNews")
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "nothing_like_it")


def test_directory_without_class_txt_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match=r"class.txt not found in .* nor in .*data"):
        resolve_data_dir(tmp_path)


# -- the teacher column as real LLM output comes -------------------------------------------

DIRTY = ("a\t0\t[0.9, 0.05, 0.05]\n"      # 1 clean
         "b\t0\t[0.9, 0.2, 0.086]\n"      # 2 sums to 1.186
         "c\t0\t[0.91, 40, 760]\n"        # 3 entry > 1, sum 800.91
         "d\t0\t[0.8, 0.205, -0.005]\n"   # 4 small negative
         "e\t1\t[0.1, 0.8, 0.1]\n")       # 5 clean


def test_small_negative_clip_policy_counts_rows(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\t[0.8, 0.205, -0.005]\nb\t1\t[0.1, 0.8, 0.1]\n")
    with pytest.raises(DataError, match=r"train.txt:1: .*-0.005.*data.teacher_negative clip"):
        read_split(path, CLASSES, teacher_policy="normalize")
    split = read_split(path, CLASSES, teacher_rules=TeacherRules(negative="clip"))
    assert split.examples[0].teacher == pytest.approx([0.8 / 1.005, 0.205 / 1.005, 0.0])
    assert split.teacher_report.clipped == [1]
    big = write(tmp_path, "dev.txt", "a\t0\t[0.8, 0.3, -0.1]\n")
    with pytest.raises(DataError, match="below -data.teacher_negative_tolerance"):
        read_split(big, CLASSES, teacher_rules=TeacherRules(negative="clip"))


def test_normalize_never_renormalises_entries_above_one(tmp_path, caplog):
    path = write(tmp_path, "train.txt", DIRTY)
    rules = TeacherRules(policy="normalize", negative="clip")
    split = read_split(path, CLASSES, teacher_rules=rules)
    report = split.teacher_report
    assert report.normalized == [2] and report.invalid == [3] and report.clipped == [4]
    assert split.examples[2].teacher is None  # not a confident teacher for a wrong class
    assert "1 dropped: entry > 1, not a probability vector (first lines: 3)" in caplog.text
    with pytest.raises(DataError, match=r"train.txt:3: teacher entry 760 > 1.*teacher_invalid"):
        read_split(path, CLASSES, teacher_rules=TeacherRules(policy="normalize", negative="clip",
                                                             invalid="error"))


def test_skip_policy_drops_every_unusable_teacher_not_the_line(tmp_path):
    path = write(tmp_path, "train.txt", DIRTY + "f\t2\t[0.1, 0.1]\n")
    split = read_split(path, CLASSES, teacher_policy="skip")
    assert len(split.examples) == 6
    assert split.teacher_report.dropped == [2, 3, 4, 6]
    assert [e.line for e in split.examples if e.teacher is not None] == [1, 5]


def test_teacher_column_unread_when_not_used(tmp_path):
    path = write(tmp_path, "train.txt", DIRTY + "f\t2\tnot json\n")
    split = read_split(path, CLASSES, read_teacher=False)
    assert len(split.examples) == 6 and not split.has_teacher and split.teacher_rows == 6


def test_data_stats_reports_the_teacher_column_whatever_its_state(tmp_path):
    from zhcls.report.stats import data_stats

    root = tmp_path / "ds" / "data"  # the research layout
    root.mkdir(parents=True)
    write(root, "class.txt", "\n".join(CLASSES))
    write(root, "train.txt", DIRTY + "f\t2\tnot json\n")
    info = data_stats(tmp_path / "ds")["splits"]["train"]
    assert info["examples"] == 6 and info["skipped_count"] == 0  # no line lost to its teacher
    column = info["teacher_column"]
    assert column["rows"] == 6
    assert (column["normalized"], column["clipped"], column["invalid"], column["unusable"]) == \
        (1, 1, 1, 1)
    assert info["teacher"]["rows_with_teacher"] == 4
