"""``--out`` of baseline, label, evaluate, report, data-stats and sweep: a file, or a directory
another command (or the user) owns, is refused with a one-line error (exit 2) before any work;
the command's own earlier output may be replaced."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from conftest import REPO
from zhcls.cli import main

pytest.importorskip("skops", reason="baseline checkpoints are saved with skops (pip install skops)")


def fake_checkpoint(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}\n", encoding="utf-8")
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "zhcls-run.json").write_text("{}\n", encoding="utf-8")
    return path


def fake_run(path):
    (path / "eval_test").mkdir(parents=True)
    (path / "zhcls-run.json").write_text("{}\n", encoding="utf-8")
    (path / "metrics.json").write_text('{"dev": {"accuracy": 0.9}}\n', encoding="utf-8")
    (path / "eval_test" / "metrics.json").write_text('{"accuracy": 0.9}\n', encoding="utf-8")
    return path


def snapshot(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def refused(argv, caplog, *needles):
    """Run ``zhcls argv``; it must exit 2 with one one-line error holding every needle."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([str(a) for a in argv]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# --- 1. baseline -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["checkpoint", "run", "dataset"])
def test_baseline_refuses_a_directory_it_did_not_write(kind, tiny_data, tmp_path, caplog):
    if kind == "checkpoint":
        out = fake_checkpoint(tmp_path / "run" / "best")
    elif kind == "run":
        out = fake_run(tmp_path / "run")
    else:
        out = shutil.copytree(tiny_data, tmp_path / "data")
    before = snapshot(out)
    refused(["baseline", "--data", tiny_data, "--out", out], caplog,
            f"--out {out}", "new or empty directory")
    assert snapshot(out) == before


def test_baseline_replaces_its_own_earlier_output(tiny_data, tmp_path):
    out = tmp_path / "bl"
    assert main(["baseline", "--data", str(tiny_data), "--out", str(out)]) == 0
    assert main(["baseline", "--data", str(tiny_data), "--out", str(out),
                 "--classifier", "logreg"]) == 0
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "baseline" and meta["classifier"] == "logreg"


# --- 2. label ----------------------------------------------------------------------------

def test_label_refuses_another_dataset_directory(baseline_dir, tiny_data, tmp_path, caplog):
    other = shutil.copytree(tiny_data, tmp_path / "other")
    before = snapshot(other)
    refused(["label", "--teacher", baseline_dir, "--data", tiny_data, "--out", other], caplog,
            f"--out {other}", "label_report.json", "new or empty directory")
    assert snapshot(other) == before


def test_label_adds_a_split_to_its_own_output(baseline_dir, tiny_data, tmp_path):
    out = tmp_path / "kd"
    for split in ("train", "dev"):
        assert main(["label", "--teacher", str(baseline_dir), "--data", str(tiny_data),
                     "--split", split, "--out", str(out)]) == 0
    assert json.loads((out / "label_report.json").read_text("utf-8"))["splits"].keys() \
        == {"train", "dev"}


# --- 3. evaluate -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["run", "dataset", "checkpoint"])
def test_evaluate_refuses_a_run_dataset_or_checkpoint(kind, baseline_dir, tiny_data, tmp_path,
                                                      caplog):
    if kind == "run":
        out = fake_run(tmp_path / "run")
    elif kind == "checkpoint":
        out = fake_checkpoint(tmp_path / "best")
    else:
        out = shutil.copytree(tiny_data, tmp_path / "data")
    before = snapshot(out)
    refused(["evaluate", baseline_dir, "--data", tiny_data, "--out", out], caplog,
            f"--out {out}", "new or empty directory")
    assert snapshot(out) == before


def test_evaluate_replaces_its_own_earlier_output(baseline_dir, tiny_data, tmp_path):
    out = tmp_path / "ev"
    for split in ("test", "dev"):
        assert main(["evaluate", str(baseline_dir), "--data", str(tiny_data), "--split", split,
                     "--out", str(out)]) == 0
    assert "split" in json.loads((out / "metrics.json").read_text(encoding="utf-8"))


# --- 4. --out is a file ------------------------------------------------------------------

def _file_argv(command, data, baseline, out):
    config = REPO / "configs" / "tiny.yaml"
    return {
        "evaluate": ["evaluate", baseline, "--data", data, "--out", out],
        "report": ["report", baseline, "--out", out],
        "data-stats": ["data-stats", data, "--out", out],
        "label": ["label", "--teacher", baseline, "--data", data, "--out", out],
        "sweep": ["sweep", "--config", config, "--data", data, "--grid", "train.lr=0.001,0.002",
                  "--out", out],
        "baseline": ["baseline", "--data", data, "--out", out],
    }[command]


@pytest.mark.parametrize("command", ["evaluate", "report", "data-stats", "label", "sweep",
                                     "baseline"])
def test_an_out_that_is_a_file_is_refused(command, baseline_dir, tiny_data, tmp_path, caplog):
    out = tmp_path / "f.csv"
    out.write_text("keep me\n", encoding="utf-8")
    refused(_file_argv(command, tiny_data, baseline_dir, out), caplog,
            f"--out {out}: is a file; pass a new or empty directory")
    assert out.read_text(encoding="utf-8") == "keep me\n"
