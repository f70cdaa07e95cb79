"""``--batch-size`` below 1 is a one-line error (exit 2, naming the flag) for ``zhcls
evaluate`` and ``zhcls label``, as for ``zhcls predict``; the library refuses it too."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from predict_fixtures import head_checkpoint
from zhcls.cli import main

pytest.importorskip("skops", reason="baseline checkpoints are saved with skops (pip install skops)")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model) -> Path:
    return head_checkpoint(tmp_path_factory.mktemp("bs-ckpt"), tiny_model, "bert")


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, tiny_data) -> Path:
    from zhcls.workflows.baseline import train_baseline

    out = tmp_path_factory.mktemp("bs-baseline")
    train_baseline(tiny_data, out)
    return out


def run(caplog, argv: list[str]) -> tuple[int, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        code = main(argv)
    return code, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def assert_batch_size_error(code: int, errors: list[str], value: str) -> None:
    assert code == 2
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0] == f"--batch-size must be >= 1, got {value}"


@pytest.mark.parametrize("value", ["0", "-5"])
def test_evaluate_rejects_a_batch_size_below_one(ckpt, tiny_data, tmp_path, caplog, value):
    out = tmp_path / "ev"
    code, errors = run(caplog, ["evaluate", str(ckpt), "--data", str(tiny_data), "--device",
                                "cpu", "--out", str(out), "--batch-size", value])
    assert_batch_size_error(code, errors, value)
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_label_rejects_a_batch_size_below_one(baseline_dir, tiny_data, tmp_path, caplog, value):
    out = tmp_path / "kd"
    code, errors = run(caplog, ["label", "--teacher", str(baseline_dir), "--data",
                                str(tiny_data), "--out", str(out), "--batch-size", value])
    assert_batch_size_error(code, errors, value)
    assert not out.exists()


def test_evaluate_and_label_accept_a_batch_size_of_one(ckpt, baseline_dir, tiny_data,
                                                       tmp_path):
    assert main(["evaluate", str(ckpt), "--data", str(tiny_data), "--device", "cpu",
                 "--out", str(tmp_path / "ev"), "--batch-size", "1"]) == 0
    assert main(["label", "--teacher", str(baseline_dir), "--data", str(tiny_data),
                 "--out", str(tmp_path / "kd"), "--batch-size", "1"]) == 0
    assert (tmp_path / "kd" / "train.txt").is_file()


@pytest.mark.parametrize("value", [0, -5])
def test_evaluate_checkpoint_raises_for_a_batch_size_below_one(ckpt, tiny_data, tmp_path,
                                                               value):
    from zhcls.evaluation.evaluate import evaluate_checkpoint

    with pytest.raises(ValueError, match=rf"batch_size must be >= 1 or None, got {value}"):
        evaluate_checkpoint(ckpt, tiny_data, out_dir=tmp_path / "ev", batch_size=value,
                            device="cpu")
    assert not (tmp_path / "ev").exists()


def test_evaluate_checkpoint_none_batch_size_means_the_checkpoint_default(ckpt, tiny_data,
                                                                          tmp_path):
    from zhcls.evaluation.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(ckpt, tiny_data, out_dir=tmp_path / "ev", device="cpu")
    assert (tmp_path / "ev" / "metrics.json").is_file() and "accuracy" in metrics
