"""Typed configuration: one dataclass per concern, loaded from YAML with dotted overrides.

``load_config("configs/bert.yaml", ["--train.lr", "3e-5"])`` returns a :class:`Config`.
Unknown keys and values of the wrong type or out of range raise :class:`ConfigError`
naming the key as the user would type it (``train.lr``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zhcls.errors import ConfigError

HEADS = ("bert", "bert_CNN", "bert_RNN", "bert_RCNN", "bert_DPCNN", "bert_GRU_att", "ERNIE")
OBJECTIVES = ("ce", "ce+scl", "kd", "kd+scl")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class ModelConfig:
    """Encoder checkpoint and classification head."""

    head: str = "bert"
    pretrained: str = "bert-base-chinese"
    dropout: float = 0.1
    num_filters: int = 256
    filter_sizes: list[int] = field(default_factory=lambda: [2, 3, 4])
    rnn_hidden: int = 256
    rnn_layers: int = 2
    attention_dim: int = 128
    dpcnn_filters: int = 250

    def validate(self) -> None:
        _choice("model.head", self.head, HEADS)
        _range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        for key in ("num_filters", "rnn_hidden", "rnn_layers", "attention_dim", "dpcnn_filters"):
            _positive(f"model.{key}", getattr(self, key))
        if not self.filter_sizes or any(k < 1 for k in self.filter_sizes):
            raise ConfigError(f"model.filter_sizes: expected positive kernel sizes, got {self.filter_sizes}")
        if not self.pretrained:
            raise ConfigError("model.pretrained: expected a hub name or a local directory, got ''")


@dataclass
class DataConfig:
    """Where the data is and how it is read and tokenised."""

    dir: str | None = None
    max_length: int = 32
    encoding: str = "utf-8"
    on_bad_line: str = "error"
    teacher_policy: str = "error"
    teacher_missing: str = "error"
    cache_dir: str | None = None

    def validate(self) -> None:
        _positive("data.max_length", self.max_length)
        _choice("data.on_bad_line", self.on_bad_line, ("error", "skip"))
        _choice("data.teacher_policy", self.teacher_policy, ("error", "normalize", "skip"))
        _choice("data.teacher_missing", self.teacher_missing, ("error", "hard_label_only"))


@dataclass
class TrainConfig:
    """Optimisation, evaluation schedule, precision and logging."""

    output_dir: str = "runs/zhcls"
    lr: float = 5e-5
    batch_size: int = 128
    eval_batch_size: int = 256
    epochs: float = 3.0
    max_steps: int = -1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    eval_steps: int = 100
    logging_steps: int = 10
    metric_for_best: str = "loss"
    require_improvement: int = 1000
    seed: int = 1
    optimizer: str = "adamw"
    precision: str = "auto"
    group_by_length: bool = True
    label_aware_batches: bool = False
    num_workers: int = 0
    threads: int | None = None
    compile: bool = False
    resume: bool = False
    save_total_limit: int = 2
    tensorboard: bool = True
    evaluate_test: bool = True
    report: bool = True
    report_max_points: int = 1000
    baseline: bool = False

    def validate(self) -> None:
        for key in ("lr", "batch_size", "eval_batch_size", "epochs", "grad_accum", "eval_steps",
                    "logging_steps"):
            _positive(f"train.{key}", getattr(self, key))
        _range("train.warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        _range("train.weight_decay", self.weight_decay, 0.0, 1.0)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"train.max_steps: expected -1 (use epochs) or > 0, got {self.max_steps}")
        if self.require_improvement < 0 or self.num_workers < 0 or self.save_total_limit < 1:
            raise ConfigError("train.require_improvement/num_workers must be >= 0 and "
                              "train.save_total_limit >= 1")
        if self.threads is not None and self.threads < 0:
            raise ConfigError(f"train.threads: expected a CPU thread count >= 0 (0 or null = "
                              f"$ZHCLS_THREADS or torch's default), got {self.threads}")
        _choice("train.precision", self.precision, PRECISIONS)
        _choice("train.optimizer", self.optimizer, ("adamw", "bertadam"))
        _choice("train.metric_for_best", self.metric_for_best, ("loss", "accuracy", "macro_f1"))


@dataclass
class ObjectiveConfig:
    """Which losses train the student, and their weights (see ``zhcls.losses``)."""

    name: str = "ce"
    lam: float = 1.0
    alpha: float = 0.5
    beta: float = 0.5
    temperature: float = 2.0
    scl_temperature: float = 0.07
    positives: str = "all"
    teacher_input: str = "probs"
    representation: str = "head"
    projection_dim: int = 128
    scl_global_batch: bool = False

    def validate(self) -> None:
        _choice("objective.name", self.name, OBJECTIVES)
        for key in ("alpha", "beta"):
            _range(f"objective.{key}", getattr(self, key), 0.0, 1.0)
        _positive("objective.temperature", self.temperature)
        _positive("objective.scl_temperature", self.scl_temperature)
        if self.lam < 0:
            raise ConfigError(f"objective.lam: expected >= 0, got {self.lam}")
        _choice("objective.positives", self.positives, ("all", "only"))
        _choice("objective.teacher_input", self.teacher_input, ("probs", "logits", "probs_as_logits"))
        _choice("objective.representation", self.representation, ("head", "linear", "mlp"))
        _positive("objective.projection_dim", self.projection_dim)

    @property
    def uses_teacher(self) -> bool:
        return self.name.startswith("kd")

    @property
    def uses_scl(self) -> bool:
        return self.name.endswith("scl")


@dataclass
class Config:
    """The whole run: ``model``, ``data``, ``train`` and ``objective`` sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)

    def validate(self) -> Config:
        for section in (self.model, self.data, self.train, self.objective):
            section.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False),
                              encoding="utf-8")


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def config_from_dict(raw: dict[str, Any] | None, source: str = "<dict>") -> Config:
    """Build a validated Config from nested dicts; unknown sections or keys are errors."""
    cfg = Config()
    for section, values in (raw or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; expected one of {list(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, source)
    return cfg.validate()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML file (or the defaults) and apply ``--section.key value`` overrides."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path}; see configs/ for the shipped ones")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    cfg = config_from_dict(raw, source)
    apply_overrides(cfg, overrides or [])
    return cfg.validate()


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``["--train.lr", "3e-5", "--model.head=bert_CNN"]`` style overrides in place."""
    items = list(overrides)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise ConfigError(f"unexpected argument {flag!r}; overrides look like --train.lr 3e-5")
        key, _, value = flag[2:].partition("=")
        if not _:
            if not items:
                raise ConfigError(f"--{key}: missing value")
            value = items.pop(0)
        set_value(cfg, key, yaml.safe_load(value) if value != "" else "", f"--{key}")
    return cfg


def set_value(cfg: Config, dotted: str, value: Any, source: str = "") -> None:
    """Set ``section.key`` on cfg after checking the key exists and coercing the type."""
    section_name, _, key = dotted.partition(".")
    flag = source.startswith("--")
    where = f"{source}: " if source and not flag else ""
    shown = source if flag else dotted
    if section_name not in SECTIONS or not key:
        raise ConfigError(f"{where}unknown key {shown!r}; sections are {list(SECTIONS)}")
    section = getattr(cfg, section_name)
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        known = ", ".join(hints)
        raise ConfigError(f"{where}unknown key {shown!r}; {section_name} keys are: {known}")
    setattr(section, key, _coerce(shown, value, hints[key], where))


def _coerce(name: str, value: Any, hint: Any, where: str) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        items = value if isinstance(value, list) else str(value).split(",")
        return [_coerce(name, v, typing.get_args(hint)[0], where) for v in items]
    if hint is bool and isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}; got {value!r}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: expected a positive number, got {value}")


def _range(name: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name}: expected a value in [{low}, {high}{bracket}, got {value}")
