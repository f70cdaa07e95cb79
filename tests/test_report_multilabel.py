"""Multi-label reports: the co-occurrence heat map, per-class bars and thresholds, missed /
extra label errors, and the run report's multi-label page (a hand-made run directory whose
evaluation is synthetic, so no training is needed)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from zhcls.config import config_from_dict  # noqa: E402
from zhcls.data.formats import Example, SplitData  # noqa: E402
from zhcls.evaluation.evaluate import write_evaluation  # noqa: E402
from zhcls.report import run_report  # noqa: E402
from zhcls.report.errors import (  # noqa: E402
    format_label_errors_md,
    label_error_counts,
    label_error_severity,
    read_wrong_samples,
    write_label_errors,
)
from zhcls.report.multilabel import plot_label_cooccurrence, threshold_rows  # noqa: E402
from zhcls.report.plots import plot_evaluation  # noqa: E402

CAR = ["价格", "配置", "操控", "舒适性", "油耗", "动力"]


def assert_png(path: Path, min_side: int = 300) -> None:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert min(width, height) >= min_side, (width, height)


@pytest.fixture
def no_glyph_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    from zhcls.report.fonts import current_cjk_font

    if current_cjk_font() is not None:
        assert missing == []


def synthetic(n: int = 40, seed: int = 0) -> tuple[SplitData, np.ndarray, np.ndarray]:
    """car_aspects-like gold sets (mostly one aspect, some two, one empty) and scores that
    lean towards them."""
    rng = np.random.default_rng(seed)
    labels = [[int(rng.integers(len(CAR)))] for _ in range(n)]
    for i in range(0, n, 5):
        labels[i] = sorted({labels[i][0], (labels[i][0] + 1) % len(CAR)})
    labels[1] = []
    gold = np.zeros((n, len(CAR)))
    for i, lab in enumerate(labels):
        gold[i, lab] = 1
    probs = np.clip(0.5 * gold + rng.random(gold.shape) * 0.6, 0, 1).astype(np.float32)
    split = SplitData(path=Path("dev.jsonl"), examples=[
        Example(text=f"这车的第{i}条评论", label=lab, line=i + 1) for i, lab in enumerate(labels)])
    split.task = "multi_label"
    reps = (gold @ rng.normal(size=(len(CAR), 8)) + 0.1 * rng.normal(size=(n, 8)))
    return split, probs, reps.astype(np.float32)


def test_cooccurrence_heatmap_and_evaluation_pictures(tmp_path, no_glyph_warnings):
    split, probs, reps = synthetic()
    metrics = write_evaluation(probs, reps, split, CAR, tmp_path, thresholds=0.5)
    plot_evaluation(metrics, CAR, tmp_path)
    assert_png(tmp_path / "label_cooccurrence.png")
    assert_png(tmp_path / "per_class.png")
    assert not (tmp_path / "confusion_matrix.png").exists()
    gold = np.asarray(metrics["cooccurrence"]["gold"])
    assert np.diag(gold).tolist() == [metrics["per_class"][c]["support"] for c in CAR]
    # gold only (no predicted panel) is a narrower picture
    one = plot_label_cooccurrence(gold, CAR, tmp_path / "gold_only.png")
    assert one.stat().st_size < (tmp_path / "label_cooccurrence.png").stat().st_size


@pytest.mark.parametrize("matrix, labels, match", [
    (np.zeros((3, 3)), CAR, r"\(6, 6\) for 6 labels"),
    (-np.ones((2, 2)), CAR[:2], "non-negative"),
])
def test_cooccurrence_rejects_bad_input(tmp_path, matrix, labels, match):
    with pytest.raises(ValueError, match=match):
        plot_label_cooccurrence(matrix, labels, tmp_path / "x.png")


def test_threshold_rows_follow_class_order():
    th = np.linspace(0.3, 0.8, len(CAR))
    rows = threshold_rows({"thresholds": dict(zip(CAR, th.round(4).tolist(), strict=True)),
                           "per_class": {c: {"precision": 1.0, "recall": 0.5, "f1": 0.6667,
                                             "support": 3} for c in CAR}}, CAR)
    assert [r["class"] for r in rows] == CAR
    assert [r["threshold"] for r in rows] == pytest.approx(th)
    assert rows[0]["f1"] == 0.6667


def test_label_errors_count_missed_and_extra(tmp_path):
    wrong = [
        {"line": 1, "text": "油耗高", "gold": ["油耗"], "predicted": ["动力"], "missed": ["油耗"],
         "extra": ["动力"], "scores": {"油耗": 0.4, "动力": 0.9}},
        {"line": 2, "text": "价格|便宜", "gold": ["价格", "配置"], "predicted": ["价格"],
         "missed": ["配置"], "extra": [], "scores": {"价格": 0.8, "配置": 0.45}},
        {"line": 3, "text": "还行", "gold": [], "predicted": ["动力"], "missed": [],
         "extra": ["动力"], "scores": {"动力": 0.55}},
    ]
    assert label_error_counts(wrong, CAR) == [
        {"class": "动力", "missed": 0, "extra": 2, "total": 2},
        {"class": "配置", "missed": 1, "extra": 0, "total": 1},
        {"class": "油耗", "missed": 1, "extra": 0, "total": 1},
    ]
    assert [label_error_severity(r) for r in wrong] == pytest.approx([0.9, 0.55, 0.55])
    result = write_label_errors(wrong, CAR, tmp_path, top=2)
    assert result["wrong_texts"] == 3 and [r["line"] for r in result["examples"]] == [1, 2]
    assert json.loads((tmp_path / "label_errors.json").read_text(encoding="utf-8")) == result
    md = (tmp_path / "label_errors.md").read_text(encoding="utf-8")
    assert "| 油耗 | 0 | 1 | 1 |" not in md and "| 动力 | 0 | 2 | 2 |" in md
    assert "价格\\|便宜" in md and "油耗 (0.40)" in md and "动力 (0.90)" in md
    empty = format_label_errors_md({"wrong_texts": 0, "classes": [], "examples": []})
    assert "No errors" in empty


# ----------------------------------------------------------------------------- run report
@pytest.fixture
def ml_run(tmp_path, monkeypatch) -> Path:
    """A run directory with a multi-label best/ checkpoint (no weights needed: the
    evaluation is replaced by :func:`synthetic` scores written by write_evaluation)."""
    data = tmp_path / "car"
    data.mkdir()
    (data / "class.txt").write_text("\n".join(CAR) + "\n", encoding="utf-8")
    (data / "dev.jsonl").write_text('{"text": "x", "labels": ["价格"]}\n', encoding="utf-8")
    best = tmp_path / "run" / "best"
    best.mkdir(parents=True)
    config = config_from_dict({"data": {"dir": str(data), "task": "multi_label"},
                               "objective": {"name": "bce"}})
    config.save(best / "zhcls.yaml")
    (best / "labels.json").write_text(json.dumps({"labels": CAR}, ensure_ascii=False), "utf-8")
    for name in ("model.safetensors", "encoder_config.json"):
        (best / name).write_bytes(b"{}")
    th = dict(zip(CAR, [0.4, 0.5, 0.6, 0.5, 0.45, 0.55], strict=True))
    (best / "thresholds.json").write_text(json.dumps(
        {"task": "multi_label", "thresholds": th, "default": 0.5, "at_least_one": False,
         "tuned_on": "dev"}, ensure_ascii=False), "utf-8")

    def fake_evaluate(best_dir, split_path, class_names, out, device):
        from zhcls.evaluation.evaluate import checkpoint_decision
        from zhcls.modeling.checkpoint import read_config

        thresholds, at_least_one = checkpoint_decision(best_dir, read_config(best_dir),
                                                       class_names)
        split, probs, reps = synthetic()
        metrics = write_evaluation(probs, reps, split, class_names, out,
                                   thresholds=thresholds, at_least_one=at_least_one)
        plot_evaluation(metrics, class_names, Path(out))
        return metrics

    monkeypatch.setattr(run_report, "_evaluate", fake_evaluate)
    return tmp_path / "run"


def test_multilabel_run_report(ml_run, monkeypatch, no_glyph_warnings):
    page = run_report.build_report([ml_run], method="pca")
    out = page.parent
    for name in ("label_cooccurrence.png", "per_class.png", "representation_map.png",
                 "label_errors.json", "label_errors.md", "wrong_samples.jsonl", "report.json"):
        assert (out / name).is_file(), name
    assert not (out / "confusion_matrix.png").exists()
    assert not (out / "confused_pairs.json").exists()
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert summary["task"] == "multi_label" and "cooccurrence" in summary["images"]
    assert summary["n_points"] == 31  # 40 texts, 8 with two labels, one with none
    html = page.read_text(encoding="utf-8")
    assert "<th>micro-F1</th>" in html and "<th>Hamming loss</th>" in html
    assert "<th>threshold</th>" in html and '<td>操控</td><td class="num">0.6000</td>' in html
    assert 'src="label_cooccurrence.png"' in html and "Confusion matrix" not in html
    wrong = read_wrong_samples(out / "wrong_samples.jsonl")
    errors = json.loads((out / "label_errors.json").read_text(encoding="utf-8"))
    assert errors["wrong_texts"] == len(wrong) > 0
    assert sum(c["missed"] for c in errors["classes"]) == sum(len(w["missed"]) for w in wrong)
    first = errors["examples"][0]
    assert f'<td class="text">{first["text"]}</td>' in html
    assert "texts with a wrong label set" in html
    # an up-to-date report is reused (nothing evaluated again), multi-label parts included
    def fail(*args):
        raise AssertionError("the up-to-date report was evaluated again")

    monkeypatch.setattr(run_report, "_evaluate", fail)
    again = run_report.build_run_report(ml_run, out, method="pca", reuse=True)
    assert again.task == "multi_label" and again.label_errors == errors and again.pairs == []


def test_multilabel_comparison_page(ml_run, tmp_path, no_glyph_warnings):
    import shutil

    from zhcls.errors import ZhclsError

    other = tmp_path / "run2"
    shutil.copytree(ml_run / "best", other / "best")
    page = run_report.build_report([ml_run, other], tmp_path / "cmp", method="pca")
    html = page.read_text(encoding="utf-8")
    assert "<th>dev micro-F1</th>" in html and "Missed and extra labels per class" in html
    assert html.count("label co-occurrence of") == 2 and "Confusion matrices" not in html
    reports = [run_report.build_run_report(r, r / "report", method="pca", reuse=True)
               for r in (ml_run, other)]
    reports[1].task = "single_label"
    with pytest.raises(ZhclsError, match="compare runs of one task"):
        run_report.build_comparison(reports, tmp_path / "mixed", method="pca")
