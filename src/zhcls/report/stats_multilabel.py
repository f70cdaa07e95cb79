"""Multi-label parts of ``zhcls data-stats``: label cardinality (mean labels per row), rows
with 0 / 1 / 2+ labels, per-class positive counts and rates with a rare-class warning, the
most frequent label pairs and the full co-occurrence matrix (plus its heat map), and the
agreement of a per-class teacher column with the gold label sets.

:func:`zhcls.report.stats.data_stats` calls these when the data is multi-label; the text
renderers (``*_lines``) are used by :mod:`zhcls.cli.data_stats`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from zhcls.data.formats import Example
from zhcls.data.labels import cardinality
from zhcls.data.teacher import TeacherRules
from zhcls.report.fonts import with_cjk_font

logger = logging.getLogger(__name__)

#: Multi-label teacher rows are C independent probabilities (no sum rule, nothing to
#: renormalise): clip small negatives (counted), drop rows with an entry > 1 or unreadable.
STATS_TEACHER_MULTILABEL = TeacherRules(task="multi_label", policy="error", negative="clip",
                                        invalid="skip", drop_unusable=True)
RARE_FRACTION = 0.01  # a class positive in under 1% of a split's rows is rare
IMBALANCE_RATIO = 3.0
TOP_PAIRS = 10
THRESHOLD = 0.5  # teacher probability above which a class counts as predicted
COOCCURRENCE_IMAGE = "label_cooccurrence.png"


def label_sets_of(examples: Sequence[Example]) -> list[list[int]]:
    """Every example's label ids as a list (a single-label int becomes a list of one)."""
    return [e.label if isinstance(e.label, list) else [e.label] for e in examples]


