"""Classification metrics: the one place every reported number is computed (training's model
selection, ``zhcls evaluate``, run reports and sweeps)."""

from __future__ import annotations

import numpy as np


def headline_metrics(gold: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1, the macro average over ALL ``num_classes`` classes (a class absent
    from the split and never predicted scores F1 0), unrounded. Training's model selection
    and :func:`compute_report` both call this, so they cannot disagree."""
    from sklearn.metrics import f1_score

    gold, pred = np.asarray(gold), np.asarray(pred)
    ids = list(range(num_classes))
    return {"accuracy": float((gold == pred).mean()) if len(gold) else float("nan"),
            "macro_f1": float(f1_score(gold, pred, labels=ids, average="macro",
                                       zero_division=0))}


def compute_report(gold: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1 (:func:`headline_metrics`), per-class P/R/F1/support and the
    confusion matrix (rows gold, columns predicted)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(class_names)))
    head = headline_metrics(gold, pred, len(class_names))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    per_class = {name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                        "f1": round(float(f[i]), 4), "support": int(s[i])}
                 for i, name in enumerate(class_names)}
    return {
        "accuracy": round(head["accuracy"], 4),
        "macro_f1": round(head["macro_f1"], 4),
        "num_examples": int(len(gold)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(gold, pred, labels=ids).tolist(),
    }


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide and full-width characters take 2."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` display columns (CJK counted double)."""
    return text + " " * max(0, width - display_width(text))


def format_report(metrics: dict, class_names: list[str]) -> str:
    """A readable per-class table and the confusion matrix (rows gold, columns predicted),
    aligned by display width so Chinese class names line up."""
    width = max(12, *(display_width(n) for n in class_names)) + 1
    cell = max(6, len(str(max((max(r) for r in metrics["confusion_matrix"]), default=0))) + 2)
    lines = [f"{pad('class', width)} precision    recall        f1   support"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{pad(name, width)} {m['precision']:9.4f} {m['recall']:9.4f} "
                     f"{m['f1']:9.4f} {m['support']:9d}")
    lines.append(f"\naccuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
                 f"examples {metrics['num_examples']}")
    lines.append("\nconfusion matrix (rows: gold, columns: predicted)")
    lines.append(" " * (width + 3) + "".join(f"{i:>{cell}d}" for i in range(len(class_names))))
    for i, row in enumerate(metrics["confusion_matrix"]):
        lines.append(f"{i:>2d} {pad(class_names[i], width)}" + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)


def apply_thresholds(probs: np.ndarray, thresholds: np.ndarray | float,
                     at_least_one: bool = False) -> np.ndarray:
    """Multi-label decision: class ``c`` is predicted for row ``n`` when
    ``probs[n, c] >= thresholds[c]`` (a scalar applies to every class). With
    ``at_least_one`` a row with no class at or above its threshold gets its best-scoring
    class (ties: the lowest id). The one decision function of evaluation, the Classifier,
    the service and the ONNX path. Returns (N, C) bool."""
    probs = np.asarray(probs, dtype=np.float64)  # (N, C)
    if probs.ndim != 2:
        raise ValueError(f"apply_thresholds: expected probs of shape (N, C), got {probs.shape}")
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])  # (C,)
    pred = probs >= th[None, :]  # (N, C)
    if at_least_one and len(probs):
        empty = ~pred.any(axis=1)  # (N,)
        pred[empty, probs[empty].argmax(axis=1)] = True
    return pred


