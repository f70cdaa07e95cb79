"""data_stats / ``zhcls data-stats`` on multi-label data: a hand-made dataset with a per-class
teacher column (numbers computed by hand), task detection and flags, JSON output, the
co-occurrence heat map, and the shared car_aspects data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhcls.cli import main
from zhcls.report import stats as st
from zhcls.report.stats_multilabel import cooccurrence_matrix

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CAR = SHARED / "car_aspects"
NO_CAR = f"shared data not found at {CAR} (tests read ../shared/data relative to the repo)"

CLASSES = ["价格", "动力", "外观"]
TRAIN = [  # text, label set, per-class teacher probabilities (no sum rule)
    ("价格便宜动力也足", "价格,动力", "[0.9, 0.7, 0.1]"),
    ("动力强劲", "动力", "[0.2, 0.8, 0.1]"),
    ("外观漂亮价格实惠", "外观,价格", "[0.6, 0.1, 0.4]"),    # teacher misses 外观
    ("车灯好看", "外观", "[0.1, 0.6, 0.9]"),                # teacher adds 动力
    ("随便说说", "", "[0.1, 0.2, 0.3]"),                    # no label: all negatives
    ("动力强劲", "动力,价格", "[0.3, 0.9, 0.2]"),            # duplicate, other label set
    ("价格动力外观都不错", "价格,动力,外观", "[0.8, 0.9, 0.7]"),
]
DEV = [("价格便宜动力也足", "动力,价格"), ("外形时尚", "外观")]


def _write(path: Path, rows) -> None:
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")


def _dataset(root: Path, train, dev=None, classes=CLASSES) -> Path:
    root.mkdir()
    (root / "class.txt").write_text("\n".join(classes), encoding="utf-8")
    _write(root / "train.txt", train)
    if dev is not None:
        _write(root / "dev.txt", dev)
    return root


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return _dataset(tmp_path / "ml", TRAIN, DEV)


def test_label_set_statistics_by_hand(small):
    result = st.data_stats(small)
    assert result["task"] == "multi_label"  # detected: rows with 2+ comma-separated names
    cls = result["splits"]["train"]["classes"]
    assert cls["rows"] == 7
    assert cls["cardinality"] == round((2 + 1 + 2 + 1 + 0 + 2 + 3) / 7, 4)
    assert (cls["no_label"], cls["one_label"], cls["two_plus"]) == (1, 2, 4)
    assert cls["counts"] == {"价格": 4, "动力": 4, "外观": 3}
    assert cls["rates"] == {"价格": round(4 / 7, 4), "动力": round(4 / 7, 4), "外观": round(3 / 7, 4)}
    assert cls["max_min_ratio"] == 4 / 3 and cls["rare"] == [] and cls["warning"] is None
    assert [(p["pair"], p["count"]) for p in cls["top_pairs"]] == [
        (["价格", "动力"], 3), (["价格", "外观"], 2), (["动力", "外观"], 1)]
    assert cls["cooccurrence"] == [[4, 3, 2], [3, 4, 1], [2, 1, 3]]
    dev = result["splits"]["dev"]["classes"]
    assert dev["counts"] == {"价格": 1, "动力": 1, "外观": 1} and dev["two_plus"] == 1


def test_duplicates_compare_label_sets(small):
    result = st.data_stats(small)
    dup = result["splits"]["train"]["duplicates"]
    assert (dup["duplicate_texts"], dup["conflicting_labels"]) == (1, 1)
    assert dup["examples"][0]["labels"] == ["动力", "价格,动力"]
    pair = result["cross_split"]["pairs"]["train/dev"]
    # "动力,价格" in dev is the same set as "价格,动力" in train: shared, not conflicting
    assert (pair["shared_texts"], pair["conflicting_labels"]) == (1, 0)


def test_teacher_per_class_and_micro_f1(small):
    teacher = st.data_stats(small)["splits"]["train"]["teacher"]
    assert teacher["rows_with_teacher"] == 7 and teacher["coverage"] == 1.0
    # teacher > 0.5 vs gold: 9 true positives, 1 extra (动力 on line 4), 2 missed (外观 on
    # line 3, 价格 on line 6); rows 1, 2, 5, 7 get the exact label set
    assert teacher["micro_f1"] == round(2 * 9 / (2 * 9 + 1 + 2), 4)
    assert teacher["subset_agreement"] == round(4 / 7, 4)
    price = teacher["per_class"]["价格"]
    assert price["positives"] == 4
    assert price["mean_prob_positive"] == round((0.9 + 0.6 + 0.3 + 0.8) / 4, 4)
    assert price["mean_prob_negative"] == round((0.2 + 0.1 + 0.1) / 3, 4)
    assert price["f1"] == round(2 * 3 / (2 * 3 + 1), 4)  # lines 1, 3, 7 found, 6 missed
    assert teacher["per_class"]["动力"]["f1"] == round(2 * 4 / (2 * 4 + 1), 4)
    assert st.data_stats(small)["splits"]["dev"]["teacher"] is None


def test_rare_class_warning(tmp_path):
    rows = [(f"第{i}条评论", "价格,动力" if i % 2 else "价格", "") for i in range(150)]
    rows[0] = ("唯一一条外观评论", "价格,外观", "")
    d = _dataset(tmp_path / "rare", [r[:2] for r in rows])
    result = st.data_stats(d)
    cls = result["splits"]["train"]["classes"]
    assert cls["rare"] == ["外观"] and cls["counts"]["外观"] == 1
    assert any("train" in w and "rare" in w and "外观" in w for w in result["warnings"])


def test_task_flag_and_separator(tmp_path):
    single = _dataset(tmp_path / "one", [("动力强劲", "动力"), ("外观漂亮", "外观")])
    assert st.data_stats(single)["task"] == "single_label"  # auto: one label per row
    forced = st.data_stats(single, task="multi_label")
    assert forced["task"] == "multi_label"
    assert forced["splits"]["train"]["classes"]["cardinality"] == 1.0
    piped = _dataset(tmp_path / "pipe", [("价格便宜动力足", "价格|动力"), ("外观漂亮", "外观")])
    result = st.data_stats(piped, label_separator="|")
    assert result["task"] == "multi_label" and result["label_separator"] == "|"
    assert result["splits"]["train"]["classes"]["top_pairs"][0]["pair"] == ["价格", "动力"]
    with pytest.raises(ValueError, match="task"):
        st.data_stats(single, task="multilabel")


def test_cli_text_and_json(small, capsys):
    assert main(["data-stats", str(small), "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "multi-label" in text and "labels/row" in text
    assert "label sets: 1.571 labels per row; rows with 0 labels 1 (14.3%)" in text
    assert "价格+动力 3 (42.9%)" in text
    assert "micro-F1 0.857" in text and "价格: mean teacher prob on positives 0.650" in text
    assert main(["data-stats", str(small), "--no-plots", "--format", "json",
                 "--task", "multi_label"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "multi_label"
    assert out["splits"]["train"]["classes"]["two_plus"] == 4
    assert out["splits"]["train"]["teacher"]["micro_f1"] == round(18 / 21, 4)


def test_cli_forced_single_label_keeps_the_single_label_report(tmp_path, capsys):
    d = _dataset(tmp_path / "one", [("动力强劲", "动力"), ("外观漂亮", "外观")])
    assert main(["data-stats", str(d), "--no-plots", "--task", "single_label"]) == 0
    text = capsys.readouterr().out
    assert "multi-label" not in text and "label sets" not in text and "max/min" in text


def test_plots_include_cooccurrence_heatmap(small, tmp_path):
    result = st.data_stats(small, out_dir=tmp_path / "out")
    names = {Path(p).name for p in result["plots"]}
    assert names == {"length_characters.png", "class_counts.png", "label_cooccurrence.png"}
    for png in result["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"


def test_cooccurrence_matrix_diagonal_counts_rows():
    m = cooccurrence_matrix([[0, 1], [1], [], [0, 1, 2]], 3)
    assert m.tolist() == [[2, 2, 1], [2, 3, 1], [1, 1, 1]]


@pytest.mark.skipif(not CAR.is_dir(), reason=NO_CAR)
def test_car_aspects_real_numbers():
    """`zhcls data-stats ../shared/data/car_aspects --no-plots` (numbers of the shared copy)."""
    result = st.data_stats(CAR)
    assert result["task"] == "multi_label" and list(result["splits"]) == ["train", "dev"]
    train, dev = (result["splits"][s]["classes"] for s in ("train", "dev"))
    assert (train["rows"], train["no_label"], train["one_label"], train["two_plus"]) == (
        6290, 0, 5338, 952)
    assert (dev["rows"], dev["no_label"], dev["one_label"], dev["two_plus"]) == (1000, 0, 844, 156)
    assert train["counts"] == {"价格": 959, "配置": 657, "操控": 787, "舒适性": 709, "油耗": 814,
                               "动力": 2066, "内饰": 400, "安全性": 439, "空间": 325, "外观": 383}
    assert train["cardinality"] == round(sum(train["counts"].values()) / 6290, 4)
    assert train["top_pairs"][0] == {"pair": ["操控", "动力"], "count": 174,
                                     "rate": round(174 / 6290, 4)}
    assert dev["top_pairs"][0]["pair"] == ["操控", "动力"] and dev["top_pairs"][0]["count"] == 32
    assert train["rare"] == [] and dev["rare"] == []
    assert result["cross_split"]["pairs"]["train/dev"]["shared_texts"] == 0
    assert result["splits"]["train"]["teacher"] is None  # no teacher column shipped


def test_every_line_bad_still_gives_the_reason(tmp_path, caplog):
    """Forcing single_label on JSONL label lists used to end in ``no usable examples in
    file`` with no reason, while a partly bad file printed the first reason."""
    import logging

    d = tmp_path / "lists"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    rows = [{"text": t, "label": labels.split(",")} for t, labels, _ in TRAIN if labels]
    (d / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                           for r in rows), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        assert main(["data-stats", str(d), "--task", "single_label", "--no-plots"]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert "\n" not in message and f"{d / 'train.jsonl'}:1: " in message, message
    assert "label is a list ['价格', '动力']" in message and "no usable examples" in message