def cooccurrence_matrix(label_sets: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(C, C) int matrix: [i, j] = rows holding both i and j; the diagonal = rows holding i."""
    hot = np.zeros((len(label_sets), num_classes), dtype=np.int64)  # (N, C)
    for row, ids in enumerate(label_sets):
        hot[row, list(ids)] = 1
    return hot.T @ hot  # (C, C)


def multilabel_balance(examples: Sequence[Example], class_names: list[str]) -> dict[str, Any]:
    """Cardinality, rows with 0 / 1 / 2+ labels, per-class positive counts and rates (share of
    rows), max/min count ratio, rare classes (< 1% of rows), top label pairs, co-occurrence."""
    sets = label_sets_of(examples)
    card = cardinality(sets)
    rows = card["rows"]
    matrix = cooccurrence_matrix(sets, len(class_names))
    counts = {name: int(matrix[i, i]) for i, name in enumerate(class_names)}
    rates = {name: round(n / rows, 4) if rows else 0.0 for name, n in counts.items()}
    low, high = min(counts.values()), max(counts.values())
    ratio = high / low if low else None
    rare = [n for n, c in counts.items() if c < RARE_FRACTION * rows]
    return {
        "rows": rows, "cardinality": round(card["cardinality"], 4),
        "no_label": card["no_label"], "one_label": card["one_label"],
        "two_plus": card["two_plus"], "counts": counts, "rates": rates,
        "max_min_ratio": ratio, "rare": rare, "warning": _balance_warning(counts, ratio, rare),
        "top_pairs": top_pairs(matrix, class_names, rows),
        "cooccurrence": matrix.tolist(),
    }


def _balance_warning(counts: dict[str, int], ratio: float | None, rare: list[str]) -> str | None:
    if ratio is None:
        return f"no positive rows of {', '.join(n for n, c in counts.items() if c == 0)}"
    if ratio > IMBALANCE_RATIO or rare:
        warning = f"imbalanced labels: max/min positives = {ratio:.1f}"
        if rare:
            warning += f"; rare (positive in under 1% of rows): {', '.join(rare)}"
        return warning
    return None


def top_pairs(matrix: np.ndarray, class_names: list[str], rows: int,
              k: int = TOP_PAIRS) -> list[dict[str, Any]]:
    """The ``k`` most frequent label pairs: rows holding both, as a count and share of rows."""
    pairs = [(int(matrix[i, j]), i, j)
             for i, j in combinations(range(len(class_names)), 2) if matrix[i, j]]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [{"pair": [class_names[i], class_names[j]], "count": n,
             "rate": round(n / rows, 4) if rows else 0.0} for n, i, j in pairs[:k]]


def multilabel_teacher(examples: Sequence[Example],
                       class_names: list[str]) -> dict[str, Any] | None:
    """Per class the mean teacher probability on gold positives vs negatives, and how well
    ``teacher > 0.5`` agrees with the gold label sets (micro-F1 over all rows and classes,
    and F1 per class); None without a teacher column."""
    rows = [e for e in examples if e.teacher is not None]
    if not rows:
        return None
    probs = np.asarray([e.teacher for e in rows], dtype=np.float64)  # (N, C)
    gold = np.zeros_like(probs, dtype=bool)  # (N, C)
    for r, ids in enumerate(label_sets_of(rows)):
        gold[r, ids] = True
    pred = probs > THRESHOLD  # (N, C)
    per_class = {}
    for c, name in enumerate(class_names):
        pos, neg = probs[gold[:, c], c], probs[~gold[:, c], c]
        per_class[name] = {
            "positives": int(pos.size),
            "mean_prob_positive": round(float(pos.mean()), 4) if pos.size else None,
            "mean_prob_negative": round(float(neg.mean()), 4) if neg.size else None,
            "f1": _f1(pred[:, c], gold[:, c]),
        }
    return {
        "rows_with_teacher": len(rows),
        "coverage": round(len(rows) / len(examples), 4),
        "threshold": THRESHOLD,
        "micro_f1": _f1(pred, gold),
        "subset_agreement": round(float((pred == gold).all(axis=1).mean()), 4),
        "per_class": per_class,
    }


def _f1(pred: np.ndarray, gold: np.ndarray) -> float | None:
    tp = int((pred & gold).sum())
    wrong = int((pred != gold).sum())  # false positives + false negatives
    return round(2 * tp / (2 * tp + wrong), 4) if tp + wrong else None


def multilabel_plots(result: dict[str, Any], out_dir: Path) -> list[str]:
    """The co-occurrence heat map of the first split (train when present)."""
    first = next(iter(result["splits"]))
    info = result["splits"][first]["classes"]
    path = plot_cooccurrence_counts(np.asarray(info["cooccurrence"]), result["class_names"],
                                    out_dir / COOCCURRENCE_IMAGE,
                                    title=f"{first}: label co-occurrence ({info['rows']:,} rows)")
    return [str(path)]


@with_cjk_font
def plot_cooccurrence_counts(matrix: np.ndarray, labels: list[str], path: str | Path, *,
                             title: str | None = None) -> Path:
    """Heat map of a (C, C) co-occurrence count matrix: off-diagonal cells coloured by the
    rows holding both labels; the diagonal (rows holding the label) is written in grey cells
    so the common classes do not wash out the pairs."""
    from zhcls.report.plots import new_figure, rotate_ticks, save_figure

    n = len(labels)
    matrix = np.asarray(matrix)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix must be ({n}, {n}) for {n} labels; got {matrix.shape}")
    off = np.ma.masked_array(matrix, mask=np.eye(n, dtype=bool))  # (C, C)
    vmax = max(int(off.max()) if off.count() else 0, 1)
    side = max(5.0, 0.6 * n + 2.5)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    ax.imshow(np.eye(n), cmap="Greys", vmin=0, vmax=6)  # light grey diagonal underneath
    image = ax.imshow(off, cmap="Oranges", vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="rows with both labels")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                v = int(matrix[i, j])
                colour = "white" if i != j and v > 0.55 * vmax else "black"
                ax.text(j, i, f"{v}", ha="center", va="center", color=colour, fontsize=8,
                        fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    rotate_ticks(ax, labels)
    ax.set_yticklabels(labels)
    ax.set_title(title or "Label co-occurrence")
    ax.set_xlabel("diagonal (grey): rows with the label")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- text report
def multilabel_class_lines(stats: dict[str, Any]) -> list[str]:
    """Per class and split: positive rows and share of rows; then max/min, cardinality."""
    splits = stats["splits"]
    width = max(len(c) for c in stats["class_names"]) + 2
    rows = ["positives".ljust(width) + "".join(f"{s:>16}" for s in splits)]
    for c in stats["class_names"]:
        rows.append(c.ljust(width) + "".join(
            f"{info['classes']['counts'][c]:>9,} {info['classes']['rates'][c]:>6.1%}"
            for info in splits.values()))
    ratios = [info["classes"]["max_min_ratio"] for info in splits.values()]
    rows.append("max/min".ljust(width) + "".join(
        f"{'inf' if r is None else f'{r:.2f}':>16}" for r in ratios))
    rows.append("labels/row".ljust(width) + "".join(
        f"{info['classes']['cardinality']:>16.3f}" for info in splits.values()))
    return rows


def multilabel_split_lines(info: dict[str, Any]) -> list[str]:
    """Label-set lines of one split: rows by label count, the top pairs, the teacher."""
    cls = info["classes"]
    rows = max(cls["rows"], 1)
    out = [f"  label sets: {cls['cardinality']:.3f} labels per row; rows with 0 labels "
           f"{cls['no_label']:,} ({cls['no_label'] / rows:.1%}), 1 label {cls['one_label']:,} "
           f"({cls['one_label'] / rows:.1%}), 2+ labels {cls['two_plus']:,} "
           f"({cls['two_plus'] / rows:.1%})"]
    if cls["top_pairs"]:
        shown = ", ".join(f"{'+'.join(p['pair'])} {p['count']} ({p['rate']:.1%})"
                          for p in cls["top_pairs"][:5])
        out.append(f"  most frequent label pairs (rows with both): {shown}")
    teacher = info.get("teacher")
    if teacher:
        out.append(f"  teacher: {teacher['rows_with_teacher']} rows ({teacher['coverage']:.0%}); "
                   f"teacher > {teacher['threshold']} vs gold: micro-F1 "
                   f"{_num(teacher['micro_f1'])}, exact label set {teacher['subset_agreement']:.1%}")
        for name, c in teacher["per_class"].items():
            out.append(f"    {name}: mean teacher prob on positives "
                       f"{_num(c['mean_prob_positive'])} (n={c['positives']}) vs negatives "
                       f"{_num(c['mean_prob_negative'])}, F1 {_num(c['f1'])}")
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
