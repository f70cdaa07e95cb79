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
