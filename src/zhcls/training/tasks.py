"""What a run's task changes in training: single-label (softmax over classes, cross-entropy)
or multi-label (one sigmoid per class, BCE). The task is resolved once, before anything is
read (``data.task: auto`` is detected from the training file), and written into the run's
config, so the checkpoint says which task it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zhcls.config import MULTI_LABEL_PRESETS, Config
from zhcls.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``pos_weight_auto``: (N - n_c) / n_c clipped to this range (a class seen once would
#: otherwise weigh thousands of times more than its negatives).
POS_WEIGHT_RANGE = (1.0, 100.0)


def resolve_task(config: Config, data_dir: str | Path, class_names: list[str]) -> str:
    """``config.data.task``, with ``auto`` detected from the training file (logged); then the
    settings that only one task reads are checked against it. Sets ``config.data.task``."""
    from zhcls.data.formats import detect_task, find_split_file

    d = config.data
    if d.task == "auto":
        d.task = detect_task(find_split_file(data_dir, "train"), class_names,
                             label_separator=d.label_separator, encoding=d.encoding)
    check_task_settings(config)
    return d.task


def check_task_settings(config: Config) -> None:
    """Settings that need the other task are errors naming the flag."""
    task, o = config.data.task, config.objective
    if task == "single_label":
        if o.name in MULTI_LABEL_PRESETS:
            raise ConfigError(f"objective.name {o.name}: a multi_label objective, but the data "
                              "is single_label (one class a line); use ce / ce+scl, or set "
                              "--data.task multi_label")
        if o.pos_weight is not None or o.pos_weight_auto:
            raise ConfigError("objective.pos_weight / pos_weight_auto: per-class BCE weights "
                              "need multi_label data; the data is single_label")
        if config.train.metric_for_best == "micro_f1":
            raise ConfigError("train.metric_for_best micro_f1: single_label micro-F1 equals "
                              "accuracy; use --train.metric_for_best accuracy")


def pos_weight(config: Config, label_matrix: np.ndarray) -> torch.Tensor | None:
    """The BCE positive weights (C,) of a multi-label run: given (``objective.pos_weight``,
    one per class) or computed from the training counts (``objective.pos_weight_auto``)."""
    o = config.objective
    n, c = label_matrix.shape  # (N, C)
    if o.pos_weight is not None:
        if len(o.pos_weight) != c:
            raise ConfigError(f"objective.pos_weight: expected {c} weights (one per class in "
                              f"class.txt), got {len(o.pos_weight)}")
        return torch.tensor(o.pos_weight, dtype=torch.float32)
    if not o.pos_weight_auto:
        return None
    positives = label_matrix.sum(axis=0)  # (C,)
    weights = np.clip((n - positives) / np.maximum(positives, 1), *POS_WEIGHT_RANGE)
    logger.info("objective.pos_weight_auto: %s", ", ".join(f"{w:.2f}" for w in weights))
    return torch.tensor(weights, dtype=torch.float32)


def eval_metrics(logits: np.ndarray, labels: np.ndarray, task: str,
                 threshold: float = 0.5) -> dict[str, float]:
    """Training's dev metrics for model selection, by the functions ``zhcls evaluate``
    uses: single-label accuracy and macro-F1 of the argmax; multi-label subset accuracy
    (``accuracy``), micro- and macro-F1 at the global ``decision.threshold``."""
    from zhcls.evaluation.metrics import apply_thresholds, headline_metrics

    logits = np.asarray(logits)  # (N, C)
    if task != "multi_label":
        return headline_metrics(np.asarray(labels), logits.argmax(-1), logits.shape[-1])
    from zhcls.evaluation.metrics import multilabel_metrics
    from zhcls.modeling.forward import sigmoid

    pred = apply_thresholds(sigmoid(logits), threshold)  # (N, C) bool
    m = multilabel_metrics(np.asarray(labels) > 0.5, pred,
                           [str(i) for i in range(logits.shape[-1])])
    return {"accuracy": m["subset_accuracy"], "micro_f1": m["micro_f1"],
            "macro_f1": m["macro_f1"]}


@dataclass
class Decision:
    """How a multi-label checkpoint turns scores into label sets: a threshold per class
    (tuned on dev, or ``decision.threshold`` for all), the fallback and ``at_least_one``."""

    labels: list[str]
    thresholds: np.ndarray  # (C,)
    default: float
    at_least_one: bool
    tuned_on: str | None  # "dev" or None (the global threshold for every class)

    def describe(self) -> str:
        how = "per-class thresholds tuned on dev" if self.tuned_on else \
            f"threshold {self.default:g} for every class"
        return how + (", at least one label" if self.at_least_one else "")


def decide_thresholds(model, tokenizer, config: Config, data, precision: str) -> Decision:
    """The decision saved with a multi-label checkpoint: with ``decision.tune_thresholds``
    each class's threshold maximises its F1 on dev (:func:`zhcls.evaluation.metrics.tune_thresholds`;
    dev numbers of the run are then optimistic, the report says so), else
    ``decision.threshold`` for every class."""
    from zhcls.evaluation.metrics import tune_thresholds
    from zhcls.modeling.forward import forward_ids, sigmoid

    c, names = config.decision, data.class_names
    if not c.tune_thresholds or "dev" not in data.splits:
        return Decision(names, np.full(len(names), c.threshold), c.threshold, c.at_least_one,
                        None)
    result = forward_ids(model, data.encoded["dev"].input_ids, tokenizer.pad_token_id,
                         config.train.eval_batch_size, precision=precision)
    probs = sigmoid(result.logits)  # (N, C)
    gold = data.splits["dev"].label_matrix(len(names))  # (N, C)
    thresholds = tune_thresholds(probs, gold, default=c.threshold)
    logger.info("thresholds tuned on dev (best F1 per class): %s",
                ", ".join(f"{n} {t:.3f}" for n, t in zip(names, thresholds, strict=True)))
    return Decision(names, thresholds, c.threshold, c.at_least_one, "dev")
