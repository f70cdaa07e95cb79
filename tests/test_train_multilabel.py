"""Multi-label training end to end on a tiny model: the task is detected from the file, BCE
trains, thresholds are tuned on dev and saved with the checkpoint, the run's numbers equal
``zhcls evaluate``'s, and settings of the other task are refused naming the flag."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from conftest import CLASSES, tiny_config, write_dataset, write_multilabel
from zhcls.errors import ConfigError
from zhcls.training.train import train


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory):
    return write_multilabel(tmp_path_factory.mktemp("ml-data"))


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory, tiny_model, ml_data):
    cfg = tiny_config(tiny_model, **{"train__max_steps": 60, "train__eval_steps": 20,
                                     "train__lr": 5e-3, "objective__name": "bce"})
    return train(cfg, ml_data, tmp_path_factory.mktemp("ml-run"))


def test_task_is_detected_and_saved(ml_run):
    import yaml

    saved = yaml.safe_load((ml_run.best_dir / "zhcls.yaml").read_text("utf-8"))
    assert saved["data"]["task"] == "multi_label"


def test_thresholds_are_tuned_on_dev_and_saved(ml_run):
    saved = json.loads((ml_run.best_dir / "thresholds.json").read_text("utf-8"))
    assert saved["task"] == "multi_label" and saved["tuned_on"] == "dev"
    assert list(saved["thresholds"]) == CLASSES
    assert all(0.0 <= t <= 1.0 for t in saved["thresholds"].values())


def test_it_learns_the_tiny_multilabel_task(ml_run):
    dev = ml_run.dev_metrics
    assert {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"} <= set(dev)
    assert dev["micro_f1"] > 0.8, dev


def test_run_numbers_equal_zhcls_evaluate(ml_run, ml_data, tmp_path):
    from zhcls.evaluation.evaluate import evaluate_checkpoint

    again = evaluate_checkpoint(ml_run.best_dir, ml_data, split="test", out_dir=tmp_path)
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "loss"):
        assert again[key] == ml_run.test_metrics[key], key


def test_auto_detection_says_what_it_found(tiny_model, ml_data, tmp_path, caplog):
    cfg = tiny_config(tiny_model, **{"train__max_steps": 2, "train__eval_steps": 2})
    with caplog.at_level(logging.INFO):
        train(cfg, ml_data, tmp_path / "run")
    assert any("multi_label" in r.getMessage() for r in caplog.records
               if r.name.startswith("zhcls.data"))
    assert "task multi_label; long texts: truncate to 32 tokens" in caplog.text
    # the in-training dev line names the multi-label metrics, not a bare "accuracy"
    dev_lines = [r.getMessage() for r in caplog.records if r.name == "zhcls.training.trainer"
                 and "dev loss" in r.getMessage()]
    assert dev_lines and all("micro-F1" in m and "subset accuracy" in m and "threshold 0.5" in m
                             for m in dev_lines), dev_lines


def test_single_label_data_with_a_multilabel_objective_names_the_flag(tiny_model, tiny_data,
                                                                       tmp_path):
    cfg = tiny_config(tiny_model, **{"objective__name": "bce"})
    with pytest.raises(ConfigError, match="objective.name bce"):
        train(cfg, tiny_data, tmp_path / "run")


def test_pos_weight_needs_one_weight_per_class(tiny_model, ml_data, tmp_path):
    cfg = tiny_config(tiny_model, **{"objective__pos_weight": "[1.0, 2.0]",
                                     "data__task": "multi_label"})
    with pytest.raises(ConfigError, match="objective.pos_weight: expected 3 weights"):
        train(cfg, ml_data, tmp_path / "run")


@pytest.mark.parametrize("objective", ["kd", "bce+scl", "kd+scl"])
def test_multilabel_kd_and_scl_train_and_log_their_terms(objective, tiny_model, tmp_path):
    data = write_multilabel(tmp_path / "data", repeat=1, teacher=True)
    cfg = tiny_config(tiny_model, **{"objective__name": objective, "train__max_steps": 4,
                                     "train__eval_steps": 4, "objective__pos_weight_auto": "true"})
    result = train(cfg, data, tmp_path / "run")
    history = json.loads((result.output_dir / "history.json").read_text("utf-8"))["log_history"]
    logged = {k for h in history for k in h if k.startswith("loss_")}
    expected = {"kd": {"loss_kd_soft"}, "bce+scl": {"loss_scl"}, "kd+scl": {"loss_kd_soft",
                                                                          "loss_scl"}}[objective]
    assert expected <= logged, logged
    assert np.isfinite(result.dev_metrics["loss"])


def test_single_label_runs_are_unchanged(tiny_model, tmp_path):
    data = write_dataset(tmp_path / "single")
    result = train(tiny_config(tiny_model), data, tmp_path / "run")
    assert not (result.best_dir / "thresholds.json").exists()
    assert "micro_f1" not in result.dev_metrics


def test_model_card_says_multilabel_and_long_text():
    """The card of a multi-label / chunks model must not claim 'any text gets one label' or
    'judged on its beginning only' (what it said for every model before)."""
    from zhcls.modeling.model_card import render_model_card

    card = render_model_card({"data": {"task": "multi_label", "long_text": "chunks",
                                       "max_length": 64}}, CLASSES,
                             {"metrics": {"dev": {"micro_f1": 0.9, "macro_f1": 0.8}},
                              "decision": {"tuned_on": "dev", "default": 0.5}})
    assert "multi-label" in card and "possibly none" in card and "any text gets one" not in card
    assert "window by window" in card and "beginning only" not in card
    assert "micro_f1" in card and "0.9000" in card and "tuned on dev" in card
    ml_card = render_model_card({"data": {"task": "multi_label"}}, CLASSES, {"metrics": {
        "dev": {"accuracy": 0.7, "subset_accuracy": 0.7, "micro_f1": 0.9}}})
    assert "| accuracy" not in ml_card and "subset_accuracy" in ml_card
    single = render_model_card({"data": {"max_length": 32}}, CLASSES, {})
    assert "any text gets one of them" in single and "beginning only" in single


def test_zhcls_train_prints_the_multilabel_headline(tiny_model, ml_data, tmp_path, capsys):
    """`zhcls train` used to print 'dev accuracy 0.80, macro-F1 0.89' for a multi-label run:
    the subset accuracy under a bare name, and no micro-F1."""
    from zhcls.cli import main

    assert main(["train", "--data", str(ml_data), "--out", str(tmp_path / "run"),
                 "--model.pretrained", str(tiny_model), "--objective.name", "bce",
                 "--train.max_steps", "2", "--train.eval_steps", "2", "--train.batch_size", "8",
                 "--train.report", "false", "--train.tensorboard", "false"]) == 0
    out = capsys.readouterr().out
    assert "dev micro-F1" in out and "subset accuracy" in out and "dev accuracy" not in out


def test_a_multilabel_baseline_evaluates_and_goes_beside_the_model_in_the_report(
        ml_run, ml_data, tmp_path):
    """Both used to stop with 'label is a list ...: set data.task multi_label': evaluate read
    the baseline's split as single-label, and so did the report's baseline column."""
    from zhcls.cli import main
    from zhcls.report.run_report import build_report
    from zhcls.workflows.baseline import train_baseline

    base = train_baseline(ml_data, tmp_path / "baseline", thresholds="fixed").checkpoint
    assert main(["evaluate", str(base), "--data", str(ml_data), "--split", "test",
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text("utf-8"))
    assert metrics["task"] == "multi_label" and 0.0 <= metrics["micro_f1"] <= 1.0
    page = build_report([ml_run.output_dir], tmp_path / "report", split="test", baseline=base)
    saved = json.loads((tmp_path / "report" / "baseline" / "metrics.json").read_text("utf-8"))
    assert saved["micro_f1"] == metrics["micro_f1"] and page.is_file()


def test_evaluating_on_the_split_the_thresholds_were_tuned_on_warns(ml_run, ml_data, tmp_path,
                                                                    caplog):
    from zhcls.evaluation.evaluate import evaluate_checkpoint

    with caplog.at_level(logging.WARNING):
        evaluate_checkpoint(ml_run.best_dir, ml_data, split="dev", out_dir=tmp_path / "dev")
    assert "tuned on this dev split" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        evaluate_checkpoint(ml_run.best_dir, ml_data, split="test", out_dir=tmp_path / "test")
    assert "tuned on" not in caplog.text


def test_a_missing_test_split_suggests_another(tmp_path):
    from zhcls.data.formats import find_split_file
    from zhcls.errors import DataError

    data = write_multilabel(tmp_path / "d")
    (data / "test.jsonl").unlink()
    with pytest.raises(DataError, match="this dataset has train and dev: evaluate one with "
                                        "--split dev"):
        find_split_file(data, "test")


def test_comparing_runs_with_a_baseline_keeps_the_baseline(ml_run, ml_data, tmp_path):
    """`zhcls report A B --baseline BASE` used to drop the baseline without a word."""
    import shutil

    from zhcls.report.run_report import build_report
    from zhcls.workflows.baseline import train_baseline

    other = tmp_path / "other"
    shutil.copytree(ml_run.output_dir, other)
    base = train_baseline(ml_data, tmp_path / "baseline", thresholds="fixed").checkpoint
    build_report([ml_run.output_dir, other], tmp_path / "cmp", split="test", baseline=base,
                 method="pca")
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text("utf-8"))
    assert saved["baseline"] and all(v["micro_f1"] is not None for v in saved["baseline"].values())


def test_a_multilabel_baseline_predicts_label_sets_with_sigmoid_scores(ml_data, tmp_path):
    """Classifier.load on a multi-label baseline built a single-label classifier: softmax
    over the per-class log-odds, one label a text, the saved thresholds unused."""
    from zhcls.inference.classifier import Classifier
    from zhcls.modeling.ngram import BaselineBackend, load_baseline
    from zhcls.workflows.baseline import train_baseline

    base = train_baseline(ml_data, tmp_path / "baseline", thresholds="fixed").checkpoint
    clf = Classifier.load(base)
    texts = ["男篮亚洲杯小组赛再胜一场，央行宣布下调存款准备金率", "今天天气不错"]
    expected = BaselineBackend(load_baseline(base)).probs(texts)  # (N, C) per-class scores
    assert clf.task == "multi_label"
    np.testing.assert_allclose(clf.predict_proba(texts), expected, atol=1e-6)
    pred = clf.predict(texts[0])
    assert [s.label for s in pred.labels] == [
        CLASSES[j] for j in np.argsort(-expected[0]) if expected[0, j] >= 0.5]


def test_the_card_of_untuned_thresholds_does_not_claim_they_were_tuned():
    """The card said 'tuned on dev' for every multi-label model, also with
    decision.tune_thresholds false."""
    from zhcls.modeling.model_card import render_model_card

    card = render_model_card({"data": {"task": "multi_label"}}, CLASSES, {
        "metrics": {"dev": {"micro_f1": 0.9}}, "decision": {"tuned_on": None, "default": 0.4}})
    assert "tuned on" not in card and "decided at threshold 0.4 (not tuned)" in card



def test_a_baseline_evaluates_from_the_research_layout_and_warns_on_its_tuning_split(
        ml_data, tmp_path, caplog):
    """The baseline branch of evaluate_checkpoint came before DIR/data was resolved, and it
    never warned when reporting the split its thresholds were tuned on."""
    import shutil

    from zhcls.evaluation.evaluate import evaluate_checkpoint
    from zhcls.workflows.baseline import train_baseline

    research = tmp_path / "research"
    shutil.copytree(ml_data, research / "data")
    base = train_baseline(ml_data, tmp_path / "baseline", thresholds="dev").checkpoint
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_checkpoint(base, research, split="dev", out_dir=tmp_path / "ev")
    assert metrics["task"] == "multi_label" and "tuned on this dev split" in caplog.text


def test_a_multilabel_onnx_export_evaluates_as_its_checkpoint_and_warns_on_dev(
        ml_run, ml_data, tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    from zhcls.evaluation.evaluate import evaluate_checkpoint
    from zhcls.inference.evaluate_export import evaluate_export
    from zhcls.inference.export import export_onnx

    out = export_onnx(ml_run.best_dir, tmp_path / "onnx").out_dir
    with caplog.at_level(logging.WARNING):
        onnx_dev = evaluate_export(out, ml_data, split="dev", out_dir=tmp_path / "onnx-dev")
    assert "tuned on this dev split" in caplog.text  # the export keeps thresholds.json
    torch_dev = evaluate_checkpoint(ml_run.best_dir, ml_data, split="dev",
                                    out_dir=tmp_path / "torch-dev")
    for key in ("micro_f1", "macro_f1", "subset_accuracy"):
        assert onnx_dev[key] == pytest.approx(torch_dev[key], abs=1e-6), key
