"""Multi-label prediction: one sigmoid score per class, and the label set those scores give
under the checkpoint's decision (per-class thresholds from ``thresholds.json`` and
``at_least_one``), decided by :func:`zhcls.evaluation.metrics.apply_thresholds`, the one
decision function that evaluation, the Classifier, the service and the ONNX path share.

A multi-label :class:`~zhcls.inference.classifier.Prediction` (built by
:meth:`Classifier.to_predictions <zhcls.inference.classifier.Classifier.to_predictions>`) has

* ``labels``: the classes at or above their threshold, as :class:`LabelScore`, best score
  first (ties: label-id order); empty when none is (unless ``at_least_one``);
* ``scores``: every class's score by name (label-id order);
* ``label`` / ``label_id`` / ``score``: the first of ``labels`` (None when the set is empty);
* ``top_k`` (``top_k > 1`` only): the ``k`` best-scoring classes, ranked, whatever their
  threshold; the decision is ``labels``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zhcls.evaluation.metrics import apply_thresholds

TASKS = ("single_label", "multi_label")


def check_thresholds(thresholds, num_labels: int) -> np.ndarray:
    """``thresholds`` as a (C,) float64 array of values in [0, 1] (a scalar: every class)."""
    th = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64)
    th = np.broadcast_to(th, (num_labels,)).copy() if th.ndim == 0 else th
    if th.shape != (num_labels,) or not np.all((th >= 0) & (th <= 1)):
        raise ValueError(f"thresholds must be {num_labels} numbers in [0, 1] (one per label), "
                         f"got {np.asarray(thresholds).tolist()!r:.80}")
    return th


def decide(probs: np.ndarray, thresholds: np.ndarray, at_least_one: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    """The label sets of the sigmoid scores ``probs`` (N, C): (N, C) bool from
    :func:`apply_thresholds`, and each row's class ids best first (ties: label-id order)."""
    decided = apply_thresholds(probs, thresholds, at_least_one)  # (N, C) bool
    order = np.argsort(-np.asarray(probs), axis=1, kind="stable")  # (N, C)
    return decided, order


def decision_kwargs(path: str | Path, labels: list[str], task: str) -> dict[str, Any]:
    """``task`` / ``thresholds`` / ``at_least_one`` for the Classifier constructor, from the
    directory's ``thresholds.json`` (:func:`zhcls.modeling.checkpoint.read_thresholds`)."""
    from zhcls.modeling.checkpoint import read_thresholds

    decision = read_thresholds(path, labels, task)
    if decision is None:
        return {}
    return {"task": "multi_label", "thresholds": decision[0], "at_least_one": decision[1]}
