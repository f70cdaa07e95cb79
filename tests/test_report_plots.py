"""Plot functions write valid PNGs, draw Chinese without missing glyphs, reject bad input."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from zhcls.report import embedding, plots  # noqa: E402

ZH = ["财经", "房产", "股票", "教育", "科技", "社会", "时政", "体育", "游戏", "娱乐"]


def assert_png(path: Path, min_side: int = 300, max_side: int = 4000) -> tuple[int, int]:
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    assert min_side <= width <= max_side and min_side <= height <= max_side, (width, height)
    assert path.stat().st_size > 5_000
    return width, height


@pytest.fixture
def no_glyph_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    from zhcls.report.fonts import current_cjk_font

    if current_cjk_font() is not None:
        assert missing == []


def _cm(n: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([rng.multinomial(200, [0.9 if j == i else 0.1 / (n - 1) for j in range(n)])
                     for i in range(n)])


def _history(epochs: int = 3, steps_per_epoch: int = 100) -> list[dict]:
    history = []
    for step in range(10, epochs * steps_per_epoch + 1, 10):
        epoch = step / steps_per_epoch
        history.append({"step": step, "epoch": epoch, "loss": 2.0 / epoch, "loss_ce": 1.5 / epoch,
                        "loss_scl": 0.5, "learning_rate": 2e-5 * (1 - epoch / epochs)})
        if step % steps_per_epoch == 0:
            history.append({"step": step, "epoch": epoch, "eval_loss": 0.4 / epoch,
                            "eval_accuracy": 0.9 + 0.01 * epoch, "eval_macro_f1": 0.89})
    return history


def test_confusion_matrix_counts_and_normalised(tmp_path, no_glyph_warnings):
    cm = _cm()
    cm[3] = 0  # a class without examples must not break normalisation
    out = plots.plot_confusion_matrix(cm, ZH, tmp_path / "cm.png")
    assert out == tmp_path / "cm.png"
    assert_png(out)
    assert_png(plots.plot_confusion_matrix(cm, ZH, tmp_path / "sub" / "n.png", normalize=True,
                                           title="归一化"))


@pytest.mark.parametrize(("cm", "labels", "match"), [
    (np.zeros((3, 4)), ["a", "b", "c"], "square"),
    (np.zeros((3, 3)), ["a", "b"], "3x3 but 2 labels"),
    (-np.ones((2, 2)), ["a", "b"], "non-negative"),
])
def test_confusion_matrix_rejects_bad_input(tmp_path, cm, labels, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_confusion_matrix(cm, labels, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_per_class_bars(tmp_path, no_glyph_warnings):
    rng = np.random.default_rng(0)
    per_class = {c: {"precision": rng.uniform(0.8, 1), "recall": rng.uniform(0.8, 1),
                     "f1": rng.uniform(0.8, 1), "support": 100} for c in ZH}
    assert_png(plots.plot_per_class_bars(per_class, tmp_path / "bars.png", title="各类别"))
    low = {"a": {"precision": 0.1, "recall": 0.2, "f1": 0.15}, "b": {"precision": 1, "recall": 1, "f1": 1}}
    assert_png(plots.plot_per_class_bars(low, tmp_path / "low.png"))


def test_per_class_bars_rejects_missing_metric(tmp_path):
    with pytest.raises(ValueError, match=r"per_class\['a'\] lacks \['f1'\]"):
        plots.plot_per_class_bars({"a": {"precision": 1, "recall": 1}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_per_class_bars({}, tmp_path / "x.png")


def test_training_curves_full_and_sparse(tmp_path):
    assert_png(plots.plot_training_curves(_history(), tmp_path / "full.png"))
    train_only = [e for e in _history() if "loss" in e]
    assert_png(plots.plot_training_curves(train_only, tmp_path / "train.png", epoch_steps=[100]))
    assert_png(plots.plot_training_curves([], tmp_path / "empty.png"))


def test_training_curves_name_what_the_dev_numbers_are_of(tmp_path, monkeypatch):
    titles = []
    save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: titles.extend(
        ax.get_title() for ax in fig.axes) or save(fig, path))
    plots.plot_training_curves(_history(), tmp_path / "a.png",
                               dev_of="weight average, train.ema_decay 0.99")
    assert "dev loss (weight average, train.ema_decay 0.99)" in titles
    assert "dev accuracy (weight average, train.ema_decay 0.99)" in titles
    titles.clear()
    plots.plot_training_curves(_history(), tmp_path / "b.png")
    assert "dev loss" in titles and "dev accuracy" in titles


def test_infer_epoch_steps():
    assert plots.infer_epoch_steps(_history(3, 100)) == [100, 200]
    # boundary between two log entries is interpolated
    log = [{"step": 90, "epoch": 0.9}, {"step": 110, "epoch": 1.1}, {"step": 150, "epoch": 1.5}]
    assert plots.infer_epoch_steps(log) == [100]
    assert plots.infer_epoch_steps([]) == []


def test_training_curves_rejects_bad_history(tmp_path):
    with pytest.raises(ValueError, match=r"history\[1\] is str"):
        plots.plot_training_curves([{"step": 1, "loss": 1.0}, "oops"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="list of log dicts"):
        plots.plot_training_curves("log.json", tmp_path / "x.png")


def test_length_histogram(tmp_path):
    rng = np.random.default_rng(0)
    lengths = {"train": rng.poisson(19, 500).tolist(), "dev": rng.poisson(20, 100).tolist()}
    assert_png(plots.plot_length_histogram(lengths, tmp_path / "len.png", unit="tokens",
                                           marks={"p95": 27, "p99": 31}))
    with pytest.raises(ValueError, match=r"lengths\['dev'\] is empty"):
        plots.plot_length_histogram({"dev": []}, tmp_path / "x.png")


def _clusters(spread: float, n_per: int = 20, k: int = 5, dim: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, dim))
    labels = np.repeat(np.arange(k), n_per)
    feats = centres[labels] * spread + rng.normal(0, 1, (k * n_per, dim))
    return feats, labels


def test_silhouette_separated_beats_mixed():
    good = embedding.silhouette(*_clusters(spread=4.0))
    feats, labels = _clusters(spread=4.0)
    mixed = embedding.silhouette(feats, np.random.default_rng(1).permutation(labels))
    assert good > 0.5 > mixed
    assert good > mixed + 0.4


def test_project_2d_shapes_subsample_and_determinism():
    feats, _ = _clusters(spread=3.0, n_per=30)
    a = embedding.project_2d(feats, method="tsne", seed=0, max_points=100)
    b = embedding.project_2d(feats, method="tsne", seed=0, max_points=100)
    assert a.shape == (100, 2) and np.allclose(a, b)
    idx = embedding.subsample_indices(len(feats), 100, seed=0)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert embedding.project_2d(feats, method="pca").shape == (150, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        embedding.project_2d(feats, method="umap")


def test_embedding_maps(tmp_path, no_glyph_warnings):
    good, labels = _clusters(spread=4.0)
    bad, _ = _clusters(spread=0.05)
    names = ZH[:5]
    score = embedding.plot_embedding_map(good, labels, names, tmp_path / "one.png",
                                         title="监督对比", method="pca")
    assert score == pytest.approx(embedding.silhouette(good, labels))
    assert_png(tmp_path / "one.png")
    scores = embedding.plot_embedding_maps([("基线", bad, labels), ("SCL", good, labels)],
                                           names, tmp_path / "two.png")
    assert scores[1] > scores[0]
    assert_png(tmp_path / "two.png")


def test_embedding_rejects_bad_input(tmp_path):
    feats, labels = _clusters(spread=3.0)
    with pytest.raises(ValueError, match="one label per feature row"):
        embedding.silhouette(feats, labels[:-1])
    with pytest.raises(ValueError, match="2-D array"):
        embedding.project_2d(feats[0])
    with pytest.raises(ValueError, match=r"class ids in 0\.\.2"):
        embedding.plot_embedding_map(feats, labels, ["a", "b", "c"], tmp_path / "x.png",
                                     method="pca")
    with pytest.raises(ValueError, match="distinct labels"):
        embedding.silhouette(feats, np.zeros(len(feats), dtype=int))
    with pytest.raises(ValueError, match="non-empty list"):
        embedding.plot_embedding_maps([], ["a"], tmp_path / "x.png")
