"""zhcls.workflows.sweep: grid parsing and validation, summary maths, and a real 2x2x2 sweep on a tiny
model that resumes without redoing finished runs."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import struct

import pytest

from conftest import REPO
from zhcls.cli import main
from zhcls.errors import ConfigError
from zhcls.workflows.sweep import (
    aggregate,
    combo_name,
    format_summary_md,
    parse_grid,
    plan_sweep,
    run_sweep,
)

CONFIG = REPO / "configs" / "tiny.yaml"


def tiny_overrides(model) -> list[str]:
    return ["--model.pretrained", str(model), "--objective.name", "kd",
            "--train.batch_size", "8", "--train.eval_batch_size", "32", "--train.max_steps", "4",
            "--train.eval_steps", "2", "--train.logging_steps", "2", "--train.lr", "1e-3",
            "--train.tensorboard", "false", "--train.save_total_limit", "1"]


# ----------------------------------------------------------------------------- grid and plan
def test_parse_grid_reads_repeated_keys():
    grid = parse_grid(["objective.alpha=0.1,0.5, 0.9", "--objective.temperature=1,2"])
    assert grid == {"objective.alpha": ["0.1", "0.5", "0.9"], "objective.temperature": ["1", "2"]}


@pytest.mark.parametrize("item", ["objective.alpha", "objective.alpha=", "=1,2",
                                  "objective.alpha=0.1,,0.5"])
def test_parse_grid_rejects_malformed_items(item):
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid([item])


def test_parse_grid_rejects_a_key_given_twice():
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["train.lr=1e-3", "train.lr=1e-4"])


def test_plan_names_directories_and_derives_seeds(tmp_path):
    runs = plan_sweep(CONFIG, {"objective.beta": [0.2, 0.8], "train.lr": ["1e-3"]}, 2,
                      tmp_path, ["--train.seed", "7"])
    assert [(r.values["objective.beta"], r.seed) for r in runs] == [
        ("0.2", 7), ("0.2", 8), ("0.8", 7), ("0.8", 8)]
    assert runs[0].run_dir == tmp_path / "objective.beta=0.2,train.lr=1e-3" / "seed-7"
    assert runs[-1].overrides[-6:] == ["--objective.beta", "0.8", "--train.lr", "1e-3",
                                       "--train.seed", "8"]
    assert not any(r.finished for r in runs)


def test_combo_name_makes_paths_safe():
    assert combo_name({"model.pretrained": "/tmp/a b"}) == "model.pretrained=_tmp_a_b"


@pytest.mark.parametrize(("grid", "message"), [
    ({"objective.alpah": [0.1]}, r"--grid objective\.alpah=0\.1: unknown key.*objective keys"),
    ({"trian.lr": [0.1]}, r"--grid trian\.lr=0\.1: unknown key"),
    ({"objective.alpha": [0.1, 2.0]}, r"objective\.alpha=2\.0.*\[0\.0, 1\.0\]"),
    ({"train.seed": [1, 2]}, r"train\.seed: cannot be swept \(use --seeds\)"),
    ({"objective.beta": [0.1, 0.1]}, "repeated values"),
    ({"train.lr": ["1e-3", "0.001"]}, r"train\.lr: repeated values: 1e-3 and 0\.001 are the same"),
    ({"objective.name": ["kd", "ce", "kd"]}, r"name: repeated values: kd and kd are the same"),
    ({"train.resume": ["true", "false"]}, r"train\.resume: cannot be swept .*resumes by itself"),
    ({"train.overwrite": [True, False]}, r"train\.overwrite: cannot be swept"),
    ({"train.output_dir": ["a", "b"]}, r"train\.output_dir: cannot be swept .*--out"),
    ({"train.threads": [1, 2]}, r"train\.threads: cannot be swept .*same model.*--train\.threads"),
    ({}, "grid is empty"),
])
def test_plan_rejects_bad_grids_before_training(tmp_path, grid, message):
    with pytest.raises(ConfigError, match=message):
        plan_sweep(CONFIG, grid, 1, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_plan_warns_about_a_key_the_objective_ignores(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="zhcls.workflows.sweep"):
        plan_sweep(CONFIG, {"objective.alpha": [0.1, 0.9]}, 1, tmp_path,
                   ["--objective.name", "kd"])
    assert "objective.alpha has no effect with objective kd (only kd+scl" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zhcls.workflows.sweep"):
        plan_sweep(CONFIG, {"objective.alpha": [0.1], "objective.name": ["kd", "kd+scl"]}, 1,
                   tmp_path)
    assert "no effect" not in caplog.text


# ----------------------------------------------------------------------------- summary maths
def test_aggregate_means_and_sample_std_per_combination():
    rows = [{"k": "a", "seed": s, "dev_accuracy": acc, "dev_macro_f1": 0.5, "dev_loss": 1.0,
             "test_accuracy": None, "test_macro_f1": None} for s, acc in ((1, 0.8), (2, 0.9))]
    rows.append({"k": "b", "seed": 1, "dev_accuracy": 0.7, "dev_macro_f1": 0.6, "dev_loss": 2.0,
                 "test_accuracy": 0.65, "test_macro_f1": 0.6})
    table = aggregate(rows, ["k"])
    a, b = table
    assert (a["k"], a["seeds"], b["seeds"]) == ("a", 2, 1)
    assert a["dev_accuracy_mean"] == pytest.approx(0.85)
    assert a["dev_accuracy_std"] == pytest.approx(math.sqrt(0.005))  # ddof=1
    assert a["test_accuracy_mean"] is None and b["dev_accuracy_std"] is None
    md = format_summary_md(table, ["k"], planned=4, finished=3, metric_for_best="accuracy")
    assert "3 of 4 runs finished" in md
    assert "| a | 2 | 0.8500 ± 0.0707 |" in md
    assert "| b | 1 | 0.7000 | 0.6000 | 2.0000 | 0.6500 | 0.6000 |" in md
    assert "Best by mean dev accuracy (train.metric_for_best accuracy" in md
    assert md.rstrip().endswith("higher is better): k=a (0.8500 ± 0.0707).")


# ----------------------------------------------------------------------------- end to end
def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
def test_sweep_runs_grid_writes_summary_and_resumes(tmp_path, tiny_model, tiny_kd_data, caplog):
    out = tmp_path / "sweep"
    grid = {"objective.beta": [0.2, 0.8], "objective.temperature": [1, 4]}
    run_sweep(CONFIG, tiny_kd_data, grid, 2, out, tiny_overrides(tiny_model))

    metrics = sorted(out.glob("*/seed-*/metrics.json"))
    assert len(metrics) == 8
    assert (out / "objective.beta=0.8,objective.temperature=4" / "seed-2" / "best").is_dir()
    with (out / "summary.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [(r["objective.beta"], r["objective.temperature"], r["seeds"]) for r in table] == [
        ("0.2", "1", "2"), ("0.2", "4", "2"), ("0.8", "1", "2"), ("0.8", "4", "2")]
    with (out / "runs.csv").open(encoding="utf-8") as f:
        runs = list(csv.DictReader(f))
    first = [float(r["dev_loss"]) for r in runs[:2]]
    # (CSV values are rounded to 6 decimals)
    assert float(table[0]["dev_loss_mean"]) == pytest.approx(sum(first) / 2, abs=1e-6)
    assert float(table[0]["dev_loss_std"]) == pytest.approx(abs(first[0] - first[1]) / math.sqrt(2),
                                                            abs=1e-6)
    for row in table:
        assert 0.0 <= float(row["test_accuracy_mean"]) <= 1.0
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert md.count("\n| 0.") == 4 and "8 of 8 runs finished" in md
    for key in grid:
        width, height = png_size(out / f"sweep_{key}.png")
        assert width > height > 300

    # An interruption: one run lost its metrics.json (it is written last, so a crash leaves
    # a directory without it). Restarting through the CLI resumes exactly that run.
    redo = out / "objective.beta=0.8,objective.temperature=1" / "seed-2"
    before = json.loads((redo / "metrics.json").read_text(encoding="utf-8"))
    (redo / "metrics.json").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in metrics if p.parent != redo}
    weights = {p: (p.parent / "best" / "model.safetensors").stat().st_mtime_ns for p in stamps}
    argv = ["sweep", "--config", str(CONFIG), "--data", str(tiny_kd_data), "--out", str(out),
            "--grid", "objective.beta=0.2,0.8", "--grid", "objective.temperature=1,4",
            "--seeds", "2", *tiny_overrides(tiny_model)]
    with caplog.at_level(logging.INFO, logger="zhcls.workflows.sweep"):
        assert main(argv) == 0
    assert "7 finished, 1 to train" in caplog.text
    assert caplog.text.count("sweep: training ") == 1
    assert f"{redo} has no metrics.json" in caplog.text
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert all((p.parent / "best" / "model.safetensors").stat().st_mtime_ns == t
               for p, t in weights.items())
    after = json.loads((redo / "metrics.json").read_text(encoding="utf-8"))
    # Trained again in a process that had already trained 8 models: same numbers, so
    # nothing leaks from one in-process run into the next.
    assert after["dev"]["loss"] == pytest.approx(before["dev"]["loss"], abs=1e-5)
    assert after["test"] == before["test"]


def test_sweep_resumes_an_interrupted_run_instead_of_deleting_it(tmp_path, tiny_data,
                                                                  monkeypatch):
    import zhcls.workflows.pipeline as pipeline

    out = tmp_path / "sweep"
    runs = plan_sweep(CONFIG, {"train.lr": ["1e-3", "2e-3"]}, 1, out)
    interrupted = runs[0].run_dir / "checkpoints" / "checkpoint-2"
    interrupted.mkdir(parents=True)  # what a killed run leaves (no metrics.json)
    calls = {}

    def fake_train(config, data_dir, run_dir):
        calls[str(run_dir)] = (config.train.resume, interrupted.is_dir())
        (run_dir / "metrics.json").parent.mkdir(parents=True, exist_ok=True)
        metrics = {"dev": {"accuracy": 0.5, "macro_f1": 0.5, "loss": 1.0}, "test": None}
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")

    monkeypatch.setattr(pipeline, "train_and_report", fake_train)
    run_sweep(CONFIG, tiny_data, {"train.lr": ["1e-3", "2e-3"]}, 1, out)
    # The interrupted run keeps its checkpoint and is resumed; the fresh one starts anew.
    assert calls == {str(runs[0].run_dir): (True, True), str(runs[1].run_dir): (False, True)}


def test_sweep_needs_an_existing_dataset(tmp_path):
    with pytest.raises(ConfigError, match="no dataset given; pass --data"):
        run_sweep(CONFIG, None, {"train.lr": [1e-3]}, 1, tmp_path / "s")
    with pytest.raises(ConfigError, match="dataset directory .*nowhere not found"):
        run_sweep(CONFIG, tmp_path / "nowhere", {"train.lr": [1e-3]}, 1, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_cli_rejects_unknown_grid_key_before_training(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--config", str(CONFIG), "--out", str(out),
                 "--grid", "objective.temprature=1,2"])
    assert code == 2
    assert not out.exists()


def _fake_training(calls: list, after_first=None):
    """A stand-in for train_and_report that records each run's config and writes metrics."""
    def fake_train(config, data_dir, run_dir):
        from zhcls.training.rundir import RUN_FILE, run_fingerprint, run_record
        from zhcls.training.train import resolve_run_config

        calls.append(config)
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved, data, _ = resolve_run_config(config, data_dir, run_dir)  # as train does:
        assert resolved.data.task == "single_label" != config.data.task  # auto, detected
        record = run_record(resolved, run_fingerprint(resolved, data))
        (run_dir / RUN_FILE).write_text(json.dumps(record), encoding="utf-8")
        metrics = {"dev": {"accuracy": 0.5, "macro_f1": 0.5, "loss": 1.0}, "test": None}
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        if after_first is not None and len(calls) == 1:
            after_first()
    return fake_train


