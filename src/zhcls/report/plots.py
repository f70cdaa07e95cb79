"""The figures every report uses: confusion matrix, per-class P/R/F1 bars, training curves
and length histograms. All draw with matplotlib's Agg canvas on a fresh ``Figure`` (never
pyplot's global state), use a Chinese-capable font (:mod:`zhcls.report.fonts`), write the file
and return its path. Nothing is imported or drawn at import time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhcls.report.figure import new_figure, rotate_ticks, save_figure  # noqa: F401
from zhcls.report.fonts import with_cjk_font

if TYPE_CHECKING:
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

METRICS = ("precision", "recall", "f1")
EVAL_KEYS = ("eval_loss", "eval_accuracy", "eval_macro_f1")


def no_data(ax: Axes, message: str) -> None:
    """Replace an empty panel by a centred note saying what is missing."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            fontsize=10, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


# --------------------------------------------------------------------------- confusion matrix
@with_cjk_font
def plot_confusion_matrix(
    cm: np.ndarray,
    labels: list[str],
    path: str | Path,
    *,
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """Heat map of ``cm[true, predicted]`` with the value in every cell.

    ``normalize=True`` divides each row by its total (recall on the diagonal); rows without
    examples stay 0. Cell text is white on dark cells and black on light ones.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (n_classes, n_classes); got shape {cm.shape}")
    if len(labels) != cm.shape[0]:
        raise ValueError(f"confusion matrix is {cm.shape[0]}x{cm.shape[1]} but {len(labels)} "
                         "labels were given; pass one class name per row")
    if not np.all(np.isfinite(cm)) or np.any(cm < 0):
        raise ValueError("confusion matrix must hold finite, non-negative counts")
    n = cm.shape[0]
    values = cm.astype(float)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    side = max(5.0, 0.55 * n + 2.5)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    _annotate_cells(ax, values, normalize, vmax)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    rotate_ticks(ax, labels)
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    default = "Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)"
    ax.set_title(title or default)
    return save_figure(fig, path)


def _annotate_cells(ax: Axes, values: np.ndarray, normalize: bool, vmax: float) -> None:
    n = values.shape[0]
    if n > 30:
        return
    fontsize = 9 if n <= 12 else max(5, int(9 - (n - 12) * 0.25))
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            text = f"{v:.2f}" if normalize else f"{int(round(v))}"
            if normalize and 0 < v < 0.005:
                text = "<.01"
            elif normalize and v == 0:
                text = "0"
            colour = "white" if v > 0.55 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=fontsize)


# --------------------------------------------------------------------------- per-class bars
@with_cjk_font
def plot_per_class_bars(
    per_class: dict[str, dict[str, float]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Grouped precision / recall / F1 bars per class; support shown under each name and the
    macro-F1 as a dashed line."""
    if not isinstance(per_class, Mapping) or not per_class:
        raise ValueError("per_class must be a non-empty dict: class name -> "
                         "{'precision', 'recall', 'f1', 'support'}")
    for name, row in per_class.items():
        missing = [m for m in METRICS if not isinstance(row, Mapping) or m not in row]
        if missing:
            raise ValueError(f"per_class[{name!r}] lacks {missing}; expected keys "
                             "precision, recall, f1 (and optionally support)")
    names = list(per_class)
    n = len(names)
    fig = new_figure(max(6.0, 0.75 * n + 2.5), 4.8)
    ax = fig.add_subplot()
    x = np.arange(n)
    width = 0.26
    colours = ("#4C72B0", "#DD8452", "#55A868")
    for k, (metric, colour) in enumerate(zip(METRICS, colours, strict=True)):
        heights = [float(per_class[c][metric]) for c in names]
        bars = ax.bar(x + (k - 1) * width, heights, width, label=metric, color=colour)
        if metric == "f1" and n <= 25:
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    macro_f1 = float(np.mean([float(per_class[c]["f1"]) for c in names]))
    ax.axhline(macro_f1, color="0.3", linestyle="--", linewidth=1,
               label=f"macro F1 = {macro_f1:.3f}")
    ticks = [_with_support(c, per_class[c]) for c in names]
    ax.set_xticks(x)
    rotate_ticks(ax, ticks)
    ax.set_xlim(-0.6, n - 0.4)
    floor = _score_floor(per_class)
    ax.set_ylim(floor, 1.0 + 0.16 * (1.0 - floor))
    ax.set_yticks([t for t in ax.get_yticks() if floor <= t <= 1.0 + 1e-9])
    ax.set_ylabel("score")
    ax.legend(loc="upper center", ncols=4, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Per-class precision / recall / F1")
    return save_figure(fig, path)


def _score_floor(per_class: Mapping[str, Mapping[str, float]]) -> float:
    """0 unless every score is high; then start the axis 0.1 below the lowest score so
    differences between 0.85 and 0.95 are visible (the axis shows where it starts)."""
    lowest = min(float(row[m]) for row in per_class.values() for m in METRICS)
    return 0.0 if lowest < 0.5 else math.floor((lowest - 0.1) * 10) / 10


def _with_support(name: str, row: Mapping[str, float]) -> str:
    support = row.get("support")
    return name if support is None else f"{name} (n={int(support)})"


@with_cjk_font
def plot_class_counts(
    counts: dict[str, dict[str, int]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Class distribution per split (``counts[split][class] = n``) as grouped bars of the
    fraction of each split, so splits of different sizes compare."""
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError("counts must be a non-empty dict: split -> {class name: count}")
    classes = list(next(iter(counts.values())))
    for split, row in counts.items():
        if list(row) != classes:
            raise ValueError(f"counts[{split!r}] names classes {list(row)}; expected the same "
                             f"classes in the same order as the first split: {classes}")
    n, k = len(classes), len(counts)
    fig = new_figure(max(6.0, 0.7 * n + 2.5), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / k
    x = np.arange(n)
    for i, (split, row) in enumerate(counts.items()):
        total = max(sum(row.values()), 1)
        ax.bar(x + (i - (k - 1) / 2) * width, [row[c] / total for c in classes], width,
               label=f"{split} (n={sum(row.values())})")
    ax.axhline(1 / n, color="0.4", linestyle="--", linewidth=0.8, label="uniform")
    ax.set_xticks(x)
    rotate_ticks(ax, classes)
    ax.set_ylabel("fraction of split")
    top = max(r[c] / max(sum(r.values()), 1) for r in counts.values() for c in classes)
    ax.set_ylim(0, max(top, 1 / n) * 1.25)
    ax.legend(fontsize=8, loc="upper center", ncols=k + 1, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Class distribution per split")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- training curves
@with_cjk_font
def plot_training_curves(
    history: list[dict],
    path: str | Path,
    *,
    epoch_steps: list[int] | None = None,
    dev_of: str | None = None,
) -> Path:
    """Four panels from a ``Trainer.state.log_history``-style list: train loss (total and
    every ``loss_*`` term), dev loss, dev accuracy / macro-F1, learning rate. Dashed lines
    mark epoch boundaries (``epoch_steps`` or inferred from the ``epoch`` field). ``dev_of``
    names what the dev numbers are of when it is not the model at each step (e.g. a weight
    average), in the dev panels' titles."""
    if not isinstance(history, Sequence) or isinstance(history, (str, bytes)):
        raise ValueError(f"history must be a list of log dicts; got {type(history).__name__}")
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise ValueError(f"history[{i}] is {type(entry).__name__}; expected a dict such as "
                             "{'step': 10, 'epoch': 0.1, 'loss': 2.3}")
    train = [e for e in history if "loss" in e and "step" in e]
    evals = [e for e in history if any(k in e for k in EVAL_KEYS) and "step" in e]
    if not train and not evals:
        logger.warning("training history has no train or eval entries; plotting empty panels")
    bounds = list(epoch_steps) if epoch_steps is not None else infer_epoch_steps(history)
    fig = new_figure(11.0, 7.5)
    axes = fig.subplots(2, 2, sharex=False)
    _train_loss_panel(axes[0, 0], train)
    of = f" ({dev_of})" if dev_of else ""
    _series_panel(axes[0, 1], evals, [("eval_loss", "dev loss")], "dev loss" + of, "loss")
    _series_panel(axes[1, 0], evals, [("eval_accuracy", "dev accuracy"),
                                      ("eval_macro_f1", "dev macro-F1")], "dev accuracy" + of,
                  "score")
    lr = [e for e in train if "learning_rate" in e]
    _series_panel(axes[1, 1], lr, [("learning_rate", "learning rate")], "learning rate", "lr")
    steps = [float(e["step"]) for e in train + evals]
    for ax in axes.flat:
        if ax.has_data():
            ax.set_xlim(0, max(steps) * 1.02)
            _epoch_lines(ax, bounds)
            ax.set_xlabel("step")
    fig.suptitle("Training curves")
    return save_figure(fig, path)


def infer_epoch_steps(history: Sequence[Mapping[str, Any]]) -> list[int]:
    """Steps where ``int(epoch)`` increases, interpolated between consecutive log entries;
    a boundary at the last logged step (end of training) is left out."""
    points = sorted((float(e["step"]), float(e["epoch"])) for e in history
                    if "step" in e and "epoch" in e)
    bounds: list[int] = []
    for (s0, e0), (s1, e1) in zip(points, points[1:], strict=False):
        for k in range(math.floor(e0) + 1, math.floor(e1) + 1):
            frac = (k - e0) / (e1 - e0) if e1 > e0 else 1.0
            step = int(round(s0 + frac * (s1 - s0)))
            if not bounds or step > bounds[-1]:
                bounds.append(step)
    last = points[-1][0] if points else 0
    return [b for b in bounds if b < last]


def _train_loss_panel(ax: Axes, train: list[Mapping[str, Any]]) -> None:
    terms = sorted({k for e in train for k in e if k.startswith("loss_")})
    if not train:
        no_data(ax, "no data: the log history has no train loss entries")
        ax.set_title("train loss")
        return
    keys = [("loss", "total")] + [(k, k.removeprefix("loss_")) for k in terms]
    _series_panel(ax, train, keys, "train loss (total and terms)", "loss")


def _series_panel(ax: Axes, entries: list[Mapping[str, Any]],
                  keys: list[tuple[str, str]], title: str, ylabel: str) -> None:
    ax.set_title(title)
    drawn = 0
    for key, label in keys:
        pts = sorted((float(e["step"]), float(e[key])) for e in entries
                     if key in e and e[key] is not None)
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        style = {"marker": "o", "markersize": 3} if len(pts) <= 30 else {}
        width = 2.0 if label == "total" else 1.2
        ax.plot(xs, ys, label=label, linewidth=width, **style)
        drawn += 1
    if not drawn:
        wanted = " / ".join(k for k, _ in keys)
        no_data(ax, f"no data: the log history has no {wanted} entries")
        return
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn > 1:
        ax.legend(fontsize=8)
    if ylabel == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))


def _epoch_lines(ax: Axes, bounds: list[int]) -> None:
    for i, step in enumerate(bounds, start=1):
        ax.axvline(step, color="0.5", linestyle="--", linewidth=0.8, zorder=0)
        ax.annotate(f"ep{i}", (step, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=7, color="0.4")


# --------------------------------------------------------------------------- length histogram
@with_cjk_font
def plot_length_histogram(
    lengths: dict[str, list[int]],
    path: str | Path,
    *,
    unit: str = "characters",
    marks: dict[str, int] | None = None,
) -> Path:
    """Overlaid per-split length distributions (as fractions, so splits of different sizes
    compare); ``marks`` draws labelled vertical lines, e.g. ``{"p95": 28, "p99": 32}``."""
    if not isinstance(lengths, Mapping) or not lengths:
        raise ValueError("lengths must be a non-empty dict: split name -> list of lengths")
    arrays = {}
    for name, values in lengths.items():
        arr = np.asarray(list(values))
        if arr.size == 0:
            raise ValueError(f"lengths[{name!r}] is empty; expected one length per example")
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number) or np.any(arr < 0):
            raise ValueError(f"lengths[{name!r}] must be a flat list of non-negative numbers")
        arrays[name] = arr
    top = int(max(a.max() for a in arrays.values()))
    low = int(min(a.min() for a in arrays.values()))
    step = max(1, math.ceil((top - low + 1) / 80))
    bins = np.arange(low, top + step + 1, step) - 0.5  # integer lengths at bin centres
    fig = new_figure(8.0, 4.5)
    ax = fig.add_subplot()
    for name, arr in arrays.items():
        weights = np.full(arr.size, 1.0 / arr.size)
        ax.hist(arr, bins=bins, weights=weights, histtype="step", linewidth=1.5,
                label=f"{name} (n={arr.size}, median {np.median(arr):g})")
    for k, (label, value) in enumerate((marks or {}).items()):
        colour = f"C{(k + len(arrays)) % 10}"
        ax.axvline(value, color=colour, linestyle="--", linewidth=1, label=f"{label} = {value}")
    ax.set_xlabel(f"length ({unit})")
    ax.set_ylabel("fraction of examples")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"Text length in {unit}")
    return save_figure(fig, path)


def plot_evaluation(metrics: dict, class_names: list[str], out: Path) -> None:
    """The pictures of an evaluation directory: confusion matrices (counts, normalised) and
    per-class bars; for multi-label metrics per-class bars and the label co-occurrence heat
    map (:func:`zhcls.report.multilabel.plot_label_cooccurrence`)."""
    out = Path(out)
    if metrics.get("task") == "multi_label":
        from zhcls.report.multilabel import plot_cooccurrence_of

        plot_per_class_bars(metrics["per_class"], out / "per_class.png")
        plot_cooccurrence_of(metrics, class_names, out)
        return
    cm = np.asarray(metrics["confusion_matrix"])
    plot_confusion_matrix(cm, class_names, out / "confusion_matrix.png")
    plot_confusion_matrix(cm, class_names, out / "confusion_matrix_normalized.png", normalize=True)
    plot_per_class_bars(metrics["per_class"], out / "per_class.png")
