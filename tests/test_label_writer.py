"""zhcls label into an --out that already holds labelled splits: labelling another split keeps
the earlier teacher columns and report records, and refuses (one line, nothing written) when
keeping them would be unsafe: another class list, a changed source split, another teacher."""

from __future__ import annotations

import json
import shutil

import pytest

from zhcls.errors import DataError
from zhcls.label.writer import write_labelled_dataset

NAMES = ["财经", "房产", "体育"]
P_TRAIN = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]


@pytest.fixture()
def dataset(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    (d / "train.txt").write_text("央行降准\t0\n楼市回暖\t1\n国足获胜\t2\n",
                                 encoding="utf-8")
    (d / "dev.txt").write_text("股市大涨\t0\n", encoding="utf-8")
    (d / "test.csv").write_text("text,label\n篮球比赛,体育\n", encoding="utf-8")
    return d


def test_labelling_dev_keeps_the_labelled_train_split(dataset, tmp_path):
    out = tmp_path / "out"
    write_labelled_dataset(dataset, "train", out, P_TRAIN)
    labelled = (out / "train.txt").read_bytes()
    write_labelled_dataset(dataset, "dev", out, [[0.1, 0.8, 0.1]])
    assert (out / "train.txt").read_bytes() == labelled
    assert (out / "dev.txt").read_text("utf-8") == (
        "股市大涨\t0\t[0.100000, 0.800000, 0.100000]\n")
    write_labelled_dataset(dataset, "train", out, [[1, 0, 0]] * 3)  # relabelling train is fine
    assert (out / "train.txt").read_text("utf-8").count("[1.000000, 0.000000, 0.000000]") == 3
    assert "[0.100000, 0.800000, 0.100000]" in (out / "dev.txt").read_text("utf-8")


def test_other_text_files_in_data_or_out_do_not_stop_the_next_split(dataset, tmp_path):
    (dataset / "descriptions.txt").write_text("财经: 股票、银行\n房产: 楼市\n", encoding="utf-8")
    out = tmp_path / "out"
    write_labelled_dataset(dataset, "train", out, P_TRAIN)  # copies descriptions.txt into OUT
    (out / "notes.txt").write_text("my notes\tabout this run\n", encoding="utf-8")
    labelled = (out / "train.txt").read_bytes()
    write_labelled_dataset(dataset, "dev", out, [[0.1, 0.8, 0.1]])
    write_labelled_dataset(dataset, "dev", out, [[0.1, 0.8, 0.1]])  # a rerun of the same split
    assert (out / "train.txt").read_bytes() == labelled
    assert (out / "notes.txt").read_text(encoding="utf-8") == "my notes\tabout this run\n"


def test_a_labelled_csv_split_is_not_copied_back_beside_its_txt(dataset, tmp_path):
    out = tmp_path / "out"
    write_labelled_dataset(dataset, "test", out, [[0, 0, 1]])
    write_labelled_dataset(dataset, "train", out, P_TRAIN)
    assert not (out / "test.csv").exists()  # test.txt and test.csv: an ambiguous split
    assert (out / "test.txt").read_text("utf-8") == (
        "篮球比赛\t2\t[0.000000, 0.000000, 1.000000]\n")


def test_multi_label_dev_keeps_the_labelled_train_jsonl(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(NAMES), encoding="utf-8")
    rows = [{"text": "央行降准楼市回暖", "labels": ["财经", "房产"]},
            {"text": "国足", "labels": ["体育"]}]
    for split in ("train", "dev"):
        (d / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    write_labelled_dataset(d, "train", out, [[0.9, 0.9, 0.1], [0.1, 0.1, 0.9]])
    labelled = (out / "train.jsonl").read_bytes()
    write_labelled_dataset(d, "dev", out, [[0.5, 0.5, 0.5], None])
    assert (out / "train.jsonl").read_bytes() == labelled


def _unchanged(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_another_class_list_is_refused_before_writing(dataset, tmp_path):
    out = tmp_path / "out"
    write_labelled_dataset(dataset, "train", out, P_TRAIN)
    before = _unchanged(out)
    (dataset / "class.txt").write_text("财经\n体育\n房产\n", encoding="utf-8")
    with pytest.raises(DataError, match="class.txt") as exc:
        write_labelled_dataset(dataset, "dev", out, [[0.1, 0.8, 0.1]])
    assert "\n" not in str(exc.value) and "new --out" in str(exc.value)
    assert _unchanged(out) == before


def test_a_changed_source_split_is_refused_before_writing(dataset, tmp_path):
    out = tmp_path / "out"
    write_labelled_dataset(dataset, "train", out, P_TRAIN)
    before = _unchanged(out)
    (dataset / "train.txt").write_text("央行降准\t0\n楼市回暖\t1\n国足输了\t2\n",
                                       encoding="utf-8")
    with pytest.raises(DataError, match="no longer match") as exc:
        write_labelled_dataset(dataset, "dev", out, [[0.1, 0.8, 0.1]])
    assert "--split train" in str(exc.value) and "line 3" in str(exc.value)
    assert _unchanged(out) == before


# ------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, tiny_data):
    pytest.importorskip("skops", reason="baseline checkpoints are saved with skops")
    from zhcls.workflows.baseline import train_baseline

    out = tmp_path_factory.mktemp("baseline")
    train_baseline(tiny_data, out)
    return out


def _label(*argv: str) -> int:
    from zhcls.cli import main

    return main(["label", *argv])


def test_cli_dev_into_the_same_out_keeps_train_and_its_report(baseline_dir, tiny_data,
                                                                tmp_path):
    from zhcls.data.formats import read_class_names, read_split

    out = tmp_path / "kd"
    common = ["--teacher", str(baseline_dir), "--data", str(tiny_data), "--out", str(out)]
    assert _label(*common) == 0
    train_report = json.loads((out / "label_report.json").read_text("utf-8"))
    assert _label(*common, "--split", "dev") == 0
    names = read_class_names(out / "class.txt")
    for split in ("train", "dev"):
        examples = read_split(out / f"{split}.txt", names).examples
        assert all(e.teacher is not None for e in examples), split
    report = json.loads((out / "label_report.json").read_text("utf-8"))
    assert report["output_file"] == str(out / "dev.txt")  # the latest run, as before
    assert sorted(report["splits"]) == ["dev", "train"]
    assert report["splits"]["train"]["agreement"] == train_report["agreement"]
    assert report["splits"]["train"]["teacher"] == f"--teacher {baseline_dir.resolve()}"


def test_cli_refuses_another_teacher_for_the_next_split(baseline_dir, tiny_data, tmp_path,
                                                        caplog):
    out = tmp_path / "kd"
    common = ["--data", str(tiny_data), "--out", str(out), "--split", "dev"]
    assert _label("--teacher", str(baseline_dir), "--data", str(tiny_data), "--out", str(out)) == 0
    before = _unchanged(out)
    other = shutil.copytree(baseline_dir, tmp_path / "other-baseline")
    for argv in (["--teacher", str(other)], ["--teacher", str(baseline_dir), "--emit", "logits"]):
        caplog.clear()
        assert _label(*argv, *common) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert "train was labelled by --teacher" in errors[0] and "new --out" in errors[0]
    assert _unchanged(out) == before
