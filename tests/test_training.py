"""End to end on a tiny model: train → best checkpoint → evaluate → reload gives the same
predictions; every head trains from its shipped YAML; mismatches are clear errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from conftest import REPO, tiny_config, write_dataset
from zhcls.cli import main
from zhcls.config import HEADS, load_config
from zhcls.data.formats import read_class_names, read_split
from zhcls.errors import CheckpointError, DataError
from zhcls.modeling.checkpoint import load_checkpoint
from zhcls.modeling.forward import forward_texts
from zhcls.training.train import train
from zhcls.workflows.pipeline import train_and_report


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, tiny_data):
    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(tiny_model, **{"train__max_steps": 60, "train__eval_steps": 20,
                                     "train__lr": 5e-3})
    return train_and_report(cfg, tiny_data, out)


def test_run_directory_layout(trained):
    out = trained.output_dir
    for rel in ("best/model.safetensors", "best/zhcls.yaml", "best/labels.json",
                "best/tokenizer.json", "history.json", "metrics.json",
                "eval_test/metrics.json", "eval_test/confusion_matrix.png",
                "eval_test/wrong_samples.jsonl"):
        assert (out / rel).is_file(), rel
    history = json.loads((out / "history.json").read_text("utf-8"))["log_history"]
    assert any("loss_ce" in h for h in history) and any("eval_accuracy" in h for h in history)
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0


def test_best_has_a_model_card(trained, tiny_data):
    import shlex
    import sys

    import yaml

    card = (trained.best_dir / "README.md").read_text(encoding="utf-8")
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["language"] == ["zh"] and meta["pipeline_tag"] == "text-classification"
    assert meta["library_name"] == "zhcls" and "zhcls" in meta["tags"] and meta["metrics"]
    metrics = json.loads((trained.output_dir / "metrics.json").read_text("utf-8"))
    for split in ("dev", "test"):  # the card's numbers are the run's numbers
        row = next(line for line in body.splitlines() if line.startswith(f"| {split} |"))
        assert f"{metrics[split]['accuracy']:.4f}" in row, row
    for name in read_class_names(tiny_data / "class.txt"):
        assert f"| {name} |" in body
    assert shlex.join(sys.argv) in body and str(tiny_data) in body and '"ce"' in body
    assert "## Intended use and limits" in body


def test_it_learns_the_tiny_task(trained):
    # 3 balanced classes: chance is 1/3. 60 steps on 18 distinct sentences must beat it clearly.
    assert trained.dev_metrics["accuracy"] >= 0.7


def test_checkpoint_round_trip_same_predictions(trained, tiny_data):
    ckpt = load_checkpoint(trained.best_dir)
    split = read_split(tiny_data / "test.txt", read_class_names(tiny_data / "class.txt"))
    a = forward_texts(ckpt.model, ckpt.tokenizer, split.texts, 32).logits
    again = load_checkpoint(trained.best_dir)
    b = forward_texts(again.model, again.tokenizer, split.texts, 32).logits
    np.testing.assert_allclose(a, b, atol=1e-6)
    saved = json.loads((trained.output_dir / "eval_test" / "metrics.json").read_text("utf-8"))
    assert saved["accuracy"] == pytest.approx(float((a.argmax(1) == split.labels).mean()), abs=1e-4)


def test_evaluate_cli(trained, tiny_data, tmp_path, capsys):
    assert main(["evaluate", str(trained.best_dir), "--data", str(tiny_data),
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "precision" in printed and "体育" in printed and "confusion matrix" in printed
    metrics = json.loads((tmp_path / "metrics.json").read_text("utf-8"))
    assert set(metrics["per_class"]) == {"体育", "财经", "科技"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 5000
    for line in (tmp_path / "wrong_samples.jsonl").read_text("utf-8").splitlines():
        row = json.loads(line)
        assert row["gold"] != row["predicted"] and len(row["probabilities"]) == 3


def test_labels_mismatch_is_a_clear_error(trained, tmp_path, caplog):
    other = write_dataset(tmp_path / "d")
    (other / "class.txt").write_text("财经\n体育\n科技", encoding="utf-8")
    assert main(["evaluate", str(trained.best_dir), "--data", str(other)]) == 2
    assert "but the checkpoint was trained on 3 classes" in caplog.text


def test_head_mismatch_is_a_clear_error(trained, tmp_path):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(trained.best_dir, copy)
    text = (copy / "zhcls.yaml").read_text("utf-8").replace("head: bert", "head: bert_CNN")
    (copy / "zhcls.yaml").write_text(text, "utf-8")
    with pytest.raises(CheckpointError, match=r"does not fit the model settings of zhcls.yaml \(model.head 'bert_CNN'"):
        load_checkpoint(copy)
    with pytest.raises(CheckpointError, match="checkpoint has head 'bert'"):
        load_checkpoint(trained.best_dir, head="bert_RNN")


def test_not_a_checkpoint(tiny_model):
    with pytest.raises(CheckpointError, match="looks like an encoder"):
        load_checkpoint(tiny_model)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains_from_its_yaml(head, tiny_model, tiny_data, tmp_path):
    """Each research YAML trains its head: the saved best model fits the training split
    better than the same head freshly initialised (same seed), and names its head."""
    from transformers import set_seed

    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model

    cfg = load_config(REPO / "configs" / f"{head}.yaml", [
        "--model.pretrained", str(tiny_model), "--train.max_steps", "45", "--train.lr", "3e-3",
        "--train.batch_size", "8", "--train.eval_steps", "15", "--train.evaluate_test", "false",
        "--train.warmup_ratio", "0.1",
        "--train.tensorboard", "false", "--train.report", "false", "--model.rnn_hidden", "16",
        "--model.num_filters", "8", "--model.dpcnn_filters", "8", "--train.precision", "fp32"])
    result = train(cfg, tiny_data, tmp_path)
    classes = read_class_names(tiny_data / "class.txt")
    split = read_split(tiny_data / "train.txt", classes)
    tok = load_tokenizer(str(tiny_model))
    set_seed(cfg.train.seed)
    untrained = build_model(load_encoder(str(tiny_model)), cfg, len(classes))

    def train_loss(model) -> float:
        logits = forward_texts(model, tok, split.texts, cfg.data.max_length, 64).logits  # (N, C)
        logits = logits - logits.max(axis=1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(split.labels)), split.labels].mean())

    trained = load_checkpoint(result.best_dir)
    assert trained.config.model.head == head
    assert train_loss(trained.model) < train_loss(untrained) - 0.02, head


@pytest.mark.parametrize("objective", ["ce+scl", "kd", "kd+scl"])
def test_objectives_log_every_term(objective, tiny_model, tiny_kd_data, tmp_path):
    cfg = tiny_config(tiny_model, **{"objective__name": objective, "train__evaluate_test": "false"})
    result = train(cfg, tiny_kd_data, tmp_path)
    logs = json.loads((result.output_dir / "history.json").read_text("utf-8"))["log_history"]
    keys = set().union(*logs)
    expected = {"ce+scl": {"loss_ce", "loss_scl"}, "kd": {"loss_ce", "loss_kd_soft", "loss_kd"},
                "kd+scl": {"loss_ce", "loss_kd_soft", "loss_kd", "loss_scl"}}[objective]
    assert expected <= keys


def test_kd_without_teacher_column_is_an_error(tiny_model, tiny_data, tmp_path):
    cfg = tiny_config(tiny_model, objective__name="kd")
    with pytest.raises(DataError, match="needs teacher soft labels"):
        train(cfg, tiny_data, tmp_path)


def test_resume_continues_from_the_checkpoint_and_ends_like_an_uninterrupted_run(
        tiny_model, tiny_data, tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import load_file

    settings = {"train__max_steps": 6, "train__eval_steps": 2, "train__save_total_limit": 3,
                "train__precision": "fp32", "train__evaluate_test": "false"}
    whole = train(tiny_config(tiny_model, **settings), tiny_data, tmp_path / "whole")
    # The state of a run killed after saving checkpoint-4: later outputs are not there yet.
    cut = tmp_path / "cut"
    shutil.copytree(whole.output_dir, cut)
    for name in ("checkpoints/checkpoint-6", "best"):
        shutil.rmtree(cut / name)
    for name in ("metrics.json", "history.json"):
        (cut / name).unlink()
    monkeypatch.setenv("ZHCLS_RANK_DIGEST_DIR", str(tmp_path / "digest"))
    resumed = train(tiny_config(tiny_model, **settings, train__resume="true"), tiny_data, cut)
    record = json.loads((tmp_path / "digest" / "rank0.json").read_text("utf-8"))
    assert record["global_step"] == 6
    assert len(record["rows"]) == 2 * 8  # batches of steps 5 and 6 only (batch size 8)
    a = load_file(str(whole.best_dir / "model.safetensors"))
    b = load_file(str(resumed.best_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    for key in ("loss", "accuracy", "macro_f1"):  # (not the timings)
        assert resumed.dev_metrics[key] == whole.dev_metrics[key]
    steps = json.loads((cut / "metrics.json").read_text("utf-8"))["global_step"]
    assert steps == 6


def test_history_records_only_whole_epoch_boundaries():
    from types import SimpleNamespace

    from zhcls.training.trainer import HistoryCallback

    cb = HistoryCallback()
    for step, epoch in ((100, 1.0), (200, 2.0), (276, 2.76)):  # max_steps stops at 2.76
        cb.on_epoch_end(None, SimpleNamespace(epoch=epoch, global_step=step), None)
    assert cb.epoch_steps == [100, 200]


def test_tensorboard_writer_is_closed_after_train(tiny_model, tiny_data, tmp_path):
    """A sweep of many runs must not leave one writer thread and event file open per run."""
    import threading

    def writer_threads() -> int:
        return sum(type(t).__name__ == "_AsyncWriterThread" for t in threading.enumerate())

    before = writer_threads()
    cfg = tiny_config(tiny_model, train__tensorboard="true", train__evaluate_test="false")
    train(cfg, tiny_data, tmp_path)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert writer_threads() == before


@pytest.mark.parametrize("file, edit, blamed", [
    ("encoder_config.json", ("\"hidden_size\": 32", "\"hidden_size\": 64"),
     "does not fit encoder_config.json: encoder."),
    ("labels.json", ("]", ", \"extra\"]"), "classifier has 3 outputs but labels.json names 4"),
])
def test_an_edited_checkpoint_file_is_named_in_the_error(trained, tmp_path, file, edit, blamed):
    import shutil

    from zhcls.modeling.checkpoint import LABELS_DIGEST_KEY, weights_metadata

    copy = tmp_path / "ckpt"
    shutil.copytree(trained.best_dir, copy)
    text = (copy / file).read_text("utf-8")
    assert edit[0] in text, text[:200]
    (copy / file).write_text(text.replace(edit[0], edit[1], 1), "utf-8")
    if file == "labels.json":  # a checkpoint without the labels digest (hand-assembled, old)
        from safetensors.torch import load_file, save_file

        weights = load_file(copy / "model.safetensors")
        save_file(weights, copy / "model.safetensors", metadata={})
        assert LABELS_DIGEST_KEY in weights_metadata(["a"])
    with pytest.raises(CheckpointError, match=blamed):
        load_checkpoint(copy)


def test_a_missing_local_encoder_is_named_by_its_setting_before_data_is_read(tmp_path, caplog,
                                                                              tiny_data):
    missing = tmp_path / "no-such-tiny"
    with caplog.at_level(logging.INFO):
        code = main(["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data",
                     str(tiny_data), "--out", str(tmp_path / "run"),
                     "--model.pretrained", str(missing)])
    assert code == 2
    assert f"--model.pretrained (or model.pretrained in the config file): {missing}" in caplog.text
    assert "zhcls init-tiny" in caplog.text
    assert "rows have 2+" not in caplog.text  # refused before the training file was read
    assert not (tmp_path / "run").exists()