def test_sweep_keeps_the_config_it_read_when_the_file_is_edited_mid_sweep(tmp_path, tiny_data,
                                                                          monkeypatch):
    import zhcls.workflows.pipeline as pipeline

    yaml_file = tmp_path / "sweep.yaml"
    yaml_file.write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    original = CONFIG.read_text(encoding="utf-8")
    assert "max_length: 32" in original

    def edit():  # what a user editing the YAML while the sweep runs does
        yaml_file.write_text(original.replace("max_length: 32", "max_length: 48"),
                             encoding="utf-8")

    calls: list = []
    monkeypatch.setattr(pipeline, "train_and_report", _fake_training(calls, edit))
    run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3", "2e-3"]}, 1, tmp_path / "s")
    assert [c.data.max_length for c in calls] == [32, 32]
    assert [c.train.lr for c in calls] == [1e-3, 2e-3]


def test_sweep_restart_refuses_a_config_file_that_changed_since_it_began(tmp_path, tiny_data,
                                                                         monkeypatch):
    import zhcls.workflows.pipeline as pipeline

    yaml_file = tmp_path / "sweep.yaml"
    original = CONFIG.read_text(encoding="utf-8")
    yaml_file.write_text(original, encoding="utf-8")
    out = tmp_path / "s"
    calls: list = []
    monkeypatch.setattr(pipeline, "train_and_report", _fake_training(calls))
    run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3"]}, 1, out)
    # The same settings continue (here: a new grid value is added to the finished sweep) ...
    run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3", "2e-3"]}, 1, out)
    assert len(calls) == 2
    # ... but edited settings would mix two configs in one table: refused, nothing trained.
    yaml_file.write_text(original.replace("max_length: 32", "max_length: 48"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"data\.max_length: 32 .* vs 48 now.*new --out"):
        run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3", "2e-3", "3e-3"]}, 1, out)
    with pytest.raises(ConfigError, match=r"data\.max_length"):
        run_sweep(CONFIG, tiny_data, {"train.lr": ["1e-3", "2e-3", "3e-3"]}, 1, out,
                  ["--data.max_length", "48"])
    with pytest.raises(ConfigError, match=r"data\.files\.train\.txt"):  # other data, same name
        other = tmp_path / "data"
        shutil.copytree(tiny_data, other)
        with (other / "train.txt").open("a", encoding="utf-8") as f:
            f.write("又一条新闻\t0\n")
        run_sweep(CONFIG, other, {"train.lr": ["1e-3", "2e-3"]}, 1, out)
    assert len(calls) == 2
    # Settings that do not change a result (threads, reports, ...) may differ, and so may the
    # file's value of a swept key (every run overrides it).
    yaml_file.write_text(original.replace("lr: 2.0e-3", "lr: 5.0e-3"), encoding="utf-8")
    assert "lr: 5.0e-3" in yaml_file.read_text(encoding="utf-8")
    run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3", "2e-3"]}, 1, out,
              ["--train.threads", "1"])
    assert len(calls) == 2
