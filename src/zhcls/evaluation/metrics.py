"""Classification metrics: the one place every reported number is computed (training's model
selection, ``zhcls evaluate``, run reports and sweeps)."""

from __future__ import annotations

import numpy as np


def compute_report(gold: np.ndarray, pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(class_names)))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=ids, zero_division=0)
    per_class = {name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                        "f1": round(float(f[i]), 4), "support": int(s[i])}
                 for i, name in enumerate(class_names)}
    return {
        "accuracy": round(float((gold == pred).mean()), 4),
        "macro_f1": round(float(np.mean(f)), 4),
        "num_examples": int(len(gold)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(gold, pred, labels=ids).tolist(),
    }


def format_report(metrics: dict, class_names: list[str]) -> str:
    """A readable per-class table and the confusion matrix (rows gold, columns predicted)."""
    width = max(12, *(len(n) for n in class_names))
    lines = [f"{'class':<{width}} precision    recall        f1   support"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<{width}} {m['precision']:9.4f} {m['recall']:9.4f} "
                     f"{m['f1']:9.4f} {m['support']:9d}")
    lines.append(f"\naccuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   "
                 f"examples {metrics['num_examples']}")
    lines.append("\nconfusion matrix (rows: gold, columns: predicted)")
    lines.append(" " * width + "".join(f"{i:>6d}" for i in range(len(class_names))))
    for i, row in enumerate(metrics["confusion_matrix"]):
        lines.append(f"{i:>2d} {class_names[i]:<{width - 3}}" + "".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)
