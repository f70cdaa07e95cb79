"""Multi-label prediction: one sigmoid score per class, and the label set those scores give
under the checkpoint's decision (per-class thresholds from ``thresholds.json`` and
``at_least_one``), decided by :func:`zhcls.evaluation.metrics.apply_thresholds`, the one
decision function that evaluation, the Classifier, the service and the ONNX path share.

A multi-label :class:`~zhcls.inference.classifier.Prediction` has

* ``labels``: the classes at or above their threshold, as :class:`LabelScore`, best score
  first (ties: label-id order); empty when none is (unless ``at_least_one``);
* ``scores``: every class's score by name (label-id order);
* ``label`` / ``label_id`` / ``score``: the first of ``labels`` (None when the set is empty);
* ``top_k`` (``top_k > 1`` only): the ``k`` best-scoring classes, ranked, whatever their
  threshold; the decision is ``labels``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zhcls.evaluation.metrics import apply_thresholds
from zhcls.inference.classifier import LabelScore, Prediction

TASKS = ("single_label", "multi_label")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Elementwise logistic function, overflow-free for any float (dtype kept)."""
    logits = np.asarray(logits)
    return np.exp(-np.logaddexp(0.0, -logits)).astype(logits.dtype, copy=False)


def check_thresholds(thresholds, num_labels: int) -> np.ndarray:
    """``thresholds`` as a (C,) float64 array of values in [0, 1] (a scalar: every class)."""
    th = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64)
    th = np.broadcast_to(th, (num_labels,)).copy() if th.ndim == 0 else th
    if th.shape != (num_labels,) or not np.all((th >= 0) & (th <= 1)):
        raise ValueError(f"thresholds must be {num_labels} numbers in [0, 1] (one per label), "
                         f"got {np.asarray(thresholds).tolist()!r:.80}")
    return th


def multilabel_predictions(probs: np.ndarray, labels: Sequence[str], thresholds: np.ndarray,
                           at_least_one: bool, top_k: int = 1,
                           warnings: Sequence[str | None] | None = None) -> list[Prediction]:
    """One multi-label :class:`Prediction` per row of the sigmoid scores ``probs`` (N, C)
    (see the module docstring)."""
    decided = apply_thresholds(probs, thresholds, at_least_one)  # (N, C) bool
    order = np.argsort(-probs, axis=1, kind="stable")  # (N, C) best first, ties by id
    warnings = warnings if warnings is not None else [None] * len(probs)
    out = []
    for row, on, ranked, warning in zip(probs, decided, order, warnings, strict=True):
        chosen = tuple(LabelScore(labels[int(j)], int(j), float(row[j]))
                       for j in ranked if on[j])
        ranked_k = None
        if top_k > 1:
            ranked_k = tuple(LabelScore(labels[int(j)], int(j), float(row[j]))
                             for j in ranked[:top_k])
        best = chosen[0] if chosen else None
        out.append(Prediction(
            best.label if best else None, best.label_id if best else None,
            best.score if best else None, ranked_k, warning, labels=chosen,
            scores={name: float(p) for name, p in zip(labels, row, strict=True)}))
    return out
