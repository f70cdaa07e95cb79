"""Training options that are not the schedule: ``train.threads`` (and ``$ZHCLS_THREADS``) set
torch's CPU threads, and ``train.precision`` governs evaluation as well as training (fp32 means
no autocast when evaluating, on the dev split in the Trainer and on the test split after)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from zhcls.cli import main
from zhcls.config import load_config
from zhcls.devices import THREADS_ENV, apply_threads, resolve_threads
from zhcls.errors import ConfigError, ZhclsError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# --- threads ---

def test_threads_from_the_setting_then_the_environment(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert resolve_threads(None) is None  # torch's default
    assert resolve_threads(3) == 3 and resolve_threads(0) is None
    monkeypatch.setenv(THREADS_ENV, "2")
    assert resolve_threads(None) == 2
    assert resolve_threads(1) == 1  # the setting wins over the environment
    monkeypatch.setenv(THREADS_ENV, "0")
    assert resolve_threads(None) is None


def test_bad_thread_counts_name_where_they_came_from(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(ConfigError, match=f"{THREADS_ENV}.*'many'"):
        resolve_threads(None, "train.threads")
    with pytest.raises(ConfigError, match="train.threads.*-2"):
        resolve_threads(-2, "train.threads")
    with pytest.raises(ConfigError, match="train.threads"):
        load_config(None, ["--train.threads", "-1"])
    assert main(["train", "--train.threads", "-1"]) == 2  # a one-line error, not a traceback


def test_apply_sets_torch_threads(monkeypatch, restore_threads):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert apply_threads(2, "train.threads") == torch.get_num_threads() == 2
    monkeypatch.setenv(THREADS_ENV, "1")
    assert apply_threads(None, "train.threads") == torch.get_num_threads() == 1
    assert load_config(None, ["--train.threads", "3"]).train.threads == 3


def test_train_applies_train_threads_before_anything_else(monkeypatch, restore_threads):
    from zhcls.training.train import train

    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(1)
    config = load_config(None, ["--train.threads", "2"])
    with pytest.raises(ZhclsError, match="no dataset"):  # stops at once, threads already set
        train(config, None, None)
    assert torch.get_num_threads() == 2


# --- precision in evaluation ---

def test_inference_autocast_follows_the_precision_on_cuda():
    from zhcls.modeling.forward import autocast_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert autocast_dtype(cuda, "fp32") is None  # fp32 is fp32 at test time too
    assert autocast_dtype(cuda, "bf16") is torch.bfloat16
    assert autocast_dtype(cuda, "fp16") is torch.float16
    assert autocast_dtype(cpu, "bf16") is None and autocast_dtype(cpu) is None


@pytest.fixture(scope="module")
def eval_trainer(tiny_model, tiny_data, tmp_path_factory):
    from zhcls.data.dataset import Collator
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model
    from zhcls.training.train import build_objective, prepare, training_arguments
    from zhcls.training.trainer import ZhclsTrainer, compute_metrics

    config = tiny_config(tiny_model, train__precision="fp32")
    tokenizer = load_tokenizer(config.model.pretrained)
    data = prepare(config, tiny_data, tokenizer)
    args = training_arguments(config, Path(tmp_path_factory.mktemp("eval")),
                              len(data.encoded["train"]))
    model = build_model(load_encoder(config.model.pretrained), config, len(data.class_names))
    return ZhclsTrainer(model=model, args=args, train_dataset=data.encoded["train"],
                        eval_dataset=data.encoded["dev"],
                        data_collator=Collator(tokenizer.pad_token_id),
                        compute_metrics=compute_metrics, objective=build_objective(config),
                        zh_config=config)


def _eval_forward_autocast(trainer) -> tuple[bool, torch.dtype]:
    """Autocast state seen inside the model's forward during one evaluation batch, run
    inside an enclosing bf16 autocast (as accelerate's mixed precision would be)."""
    seen = []
    hook = trainer.model.register_forward_pre_hook(
        lambda *_: seen.append((torch.is_autocast_enabled("cpu"),
                                torch.get_autocast_dtype("cpu"))))
    inputs = next(iter(trainer.get_eval_dataloader()))
    trainer.model.eval()
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            trainer.compute_loss(trainer.model, inputs)
    finally:
        hook.remove()
    return seen[0]


def test_fp32_evaluation_runs_without_autocast(eval_trainer):
    assert eval_trainer.precision == "fp32"
    enabled, _ = _eval_forward_autocast(eval_trainer)
    assert not enabled


def test_bf16_evaluation_runs_under_bf16_autocast(eval_trainer):
    eval_trainer.args.bf16 = True
    try:
        assert eval_trainer.precision == "bf16"
        assert _eval_forward_autocast(eval_trainer) == (True, torch.bfloat16)
    finally:
        eval_trainer.args.bf16 = False


def test_dev_and_test_splits_are_evaluated_at_the_training_precision(tiny_model, tiny_data, tmp_path,
                                                          monkeypatch):
    import zhcls.evaluation.evaluate as evaluate
    from zhcls.training.train import train

    real, seen = evaluate.evaluate_model, []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("precision"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_model", spy)
    config = tiny_config(tiny_model, train__precision="fp32", train__max_steps=2,
                         train__eval_steps=2)
    train(config, tiny_data, tmp_path / "run")
    assert seen == ["fp32", "fp32"]  # dev and test of the best checkpoint


@pytest.mark.parametrize("tty", [False, True])
def test_progress_bars_only_on_a_terminal_and_the_train_loss_logged_without(
        monkeypatch, caplog, tty):
    """A log file (stderr not a terminal) gets log lines, not thousands of carriage-return
    progress-bar redraws; a terminal keeps its bar. Fine-tuning and MLM pretraining share the
    callback."""
    import logging
    import sys
    from types import SimpleNamespace

    from zhcls.training.trainer import ZhclsProgressCallback

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    callback = ZhclsProgressCallback()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    args = SimpleNamespace(bf16=False, fp16=False)
    callback.on_train_begin(args, state, None)
    assert (callback.training_bar is not None) is tty
    state.global_step = 2
    callback.on_step_end(args, state, None)
    with caplog.at_level(logging.INFO, logger="zhcls.training.trainer"):
        callback.on_log(args, state, None, logs={
            "loss": 0.25, "loss_kd": 0.2, "loss_scl": 0.05, "learning_rate": 1e-3,
            "learning_rate_ngram": 0.03})
    line = ("step 2/4: train loss 0.2500 (kd 0.2000, scl 0.0500; mean over the last "
            "logging_steps), encoder lr 0.001, n-gram table lr 0.03")
    assert (line in caplog.text) is (not tty), caplog.text
    callback.on_prediction_step(args, state, None, eval_dataloader=[1, 2])
    assert (callback.prediction_bar is not None) is tty
    callback.on_evaluate(args, state, None)
    callback.on_train_end(args, state, None)
    assert callback.training_bar is None
