"""``zhcls evaluate``: accuracy, macro-F1, per-class precision/recall/F1, the confusion matrix
(printed and as PNG with Chinese class names), ``metrics.json`` and ``wrong_samples.jsonl``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from zhcls.data.formats import SplitData

logger = logging.getLogger(__name__)


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


def evaluate_model(model, tokenizer, split: SplitData, class_names: list[str],
                   out_dir: str | Path, *, config=None, batch_size: int = 256,
                   max_length: int | None = None) -> dict:
    """Evaluate on ``split``; write metrics.json, report.txt, confusion matrices, wrong samples."""
    from zhcls.inference import forward_texts, softmax

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    max_length = max_length or (config.data.max_length if config is not None else 32)
    result = forward_texts(model, tokenizer, split.texts, max_length, batch_size,
                           with_representations=True)
    probs = softmax(result.logits)  # (N, C)
    gold = np.asarray(split.labels)
    pred = probs.argmax(axis=1)
    metrics = compute_report(gold, pred, class_names)
    metrics["loss"] = round(float(-np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, 1)
                                          ).mean()), 4)
    metrics["split"] = str(split.path)
    (out / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n",
                                      encoding="utf-8")
    text = format_report(metrics, class_names)
    (out / "report.txt").write_text(text + "\n", encoding="utf-8")
    _write_wrong_samples(out / "wrong_samples.jsonl", split, probs, pred, class_names)
    np.savez_compressed(out / "predictions.npz", probs=probs, gold=gold,
                        representations=result.representations)
    _plot(metrics, class_names, out)
    logger.info("evaluation of %s written to %s", split.path, out)
    return metrics


def _write_wrong_samples(path: Path, split: SplitData, probs: np.ndarray, pred: np.ndarray,
                         class_names: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, ex in enumerate(split.examples):
            if pred[i] == ex.label:
                continue
            row = {"line": ex.line, "text": ex.text, "gold": class_names[ex.label],
                   "predicted": class_names[int(pred[i])],
                   "probabilities": {n: round(float(p), 4) for n, p in zip(class_names, probs[i],
                                                                           strict=True)}}
            if ex.teacher is not None:
                row["teacher"] = {n: round(float(p), 4) for n, p in zip(class_names, ex.teacher,
                                                                        strict=True)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _plot(metrics: dict, class_names: list[str], out: Path) -> None:
    from zhcls.report.plots import plot_confusion_matrix, plot_per_class_bars

    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion_matrix(cm, class_names, out / "confusion_matrix.png")
    plot_confusion_matrix(cm, class_names, out / "confusion_matrix_normalized.png", normalize=True)
    plot_per_class_bars(metrics["per_class"], out / "per_class.png")


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, *, split: str = "test",
                        out_dir: str | Path | None = None, batch_size: int = 256,
                        device: str = "auto") -> dict:
    """Load ``checkpoint`` and evaluate it on ``data_dir``'s split (class.txt must match)."""
    from zhcls.checkpoint import check_labels_match, load_checkpoint
    from zhcls.data.formats import (
        find_split_file,
        read_class_names,
        read_split,
        resolve_data_dir,
    )
    from zhcls.devices import resolve_device

    ckpt = load_checkpoint(checkpoint, resolve_device(device))
    data_dir = resolve_data_dir(data_dir)
    class_names = read_class_names(Path(data_dir) / "class.txt", ckpt.config.data.encoding)
    check_labels_match(ckpt.labels, class_names, str(Path(data_dir) / "class.txt"))
    kind = "logits" if ckpt.config.objective.teacher_input == "logits" else "probs"
    data = read_split(find_split_file(data_dir, split), class_names, teacher_kind=kind,
                      teacher_policy="skip", encoding=ckpt.config.data.encoding,
                      label_format=ckpt.config.data.label_format)
    out = Path(out_dir) if out_dir else Path(checkpoint) / f"eval_{split}"
    return evaluate_model(ckpt.model, ckpt.tokenizer, data, class_names, out,
                          config=ckpt.config, batch_size=batch_size)
