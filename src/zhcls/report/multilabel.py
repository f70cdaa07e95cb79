"""The pictures and tables of a multi-label evaluation beyond the per-class bars
(:func:`zhcls.report.plots.plot_evaluation` draws those too): the label co-occurrence heat map
of the gold and predicted label sets and the per-class threshold table. Drawn from
``metrics.json`` alone (written by :mod:`zhcls.evaluation.multilabel`), so a copied
evaluation folder can be redrawn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhcls.report.figure import new_figure, rotate_ticks, save_figure
from zhcls.report.fonts import with_cjk_font

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COOCCURRENCE_IMAGE = "label_cooccurrence.png"


@with_cjk_font
def plot_label_cooccurrence(gold: np.ndarray, labels: list[str], path: str | Path, *,
                            predicted: np.ndarray | None = None,
                            title: str | None = None) -> Path:
    """Heat map of ``gold[a, b]`` = texts whose gold set holds both ``a`` and ``b``
    (:func:`zhcls.evaluation.metrics.label_cooccurrence`), beside the same counts of the
    predicted sets when ``predicted`` is given. Colours scale with the off-diagonal pairs;
    the diagonal (texts with the class) is shown in grey with its count, so the frequent
    single classes do not wash out the pairs."""
    panels = [("gold label sets", np.asarray(gold))]
    if predicted is not None:
        panels.append(("predicted label sets", np.asarray(predicted)))
    n = len(labels)
    for name, m in panels:
        if m.shape != (n, n):
            raise ValueError(f"{name}: co-occurrence matrix must be ({n}, {n}) for {n} labels; "
                             f"got shape {m.shape}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            raise ValueError(f"{name}: co-occurrence counts must be finite and non-negative")
    off = ~np.eye(n, dtype=bool)
    vmax = max(1.0, *(float(m[off].max()) if n > 1 else 0.0 for _, m in panels))
    side = max(4.5, 0.5 * n + 2.5)
    fig = new_figure(side * len(panels) + 1.2, side)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, (name, m) in zip(axes, panels, strict=True):
        image = _cooccurrence_panel(ax, m.astype(float), labels, vmax)
        ax.set_title(name)
    fig.colorbar(image, ax=list(axes), fraction=0.046, pad=0.02,
                 label="texts with both labels (off-diagonal)")
    fig.suptitle(title or "Label co-occurrence (diagonal, grey: texts with the label)")
    return save_figure(fig, path)


def _cooccurrence_panel(ax: Axes, m: np.ndarray, labels: list[str], vmax: float):
    n = len(labels)
    shown = np.ma.masked_array(m, mask=np.eye(n, dtype=bool))  # diagonal drawn apart
    image = ax.imshow(shown, cmap="Oranges", vmin=0.0, vmax=vmax)
    ax.imshow(np.ma.masked_array(np.ones_like(m), mask=~np.eye(n, dtype=bool)), cmap="Greys",
              vmin=0.0, vmax=5.0)
    if n <= 30:
        fontsize = 9 if n <= 12 else max(5, int(9 - (n - 12) * 0.25))
        for i in range(n):
            for j in range(n):
                v = int(round(m[i, j]))
                colour = "white" if i != j and v > 0.55 * vmax else "black"
                ax.text(j, i, str(v), ha="center", va="center", color=colour,
                        fontsize=fontsize)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    rotate_ticks(ax, labels)
    ax.set_yticklabels(labels)
    return image


def plot_cooccurrence_of(metrics: dict, class_names: list[str], out: str | Path
                         ) -> Path | None:
    """``out/label_cooccurrence.png`` from ``metrics["cooccurrence"]`` (None, and no file,
    when the metrics carry none)."""
    co = metrics.get("cooccurrence") or {}
    if "gold" not in co:
        return None
    predicted = np.asarray(co["predicted"]) if "predicted" in co else None
    return plot_label_cooccurrence(np.asarray(co["gold"]), class_names,
                                   Path(out) / COOCCURRENCE_IMAGE, predicted=predicted)


def threshold_rows(metrics: dict, class_names: list[str]) -> list[dict[str, Any]]:
    """Rows of the per-class threshold table: class, the threshold used (None when the
    metrics do not say), precision, recall, F1 and support of the class at it."""
    thresholds = metrics.get("thresholds") or {}
    rows = []
    for name in class_names:
        m = metrics["per_class"][name]
        rows.append({"class": name, "threshold": thresholds.get(name), **m})
    return rows
