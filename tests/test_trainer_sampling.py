"""ZhclsTrainer's batching and logging: length-grouped training batches in a random order,
length-sorted evaluation batches, loss terms summed on the device and logged as means."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_config
from zhcls.data.samplers import ShuffledLengthGroupedSampler


def _lengths(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(5, 33, size=n)


def _groups(sampler: ShuffledLengthGroupedSampler) -> list[list[int]]:
    order = list(sampler)
    g = sampler.group_size
    return [order[i:i + g] for i in range(0, len(order), g)]


def test_every_index_once_per_epoch():
    lengths = _lengths(1003)
    sampler = ShuffledLengthGroupedSampler(lengths, 16, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(1003)) and len(sampler) == 1003


def test_groups_have_similar_lengths_unlike_random_batches():
    lengths = _lengths()
    sampler = ShuffledLengthGroupedSampler(lengths, 32, seed=0)
    grouped = np.mean([lengths[g].max() - lengths[g].min() for g in _groups(sampler)])
    rng = np.random.default_rng(1)
    random = np.mean([np.ptp(lengths[rng.choice(len(lengths), 32, replace=False)])
                      for _ in range(50)])
    assert grouped < 4 and random > 20  # lengths 5..32: random batches span nearly all of it


def test_group_order_is_random_not_sorted():
    lengths = _lengths()
    sampler = ShuffledLengthGroupedSampler(lengths, 32, seed=0)
    maxima = [int(lengths[g].max()) for g in _groups(sampler)]
    assert maxima[0] == lengths.max()  # the longest group first (early out-of-memory)
    steps = np.diff(maxima[1:])
    # transformers' LengthGroupedSampler walks each mega-batch from long to short; here the
    # groups are shuffled, so the next group is as often longer as shorter.
    assert 0.3 < np.mean(steps > 0) < 0.7


def test_shuffle_depends_on_seed_and_epoch_only():
    lengths = _lengths()
    a, b = ShuffledLengthGroupedSampler(lengths, 8, seed=5), ShuffledLengthGroupedSampler(lengths, 8, seed=5)
    assert list(a) == list(b)  # every DDP rank computes the same order
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # a new grouping and order each epoch
    a.set_epoch(0)
    assert list(a) == first
    assert list(ShuffledLengthGroupedSampler(lengths, 8, seed=6)) != first


def test_short_group_is_last():
    lengths = _lengths(100)
    groups = _groups(ShuffledLengthGroupedSampler(lengths, 16, seed=0))
    assert [len(g) for g in groups] == [16] * 6 + [4]


def test_bad_arguments():
    with pytest.raises(ValueError, match="group_size >= 1"):
        ShuffledLengthGroupedSampler([3, 4], 0)
    with pytest.raises(ValueError, match="non-empty"):
        ShuffledLengthGroupedSampler([], 4)


@pytest.fixture(scope="module")
def trainer(tiny_model, tiny_data, tmp_path_factory):
    """A ZhclsTrainer on the tiny dataset, built as ``train()`` builds it."""
    from zhcls.data.dataset import Collator
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model
    from zhcls.training.train import build_objective, prepare, training_arguments
    from zhcls.training.trainer import ZhclsTrainer, compute_metrics

    config = tiny_config(tiny_model, **{"train__batch_size": 4, "train__eval_batch_size": 5})
    tokenizer = load_tokenizer(config.model.pretrained)
    data = prepare(config, tiny_data, tokenizer)
    out = Path(tmp_path_factory.mktemp("trainer"))
    args = training_arguments(config, out, len(data.encoded["train"]))
    model = build_model(load_encoder(config.model.pretrained), config, len(data.class_names))
    return ZhclsTrainer(model=model, args=args, train_dataset=data.encoded["train"],
                        eval_dataset=data.encoded["dev"],
                        data_collator=Collator(tokenizer.pad_token_id),
                        compute_metrics=compute_metrics, objective=build_objective(config),
                        zh_config=config)


def test_train_loader_uses_the_grouped_sampler(trainer):
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, ShuffledLengthGroupedSampler) and sampler.group_size == 4
    lengths = np.asarray(trainer.train_dataset.lengths)
    spans = []
    for batch in trainer.get_train_dataloader():
        n = batch["attention_mask"].sum(1).numpy()  # (B,) true lengths
        assert batch["input_ids"].shape[1] == n.max()  # dynamic padding
        spans.append(np.ptp(n))
    assert len(spans) == len(lengths) // 4 and np.mean(spans) <= 2


def test_random_batches_when_grouping_is_off(trainer):
    trainer.zh_config.train.group_by_length = False
    try:
        assert not isinstance(trainer._get_train_sampler(), ShuffledLengthGroupedSampler)
    finally:
        trainer.zh_config.train.group_by_length = True


def test_eval_batches_are_sorted_longest_first(trainer):
    maxima = []
    seen = 0
    for batch in trainer.get_eval_dataloader():
        n = batch["attention_mask"].sum(1)  # (B,)
        assert torch.all(n[:-1] >= n[1:])
        maxima.append(int(n.max()))
        seen += len(n)
    assert seen == len(trainer.eval_dataset) and maxima == sorted(maxima, reverse=True)
    assert maxima[0] > maxima[-1]


def test_loss_terms_are_averaged_at_log_time(trainer):
    for ce, scl in ((1.0, 0.5), (3.0, 1.5)):
        trainer._add_terms({"ce": torch.tensor(ce), "scl": torch.tensor(scl),
                            "total": torch.tensor(ce + scl)})
    assert all(v.device.type == "cpu" and v.dim() == 0 for v in trainer._term_sums.values())
    trainer.log({"loss": 3.0})
    logged = trainer.state.log_history[-1]
    assert logged["loss_ce"] == pytest.approx(2.0) and logged["loss_scl"] == pytest.approx(1.0)
    assert "loss_total" not in logged and trainer._term_count == 0
    trainer.log({"eval_loss": 1.0})  # evaluation logs carry no train terms
    assert not any(k.startswith("loss_") for k in trainer.state.log_history[-1])


def test_tensorboard_from_rank0_only_and_after_training(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import TrainerControl, TrainerState

    from zhcls.training.trainer import TensorBoardLogCallback

    cb, control = TensorBoardLogCallback(tmp_path / "tb"), TrainerControl()
    replica = TrainerState(global_step=2, is_world_process_zero=False)
    cb.on_log(None, replica, control, logs={"loss": 9.0})
    assert not (tmp_path / "tb").exists()  # another DDP rank: no events file at all
    cb.on_log(None, TrainerState(global_step=2), control, logs={"loss": 1.5, "loss_ce": 1.5})
    cb.on_train_end(None, TrainerState(global_step=4), control)
    cb.on_log(None, TrainerState(global_step=4), control, logs={"eval_accuracy": 0.75})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(2, 1.5)]
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == [(4, 0.75)]
    assert len(list((tmp_path / "tb").iterdir())) == 1


# --- the schedule follows what the training loader really yields ---

@pytest.mark.parametrize("label_aware", [False, True])
@pytest.mark.parametrize("grad_accum", [1, 3])
def test_plan_matches_the_trainers_own_step_count(trainer, label_aware, grad_accum):
    from zhcls.training.train import plan_schedule

    t = trainer.zh_config.train
    old = (t.label_aware_batches, t.grad_accum, trainer.args.gradient_accumulation_steps)
    t.label_aware_batches, t.grad_accum = label_aware, grad_accum
    trainer.args.gradient_accumulation_steps = grad_accum
    try:
        loader = trainer.get_train_dataloader()
        labels = trainer.train_dataset.labels
        plan = plan_schedule(trainer.zh_config, len(labels), 1, labels)
        assert plan.batches_per_epoch == len(loader) == sum(1 for _ in loader)
        steps = trainer.set_initial_training_values(trainer.args, loader)[1]
        assert plan.steps_per_epoch == steps
        assert plan.global_batch == t.batch_size * grad_accum
    finally:
        t.label_aware_batches, t.grad_accum, trainer.args.gradient_accumulation_steps = old


@pytest.mark.parametrize("world", [1, 2, 8])
def test_warmup_is_the_configured_fraction_on_any_number_of_processes(world):
    from zhcls.config import load_config
    from zhcls.training.train import plan_schedule

    # configs/bert.yaml-like: 180,000 titles, batch 128 per process, 3 epochs, 5% warm-up.
    config = load_config(None, ["--train.batch_size", "128", "--train.epochs", "3",
                                "--train.warmup_ratio", "0.05"])
    plan = plan_schedule(config, 180_000, world)
    assert plan.global_batch == 128 * world
    assert plan.steps_per_epoch == math.ceil(180_000 / (128 * world))
    assert plan.total_steps == 3 * plan.steps_per_epoch
    assert plan.warmup_steps / plan.total_steps == pytest.approx(0.05, abs=1 / plan.total_steps)


def test_label_aware_schedule_on_more_ranks_than_pairs_is_a_config_error():
    from zhcls.config import load_config
    from zhcls.errors import ConfigError
    from zhcls.training.train import plan_schedule

    config = load_config(None, ["--train.label_aware_batches", "true", "--train.batch_size", "4"])
    with pytest.raises(ConfigError, match="train.label_aware_batches.*3 ranks"):
        plan_schedule(config, 4, 3, [0, 0, 1, 1])


def test_label_aware_loader_calls_set_epoch_on_its_sampler(trainer):
    trainer.zh_config.train.label_aware_batches = True
    try:
        loader = trainer.get_train_dataloader()
        first = [b["input_ids"].tolist() for b in loader]
        loader.set_epoch(1)  # what the Trainer calls at the start of every epoch
        assert loader.batch_sampler.epoch == 1
        assert [b["input_ids"].tolist() for b in loader] != first
    finally:
        trainer.zh_config.train.label_aware_batches = False
