"""The multi-label evaluation of a split (called by
:func:`zhcls.evaluation.evaluate.write_evaluation` when ``split.task == "multi_label"``):
per-class sigmoid scores decided by :func:`~zhcls.evaluation.metrics.apply_thresholds`, the
scores of :func:`~zhcls.evaluation.metrics.multilabel_metrics`, and the same four files as
single-label evaluation:

* ``metrics.json``: the multi-label metrics, ``"loss"`` (mean binary cross-entropy over every
  (text, class) cell), ``"split"``, ``"task": "multi_label"``, the ``"thresholds"``
  ({class: value}) and ``"at_least_one"`` the decision used, and ``"cooccurrence"``
  ({"gold": (C, C), "predicted": (C, C)} counts of texts holding both classes);
* ``report.txt``: :func:`~zhcls.evaluation.metrics.format_multilabel_report`;
* ``wrong_samples.jsonl``: every text whose predicted set differs from its gold set, with
  ``gold``, ``predicted``, ``missed`` (gold, not predicted) and ``extra`` (predicted, not gold)
  class names and the per-class ``scores`` (and ``teacher`` scores when the split has them);
* ``predictions.npz``: ``probs`` (N, C) scores, ``gold`` (N, C) 0/1, ``pred`` (N, C) bool,
  ``thresholds`` (C,) and ``representations``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from zhcls.evaluation.metrics import (
    apply_thresholds,
    format_multilabel_report,
    label_cooccurrence,
    multilabel_metrics,
    named_scores,
)
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)


def split_task(split) -> str:
    """``split.task`` ("single_label" for splits that carry no task)."""
    return getattr(split, "task", "single_label")


def gold_matrix(split, num_classes: int) -> np.ndarray:
    """The split's gold label sets as (N, C) float32 multi-hot (``SplitData.label_matrix``
    when the split has it)."""
    if hasattr(split, "label_matrix"):
        return np.asarray(split.label_matrix(num_classes), dtype=np.float32)
    out = np.zeros((len(split.examples), num_classes), dtype=np.float32)  # (N, C)
    for i, ex in enumerate(split.examples):
        out[i, list(ex.label)] = 1.0
    return out


def mean_bce(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean binary cross-entropy over all (N, C) cells, scores clipped to [1e-12, 1 - 1e-12]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)  # (N, C)
    y = np.asarray(gold, dtype=np.float64)  # (N, C)
    if not p.size:
        return float("nan")
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def write_multilabel_evaluation(probs: np.ndarray, representations: np.ndarray, split,
                                class_names: list[str], out_dir: str | Path, *,
                                thresholds: np.ndarray | float = 0.5,
                                at_least_one: bool = False) -> dict:
    """Score ``probs`` (N, C) sigmoid scores against ``split``'s gold label sets and write the
    files of the module docstring into ``out_dir``; returns the metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_classes = len(class_names)
    probs = np.asarray(probs, dtype=np.float32)  # (N, C)
    gold = gold_matrix(split, num_classes)  # (N, C)
    if probs.shape != gold.shape:
        raise ValueError(f"scores {probs.shape} do not match the {gold.shape} gold labels "
                         f"of {split.path}")
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (num_classes,)).copy()
    pred = apply_thresholds(probs, th, at_least_one)  # (N, C) bool
    metrics = multilabel_metrics(gold, pred, class_names)
    metrics["loss"] = round(mean_bce(probs, gold), 4)
    metrics["split"] = str(split.path)
    metrics["examples_sha256"] = split.examples_digest()
    metrics["task"] = "multi_label"
    metrics["thresholds"] = {n: round(float(t), 4) for n, t in zip(class_names, th, strict=True)}
    metrics["at_least_one"] = bool(at_least_one)
    metrics["cooccurrence"] = {"gold": label_cooccurrence(gold).tolist(),
                               "predicted": label_cooccurrence(pred).tolist()}
    atomic_write_json(out / "metrics.json", metrics)
    text = format_multilabel_report(metrics, class_names)
    (out / "report.txt").write_text(text + "\n", encoding="utf-8")
    write_multilabel_wrong_samples(out / "wrong_samples.jsonl", split, probs, gold, pred,
                                   class_names)
    np.savez_compressed(out / "predictions.npz", probs=probs, gold=gold.astype(np.int8),
                        pred=pred, thresholds=th, representations=representations)
    logger.info("multi-label evaluation of %s written to %s (micro-F1 %.4f, macro-F1 %.4f on "
                "%d texts)", split.path, out, metrics["micro_f1"], metrics["macro_f1"],
                metrics["num_examples"])
    return metrics


def write_multilabel_wrong_samples(path: Path, split, probs: np.ndarray, gold: np.ndarray,
                                   pred: np.ndarray, class_names: list[str]) -> int:
    """One JSON line per text whose predicted label set is not its gold set; returns how
    many were written."""
    written = 0
    with path.open("w", encoding="utf-8") as f:
        for i, ex in enumerate(split.examples):
            g, p = gold[i].astype(bool), pred[i]  # (C,) each
            if np.array_equal(g, p):
                continue
            names = np.asarray(class_names, dtype=object)
            row = {"line": ex.line, "text": ex.text, "gold": names[g].tolist(),
                   "predicted": names[p].tolist(), "missed": names[g & ~p].tolist(),
                   "extra": names[p & ~g].tolist(),
                   "scores": named_scores(class_names, probs[i])}
            if ex.teacher is not None:
                row["teacher"] = named_scores(class_names, ex.teacher)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            written += 1
    return written
