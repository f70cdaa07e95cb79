"""Multi-label data: readers (TSV / CSV / JSONL), bad input, task detection, teacher rows,
dataset and collator, label-aware batches, and the real car_aspects data."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import SHARED
from zhcls.data.dataset import Collator, EncodedDataset
from zhcls.data.formats import (
    detect_task,
    read_class_names,
    read_split,
    warn_class_coverage,
)
from zhcls.data.labels import cardinality
from zhcls.data.samplers import LabelAwareBatchSampler, multilabel_groups
from zhcls.data.teacher import TeacherRules
from zhcls.errors import ConfigError, DataError

CLASSES = ["体育", "财经", "科技"]
CAR = SHARED / "car_aspects"
ML = {"task": "multi_label"}


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def labels_of(split):
    return [e.label for e in split.examples]


# --- readers ----------------------------------------------------------------------------

def test_tsv_names_ids_empty_and_order(tmp_path):
    path = write(tmp_path, "train.txt", "a\t科技,体育\nb\t1\nc\t\nd\t 2 , 0 ,1\n")
    split = read_split(path, CLASSES, **ML)
    assert labels_of(split) == [[0, 2], [1], [], [0, 1, 2]]
    assert split.task == "multi_label"
    np.testing.assert_array_equal(split.label_matrix(3),
                                  [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]])
    assert split.label_matrix(3).dtype == np.float32


def test_custom_separator(tmp_path):
    path = write(tmp_path, "train.txt", "a\t科技|体育\n")
    assert labels_of(read_split(path, CLASSES, label_separator="|", **ML)) == [[0, 2]]
    with pytest.raises(DataError, match=r"'科技,体育'.*neither"):
        read_split(write(tmp_path, "t2.txt", "a\t科技,体育\n"), CLASSES, label_separator="|",
                   **ML)


def test_csv_label_or_labels_column(tmp_path):
    a = write(tmp_path, "a.csv", 'text,label\n男篮,"体育,财经"\n空,\n')
    b = write(tmp_path, "b.csv", 'text,labels\n男篮,"2,0"\n')
    assert labels_of(read_split(a, CLASSES, **ML)) == [[0, 1], []]
    assert labels_of(read_split(b, CLASSES, **ML)) == [[0, 2]]
    with pytest.raises(DataError, match="both label and labels"):
        read_split(write(tmp_path, "c.csv", "text,label,labels\nx,0,1\n"), CLASSES, **ML)


def test_jsonl_labels_list_and_label_string(tmp_path):
    rows = [{"text": "a", "labels": ["科技", "体育"]}, {"text": "b", "labels": []},
            {"text": "c", "labels": [1]}, {"text": "d", "label": "财经,科技"}]
    path = write(tmp_path, "train.jsonl", "\n".join(json.dumps(r, ensure_ascii=False)
                                                    for r in rows))
    assert labels_of(read_split(path, CLASSES, **ML)) == [[0, 2], [], [1], [1, 2]]


def test_single_label_file_read_as_multi_label(tmp_path):
    path = write(tmp_path, "train.txt", "a\t0\nb\t财经\n")
    assert labels_of(read_split(path, CLASSES, **ML)) == [[0], [1]]
    assert labels_of(read_split(path, CLASSES)) == [0, 1]  # single-label unchanged


@pytest.mark.parametrize("name,content,needle", [
    ("t.txt", "a\t体育,篮球\n", r"t.txt:1: label '篮球' is neither.*item 2"),
    ("t.txt", "a\t体育,财\n", r"did you mean '财经'\?"),
    ("t.txt", "a\t0,7\n", r"t.txt:1: label id 7 out of range.*ids 0..2"),
    ("t.txt", "a\t体育,0\n", r"duplicate label '0'.*'体育'"),
    ("t.txt", "a\t体育,体育\n", "duplicate label '体育'"),
    ("t.txt", "ok\t0\n\t0,1\n", r"t.txt:2: empty text"),
    ("t.txt", "a\t体育,,财经\n", r"empty label \(item 2\)"),
    ("t.txt", "a\t体育,\n", r"empty label \(item 2\)"),
    ("t.txt", "a\t0\t[0.5,0.5,0.5]\textra\n", "expected 2 or 3 tab-separated columns.*found 4"),
    ("t.txt", "只有一列\n", "found 1"),
    ("t.csv", "text,label\na,0,1\n", "expected 2 comma-separated columns"),
    ("t.csv", "text,labelz\na,0\n", "missing \\['label'\\]"),
    ("t.jsonl", '{"text": "a", "labels": ["体育"\n', "invalid JSON"),
    ("t.jsonl", '{"text": "a", "labels": "体育"}\n', '"labels" must be a JSON list.*found str'),
    ("t.jsonl", '{"text": "a", "labels": {"体育": 1}}\n', "found dict"),
    ("t.jsonl", '{"text": "a", "labels": [["体育"]]}\n', "item 1.*found list"),
    ("t.jsonl", '{"text": "a", "labels": [true]}\n', "found bool"),
    ("t.jsonl", '{"text": "a", "labels": ["体育", ""]}\n', r"empty label \(item 2\)"),
    ("t.jsonl", '{"text": "a", "label": null}\n', "found NoneType"),
    ("t.jsonl", '{"text": "a", "label": "0", "labels": [1]}\n', 'found both "label" and'),
    ("t.jsonl", '{"text": "a"}\n', 'expected a JSON object with "text" and "label"'),
])
def test_bad_multilabel_rows(tmp_path, name, content, needle):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=needle):
        read_split(path, CLASSES, **ML)


def test_skip_counts_bad_rows(tmp_path):
    path = write(tmp_path, "t.txt", "a\t0,1\nb\t0,0\nc\t0,x\nd\t\ne\t2\n")
    split = read_split(path, CLASSES, on_bad_line="skip", **ML)
    assert labels_of(split) == [[0, 1], [], [2]]
    assert split.skipped == [2, 3]
    assert "duplicate label" in split.skip_reasons[2]


def test_empty_label_only_in_multi_label(tmp_path):
    path = write(tmp_path, "t.txt", "a\t\n")
    with pytest.raises(DataError, match="t.txt:1: empty label"):
        read_split(path, CLASSES)
    lists = write(tmp_path, "t.jsonl", '{"text": "a", "labels": [0, 1]}\n')
    with pytest.raises(DataError, match="set data.task multi_label"):
        read_split(lists, CLASSES)


def test_class_names_holding_the_separator(tmp_path):
    names = ["汽车,摩托", "体育"]
    path = write(tmp_path, "t.txt", "a\t汽车,摩托\nb\t体育\n")
    assert labels_of(read_split(path, names, **ML)) == [[0], [1]]
    bad = write(tmp_path, "u.txt", "a\t汽车,摩托,体育\n")
    with pytest.raises(DataError, match="contain the separator; set data.label_separator"):
        read_split(bad, names, **ML)
    fixed = write(tmp_path, "v.txt", "a\t汽车,摩托|体育\n")
    assert labels_of(read_split(fixed, names, label_separator="|", **ML)) == [[0, 1]]


def test_numeric_class_names_stay_ambiguous(tmp_path):
    path = write(tmp_path, "t.txt", "a\t1,0\n")
    with pytest.raises(DataError, match="ambiguous"):
        read_split(path, ["1", "0", "2"], **ML)
    assert labels_of(read_split(path, ["1", "0", "2"], label_format="id", **ML)) == [[0, 1]]


# --- task detection ---------------------------------------------------------------------

def test_detect_task(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="zhcls")
    multi = write(tmp_path, "train.txt", "a\t0\nb\t0,1\nc\t2\n")
    single = write(tmp_path, "s.txt", "a\t0\nb\t1\n")
    lists = write(tmp_path, "train.jsonl", '{"text": "a", "labels": [0]}\n')
    assert detect_task(multi, CLASSES) == "multi_label"
    assert "train.txt: 1 of 3 rows have 2+ ','-separated labels -> data.task multi_label" \
        in caplog.text
    assert detect_task(single, CLASSES) == "single_label"
    assert detect_task(lists, CLASSES) == "multi_label"
    assert "1 of 1 rows hold a labels list" in caplog.text
    assert detect_task(multi, CLASSES, label_separator="|") == "single_label"


def test_detect_task_does_not_split_names_holding_the_separator(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="zhcls")
    path = write(tmp_path, "train.txt", "a\t汽车,摩托\nb\t体育\n")
    assert detect_task(path, ["汽车,摩托", "体育"]) == "single_label"
    assert "contain the label separator" in caplog.text


# --- teacher ----------------------------------------------------------------------------

def test_multilabel_teacher_per_class_probabilities(tmp_path):
    path = write(tmp_path, "t.txt", "a\t0,1\t[0.9, 0.8, 0.1]\nb\t\t[0, 0, 0]\n")
    split = read_split(path, CLASSES, **ML)
    assert split.examples[0].teacher == pytest.approx([0.9, 0.8, 0.1])  # no sum rule
    assert split.examples[1].teacher == [0, 0, 0]


def test_multilabel_teacher_rules(tmp_path):
    high = write(tmp_path, "h.txt", "a\t0\t[1.5, 0.2, 0.1]\n")
    split = read_split(high, CLASSES, **ML)  # teacher_invalid skip (default): dropped, counted
    assert split.examples[0].teacher is None and split.teacher_report.invalid == [1]
    with pytest.raises(DataError, match="h.txt:1: teacher entry 1.5 > 1"):
        read_split(high, CLASSES, teacher_rules=TeacherRules(invalid="error"), **ML)
    neg = write(tmp_path, "n.txt", "a\t0\t[-0.005, 0.2, 0.1]\n")
    with pytest.raises(DataError, match="must be >= 0"):
        read_split(neg, CLASSES, **ML)
    clipped = read_split(neg, CLASSES, teacher_rules=TeacherRules(negative="clip"), **ML)
    assert clipped.examples[0].teacher == [0.0, 0.2, 0.1]
    assert clipped.teacher_report.clipped == [1]
    with pytest.raises(ConfigError, match="teacher_policy normalize"):
        read_split(neg, CLASSES, teacher_policy="normalize", **ML)
    unread = read_split(neg, CLASSES, teacher_policy="normalize", read_teacher=False, **ML)
    assert unread.teacher_rows == 1 and unread.examples[0].teacher is None
    logits = read_split(high, CLASSES, teacher_kind="logits", **ML)
    assert logits.examples[0].teacher == [1.5, 0.2, 0.1]


# --- dataset, collator, coverage, sampler -----------------------------------------------

def test_collator_multi_hot_and_single_label_unchanged():
    ds = EncodedDataset([[1, 5, 2], [1, 2]], [[0, 2], []], num_labels=3, task="multi_label")
    batch = Collator(pad_token_id=0)([ds[0], ds[1]])
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == [[1, 0, 1], [0, 0, 0]]  # (B, C)
    single = EncodedDataset([[1, 5, 2], [1, 2]], [2, 0])
    out = Collator(pad_token_id=0)([single[0], single[1]])
    assert out["labels"].dtype == torch.long and out["labels"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="num_labels"):
        EncodedDataset([[1]], [[0]], task="multi_label")


def test_class_coverage_multilabel(tmp_path):
    train = read_split(write(tmp_path, "train.txt", "a\t0,1\nb\t\n"), CLASSES, **ML)
    dev = read_split(write(tmp_path, "dev.txt", "a\t1,2\n"), CLASSES, **ML)
    out = warn_class_coverage({"train": train, "dev": dev}, CLASSES)
    assert "no examples labelled with 1 of 3 classes: 科技" in out[0]
    assert "dev has examples of classes that train has none of: 科技" in out[1]


def test_multilabel_groups_rarest_label():
    assert multilabel_groups([[0, 1], [0], [0, 2], [1], []]) == [1, 0, 2, 1, -1]


def test_label_aware_batches_multilabel_share_a_label():
    rng = np.random.default_rng(0)
    sets = [sorted(set(rng.choice(5, size=rng.integers(1, 4)).tolist())) for _ in range(200)]
    sets += [[]] * 10
    sampler = LabelAwareBatchSampler(sets, batch_size=16, seed=3)
    seen = []
    for batch in sampler:
        seen += batch
        for i in batch:
            if sets[i]:
                assert any(j != i and set(sets[i]) & set(sets[j]) for j in batch)
    assert sorted(seen) == list(range(len(sets)))
    assert len(sampler) == len(list(sampler))


# --- real data --------------------------------------------------------------------------

@pytest.mark.skipif(not (CAR / "train.jsonl").is_file(),
                    reason=f"shared car_aspects data not found at {CAR}")
def test_car_aspects_reads_clean(caplog):
    caplog.set_level(logging.INFO, logger="zhcls")
    names = read_class_names(CAR / "class.txt")
    assert len(names) == 10
    assert detect_task(CAR / "train.jsonl", names) == "multi_label"
    assert "6290 of 6290 rows hold a labels list, 952 with 2+ labels" in caplog.text
    train = read_split(CAR / "train.jsonl", names, task="multi_label")
    dev = read_split(CAR / "dev.jsonl", names, task="multi_label")
    assert not train.skipped and not dev.skipped
    assert cardinality(train.label_sets()) == pytest.approx(
        {"rows": 6290, "cardinality": 7539 / 6290, "no_label": 0, "one_label": 5338,
         "two_plus": 952})
    assert cardinality(dev.label_sets()) == pytest.approx(
        {"rows": 1000, "cardinality": 1.197, "no_label": 0, "one_label": 844, "two_plus": 156})
    assert train.label_matrix(10).sum(0).tolist() == [959, 657, 787, 709, 814, 2066, 400, 439,
                                                       325, 383]


def test_labels_joined_by_another_separator_get_a_hint(tmp_path):
    """'油耗|动力' under the default ',' used to get only "did you mean '油耗'?"."""
    from zhcls.data.formats import read_split
    from zhcls.errors import DataError

    (tmp_path / "train.txt").write_text("油耗低动力足\t油耗|动力\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labels joined by '\|': set data.label_separator '\|'"):
        read_split(tmp_path / "train.txt", ["油耗", "动力"], task="multi_label")


@pytest.mark.parametrize("sep", ["|", "#", "!", ";", "、"])
def test_label_separator_flag_takes_the_character_as_typed(sep):
    """`--data.label_separator '|'` used to be read as YAML: '|' became '' (a block scalar)
    and '#' None (a comment), so the README's own hint could not be followed."""
    from zhcls.config import load_config

    assert load_config(None, ["--data.label_separator", sep]).data.label_separator == sep


def test_a_single_label_reading_of_joined_labels_suggests_multi_label(tmp_path):
    """With task auto and '|' (not the default ','), detection says single_label and the
    row error used to suggest only "did you mean '油耗'?"."""
    from zhcls.data.formats import read_split
    from zhcls.errors import DataError

    (tmp_path / "train.txt").write_text("油耗低动力足\t油耗|动力\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"set --data.task multi_label --data.label_separator '\|'"):
        read_split(tmp_path / "train.txt", ["油耗", "动力"])
