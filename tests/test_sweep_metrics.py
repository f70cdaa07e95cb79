"""zhcls sweep's columns and ranking: multi-label sweeps report micro-F1, macro-F1 and subset
accuracy under those names, and the best setting is the one the runs' own checkpoint selection
(``train.metric_for_best``) prefers. Training is faked (metrics.json as training writes it), and
one real 2-run multi-label sweep on the tiny model checks the real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import REPO, write_multilabel
from zhcls.workflows.sweep import run_sweep

CONFIG = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory):
    return write_multilabel(tmp_path_factory.mktemp("ml-sweep-data"))


def multilabel_metrics(micro: float, subset: float, loss: float) -> dict:
    """The headline of a multi-label split's metrics as training writes them ("accuracy" is
    the subset accuracy, kept for model selection)."""
    return {"task": "multi_label", "micro_f1": micro, "macro_f1": micro - 0.1,
            "samples_f1": micro, "subset_accuracy": subset, "accuracy": subset,
            "hamming_loss": 0.1, "loss": loss}


def fake_training(calls: list, metrics_of):
    """A stand-in for train_and_report: writes metrics.json from ``metrics_of(config)``."""
    def fake_train(config, data_dir, run_dir):
        calls.append(config)
        run_dir.mkdir(parents=True, exist_ok=True)
        dev, test = metrics_of(config)
        (run_dir / "metrics.json").write_text(json.dumps({"dev": dev, "test": test}),
                                              encoding="utf-8")
    return fake_train


def read_csv(path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def plot_titles(monkeypatch):
    """The panel titles of every sweep plot written, by plot file name."""
    import zhcls.report.plots as plots

    titles: dict[str, list[str]] = {}
    save = plots.save_figure

    def capture(fig, path, *args, **kwargs):
        titles[path.name] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "save_figure", capture)
    return titles


def test_multilabel_sweep_names_its_metrics_and_ranks_by_metric_for_best(
        tmp_path, ml_data, monkeypatch, plot_titles):
    import zhcls.workflows.pipeline as pipeline

    # lr 1e-3: the better micro-F1 (what the runs select on); lr 3e-3: the better subset
    # accuracy (what "accuracy" used to be).
    scores = {1e-3: (0.80, 0.30, 0.5), 3e-3: (0.60, 0.50, 0.4)}

    def metrics_of(config):
        return (multilabel_metrics(*scores[config.train.lr]),
                multilabel_metrics(*scores[config.train.lr]))

    calls: list = []
    monkeypatch.setattr(pipeline, "train_and_report", fake_training(calls, metrics_of))
    out = tmp_path / "s"
    run_sweep(CONFIG, ml_data, {"train.lr": ["1e-3", "3e-3"]}, 1, out,
              ["--objective.name", "bce", "--train.metric_for_best", "micro_f1"])
    assert len(calls) == 2
    runs = read_csv(out / "runs.csv")
    assert [float(r["dev_micro_f1"]) for r in runs] == [0.8, 0.6]
    assert [float(r["dev_subset_accuracy"]) for r in runs] == [0.3, 0.5]
    assert not any("_accuracy" in c and "subset" not in c for c in runs[0])  # no "accuracy"
    summary = read_csv(out / "summary.csv")
    assert {"dev_micro_f1_mean", "dev_macro_f1_mean", "dev_subset_accuracy_mean",
            "test_micro_f1_mean", "test_subset_accuracy_mean"} <= set(summary[0])
    assert "dev_accuracy_mean" not in summary[0]
    md = (out / "summary.md").read_text(encoding="utf-8")
    head = md.splitlines()[4]
    assert "dev micro-F1" in head and "dev subset accuracy" in head
    assert "dev accuracy" not in md and "test accuracy" not in md
    assert "Best by mean dev micro-F1 (train.metric_for_best micro_f1" in md
    assert "train.lr=1e-3 (0.8000)" in md
    assert plot_titles["sweep_train.lr.png"] == ["dev micro-F1", "dev macro-F1", "test micro-F1"]


def single_label(accuracy: float, macro_f1: float, loss: float) -> dict:
    return {"accuracy": accuracy, "macro_f1": macro_f1, "loss": loss}


@pytest.mark.parametrize(("metric", "best"), [("macro_f1", "1e-3"), ("loss", "2e-3"),
                                              ("accuracy", "3e-3")])
def test_single_label_sweep_ranks_by_the_runs_metric_for_best(tmp_path, tiny_data, monkeypatch,
                                                             metric, best):
    import zhcls.workflows.pipeline as pipeline

    scores = {1e-3: single_label(0.70, 0.69, 0.9), 2e-3: single_label(0.60, 0.50, 0.3),
              3e-3: single_label(0.80, 0.40, 0.8)}
    monkeypatch.setattr(pipeline, "train_and_report", fake_training(
        [], lambda config: (scores[config.train.lr], None)))
    out = tmp_path / "s"
    run_sweep(CONFIG, tiny_data, {"train.lr": ["1e-3", "2e-3", "3e-3"]}, 1, out,
              ["--train.metric_for_best", metric])
    md = (out / "summary.md").read_text(encoding="utf-8")
    shown = {"macro_f1": "dev macro-F1", "loss": "dev loss", "accuracy": "dev accuracy"}[metric]
    assert f"Best by mean {shown} (train.metric_for_best {metric}" in md
    assert f"train.lr={best} (" in md.split("Best by")[1]
    if metric == "loss":
        assert "lower is better" in md


def test_a_swept_metric_for_best_names_no_single_best(tmp_path, tiny_data, monkeypatch):
    import zhcls.workflows.pipeline as pipeline

    monkeypatch.setattr(pipeline, "train_and_report", fake_training(
        [], lambda config: (single_label(0.7, 0.6, 0.5), None)))
    out = tmp_path / "s"
    run_sweep(CONFIG, tiny_data, {"train.metric_for_best": ["loss", "macro_f1"]}, 1, out)
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "Best by" not in md
    assert "train.metric_for_best differs between runs" in md


@pytest.mark.slow
def test_a_real_multilabel_sweep_reports_micro_f1(tmp_path, tiny_model, ml_data):
    out = tmp_path / "s"
    run_sweep(CONFIG, ml_data, {"train.lr": ["1e-3", "3e-3"]}, 1, out,
              ["--model.pretrained", str(tiny_model), "--objective.name", "bce",
               "--train.metric_for_best", "micro_f1", "--train.batch_size", "8",
               "--train.max_steps", "2", "--train.eval_steps", "2", "--train.logging_steps", "2",
               "--train.tensorboard", "false", "--train.report", "false",
               "--model.num_filters", "8", "--train.save_total_limit", "1"])
    runs = read_csv(out / "runs.csv")
    for row in runs:
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text("utf-8"))
        assert float(row["dev_micro_f1"]) == pytest.approx(metrics["dev"]["micro_f1"], abs=1e-6)
        assert float(row["dev_subset_accuracy"]) == pytest.approx(
            metrics["dev"]["subset_accuracy"], abs=1e-6)
    assert "Best by mean dev micro-F1" in (out / "summary.md").read_text(encoding="utf-8")