def tune_thresholds(probs: np.ndarray, gold: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class thresholds that maximise each class's F1 on (``probs``, ``gold``), both
    (N, C). Candidates are the midpoints between consecutive distinct scores of the class
    (and ``default``); ties in F1 go to the candidate closest to ``default``. A class with
    no positive in ``gold`` keeps ``default`` (nothing to tune on). Returns (C,) float."""
    probs = np.asarray(probs, dtype=np.float64)  # (N, C)
    gold = np.asarray(gold).astype(bool)  # (N, C)
    if probs.shape != gold.shape or probs.ndim != 2:
        raise ValueError(f"tune_thresholds: probs {probs.shape} and gold {gold.shape} must "
                         "both be (N, C)")
    out = np.full(probs.shape[1], float(default))
    for c in range(probs.shape[1]):
        if gold[:, c].any():
            out[c] = _best_threshold(probs[:, c], gold[:, c], default)
    return out


def _best_threshold(scores: np.ndarray, positive: np.ndarray, default: float) -> float:
    """The F1-maximising threshold of one class (see :func:`tune_thresholds`), in
    O(N log N): predicting the ``k`` best-scoring rows has ``cumsum`` true positives."""
    order = np.argsort(-scores, kind="stable")
    s, pos = scores[order], positive[order]  # descending scores
    tp = np.cumsum(pos)  # (N,) true positives when the top k+1 rows are predicted
    # a cut is only possible after the last row of a run of equal scores
    last = np.append(s[1:] != s[:-1], True)  # (N,)
    k = np.flatnonzero(last)
    f1 = 2 * tp[k] / (k + 1 + pos.sum())
    below = np.append(s[1:], s[-1] - 1.0)  # the next lower score (or one below the lowest)
    candidates = np.clip((s[k] + below[k]) / 2, 0.0, 1.0)
    default_f1 = 2 * (pos & (s >= default)).sum() / max((s >= default).sum() + pos.sum(), 1)
    candidates, f1 = np.append(candidates, default), np.append(f1, default_f1)
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - default))]])


def multilabel_metrics(gold: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict:
    """Multi-label scores of ``pred`` against ``gold``, both (N, C) 0/1: micro-, macro- and
    samples-averaged F1 (scikit-learn, ``zero_division=0``: a class never gold nor predicted
    scores 0, a text with empty gold and empty prediction scores samples-F1 0), subset
    accuracy (the whole label set right; also under ``"accuracy"`` so training's model
    selection keys work), Hamming loss (share of wrong (text, class) cells) and per-class
    precision / recall / F1 / support, all rounded to 4 digits."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    gold = np.asarray(gold).astype(np.int64)  # (N, C)
    pred = np.asarray(pred).astype(np.int64)  # (N, C)
    if gold.shape != pred.shape or gold.ndim != 2 or gold.shape[1] != len(class_names):
        raise ValueError(f"multilabel_metrics: gold {gold.shape} and pred {pred.shape} must "
                         f"both be (N, {len(class_names)}) for {len(class_names)} class names")
    if not len(gold):
        nan = float("nan")
        head = dict.fromkeys(("micro_f1", "macro_f1", "samples_f1", "subset_accuracy",
                              "hamming_loss"), nan)
        p = r = f = np.zeros(len(class_names))
        s = np.zeros(len(class_names), dtype=np.int64)
    else:
        head = {f"{avg}_f1": float(f1_score(gold, pred, average=avg, zero_division=0))
                for avg in ("micro", "macro", "samples")}
        head["subset_accuracy"] = float(accuracy_score(gold, pred))
        head["hamming_loss"] = float(hamming_loss(gold, pred))
        p, r, f, s = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    out = {k: round(v, 4) for k, v in head.items()}
    out["accuracy"] = out["subset_accuracy"]
    out["num_examples"] = int(len(gold))
    out["per_class"] = {name: {"precision": round(float(p[i]), 4),
                               "recall": round(float(r[i]), 4),
                               "f1": round(float(f[i]), 4), "support": int(s[i])}
                        for i, name in enumerate(class_names)}
    return out


def label_cooccurrence(matrix: np.ndarray) -> np.ndarray:
    """``M[a, b]`` = number of rows of the (N, C) 0/1 ``matrix`` holding both ``a`` and
    ``b``; the diagonal is each class's count. Returns (C, C) int."""
    m = np.asarray(matrix).astype(np.int64)  # (N, C)
    return m.T @ m  # (C, C)


def format_multilabel_report(metrics: dict, class_names: list[str],
                             thresholds: np.ndarray | list[float] | dict | None = None) -> str:
    """A per-class table (precision, recall, F1, support and, when given, the decision
    threshold of the class) and the multi-label headline numbers, aligned by display width
    so Chinese class names line up. ``thresholds``: (C,) in class order, or {name: value}
    (default: ``metrics["thresholds"]`` when present)."""
    if thresholds is None:
        thresholds = metrics.get("thresholds")
    if isinstance(thresholds, dict):
        thresholds = [thresholds.get(n) for n in class_names]
    width = max(12, *(display_width(n) for n in class_names)) + 1
    head = f"{pad('class', width)} precision    recall        f1   support"
    lines = [head + (" threshold" if thresholds is not None else "")]
    for i, name in enumerate(class_names):
        m = metrics["per_class"][name]
        row = (f"{pad(name, width)} {m['precision']:9.4f} {m['recall']:9.4f} "
               f"{m['f1']:9.4f} {m['support']:9d}")
        if thresholds is not None:
            t = thresholds[i]
            row += f" {'–':>9}" if t is None else f" {float(t):9.4f}"
        lines.append(row)
    lines.append(f"\nmicro-F1 {metrics['micro_f1']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
                 f"samples-F1 {metrics['samples_f1']:.4f}")
    lines.append(f"subset accuracy {metrics['subset_accuracy']:.4f}   Hamming loss "
                 f"{metrics['hamming_loss']:.4f}   examples {metrics['num_examples']}")
    if "at_least_one" in metrics:
        lines.append("decision: score >= the class's threshold"
                     + ("; a text with none gets its best class" if metrics["at_least_one"]
                        else ""))
    return "\n".join(lines)


def named_scores(class_names: list[str], values) -> dict[str, float]:
    """``{class name: value rounded to 4 places}`` for one row of scores (wrong samples)."""
    return {n: round(float(v), 4) for n, v in zip(class_names, values, strict=True)}


def headline_text(metrics: dict) -> str:
    """The headline numbers of an evaluation as one phrase: ``accuracy 0.9012, macro-F1
    0.9008``, or for multi-label ``micro-F1 0.8686, macro-F1 0.8552, subset accuracy 0.7580``
    (printed by ``zhcls train`` and logged beside a baseline)."""
    if metrics.get("task") == "multi_label" or "micro_f1" in metrics:
        return (f"micro-F1 {metrics['micro_f1']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
                f"subset accuracy {metrics['subset_accuracy']:.4f}")
    return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
