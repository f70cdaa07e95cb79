"""Figure primitives of every report plot: a pyplot-free Agg figure, saving it, category
tick labels (:mod:`zhcls.report.plots`, :mod:`zhcls.report.multilabel`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free Agg figure. Create and save it inside
    :func:`zhcls.report.fonts.cjk_font_context` (the public plot functions here are decorated
    with :func:`~zhcls.report.fonts.with_cjk_font`) so Chinese text has a font."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (parents created), release it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clear()
    logger.debug("wrote %s", path)
    return path


def rotate_ticks(ax: Axes, labels: Sequence[str]) -> None:
    """Category tick labels on x: rotated 45° and right-anchored when many or long."""
    longest = max((len(s) for s in labels), default=0)
    if len(labels) > 6 or longest > 6:
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels)
