"""train.ema_decay (zhcls.training.ema): the weight average against hand-computed values, and a
run whose dev evaluations, best/ weights and resume are all of the average."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, tiny_config
from zhcls.cli import main
from zhcls.config import load_config
from zhcls.errors import CheckpointError, ConfigError
from zhcls.training.ema import EMA_FILE, WeightAverage
from zhcls.training.train import train


def linear(*weights: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(len(weights), 1, bias=False)
    set_weights(layer, *weights)
    return layer


def set_weights(layer: torch.nn.Linear, *weights: float) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights]))


def test_average_matches_hand_computed_values():
    model = linear(1.0, 2.0)
    avg = WeightAverage(model, decay=0.75)
    for step, weights in enumerate([(3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0)]):
        set_weights(model, *weights)
        avg.update(model)
        if step == 0:  # d_0 = 0: a copy, nothing of the initial [1, 2] is kept
            assert torch.equal(avg.shadow["weight"], torch.tensor([[3.0, 4.0]]))
    # d_1 = 1/2, d_2 = 2/3: the running mean of [3, 4], [5, 6], [7, 8] is [5, 6]; then
    # d_3 = min(0.75, 3/4) = 0.75: 0.75·[5, 6] + 0.25·[9, 10] = [6, 7]
    assert torch.allclose(avg.shadow["weight"], torch.tensor([[6.0, 7.0]]))
    assert avg.updates == 4
    assert avg.current_decay() == 0.75  # the cap from here on
    avg.updates = 1000
    assert avg.current_decay() == 0.75


def test_frozen_parameters_are_not_averaged():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    assert sorted(WeightAverage(model, 0.9).shadow) == ["0.bias", "1.bias", "1.weight"]


def test_swapped_in_holds_the_average_and_restores_the_weights_even_on_error():
    model = linear(1.0, 2.0)
    avg = WeightAverage(model, decay=0.9)
    set_weights(model, 3.0, 4.0)
    avg.update(model)
    set_weights(model, 5.0, 6.0)
    avg.update(model)  # the mean of [3, 4] and [5, 6]
    set_weights(model, 3.0, 4.0)
    with avg.swapped_in(model):
        assert torch.allclose(model.weight, torch.tensor([[4.0, 5.0]]))
    assert torch.equal(model.weight, torch.tensor([[3.0, 4.0]]))
    with pytest.raises(RuntimeError, match="boom"), avg.swapped_in(model):
        raise RuntimeError("boom")
    assert torch.equal(model.weight, torch.tensor([[3.0, 4.0]]))


def test_save_and_load_keep_the_average_and_its_step_count(tmp_path):
    model = linear(1.0, 2.0)
    avg = WeightAverage(model, decay=0.9)
    set_weights(model, 3.0, 4.0)
    avg.update(model)
    avg.save(tmp_path)
    again = WeightAverage(linear(0.0, 0.0), decay=0.9)
    again.load(tmp_path)
    assert torch.equal(again.shadow["weight"], torch.tensor([[3.0, 4.0]]))
    assert again.updates == 1


def test_load_refuses_a_missing_file_or_another_model(tmp_path):
    avg = WeightAverage(linear(1.0, 2.0), decay=0.9)
    with pytest.raises(CheckpointError, match=f"expected {EMA_FILE}.*train.ema_decay 0.9"):
        avg.load(tmp_path)
    WeightAverage(torch.nn.Linear(2, 1), decay=0.9).save(tmp_path)  # weight and bias
    with pytest.raises(CheckpointError, match="holds 2 tensors, the model 1 trainable"):
        avg.load(tmp_path)


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1"])
def test_a_decay_outside_zero_to_one_is_a_config_error_naming_the_flag(value):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        load_config(None, ["--train.ema_decay", value])


# ----------------------------------------------------------------------------- a run
RUN = {"train__max_steps": 6, "train__eval_steps": 2, "train__save_total_limit": 3,
       "train__precision": "fp32", "train__evaluate_test": "false", "train__ema_decay": 0.6}


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, tiny_model, tiny_data):
    out = tmp_path_factory.mktemp("ema") / "run"
    train(tiny_config(tiny_model, **RUN), tiny_data, out)
    return out


def test_best_holds_the_best_checkpoints_average_and_its_dev_numbers(ema_run):
    metrics = json.loads((ema_run / "metrics.json").read_text("utf-8"))
    best_ckpt = ema_run / "checkpoints" / f"checkpoint-{metrics['best_step']}"
    average = load_file(str(best_ckpt / EMA_FILE))
    raw = load_file(str(best_ckpt / "model.safetensors"))
    best = load_file(str(ema_run / "best" / "model.safetensors"))
    assert average.keys() <= best.keys()
    assert all(torch.equal(best[k], average[k]) for k in average)
    assert any(not torch.equal(raw[k], average[k]) for k in average)  # not the raw weights
    state = json.loads((best_ckpt / "trainer_state.json").read_text("utf-8"))
    logged = next(e for e in state["log_history"]
                  if e.get("step") == metrics["best_step"] and "eval_loss" in e)
    # the dev numbers that chose the checkpoint are the saved weights' numbers
    assert metrics["dev"]["loss"] == pytest.approx(logged["eval_loss"], abs=6e-5)  # 4 decimals
    assert metrics["dev"]["accuracy"] == pytest.approx(logged["eval_accuracy"], abs=6e-5)


def test_the_run_says_its_best_weights_are_the_average(ema_run):
    metrics = json.loads((ema_run / "metrics.json").read_text("utf-8"))
    assert metrics["best_weights"] == str(ema_run / "checkpoints"
                                          / f"checkpoint-{metrics['best_step']}" / EMA_FILE)
    card = (ema_run / "best" / "README.md").read_text("utf-8")
    assert "moving average of the weights at the best step (`train.ema_decay 0.6`)" in card


def test_train_prints_that_its_numbers_are_of_the_average(tiny_model, tiny_data, tmp_path,
                                                          capsys):
    args = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(tiny_data),
            "--out", str(tmp_path / "run"), "--model.pretrained", str(tiny_model),
            "--model.head", "bert", "--train.batch_size", "8", "--train.max_steps", "2",
            "--train.eval_steps", "2", "--train.ema_decay", "0.5", "--train.tensorboard",
            "false", "--train.report", "false"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("best checkpoint (step 2, weight average (train.ema_decay 0.5))")
    assert any(ln.startswith("dev accuracy") and "(best checkpoint, step 2, weight average "
               "(train.ema_decay 0.5); details in" in ln for ln in lines)


def test_a_resumed_run_continues_the_average(ema_run, tiny_model, tiny_data, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(ema_run, out)
    for name in ("best", "metrics.json", "history.json"):
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    shutil.rmtree(out / "checkpoints" / "checkpoint-6")
    train(tiny_config(tiny_model, **RUN, train__resume="true"), tiny_data, out)
    resumed = load_file(str(out / "checkpoints" / "checkpoint-6" / EMA_FILE))
    reference = load_file(str(ema_run / "checkpoints" / "checkpoint-6" / EMA_FILE))
    assert all(torch.allclose(resumed[k], reference[k], atol=1e-6) for k in reference)


def test_the_run_report_says_its_numbers_are_of_the_average(ema_run):
    from zhcls.report.run_report import build_report

    html = build_report([ema_run]).read_text("utf-8")
    assert "moving average of the weights" in html
    assert "train.ema_decay 0.6" in html and EMA_FILE in html
