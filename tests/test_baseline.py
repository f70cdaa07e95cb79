"""The linear baseline: fit, checkpoint round trip, CLI evaluate / predict / label, KD from
its labels, bad input, and the bar on the shared THUCNews."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SENTENCES, THUCNEWS, requires_thucnews, tiny_config
from zhcls.cli import main

pytest.importorskip("skops", reason="baseline checkpoints are saved with skops (pip install skops)")

TEXTS = ["男篮亚洲杯小组赛再胜一场", "央行宣布下调存款准备金率", "新款智能手机搭载自研芯片"]


def test_fit_writes_a_self_describing_checkpoint(baseline_dir):
    meta = json.loads((baseline_dir / "meta.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "baseline"
    assert meta["metrics"]["test"]["accuracy"] == 1.0  # test = train sentences
    assert (baseline_dir / "README.md").read_text(encoding="utf-8").startswith("# zhcls baseline")
    assert (baseline_dir / "eval_dev" / "metrics.json").is_file()


def test_round_trip_gives_equal_probabilities(baseline_dir, tiny_data):
    from zhcls import Classifier
    from zhcls.modeling.ngram import build_pipeline, fit_pipeline, predict_proba

    texts = [t for ts in SENTENCES.values() for t in ts]
    labels = [k for k, ts in SENTENCES.items() for _ in ts] * 4
    fresh = fit_pipeline(build_pipeline(), texts * 4, labels)
    clf = Classifier.load(baseline_dir)
    probs = clf.predict_proba(TEXTS)  # (3, C)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs, predict_proba(fresh, TEXTS, 3), atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [p.label for p in clf.predict(TEXTS)] == ["体育", "财经", "科技"]
    assert clf.predict(TEXTS[0], top_k=2).top_k[0].label == "体育"
    assert clf.predict_proba(TEXTS[0]).shape == (3,)


def test_cli_evaluate_and_predict(baseline_dir, tiny_data, tmp_path, capsys):
    assert main(["evaluate", str(baseline_dir), "--data", str(tiny_data),
                 "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"] == 1.0
    capsys.readouterr()
    assert main(["predict", str(baseline_dir), "--format", "jsonl", "--probs", *TEXTS]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["体育", "财经", "科技"]


def test_cli_label_then_kd_training_reads_the_probabilities(baseline_dir, tiny_data,
                                                            tiny_model, tmp_path):
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.training.train import train

    kd = tmp_path / "kd"
    assert main(["label", "--teacher", str(baseline_dir), "--data", str(tiny_data),
                 "--out", str(kd)]) == 0
    names = read_class_names(kd / "class.txt")
    split = read_split(kd / "train.txt", names)
    teacher = np.array([e.teacher for e in split.examples])  # (N, C)
    assert split.has_teacher and np.allclose(teacher.sum(1), 1.0, atol=1e-3)
    assert (teacher.argmax(1) == np.array(split.labels)).all()
    config = tiny_config(tiny_model, objective__name="kd", train__evaluate_test="false")
    result = train(config, kd, tmp_path / "run")
    assert (result.best_dir / "model.safetensors").is_file()


def test_logreg_option_gives_probabilities(tiny_data, tmp_path, capsys):
    assert main(["baseline", "--data", str(tiny_data), "--out", str(tmp_path / "lr"),
                 "--classifier", "logreg"]) == 0
    assert "baseline test accuracy 1.0000" in capsys.readouterr().out
    from zhcls import Classifier

    probs = Classifier.load(tmp_path / "lr").predict_proba(TEXTS)  # (3, C)
    assert (probs.argmax(1) == [0, 1, 2]).all() and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_bad_input_exits_2(tmp_path, tiny_data, baseline_dir):
    assert main(["baseline", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    weird = tmp_path / "weird"
    weird.mkdir()
    for f in ("labels.json", "model.skops"):
        (weird / f).write_bytes((baseline_dir / f).read_bytes())
    (weird / "meta.json").write_text('{"kind": "forest"}', encoding="utf-8")
    assert main(["evaluate", str(weird), "--data", str(tiny_data)]) == 2
    assert main(["predict", str(weird), "文本"]) == 2


def test_evaluating_another_dataset_keeps_the_recorded_evaluation(baseline_dir, tiny_data,
                                                                   tmp_path, caplog):
    import logging
    import shutil

    other = shutil.copytree(tiny_data, tmp_path / "other")
    dev = (other / "dev.txt").read_text(encoding="utf-8").splitlines()
    (other / "dev.txt").write_text("\n".join(dev[:-1]) + "\n", encoding="utf-8")  # one fewer
    recorded = (baseline_dir / "eval_dev" / "metrics.json").read_bytes()
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["evaluate", str(baseline_dir), "--data", str(other), "--split", "dev"]) == 2
    assert "--out" in caplog.text and str(other / "dev.txt") in caplog.text
    assert (baseline_dir / "eval_dev" / "metrics.json").read_bytes() == recorded
    assert main(["evaluate", str(baseline_dir), "--data", str(other), "--split", "dev",
                 "--out", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["split"].startswith(
        str(other))
    assert main(["evaluate", str(baseline_dir), "--data", str(tiny_data), "--split", "dev"]) == 0


def test_the_same_examples_evaluate_into_the_recorded_place_from_any_directory(
        tiny_data, tmp_path, monkeypatch):
    """Recorded with a relative path, read from elsewhere, or a byte-different copy with the
    same rows (a teacher column added): the same examples, so eval_dev is updated."""
    import shutil

    shutil.copytree(tiny_data, tmp_path / "a" / "data")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert main(["baseline", "--data", "data", "--out", "base"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert main(["evaluate", "../a/base", "--data", "../a/data", "--split", "dev"]) == 0
    kd = tmp_path / "kd"
    assert main(["label", "--teacher", "../a/base", "--data", "../a/data", "--split", "dev",
                 "--out", str(kd)]) == 0
    assert (kd / "dev.txt").read_bytes() != (tmp_path / "a" / "data" / "dev.txt").read_bytes()
    assert main(["evaluate", "../a/base", "--data", str(kd), "--split", "dev"]) == 0


def test_exporting_a_baseline_says_what_it_is(baseline_dir, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["export", str(baseline_dir), "--out", str(tmp_path / "onnx")]) == 2
    assert "zhcls baseline" in caplog.text and "model.safetensors" not in caplog.text


def test_labelling_another_dataset_names_labelling_not_evaluating(baseline_dir, tmp_path,
                                                                  caplog):
    import logging

    other = tmp_path / "other"
    other.mkdir()
    (other / "class.txt").write_text("好\n坏\n", encoding="utf-8")
    (other / "train.txt").write_text("很好\t0\n很差\t1\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["label", "--teacher", str(baseline_dir), "--data", str(other),
                     "--out", str(tmp_path / "kd")]) == 2
    assert "class.txt" in caplog.text and "evaluate on" not in caplog.text


def test_train_baseline_option_puts_its_numbers_in_the_report(tiny_model, tiny_data,
                                                             tmp_path, baseline_dir):
    from zhcls.workflows.pipeline import train_and_report

    config = tiny_config(tiny_model, train__baseline="true", train__report="true",
                         train__report_max_points=20)
    result = train_and_report(config, tiny_data, tmp_path / "run")
    assert json.loads((result.output_dir / "baseline" / "meta.json").read_text())["kind"] \
        == "baseline"
    page = (result.output_dir / "report" / "report.html").read_text(encoding="utf-8")
    assert "dev: linear baseline" in page and "baseline F1" in page
    metrics = json.loads((result.output_dir / "report" / "baseline" / "metrics.json").read_text())
    assert metrics["per_class"]["体育"]["support"] == 6
    assert main(["report", str(result.output_dir), "--out", str(tmp_path / "r2"),
                 "--method", "pca", "--baseline", str(tmp_path / "nope")]) == 2
    assert main(["report", str(result.output_dir), "--out", str(tmp_path / "r3"),
                 "--method", "pca", "--baseline", str(baseline_dir)]) == 0
    assert "baseline F1" in (tmp_path / "r3" / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.shared_data
@requires_thucnews
def test_thucnews_baseline_reaches_90_percent(tmp_path):
    from zhcls.workflows.baseline import train_baseline

    result = train_baseline(THUCNEWS, tmp_path / "bl")
    assert result.test_metrics["accuracy"] >= 0.90
