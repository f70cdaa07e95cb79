"""One set of metrics and one story in the logs: training's model selection, the numbers a run
reports and ``zhcls evaluate`` are computed by one function and agree; every printed dev
number says which step it is of; report.txt lines up Chinese class names."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from conftest import tiny_config
from zhcls.evaluation.metrics import compute_report, display_width, format_report
from zhcls.training.trainer import compute_metrics


class EvalPrediction:
    def __init__(self, predictions, label_ids):
        self.predictions, self.label_ids = predictions, label_ids


def test_dev_macro_f1_averages_over_all_classes_as_evaluate_does():
    """A dev split missing class 3, every prediction right: per class F1 1, 1, 1 and 0."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    logits = np.eye(4)[labels]  # (6, 4): perfect predictions over 4 classes
    trained = compute_metrics(EvalPrediction(logits, labels))
    evaluated = compute_report(labels, logits.argmax(1), ["a", "b", "c", "d"])
    assert trained["macro_f1"] == pytest.approx(0.75)
    assert trained["macro_f1"] == pytest.approx(evaluated["macro_f1"])
    assert trained["accuracy"] == evaluated["accuracy"] == 1.0


def test_report_txt_aligns_chinese_class_names_by_display_width():
    names = ["体育", "财经新闻频道很长的名字", "science-and-technology"]
    gold, pred = np.array([0, 1, 2, 1, 0]), np.array([0, 1, 1, 1, 2])
    text = format_report(compute_report(gold, pred, names), names)
    rows = text.splitlines()
    table = [r for r in rows if any(r.startswith(n) for n in names)]
    matrix = [r for r in rows if re.match(r"^ ?\d+ ", r)]
    assert len(table) == 3 and len(matrix) == 3
    for block in (table, matrix):
        # the display column where the first number starts is the same on every row
        starts = {display_width(r[:re.search(r"\s\d", r[3:]).start() + 4]) for r in block}
        assert len(starts) == 1, block


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, tiny_model, tiny_data):
    from zhcls.training.train import train

    out = tmp_path_factory.mktemp("story") / "run"
    cfg = tiny_config(tiny_model, train__max_steps=9, train__eval_steps=3, train__lr=5e-3)
    handler, log = _Collect(), logging.getLogger("zhcls")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        result = train(cfg, tiny_data, out)
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    return result, handler.lines


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_each_dev_evaluation_is_logged_once_with_its_step(logged_run):
    result, lines = logged_run
    steps = [int(m.group(1)) for line in lines if (m := re.match(r"step (\d+): dev", line))]
    assert steps == [3, 6, 9]  # the final step is not printed a second time
    best = result.dev_metrics["step"]
    assert best in steps
    final = [line for line in lines if f"(best checkpoint, step {best};" in line]
    assert [line.split(" ")[0] for line in final] == ["dev", "test"]


def test_run_numbers_equal_zhcls_evaluate_exactly(logged_run, tiny_data, tmp_path):
    from zhcls.cli import main

    result, _ = logged_run
    metrics = json.loads((result.output_dir / "metrics.json").read_text("utf-8"))
    for split in ("dev", "test"):
        assert main(["evaluate", str(result.best_dir), "--data", str(tiny_data), "--split", split,
                     "--out", str(tmp_path / split)]) == 0
        again = json.loads((tmp_path / split / "metrics.json").read_text("utf-8"))
        for key in ("accuracy", "macro_f1", "loss", "per_class", "confusion_matrix"):
            assert again[key] == metrics[split][key], (split, key)
    assert metrics["best_step"] == metrics["dev"]["step"] == result.dev_metrics["step"]


def test_train_leaves_the_callers_config_untouched(tiny_model, tiny_data, tmp_path):
    import copy

    from zhcls.training.train import train

    cfg = tiny_config(tiny_model, train__max_steps=2, train__eval_steps=2)
    before = copy.deepcopy(cfg)
    result = train(cfg, tiny_data, tmp_path / "run")
    assert cfg == before  # data.dir and train.output_dir are set on the run's own copy
    from zhcls.modeling.checkpoint import read_config

    saved = read_config(result.best_dir)
    assert saved.data.dir == str(tiny_data) and saved.train.output_dir == str(tmp_path / "run")

