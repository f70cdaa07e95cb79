"""zhcls sweep's run control: overrides a sweep cannot honour (train.overwrite, train.output_dir,
train.resume) are refused in one line before anything trains, and a sweep re-run over an --out
holding finished runs of another grid says so, in the log and in summary.md. Training is faked."""

from __future__ import annotations

import csv
import json
import logging
import re

import pytest

from conftest import REPO
from zhcls.cli import main
from zhcls.errors import ConfigError
from zhcls.workflows.sweep import run_sweep

CONFIG = REPO / "configs" / "tiny.yaml"


def fake_training(calls: list):
    def fake_train(config, data_dir, run_dir):
        calls.append(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics = {"dev": {"accuracy": 0.5, "macro_f1": 0.5, "loss": 1.0}, "test": None}
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return fake_train


@pytest.fixture
def calls(monkeypatch) -> list:
    import zhcls.workflows.pipeline as pipeline

    trained: list = []
    monkeypatch.setattr(pipeline, "train_and_report", fake_training(trained))
    return trained


@pytest.mark.parametrize(("flag", "value", "hint"), [
    ("--train.overwrite", "true", r"rerun.*delete"),
    ("--train.output_dir", "elsewhere", r"use --out DIR"),
    ("--train.resume", "true", r"resumes by itself: finished runs are kept, unfinished ones "
                               r"continue"),
    ("--overwrite", None, r"rerun.*delete"),  # zhcls train's flag
])
def test_cli_refuses_run_control_overrides_in_one_line(tmp_path, tiny_data, calls, caplog,
                                                       flag, value, hint):
    out = tmp_path / "sweep"
    argv = ["sweep", "--config", str(CONFIG), "--data", str(tiny_data), "--out", str(out),
            "--grid", "train.lr=1e-3,2e-3", flag, *([value] if value else [])]
    with caplog.at_level(logging.ERROR):
        code = main(argv)
    assert code == 2 and calls == []
    assert not out.exists()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(f"sweep: {flag} {value}: " if value else f"sweep: {flag}: ")
    assert "expected" in errors[0]
    assert re.search(hint, errors[0]), errors[0]


def test_a_config_file_that_sets_resume_or_overwrite_is_refused(tmp_path, tiny_data, calls):
    yaml_file = tmp_path / "sweep.yaml"
    yaml_file.write_text(CONFIG.read_text(encoding="utf-8").replace(
        "train:\n", "train:\n  overwrite: true\n"), encoding="utf-8")
    where = re.escape(str(yaml_file))
    with pytest.raises(ConfigError, match=rf"sweep: train\.overwrite true in {where}: expected"):
        run_sweep(yaml_file, tiny_data, {"train.lr": ["1e-3"]}, 1, tmp_path / "s")
    assert calls == []


def test_a_subset_rerun_names_the_finished_runs_it_leaves_out(tmp_path, tiny_data, calls,
                                                              caplog):
    out = tmp_path / "s"
    run_sweep(CONFIG, tiny_data, {"train.lr": ["1e-3", "5e-3"]}, 3, out)
    assert len(calls) == 6
    with caplog.at_level(logging.INFO, logger="zhcls.workflows"):
        run_sweep(CONFIG, tiny_data, {"train.lr": ["5e-3"]}, 1, out)
    assert len(calls) == 6  # nothing retrained
    assert f"5 finished runs in {out} are not part of this grid" in caplog.text
    assert "the summary covers only this grid" in caplog.text
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "1 of 1 runs finished" in md
    assert "5 other finished runs in this directory are not part of this grid" in md
    assert "train.lr=1e-3/seed-1" in md  # named, so they can be found
    with (out / "runs.csv").open(encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 1
    sweep = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert len(sweep["finished_not_in_grid"]) == 5
    # The whole grid again: every finished run is in it, no notice.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zhcls.workflows"):
        run_sweep(CONFIG, tiny_data, {"train.lr": ["1e-3", "5e-3"]}, 3, out)
    assert "not part of this grid" not in caplog.text
    assert "not part of this grid" not in (out / "summary.md").read_text(encoding="utf-8")
