"""2-D maps of sentence embeddings (e.g. the [CLS] features before / after supervised
contrastive training) with the cosine silhouette score of the classes, so a report can show
whether a loss made the classes separate."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from zhcls.report.fonts import with_cjk_font
from zhcls.report.plots import new_figure, save_figure

logger = logging.getLogger(__name__)

METHODS = ("tsne", "pca")
SILHOUETTE_MAX_POINTS = 10_000
SINGLE_THREAD_MAX_POINTS = 1000


def subsample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the deterministic subsample :func:`project_2d` uses (all of
    ``range(n)`` when ``n <= max_points``)."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1; got {max_points}")
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def project_2d(
    features: np.ndarray,
    method: str = "tsne",
    seed: int = 0,
    max_points: int = 3000,
) -> np.ndarray:
    """Project ``features`` (N, D) to 2-D.

    When N > ``max_points`` only ``features[subsample_indices(N, max_points, seed)]`` is
    projected, so the result has ``min(N, max_points)`` rows. t-SNE runs on a 50-dim PCA of
    the features when D > 50; ``method="pca"`` is the fast linear alternative.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = _check_features(features)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    x = x[subsample_indices(len(x), max_points, seed)]
    n, dim = x.shape
    if n < 3:
        raise ValueError(f"need at least 3 points to project; got {n}")
    if method == "pca" or n < 10:
        return _pad_2d(PCA(n_components=min(2, dim, n), random_state=seed).fit_transform(x))
    if dim > 50:
        x = PCA(n_components=min(50, n), random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, (n - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed)
    # Small maps gain nothing from threads, and OpenMP spin-waiting on a busy machine makes
    # them ~15x slower (seen: 7 s instead of 0.5 s for 100 points), so run them single-threaded.
    threads = 1 if n <= SINGLE_THREAD_MAX_POINTS else None
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(x.astype(np.float32))


def silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Cosine silhouette score of ``labels`` on the full-dimensional ``features``, in [-1, 1]
    (higher = classes better separated). Uses a fixed random 10,000-point sample when larger."""
    from sklearn.metrics import silhouette_score

    x = _check_features(features)
    y = _check_labels(labels, len(x))
    n_labels = len(np.unique(y))
    if not 2 <= n_labels <= len(x) - 1:
        raise ValueError(f"silhouette needs 2..n_samples-1 distinct labels; got {n_labels} "
                         f"distinct labels for {len(x)} samples")
    sample = SILHOUETTE_MAX_POINTS if len(x) > SILHOUETTE_MAX_POINTS else None
    return float(silhouette_score(x, y, metric="cosine", sample_size=sample, random_state=0))


@with_cjk_font
def plot_embedding_map(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    path: str | Path,
    *,
    title: str | None = None,
    method: str = "tsne",
) -> float:
    """Scatter a 2-D projection coloured by class; the title carries the silhouette score,
    which is returned."""
    fig = new_figure(8.5, 6.5)
    ax = fig.add_subplot()
    score = _draw_run(ax, features, labels, class_names, title or "Embedding map", method)
    _legend(fig, ax, class_names, labels, bottom=False)
    save_figure(fig, path)
    return score


@with_cjk_font
def plot_embedding_maps(
    runs: list[tuple[str, np.ndarray, np.ndarray]],
    class_names: list[str],
    path: str | Path,
    *,
    method: str = "tsne",
) -> list[float]:
    """Side-by-side maps of several runs ``(name, features, labels)``, each titled with its
    silhouette score; one shared legend. Returns the scores in run order."""
    if not runs:
        raise ValueError("runs must be a non-empty list of (name, features, labels) tuples")
    for i, run in enumerate(runs):
        if not isinstance(run, (tuple, list)) or len(run) != 3:
            raise ValueError(f"runs[{i}] must be a (name, features, labels) tuple")
    fig = new_figure(5.5 * len(runs), 6.0)
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    scores = [_draw_run(ax, feats, labs, class_names, str(name), method)
              for ax, (name, feats, labs) in zip(axes, runs, strict=True)]
    all_labels = np.concatenate([np.asarray(r[2]).ravel() for r in runs])
    _legend(fig, axes[0], class_names, all_labels, bottom=True)
    save_figure(fig, path)
    return scores


def _draw_run(ax, features, labels, class_names: list[str], title: str, method: str) -> float:
    x = _check_features(features)
    y = _check_labels(labels, len(x))
    if y.size and (y.min() < 0 or y.max() >= len(class_names)):
        raise ValueError(f"labels must be class ids in 0..{len(class_names) - 1} "
                         f"(one per class name); found ids {y.min()}..{y.max()}")
    score = silhouette(x, y)
    idx = subsample_indices(len(x), 3000, 0)
    points = project_2d(x, method=method, seed=0, max_points=3000)
    colours = _colours(len(class_names))
    sub = y[idx]
    for c in np.unique(sub):
        mask = sub == c
        ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.7, color=colours[c],
                   label=class_names[c], linewidths=0)
    ax.set_title(f"{title}\nsilhouette (cosine) = {score:.3f}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    return score


def _legend(fig, ax, class_names: list[str], labels, *, bottom: bool) -> None:
    from matplotlib.lines import Line2D

    present = sorted(int(c) for c in np.unique(np.asarray(labels)))
    colours = _colours(len(class_names))
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[c], markersize=7,
                      label=class_names[c]) for c in present]
    if bottom:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 10),
                   fontsize=9, frameon=False)
    else:
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  fontsize=9, frameon=False)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return list(colormaps["tab10"].colors)[:n]
    if n <= 20:
        return list(colormaps["tab20"].colors)[:n]
    return [colormaps["hsv"](i / n) for i in range(n)]


def _check_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=float)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a 2-D array (n_samples, dim); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf; check the model outputs")
    return x


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"labels must be a 1-D array with one label per feature row; got "
                         f"shape {y.shape} for {n} feature rows")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class ids; got dtype {y.dtype}")
    return y


def _pad_2d(points: np.ndarray) -> np.ndarray:
    if points.shape[1] == 2:
        return points
    return np.hstack([points, np.zeros((len(points), 2 - points.shape[1]))])
