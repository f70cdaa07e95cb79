"""The multi-label linear baseline: one-vs-rest calibrated SVM on character n-grams,
independent per-class probabilities, thresholds (fixed, cross-validated on train, or dev)
stored in the checkpoint, bad input, and the bar on the shared car_aspects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from zhcls.cli import main

pytest.importorskip("skops", reason="baseline checkpoints are saved with skops (pip install skops)")

CLASSES = ["油耗", "动力", "外观"]
PHRASES = {
    "油耗": ["百公里油耗七个", "市区油耗偏高", "高速油耗很低", "油耗表现省油", "跑长途很省油"],
    "动力": ["动力输出强劲", "起步加速很猛", "发动机动力充沛", "超车提速轻松", "涡轮介入有力"],
    "外观": ["外观设计好看", "车身线条流畅", "前脸造型霸气", "颜值很高漂亮", "尾灯外形时尚"],
}
FILLER = ["说实话", "总的来说", "开了半年", "朋友都说", "我觉得"]
CAR_ASPECTS = SHARED / "car_aspects"


def rows(offset: int = 0) -> list[tuple[str, list[str]]]:
    """Deterministic texts about one or two aspects (and a few about none)."""
    out = []
    for i in range(30):
        a, b = CLASSES[i % 3], CLASSES[(i // 3) % 3]
        first = PHRASES[a][(i + offset) % 5]
        labels = sorted({a, b}, key=CLASSES.index) if i % 4 == 0 else [a]
        text = f"{FILLER[(i + offset) % 5]}{first}"
        if len(labels) == 2:
            text += "，" + PHRASES[b][(i + 2 + offset) % 5]
        out.append((text, labels))
    out += [(f"{FILLER[k]}，今天天气不错", []) for k in range(3)]
    return out


def write(root: Path, dev_rows=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    for split, data in (("train", rows() * 2), ("dev", dev_rows or rows(1))):
        (root / f"{split}.jsonl").write_text(
            "".join(json.dumps({"text": t, "labels": ls}, ensure_ascii=False) + "\n"
                    for t, ls in data), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("ml_data"))


@pytest.fixture(scope="module")
def ml_baseline(ml_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ml_baseline")
    assert main(["baseline", "--data", str(ml_data), "--out", str(out)]) == 0
    return out


def test_detected_and_saved_with_thresholds(ml_baseline):
    meta = json.loads((ml_baseline / "meta.json").read_text(encoding="utf-8"))
    assert meta["task"] == "multi_label"
    record = json.loads((ml_baseline / "thresholds.json").read_text(encoding="utf-8"))
    assert record["task"] == "multi_label" and list(record["thresholds"]) == CLASSES
    assert record["tuned_on"].startswith("train")  # cross-validated, dev not used
    assert all(0.0 <= t <= 1.0 for t in record["thresholds"].values())
    dev = json.loads((ml_baseline / "eval_dev" / "metrics.json").read_text(encoding="utf-8"))
    assert dev["micro_f1"] > 0.9 and dev["micro_f1_at_default"] > 0.9
    assert set(dev["per_class"]) == set(CLASSES)
    assert "micro-F1" in (ml_baseline / "README.md").read_text(encoding="utf-8")


def test_scores_are_independent_per_class_probabilities(ml_baseline):
    from zhcls.evaluation.metrics import apply_thresholds
    from zhcls.modeling.ngram import BaselineBackend, load_baseline

    ckpt = load_baseline(ml_baseline)
    assert ckpt.task == "multi_label" and ckpt.thresholds.shape == (3,)
    backend = BaselineBackend(ckpt)
    texts = ["我觉得市区油耗偏高，起步加速很猛", "前脸造型霸气"]
    probs = backend.probs(texts)  # (2, 3)
    assert probs.shape == (2, 3) and ((probs >= 0) & (probs <= 1)).all()
    assert probs[0].sum() > 1.2  # two aspects at once: not a distribution
    decided = apply_thresholds(probs, ckpt.thresholds, ckpt.at_least_one)
    assert decided.tolist() == [[True, True, False], [False, False, True]]
    sigmoid = 1 / (1 + np.exp(-backend.logits(texts, 8).astype(np.float64)))
    np.testing.assert_allclose(sigmoid, probs, atol=1e-5)


def test_round_trip_equals_a_fresh_fit(ml_baseline, ml_data):
    from zhcls.modeling.ngram import build_pipeline, fit_multilabel, load_baseline, predict_proba
    from zhcls.workflows.baseline_multilabel import read_multilabel

    texts, gold = read_multilabel(ml_data / "train.jsonl", CLASSES)
    assert gold.shape == (len(texts), 3) and not gold[-1].any()  # the no-aspect row
    fresh = fit_multilabel(build_pipeline(task="multi_label"), texts, gold, CLASSES)
    probe = ["高速油耗很低", "颜值很高漂亮，动力输出强劲"]
    np.testing.assert_allclose(predict_proba(load_baseline(ml_baseline).pipeline, probe, 3),
                               predict_proba(fresh, probe, 3), atol=1e-6)


def test_cv_thresholds_ignore_dev_and_dev_mode_uses_it(ml_data, tmp_path):
    from zhcls.evaluation.metrics import tune_thresholds
    from zhcls.modeling.ngram import load_baseline, predict_proba
    from zhcls.workflows.baseline import train_baseline
    from zhcls.workflows.baseline_multilabel import read_multilabel

    flipped = write(tmp_path / "flipped", [(t, [c for c in CLASSES if c not in ls])
                                           for t, ls in rows(1)])
    a = train_baseline(ml_data, tmp_path / "a", thresholds="cv")
    b = train_baseline(flipped, tmp_path / "b", thresholds="cv")
    np.testing.assert_allclose(load_baseline(a.checkpoint).thresholds,
                               load_baseline(b.checkpoint).thresholds)
    assert b.dev_metrics["micro_f1"] < 0.5  # dev gold really differs
    d = train_baseline(flipped, tmp_path / "d", thresholds="dev")
    texts, gold = read_multilabel(flipped / "dev.jsonl", CLASSES)
    ckpt = load_baseline(d.checkpoint)
    want = tune_thresholds(predict_proba(ckpt.pipeline, texts, 3), gold)
    np.testing.assert_allclose(ckpt.thresholds, want, atol=1e-6)
    f = train_baseline(ml_data, tmp_path / "f", thresholds="fixed", threshold=0.3,
                       at_least_one=True)
    fixed = load_baseline(f.checkpoint)
    assert fixed.thresholds.tolist() == [0.3] * 3 and fixed.at_least_one


def test_bad_input_exits_2_with_file_and_line(tmp_path, caplog):
    data = write(tmp_path / "bad")
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    lines[4] = json.dumps({"text": "空间很大", "labels": ["空间"]}, ensure_ascii=False)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "train.jsonl:5" in caplog.text and "空间" in caplog.text
    assert "Traceback" not in caplog.text
    caplog.clear()
    rare = write(tmp_path / "rare")
    rows_ = [json.loads(x) for x in (rare / "train.jsonl").read_text("utf-8").splitlines()]
    for r in rows_:
        r["labels"] = [x for x in r["labels"] if x != "外观"]
    rows_[0]["labels"] = ["外观"]
    (rare / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in rows_), encoding="utf-8")
    assert main(["baseline", "--data", str(rare), "--out", str(tmp_path / "o2")]) == 2
    assert "外观" in caplog.text and "--classifier logreg" in caplog.text
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "o3"),
                 "--threshold", "1.5", "--task", "multi_label"]) == 2


def test_damaged_thresholds_file_is_a_checkpoint_error(ml_baseline, tmp_path):
    import shutil

    from zhcls.errors import CheckpointError
    from zhcls.modeling.ngram import load_baseline

    copy = Path(shutil.copytree(ml_baseline, tmp_path / "copy"))
    (copy / "thresholds.json").write_text('{"thresholds": {"天窗": 0.4}}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="天窗"):
        load_baseline(copy)


@pytest.mark.slow
@pytest.mark.skipif(not (CAR_ASPECTS / "train.jsonl").is_file(),
                    reason=f"shared car_aspects data not found at {CAR_ASPECTS}")
def test_car_aspects_baseline_reaches_084_dev_micro_f1(tmp_path):
    from zhcls.workflows.baseline import train_baseline

    result = train_baseline(CAR_ASPECTS, tmp_path / "b", thresholds="fixed")
    assert result.task == "multi_label" and result.test_metrics is None
    assert result.dev_metrics["micro_f1"] >= 0.84
