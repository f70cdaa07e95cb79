"""The multi-label half of ``zhcls baseline``: character n-gram TF-IDF + one-vs-rest
calibrated linear models, per-class decision thresholds, dev/test micro- and macro-F1.

Everything here works on texts plus an (N, C) 0/1 label matrix; the data file is read in
one place, :func:`read_multilabel`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zhcls.errors import ConfigError

logger = logging.getLogger(__name__)

THRESHOLD_MODES = ("fixed", "cv", "dev")
TASK_CHOICES = ("auto", "single_label", "multi_label")


@dataclass
class Decision:
    """How the multi-label decision thresholds are chosen (see the module docstring of
    :mod:`zhcls.workflows.baseline`)."""

    mode: str = "cv"
    threshold: float = 0.5
    at_least_one: bool = False
    cv_folds: int = 3

    def __post_init__(self) -> None:
        if self.mode not in THRESHOLD_MODES:
            raise ConfigError(f"--thresholds: expected one of {', '.join(THRESHOLD_MODES)}, "
                              f"got {self.mode!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"--threshold: expected a probability in [0, 1], got "
                              f"{self.threshold}")
        if self.cv_folds < 2:
            raise ConfigError(f"--cv-folds: expected >= 2, got {self.cv_folds}")


@dataclass
class MultiLabelResult:
    fit_seconds: float
    thresholds: np.ndarray
    metrics: dict[str, dict] = field(default_factory=dict)


def resolve_task(task: str, train_file: Path, class_names: list[str], encoding: str) -> str:
    """``auto`` → what the train file holds (logged); otherwise ``task`` itself."""
    if task not in TASK_CHOICES:
        raise ConfigError(f"--task: expected one of {', '.join(TASK_CHOICES)}, got {task!r}")
    if task != "auto":
        return task
    from zhcls.data.formats import detect_task

    found = detect_task(train_file, class_names, encoding=encoding)
    logger.info("task auto: %s looks %s", train_file, found)
    return found


def read_multilabel(path: Path, class_names: list[str], encoding: str = "utf-8"
                    ) -> tuple[list[str], np.ndarray]:
    """(texts, (N, C) float32 0/1 label matrix) of a multi-label split file: the one call
    site of the data reader."""
    from zhcls.data.formats import read_split

    split = read_split(path, class_names, task="multi_label", encoding=encoding,
                       teacher_policy="skip", ignore_teacher=True)
    return split.texts, split.label_matrix(len(class_names))


def train_multilabel(data_dir: Path, out: Path, class_names: list[str], train_file: Path,
                     model: dict, decision: Decision, *, encoding: str = "utf-8"
                     ) -> MultiLabelResult:
    """Fit on train, choose the thresholds, evaluate dev/test, save the checkpoint."""
    from zhcls.data.formats import find_split_file, has_split
    from zhcls.modeling.ngram import (
        build_pipeline,
        fit_multilabel,
        predict_proba,
        save_baseline,
        thresholds_record,
    )

    texts, gold = read_multilabel(train_file, class_names, encoding)
    pipeline = build_pipeline(**model, task="multi_label")
    start = time.perf_counter()
    fit_multilabel(pipeline, texts, gold, class_names)
    seconds = round(time.perf_counter() - start, 2)
    logger.info("multi-label baseline (%s, one-vs-rest) fitted on %d examples of %s in "
                "%.2f s", model["classifier"], len(texts), train_file, seconds)
    splits = {s: read_multilabel(find_split_file(data_dir, s), class_names, encoding)
              for s in ("dev", "test") if has_split(data_dir, s)}
    probs = {s: predict_proba(pipeline, t, len(class_names)) for s, (t, _) in splits.items()}
    thresholds, tuned_on = choose_thresholds(decision, texts, gold, class_names, model,
                                             dev=(probs["dev"], splits["dev"][1])
                                             if "dev" in splits else None)
    result = MultiLabelResult(seconds, thresholds)
    for split, (_, split_gold) in splits.items():
        result.metrics[split] = evaluate_multilabel(
            probs[split], split_gold, class_names, thresholds, decision, out / f"eval_{split}",
            tuned_on=tuned_on)
        m = result.metrics[split]
        logger.info("baseline %s micro-F1 %.4f, macro-F1 %.4f at thresholds tuned on %s; "
                    "micro-F1 %.4f, macro-F1 %.4f at %g (%d examples)", split, m["micro_f1"],
                    m["macro_f1"], tuned_on, m["micro_f1_at_default"],
                    m["macro_f1_at_default"], decision.threshold, m["num_examples"])
    info = {"task": "multi_label", **{k: v for k, v in model.items() if k != "c"},
            "C": model["c"], "train_file": str(train_file), "train_examples": len(texts),
            "fit_seconds": seconds, "thresholds_tuned_on": tuned_on,
            "threshold_default": decision.threshold, "at_least_one": decision.at_least_one,
            "metrics": {k: {f: v[f] for f in SUMMARY_KEYS} for k, v in result.metrics.items()}}
    record = thresholds_record(class_names, thresholds, default=decision.threshold,
                               at_least_one=decision.at_least_one, tuned_on=tuned_on)
    save_baseline(out, pipeline, class_names, info, record)
    return result


SUMMARY_KEYS = ("micro_f1", "macro_f1", "micro_f1_at_default", "macro_f1_at_default",
                "num_examples")


def choose_thresholds(decision: Decision, texts: list[str], gold: np.ndarray,
                      class_names: list[str], model: dict,
                      dev: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, str | None]:
    """(thresholds (C,), what they were tuned on or None for ``fixed``)."""
    from zhcls.evaluation.metrics import tune_thresholds

    if decision.mode == "fixed":
        return np.full(len(class_names), decision.threshold), None
    if decision.mode == "dev":
        if dev is None:
            raise ConfigError("--thresholds dev: the dataset has no dev split; use "
                              "--thresholds cv (tuned on train by cross-validation)")
        logger.warning("thresholds tuned on dev: the dev scores at them are optimistic")
        return tune_thresholds(dev[0], dev[1], default=decision.threshold), "dev"
    oof = cross_validated_probs(texts, gold, class_names, model, decision.cv_folds)
    return (tune_thresholds(oof, gold, default=decision.threshold),
            f"train ({decision.cv_folds}-fold cross-validation)")


def cross_validated_probs(texts: list[str], gold: np.ndarray, class_names: list[str],
                          model: dict, folds: int) -> np.ndarray:
    """Out-of-fold per-class probabilities (N, C) of train: each row scored by a pipeline
    fitted on the other folds (shuffled KFold, seeded by ``model["seed"]``)."""
    from sklearn.model_selection import KFold

    from zhcls.errors import CheckpointError
    from zhcls.modeling.ngram import build_pipeline, fit_multilabel, predict_proba

    oof = np.zeros(gold.shape, dtype=np.float32)  # (N, C)
    kfold = KFold(n_splits=folds, shuffle=True, random_state=model["seed"])
    for k, (fit_idx, held_idx) in enumerate(kfold.split(texts)):
        pipeline = build_pipeline(**model, task="multi_label")
        try:
            fit_multilabel(pipeline, [texts[i] for i in fit_idx], gold[fit_idx], class_names)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc} (in threshold cross-validation fold {k + 1} of "
                                  f"{folds}; use --thresholds fixed)") from None
        oof[held_idx] = predict_proba(pipeline, [texts[i] for i in held_idx], len(class_names))
    return oof


def evaluate_multilabel(probs: np.ndarray, gold: np.ndarray, class_names: list[str],
                        thresholds: np.ndarray, decision: Decision, out_dir: Path, *,
                        tuned_on: str | None = None) -> dict:
    """Metrics at ``thresholds`` (plus micro/macro-F1 at ``decision.threshold``), written to
    ``out_dir/metrics.json``; returns them."""
    from zhcls.evaluation.metrics import apply_thresholds
    from zhcls.utils import atomic_write_json

    pred = apply_thresholds(probs, thresholds, decision.at_least_one)  # (N, C)
    at_default = apply_thresholds(probs, decision.threshold, decision.at_least_one)
    metrics = _metrics(gold, pred, class_names)
    default = _metrics(gold, at_default, class_names)
    metrics.update(micro_f1_at_default=default["micro_f1"],
                   macro_f1_at_default=default["macro_f1"], num_examples=len(gold),
                   task="multi_label", thresholds_tuned_on=tuned_on,
                   threshold_default=decision.threshold, at_least_one=decision.at_least_one,
                   thresholds={n: round(float(t), 6)
                               for n, t in zip(class_names, thresholds, strict=True)})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


def _metrics(gold: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict:
    from zhcls.evaluation.metrics import multilabel_metrics

    return dict(multilabel_metrics(gold, pred, class_names))
