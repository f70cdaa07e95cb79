"""Multi-label metrics, the decision (apply_thresholds), threshold tuning, the multi-label
evaluation files and the checkpoint's thresholds.json: hand-computed cases and a brute force
over a threshold grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from zhcls.data.formats import Example, SplitData
from zhcls.errors import CheckpointError
from zhcls.evaluation.evaluate import (
    checkpoint_decision,
    evaluate_model,
    format_evaluation,
    write_evaluation,
)
from zhcls.evaluation.metrics import (
    apply_thresholds,
    display_width,
    format_multilabel_report,
    label_cooccurrence,
    multilabel_metrics,
    tune_thresholds,
)
from zhcls.modeling.checkpoint import read_thresholds

NAMES = ["价格", "配置", "操控"]
GOLD = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
PRED = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])


def ml_split(labels: list[list[int]], path: str = "dev.jsonl", teacher=None) -> SplitData:
    examples = [Example(text=f"第{i}条评论", label=list(lab), line=i + 1,
                        teacher=None if teacher is None else teacher[i])
                for i, lab in enumerate(labels)]
    split = SplitData(path=Path(path), examples=examples)
    split.task = "multi_label"  # SplitData.task (data layer); set directly for older SplitData
    return split


# ----------------------------------------------------------------------------- metrics
def test_multilabel_metrics_hand_computed():
    m = multilabel_metrics(GOLD, PRED, NAMES)
    # per class: 价格 TP2; 配置 TP1 FN1; 操控 FP1 FN1
    assert m["per_class"]["价格"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_class"]["配置"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667,
                                      "support": 2}
    assert m["per_class"]["操控"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2), abs=1e-4)  # TP3 FP1 FN2
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-4)
    assert m["samples_f1"] == pytest.approx((2 / 3 + 1 + 2 / 4) / 3, abs=1e-4)
    assert m["subset_accuracy"] == m["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hamming_loss"] == pytest.approx(3 / 9, abs=1e-4)
    assert m["num_examples"] == 3


def test_multilabel_metrics_all_negative_rows_and_bad_shapes():
    gold = np.array([[0, 0, 0], [1, 0, 0]])
    m = multilabel_metrics(gold, gold, NAMES)
    assert m["subset_accuracy"] == 1.0 and m["hamming_loss"] == 0.0
    assert m["per_class"]["配置"]["support"] == 0
    empty = multilabel_metrics(np.zeros((0, 3)), np.zeros((0, 3)), NAMES)
    assert empty["num_examples"] == 0 and np.isnan(empty["micro_f1"])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        multilabel_metrics(GOLD, PRED[:, :2], NAMES)
    with pytest.raises(ValueError, match="3 class names"):
        multilabel_metrics(GOLD[:, :2], PRED[:, :2], NAMES)


def test_label_cooccurrence_counts_texts_with_both_labels():
    co = label_cooccurrence(GOLD)
    assert co.tolist() == [[2, 1, 1], [1, 2, 0], [1, 0, 1]]


def test_format_multilabel_report_aligns_chinese_names_and_shows_thresholds():
    names = ["价格", "舒适性", "a"]
    m = multilabel_metrics(GOLD, PRED, names)
    text = format_multilabel_report(m, names, thresholds=np.array([0.5, 0.25, 0.7]))
    lines = text.splitlines()
    assert "threshold" in lines[0]
    rows = lines[1:4]
    assert len({display_width(r) for r in [lines[0], *rows]}) == 1  # one column grid
    assert rows[1].startswith("舒适性") and rows[1].endswith("0.2500")
    assert "micro-F1 0.6667" in text and "Hamming loss 0.3333" in text
    # thresholds as {name: value} with a class missing; no thresholds: no column
    partial = format_multilabel_report(m, names, thresholds={"价格": 0.4})
    assert partial.splitlines()[2].rstrip().endswith("–")
    assert "threshold" not in format_multilabel_report(m, names).splitlines()[0]


# ----------------------------------------------------------------------------- decision
def test_apply_thresholds_hand_computed():
    probs = np.array([[0.6, 0.2], [0.1, 0.3], [0.2, 0.2]])
    pred = apply_thresholds(probs, np.array([0.5, 0.3]))
    assert pred.dtype == bool
    assert pred.tolist() == [[True, False], [False, True], [False, False]]  # 0.3 >= 0.3
    assert apply_thresholds(probs, 0.25).tolist() == [[True, False], [False, True],
                                                       [False, False]]
    forced = apply_thresholds(probs, np.array([0.5, 0.3]), at_least_one=True)
    assert forced.tolist() == [[True, False], [False, True], [True, False]]  # tie: lowest id
    assert apply_thresholds(np.zeros((0, 2)), 0.5, at_least_one=True).shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        apply_thresholds(np.array([0.5, 0.6]), 0.5)


def test_tune_thresholds_hand_computed():
    # class 0: predicting the top 3 (0.9, 0.8, 0.3) gives F1 2*2/(3+2) = 0.8, the best; the
    # cut lies midway between 0.3 and 0.1. class 1: no positive keeps the default.
    # class 2: top 2 and the default 0.5 both reach F1 1; the tie goes to the default.
    probs = np.array([[0.9, 0.1, 0.8], [0.8, 0.4, 0.7], [0.3, 0.7, 0.2], [0.1, 0.2, 0.2]])
    gold = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]])
    th = tune_thresholds(probs, gold, default=0.5)
    assert th == pytest.approx([0.2, 0.5, 0.5])
    assert f1_score(gold[:, 0], apply_thresholds(probs, th)[:, 0]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="both be"):
        tune_thresholds(probs, gold[:, :2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tune_thresholds_matches_brute_force_over_a_grid(seed):
    rng = np.random.default_rng(seed)
    n, c = 60, 4
    gold = (rng.random((n, c)) < 0.3).astype(int)
    # scores on a 0.01 grid (so ties occur) that lean towards the gold labels
    probs = np.round(np.clip(0.35 * gold + rng.random((n, c)) * 0.65, 0, 1), 2)
    grid = np.linspace(0.0, 1.0, 2001)  # holds a cut between any two 0.01-apart scores
    tuned = tune_thresholds(probs, gold)
    pred = apply_thresholds(probs, tuned)
    for k in range(c):
        cut = probs[None, :, k] >= grid[:, None]  # (G, N): the decision at every grid point
        tp = (cut & gold[None, :, k].astype(bool)).sum(axis=1)  # (G,)
        brute = (2 * tp / np.maximum(cut.sum(axis=1) + gold[:, k].sum(), 1)).max()
        assert f1_score(gold[:, k], pred[:, k], zero_division=0) == pytest.approx(brute)


# ----------------------------------------------------------------------------- evaluation
def test_write_evaluation_multilabel_files(tmp_path):
    split = ml_split([[0, 2], [1], [0, 1], []], teacher=[[0.9, 0.1, 0.8]] * 4)
    probs = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.7, 0.4, 0.6], [0.1, 0.2, 0.1]],
                     dtype=np.float32)
    reps = np.arange(8, dtype=np.float32).reshape(4, 2)
    m = write_evaluation(probs, reps, split, NAMES, tmp_path, thresholds=np.array(
        [0.5, 0.5, 0.25]), at_least_one=True)
    # decisions: {0,2} {1} {0,2} {1 (forced)}; gold {0,2} {1} {0,1} {}
    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    bce = -np.mean(gold * np.log(probs) + (1 - gold) * np.log(1 - probs))
    assert m["loss"] == pytest.approx(bce, abs=1e-4)
    assert m["task"] == "multi_label" and m["at_least_one"] is True
    assert m["thresholds"] == {"价格": 0.5, "配置": 0.5, "操控": 0.25}
    assert m["subset_accuracy"] == 0.5 and m["split"] == "dev.jsonl"
    assert m["cooccurrence"]["predicted"] == [[2, 0, 2], [0, 2, 0], [2, 0, 2]]
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == m
    wrong = [json.loads(x) for x in (tmp_path / "wrong_samples.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert [(w["line"], w["gold"], w["predicted"], w["missed"], w["extra"]) for w in wrong] == [
        (3, ["价格", "配置"], ["价格", "操控"], ["配置"], ["操控"]),
        (4, [], ["配置"], [], ["配置"])]
    assert wrong[0]["scores"] == {"价格": 0.7, "配置": 0.4, "操控": 0.6}
    assert wrong[0]["teacher"]["价格"] == 0.9
    with np.load(tmp_path / "predictions.npz") as npz:
        assert npz["gold"].tolist() == gold.tolist() and npz["pred"].shape == (4, 3)
        assert npz["thresholds"].tolist() == [0.5, 0.5, 0.25]
        assert np.array_equal(npz["representations"], reps)
    report = (tmp_path / "report.txt").read_text(encoding="utf-8")
    assert "threshold" in report and "subset accuracy 0.5000" in report
    assert format_evaluation(m, NAMES) == report.rstrip("\n")


def test_evaluate_model_multilabel_uses_sigmoid_and_config_decision(tmp_path, monkeypatch):
    from zhcls.config import config_from_dict
    from zhcls.modeling import forward

    logits = np.array([[2.0, -1.0, 0.1], [-3.0, -2.0, -0.5]], dtype=np.float32)
    monkeypatch.setattr(forward, "forward_texts", lambda *a, **k: forward.ForwardResult(
        logits=logits, representations=np.zeros((2, 4), dtype=np.float32)))
    config = config_from_dict({"data": {"task": "multi_label"},
                               "decision": {"threshold": 0.4, "at_least_one": True}})
    m = evaluate_model(None, None, ml_split([[0], [2]]), NAMES, tmp_path, config=config)
    with np.load(tmp_path / "predictions.npz") as npz:
        assert npz["probs"] == pytest.approx(1 / (1 + np.exp(-logits)), abs=1e-6)
        assert npz["pred"].tolist() == [[True, False, True], [False, False, True]]
    assert m["thresholds"] == dict.fromkeys(NAMES, 0.4) and m["at_least_one"] is True
    # explicit thresholds win over the config
    m = evaluate_model(None, None, ml_split([[0], [2]]), NAMES, tmp_path, config=config,
                       thresholds=np.array([0.9, 0.9, 0.9]), at_least_one=False)
    assert m["per_class"]["操控"]["recall"] == 0.0 and m["at_least_one"] is False


# ----------------------------------------------------------------------------- thresholds.json
def write_thresholds(directory: Path, payload) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / "thresholds.json"
    file.write_text(payload if isinstance(payload, str) else json.dumps(payload,
                                                                        ensure_ascii=False),
                    encoding="utf-8")
    return file


def test_read_thresholds_reads_the_contract_format(tmp_path):
    assert read_thresholds(tmp_path, NAMES) is None  # no file: single-label checkpoint
    file = write_thresholds(tmp_path, {"task": "multi_label",
                                       "thresholds": {"价格": 0.3, NAMES[1]: 0.4, "操控": 0.75},
                                       "default": 0.4, "at_least_one": True, "tuned_on": "dev"})
    for where in (tmp_path, file):
        th, at_least_one = read_thresholds(where, NAMES)
        assert th.tolist() == [0.3, 0.4, 0.75] and at_least_one is True


@pytest.mark.parametrize("payload, match", [
    ("{not json", "not valid UTF-8 JSON"),
    ([0.5, 0.5], "expected"),
    ({"task": "single_label", "thresholds": {}}, "multi_label"),
    ({"thresholds": {"油耗": 0.5}}, "油耗"),
    ({"thresholds": dict.fromkeys(NAMES, 0.5) | {"价格": 1.5}},
     r"threshold of '价格' must be a number in \[0, 1\]"),
    ({"thresholds": dict.fromkeys(NAMES, 0.5) | {"价格": True}}, "must be a number"),
    ({"thresholds": dict.fromkeys(NAMES, 0.5), "at_least_one": "yes"}, "at_least_one"),
])
def test_read_thresholds_rejects_bad_files(tmp_path, payload, match):
    write_thresholds(tmp_path, payload)
    with pytest.raises(CheckpointError, match=match) as err:
        read_thresholds(tmp_path, NAMES)
    assert "thresholds.json" in str(err.value)


def test_checkpoint_decision_follows_the_loading_rule(tmp_path):
    """evaluate decides as Classifier.load does: a multi-label checkpoint without its
    thresholds.json is an error, not a silent 0.5 for every class."""
    from zhcls.config import config_from_dict

    single = config_from_dict({"data": {"task": "single_label"}})
    multi = config_from_dict({"data": {"task": "multi_label"}, "decision": {"threshold": 0.3}})
    assert checkpoint_decision(tmp_path, single, NAMES) is None
    with pytest.raises(CheckpointError, match="not found, but zhcls.yaml says data.task"):
        checkpoint_decision(tmp_path, multi, NAMES)
    write_thresholds(tmp_path, {"task": "multi_label",
                                "thresholds": {"价格": 0.5, "配置": 0.6, "操控": 0.5}})
    th, _ = checkpoint_decision(tmp_path, multi, NAMES)
    assert th.tolist() == [0.5, 0.6, 0.5]
    with pytest.raises(CheckpointError, match="says data.task single_label"):
        checkpoint_decision(tmp_path, single, NAMES)
