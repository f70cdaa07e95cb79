"""zhcls label --teacher BASELINE --cross-fit K: out-of-fold teacher labels (each fold labelled
by a refit that never saw it, stratified seeded folds) and the refusals (exit 2)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from conftest import SENTENCES
from zhcls.cli import main

pytest.importorskip("skops", reason="baseline checkpoints are saved with skops (pip install skops)")


def _train(repeat: int = 4) -> tuple[list[str], list[int]]:
    """The tiny train split in file order (conftest.write_dataset)."""
    texts = [t for ts in SENTENCES.values() for t in ts * repeat]
    labels = [k for k, ts in SENTENCES.items() for _ in ts * repeat]
    return texts, labels


def test_fold_k_is_labelled_by_a_model_fitted_without_fold_k(baseline_dir):
    from zhcls.label.local import cross_fit_probs
    from zhcls.modeling.ngram import build_pipeline, fit_pipeline, load_baseline, predict_proba

    pipeline = load_baseline(baseline_dir).pipeline
    texts, labels = _train()
    probs, fold_of = cross_fit_probs(pipeline, texts, labels, 3, folds=3, seed=7)
    assert probs.shape == (len(texts), 3) and sorted(set(fold_of.tolist())) == [0, 1, 2]
    y = np.array(labels)
    for k in range(3):
        held = fold_of == k
        counts = np.bincount(y[held], minlength=3)
        assert counts.max() - counts.min() <= 1, "folds are stratified"
        alone = fit_pipeline(build_pipeline(), np.array(texts)[~held].tolist(),
                             y[~held].tolist())
        expected = predict_proba(alone, np.array(texts)[held].tolist(), 3)
        np.testing.assert_allclose(probs[held], expected, atol=1e-6)
    again, fold_again = cross_fit_probs(pipeline, texts, labels, 3, folds=3, seed=7)
    np.testing.assert_array_equal(fold_again, fold_of)
    np.testing.assert_allclose(again, probs)
    assert not np.array_equal(cross_fit_probs(pipeline, texts, labels, 3, 3, seed=8)[1], fold_of)
    assert pipeline.classes_.tolist() == [0, 1, 2], "the teacher itself is left fitted"


def test_cli_writes_out_of_fold_labels_and_reports_them(baseline_dir, tiny_data, tmp_path):
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.label.local import cross_fit_probs
    from zhcls.modeling.ngram import load_baseline

    out = tmp_path / "oof"
    assert main(["label", "--teacher", str(baseline_dir), "--data", str(tiny_data),
                 "--out", str(out), "--cross-fit", "3", "--cross-fit-seed", "5"]) == 0
    split = read_split(out / "train.txt", read_class_names(out / "class.txt"))
    written = np.array([e.teacher for e in split.examples])  # (N, C)
    texts, labels = _train()
    expected, _ = cross_fit_probs(load_baseline(baseline_dir).pipeline, texts, labels, 3, 3, 5)
    np.testing.assert_allclose(written, expected, atol=1e-5)
    report = json.loads((out / "label_report.json").read_text(encoding="utf-8"))
    assert report["cross_fit"] == {"folds": 3, "seed": 5, "stratified": True}
    assert report["agreement"] == pytest.approx((expected.argmax(1) == labels).mean(), abs=1e-4)
    assert report["mean_confidence"] == pytest.approx(expected.max(1).mean(), abs=1e-4)
    in_sample = tmp_path / "in"
    assert main(["label", "--teacher", str(baseline_dir), "--data", str(tiny_data),
                 "--out", str(in_sample)]) == 0
    plain = json.loads((in_sample / "label_report.json").read_text(encoding="utf-8"))
    assert plain["cross_fit"] is None


def test_cross_fit_refusals_exit_2(baseline_dir, tiny_data, tiny_model, tmp_path, caplog):
    base = ["--data", str(tiny_data), "--out", str(tmp_path / "o")]

    def error(*argv: str) -> str:
        caplog.clear()
        assert main(["label", *argv, *base]) == 2
        messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(messages) == 1 and "\n" not in messages[0] and "Traceback" not in caplog.text
        return messages[0]

    assert "--cross-fit needs a `zhcls baseline` teacher" in error(
        "--teacher", str(tiny_model), "--cross-fit", "3")
    assert "folds >= 2" in error("--teacher", str(baseline_dir), "--cross-fit", "1")
    # 24 examples per class in the tiny train split: 30 folds cannot all hold every class
    assert "pass a smaller --cross-fit" in error("--teacher", str(baseline_dir), "--cross-fit", "30")
    assert "needs --teacher BASELINE_DIR" in error("--llm", "m", "--cross-fit", "3")
    assert not (tmp_path / "o").exists()


def test_cross_fit_on_multi_label_data_says_it_is_single_label_only(tmp_path, caplog):
    from conftest import write_multilabel
    from zhcls.workflows.baseline import train_baseline

    data = write_multilabel(tmp_path / "ml")
    train_baseline(data, tmp_path / "bl")
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["label", "--teacher", str(tmp_path / "bl"), "--cross-fit", "3",
                     "--data", str(data), "--out", str(tmp_path / "kd")]) == 2
    message = caplog.records[-1].getMessage()
    assert "train.jsonl:1: --cross-fit is for single-label data" in message, message
    assert "without --cross-fit" in message and not (tmp_path / "kd" / "train.jsonl").exists()
