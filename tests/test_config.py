"""Every shipped YAML loads; overrides coerce types; unknown keys and bad values name the key."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import REPO
from zhcls.config import (
    HEADS,
    Config,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    load_config,
)
from zhcls.errors import ConfigError

YAMLS = sorted((REPO / "configs").glob("*.yaml"))


def test_there_is_a_yaml_per_head_and_tiny():
    names = {p.stem for p in YAMLS}
    assert set(HEADS) | {"tiny"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_shipped_yaml_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    if path.stem in HEADS:
        assert cfg.model.head == path.stem
        assert cfg.train.lr == 5e-5 and cfg.train.batch_size == 128 and cfg.train.epochs == 3


def test_research_defaults():
    cfg = load_config(None)
    t = cfg.train
    assert (t.lr, t.batch_size, t.epochs, t.eval_steps, t.require_improvement) == (5e-5, 128, 3, 100, 1000)
    assert (t.warmup_ratio, t.weight_decay, t.metric_for_best) == (0.05, 0.01, "loss")
    assert cfg.data.max_length == 32 and cfg.objective.name == "ce"


def test_overrides_coerce_types():
    cfg = load_config(REPO / "configs" / "bert.yaml", [
        "--train.lr", "3e-5", "--train.max_steps=50", "--model.filter_sizes", "3,5",
        "--train.group_by_length", "false", "--objective.name", "ce+scl", "--data.cache_dir", "null",
    ])
    assert cfg.train.lr == 3e-5 and cfg.train.max_steps == 50
    assert cfg.model.filter_sizes == [3, 5] and cfg.train.group_by_length is False
    assert cfg.objective.name == "ce+scl" and cfg.data.cache_dir is None


@pytest.mark.parametrize("overrides,needle", [
    (["--train.lrr", "1"], "unknown key '--train.lrr'.*train keys are"),
    (["--trian.lr", "1"], "unknown key '--trian.lr'.*sections are"),
    (["--train.lr", "fast"], "--train.lr: expected float, got 'fast'"),
    (["--train.batch_size", "1.5"], "--train.batch_size: expected int, got 1.5"),
    (["--train.lr", "-1"], "train.lr: expected a positive number"),
    (["--model.head", "bert_XL"], "model.head: expected one of bert, bert_CNN"),
    (["--objective.alpha", "1.5"], r"objective.alpha: expected a value in \[0.0, 1.0\]"),
    (["--train.lr"], "--train.lr: missing value"),
    (["train.lr", "1"], "overrides look like --train.lr 3e-5"),
])
def test_bad_overrides_name_the_flag(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, overrides)


def test_bad_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  learning_rate: 1e-3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x.yaml: unknown key 'train.learning_rate'"):
        load_config(path)
    path.write_text("optimizer:\n  lr: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown section 'optimizer'"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(REPO / "configs" / "bert_CNN.yaml", ["--train.seed", "7"])
    cfg.save(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


FLOAT_KEYS = [f"{section}.{f.name}"
              for section, cls in (("model", ModelConfig), ("data", DataConfig),
                                   ("train", TrainConfig), ("objective", ObjectiveConfig))
              for f in dataclasses.fields(cls) if f.type in ("float", float)]


def test_there_are_float_keys_to_check():
    assert {"train.lr", "train.max_grad_norm", "objective.temperature",
            "data.teacher_negative_tolerance"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", ".inf", "-.inf"])
def test_every_float_key_rejects_non_finite_values(key, value):
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number"):
        load_config(None, [f"--{key}", value])


@pytest.mark.parametrize("overrides,needle", [
    (["--train.seed", "-1"], "train.seed: expected an integer >= 0, got -1"),
    (["--train.max_grad_norm", "-1"], "train.max_grad_norm: expected > 0.*or 0 \\(no clipping\\)"),
    (["--train.num_workers", "-2"], "train.num_workers: expected an integer >= 0"),
    (["--train.require_improvement", "-5"], "train.require_improvement: expected an integer >= 0"),
    (["--train.save_total_limit", "0"], "train.save_total_limit: expected an integer >= 1"),
    (["--train.report_max_points", "0"], "train.report_max_points: expected an integer >= 1"),
    (["--data.label_format", "index"], "data.label_format: expected one of auto, id, name"),
    (["--data.teacher_negative", "abs"], "data.teacher_negative: expected one of error, clip"),
    (["--data.teacher_negative_tolerance", "1"], "data.teacher_negative_tolerance: expected a"),
    (["--data.teacher_invalid", "normalize"], "data.teacher_invalid: expected one of skip, error"),
])
def test_out_of_range_values_name_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, overrides)


def test_max_grad_norm_zero_means_no_clipping():
    assert load_config(None, ["--train.max_grad_norm", "0"]).train.max_grad_norm == 0.0
