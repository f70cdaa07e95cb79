"""Typed configuration: one dataclass per concern, loaded from YAML with dotted overrides.

``load_config("configs/bert.yaml", ["--train.lr", "3e-5"])`` returns a :class:`Config`.
Unknown keys and values of the wrong type or out of range raise :class:`ConfigError`
naming the key as the user would type it (``train.lr``).

Every key is declared once, with :func:`opt`: its type (the annotation), default, one-line
doc and simple checks (choices, ranges). ``zhcls train --help``, ``--print-config``, the YAML
loader and the validation all read that declaration (:func:`config_keys`), so adding a key
is one line in its section. Rules that involve several keys live in the section's
``validate()``. The machinery (loader, overrides, coercion, checks) is :mod:`zhcls.configio`,
re-exported here with :class:`Config` as the default config class.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zhcls.configio as configio
from zhcls.configio import (  # noqa: F401  (re-exported: zhcls.config is their public home)
    ConfigKey,
    Sections,
    _at_least,
    _check_finite,
    _choice,
    _close_keys,
    _coerce,
    _did_you_mean,
    _from_dict,
    _positive,
    _range,
    apply_overrides,
    opt,
    parse_value,
    set_value,
    strip_optional,
    yaml_error_message,
)
from zhcls.errors import ConfigError

HEADS = ("bert", "bert_CNN", "bert_RNN", "bert_RCNN", "bert_DPCNN", "bert_GRU_att", "ERNIE")
OBJECTIVES = ("ce", "ce+scl", "kd", "kd+scl", "bce", "bce+scl")
TASKS = ("single_label", "multi_label")
LONG_TEXT = ("truncate", "head_tail", "chunks")
CHUNK_POOLING = ("mean", "max", "attention")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The loss terms an objective weighs: the supervised term (cross-entropy; binary cross-entropy
# per class for multi-label), soft-target KD, supervised contrastive.
TERMS = ("ce", "kd", "scl")


@dataclass
class ModelConfig:
    """Encoder checkpoint and classification head."""

    head: str = opt("bert", "classification head on the encoder", choices=HEADS)
    pretrained: str = opt("bert-base-chinese", "encoder: hub name, HF directory or research layout")
    dropout: float = opt(0.1, "dropout before the classifier (and between RNN layers)", low=0.0, high=1.0, high_open=True)
    num_filters: int = opt(256, "bert_CNN: convolution filters per kernel size", positive=True)
    filter_sizes: list[int] = opt([2, 3, 4], "bert_CNN: convolution kernel sizes (tokens)")
    rnn_hidden: int = opt(256, "bert_RNN/RCNN/GRU_att: hidden size per direction", positive=True)
    rnn_layers: int = opt(2, "bert_RNN/RCNN/GRU_att: stacked recurrent layers", positive=True)
    attention_dim: int = opt(128, "bert_GRU_att: attention projection size", positive=True)
    dpcnn_filters: int = opt(250, "bert_DPCNN: filters per convolution", positive=True)
    ngram_buckets: int = opt(0, "rows of a hashed token n-gram bag beside the head, fastText-"
                             "style (0: none; README section No internet)", low=0)
    ngram_dim: int = opt(64, "ngram_buckets > 0: width of the n-gram bag's embedding",
                         positive=True)
    ngram_orders: list[int] = opt([1, 2, 3], "ngram_buckets > 0: n-gram lengths hashed (1..4)")
    ngram_lr: float = opt(1e-2, "ngram_buckets > 0: peak learning rate of the n-gram table "
                          "(its own AdamW group, no weight decay)", positive=True)

    def validate(self) -> None:
        if not self.filter_sizes or any(k < 1 for k in self.filter_sizes):
            raise ConfigError(f"model.filter_sizes: expected positive kernel sizes, got {self.filter_sizes}")
        if not self.pretrained:
            raise ConfigError("model.pretrained: expected a hub name or a local directory, got ''")
        if not self.ngram_orders or any(not 1 <= n <= 4 for n in self.ngram_orders) \
                or len(set(self.ngram_orders)) != len(self.ngram_orders):
            raise ConfigError(f"model.ngram_orders: expected distinct n-gram lengths in 1..4, "
                              f"got {self.ngram_orders}")


@dataclass
class DataConfig:
    """Where the data is and how it is read and tokenised."""

    dir: str | None = opt(None, "dataset directory (train/dev/test + class.txt); --data sets it")
    max_length: int = opt(32, "tokens per text after truncation, [CLS]/[SEP] included",
                          positive=True)
    encoding: str = opt("utf-8", "text encoding of the data files")
    on_bad_line: str = opt("error", "a malformed line stops the run or is counted and skipped",
                           choices=("error", "skip"))
    label_format: str = opt("auto", "labels are class ids, class names, or auto (refuses a "
                            "label readable both ways)", choices=("auto", "id", "name"))
    teacher_policy: str = opt("error", "teacher rows that are not distributions: stop, "
                              "renormalise or drop", choices=("error", "normalize", "skip"))
    teacher_negative: str = opt("error", "teacher entries slightly below 0: stop, or clip to 0 "
                                "(counted)", choices=("error", "clip"))
    teacher_negative_tolerance: float = opt(0.01, "teacher_negative clip: most negative value "
                                            "clipped", low=0.0, high=1.0, high_open=True)
    teacher_invalid: str = opt("skip", "teacher rows that are no probability vector in any "
                               "reading (entry > 1, sum not ~100): drop or stop",
                               choices=("skip", "error"))
    teacher_missing: str = opt("error", "KD training lines without a teacher: stop or train "
                               "on the hard label only", choices=("error", "hard_label_only"))
    cache_dir: str | None = opt(None, "tokenisation cache (null: $ZHCLS_CACHE or ~/.cache/zhcls/tokenized)")
    task: str = opt("auto", "single_label (one class a text), multi_label (a set of classes a "
                    "text, one sigmoid each), or auto (detected from train, logged)",
                    choices=("auto", *TASKS))
    label_separator: str = opt(",", "multi_label: separator of the class names / ids in a "
                               "text file's label column (JSONL takes a `labels` list)")
    long_text: str = opt("truncate", "texts over max_length: keep the first tokens, the first "
                         "and last (head_tail), or overlapping windows pooled per text (chunks)",
                         choices=LONG_TEXT)
    head_tokens: int | None = opt(None, "head_tail: tokens kept from the start (null: a quarter "
                                  "of max_length - 2, as Sun et al. 2019's 128 of 510)", low=0)
    chunk_stride: int | None = opt(None, "chunks: tokens between window starts (null: half a "
                                   "window, max_length - 2 tokens of text)", positive=True)
    chunk_pooling: str = opt("mean", "chunks: pool the window representations of a text by "
                             "mean, max or learned attention", choices=CHUNK_POOLING)
    max_chunks: int = opt(8, "chunks: most windows per text in training (spread over the text, "
                          "first and last kept); evaluation and prediction use every window",
                          positive=True)

    def validate(self) -> None:
        if not self.label_separator or any(c in self.label_separator for c in "\t\r\n"):
            raise ConfigError(f"data.label_separator: expected a non-empty separator other "
                              f"than tab and newline, got {self.label_separator!r}")
        content = self.max_length - 2
        if self.head_tokens is not None and self.head_tokens > content:
            raise ConfigError(f"data.head_tokens: expected at most max_length - 2 = {content} "
                              f"(the text tokens of a window), got {self.head_tokens}")
        if self.chunk_stride is not None and self.chunk_stride > content:
            raise ConfigError(f"data.chunk_stride: expected at most max_length - 2 = {content} "
                              f"(windows would skip text), got {self.chunk_stride}")

    def unused_long_text_options(self) -> list[str]:
        """The long-text options set away from their defaults that ``long_text`` ignores, as
        ``"data.KEY VALUE (for MODE)"`` (e.g. chunk_pooling under truncate)."""
        applies = {"head_tokens": "head_tail", "chunk_stride": "chunks",
                   "chunk_pooling": "chunks", "max_chunks": "chunks"}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return [f"data.{key} {getattr(self, key)} (for {mode})" for key, mode in applies.items()
                if mode != self.long_text and getattr(self, key) != defaults[key]]

    def resolved_head_tokens(self) -> int:
        """head_tail: the text tokens kept from the start of a long text."""
        content = self.max_length - 2
        return content // 4 if self.head_tokens is None else self.head_tokens

    def resolved_stride(self) -> int:
        """chunks: text tokens between the starts of consecutive windows."""
        content = self.max_length - 2
        return max(1, content // 2) if self.chunk_stride is None else self.chunk_stride


@dataclass
class TrainConfig:
    """Optimisation, evaluation schedule, precision and logging."""

    output_dir: str = opt("runs/zhcls", "run directory (best/, checkpoints, logs); --out sets it")
    lr: float = opt(5e-5, "peak AdamW learning rate (linear warm-up, then linear decay)",
                    positive=True)
    batch_size: int = opt(128, "training examples per step per process", positive=True)
    eval_batch_size: int = opt(256, "examples per evaluation batch", positive=True)
    epochs: float = opt(3.0, "training epochs (ignored when max_steps > 0)", positive=True)
    max_steps: int = opt(-1, "stop after this many optimizer steps; -1: use epochs")
    warmup_ratio: float = opt(0.05, "fraction of all steps spent warming up", low=0.0, high=1.0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and LayerNorm)",
                              low=0.0, high=1.0)
    grad_accum: int = opt(1, "gradient accumulation steps per optimizer step", positive=True)
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    eval_steps: int = opt(100, "evaluate on dev (and checkpoint) every N steps", positive=True)
    logging_steps: int = opt(10, "log the loss terms every N steps", positive=True)
    metric_for_best: str = opt("loss", "dev metric that picks the best checkpoint (multi_label: "
                               "accuracy is subset accuracy; micro_f1 multi_label only)",
                               choices=("loss", "accuracy", "macro_f1", "micro_f1"))
    require_improvement: int = opt(1000, "early stop after N steps without a better dev metric",
                                   low=0)
    seed: int = opt(1, "seed of initialisation, shuffling and dropout")
    optimizer: str = opt("adamw", "adamw (bias-corrected, global clipping) | bertadam (the "
                         "research repos' optimiser; see README)", choices=("adamw", "bertadam"))
    precision: str = opt("auto", "auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16",
                         choices=PRECISIONS)
    group_by_length: bool = opt(True, "batch texts of similar length (less padding)")
    label_aware_batches: bool = opt(False, "every class in a batch has a positive (for SCL)")
    num_workers: int = opt(0, "DataLoader worker processes", low=0)
    threads: int | None = opt(None, "CPU threads for torch (null/0: $ZHCLS_THREADS, else "
                              "torch's default); 1 on busy shared machines", low=0)
    compile: bool = opt(False, "torch.compile the model")
    resume: bool = opt(False, "continue the run in output_dir from its newest complete checkpoint")
    overwrite: bool = opt(False, "remove the earlier run's outputs in output_dir first (--overwrite)")
    ema_decay: float = opt(0.0, "evaluate and keep an exponential moving average of the "
                           "weights, decay d (about 1/(1-d) steps; e.g. 0.99); 0: off",
                           low=0.0, high=1.0, high_open=True)
    save_total_limit: int = opt(2, "Trainer checkpoints kept on disk", low=1)
    tensorboard: bool = opt(True, "write TensorBoard logs to output_dir/tensorboard")
    evaluate_test: bool = opt(True, "evaluate the best checkpoint on the test split")
    report: bool = opt(True, "write the run report to output_dir/report after training")
    report_max_points: int = opt(1000, "report: most points per representation map",
                                 positive=True)
    baseline: bool = opt(False, "also fit the TF-IDF + linear baseline (zhcls baseline) into "
                         "output_dir/baseline; the report puts it beside the model")

    def validate(self) -> None:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(f"train.max_steps: expected -1 (use epochs) or > 0, got {self.max_steps}")
        if self.resume and self.overwrite:
            raise ConfigError("train.resume and train.overwrite (--overwrite) are both true: "
                              "resume continues the run in the output directory, overwrite "
                              "deletes it; choose one")
        for key in ("require_improvement", "num_workers", "seed"):
            _at_least(f"train.{key}", getattr(self, key), 0)
        _at_least("train.save_total_limit", self.save_total_limit, 1)
        _at_least("train.report_max_points", self.report_max_points, 1)
        if self.max_grad_norm < 0:
            raise ConfigError(f"train.max_grad_norm: expected > 0 (clip gradients to this norm) "
                              f"or 0 (no clipping), got {self.max_grad_norm}")


# Named objectives as weights over TERMS, with the research formulas (see zhcls.losses):
#   kd      L_KD = β·L_CE + (1−β)·L_soft
#   kd+scl  α·L_KD + (1−α)·L_SCL = αβ·L_CE + α(1−β)·L_soft + (1−α)·L_SCL
#   ce+scl  L_CE + λ·L_SCL
PRESETS: dict[str, typing.Callable[[float, float, float], dict[str, float]]] = {
    "ce": lambda lam, alpha, beta: {"ce": 1.0},
    "ce+scl": lambda lam, alpha, beta: {"ce": 1.0, "scl": lam},
    "kd": lambda lam, alpha, beta: {"ce": beta, "kd": 1.0 - beta},
    "kd+scl": lambda lam, alpha, beta: {"ce": alpha * beta, "kd": alpha * (1.0 - beta),
                                        "scl": 1.0 - alpha},
    # multi_label names of ce / ce+scl: the supervised term is then per-class BCE
    "bce": lambda lam, alpha, beta: {"ce": 1.0},
    "bce+scl": lambda lam, alpha, beta: {"ce": 1.0, "scl": lam},
}
#: Presets that name the multi-label supervised term; they need data.task multi_label.
MULTI_LABEL_PRESETS = ("bce", "bce+scl")
# Keys that only some objectives read: which presets read the weight, which term the rest.
_PRESET_WEIGHTS = {"alpha": ("kd+scl",), "beta": ("kd", "kd+scl"),
                   "lam": ("ce+scl", "bce+scl")}
_TERM_KEYS = {"temperature": "kd", "teacher_input": "kd", "scl_temperature": "scl",
              "positives": "scl", "pos_weight": "ce", "pos_weight_auto": "ce"}


@dataclass
class ObjectiveConfig:
    """Which losses train the student, and their weights (see zhcls.losses)."""

    name: str | None = opt(None, "named weights (lam, alpha, beta below); null: use terms (ce if none)",
                           choices=(*OBJECTIVES, None))
    terms: dict[str, float] | None = opt(None, "weights over ce, kd, scl instead of a "
                                         "name, e.g. {ce: 1.0, kd: 0.5, scl: 0.3}")
    lam: float = opt(1.0, "ce+scl: L_CE + lam·L_SCL", low=0.0)
    alpha: float = opt(0.5, "kd+scl: alpha·L_KD + (1−alpha)·L_SCL", low=0.0, high=1.0)
    beta: float = opt(0.5, "kd, kd+scl: L_KD = beta·L_CE + (1−beta)·T²·KL", low=0.0, high=1.0)
    temperature: float = opt(2.0, "KD temperature T", positive=True)
    scl_temperature: float = opt(0.07, "SupCon temperature tau", positive=True)
    positives: str = opt("all", "SupCon anchors averaged: all, or only those with a positive",
                         choices=("all", "only"))
    teacher_input: str = opt("probs", "what the teacher column holds (probs_as_logits: research "
                             "code's softmax over probabilities)",
                             choices=("probs", "logits", "probs_as_logits"))
    representation: str = opt("head", "SCL features: the head's representation or a projection",
                              choices=("head", "linear", "mlp"))
    projection_dim: int = opt(128, "projection head output size (linear/mlp)", positive=True)
    scl_global_batch: bool = opt(False, "DDP: contrast over the features of every process")
    pos_weight: list[float] | None = opt(None, "multi_label BCE: weight of each class's "
                                         "positives, one per class in class.txt order")
    pos_weight_auto: bool = opt(False, "multi_label BCE: pos_weight (N - n_c) / n_c from the "
                                "training counts, clipped to [1, 100]")

    def validate(self) -> None:
        if self.pos_weight is not None:
            if self.pos_weight_auto:
                raise ConfigError("objective.pos_weight and objective.pos_weight_auto are both "
                                  "set; give the weights or ask for them computed, not both")
            if not self.pos_weight or any(w <= 0 for w in self.pos_weight):
                raise ConfigError(f"objective.pos_weight: expected one positive weight per "
                                  f"class, got {self.pos_weight}")
        if self.terms is not None:
            _check_terms(self.terms)
            if self.name is not None and not _same_weights(self.weights_of_preset(), self.terms):
                raise ConfigError(
                    f"objective.name {self.name!r} (weights {self.weights_of_preset()}) and "
                    f"objective.terms {self.terms} disagree; set only one of them "
                    "(--objective.name null to use the terms)")
        elif self.name is None:
            self.name = "ce"  # neither given: the default. After this, set terms with name null

    def weights_of_preset(self) -> dict[str, float]:
        return PRESETS[self.name or "ce"](self.lam, self.alpha, self.beta)

    @property
    def weights(self) -> dict[str, float]:
        """Weight of every active term (weight > 0), in TERMS order."""
        raw = self.terms if self.terms is not None else self.weights_of_preset()
        return {k: float(raw[k]) for k in TERMS if raw.get(k, 0) > 0}

    @property
    def label(self) -> str:
        """The preset name, or the terms as ``1·ce + 0.5·kd``."""
        return objective_label(self.name, self.terms)

    @property
    def uses_teacher(self) -> bool:
        return "kd" in self.weights

    @property
    def uses_scl(self) -> bool:
        return "scl" in self.weights

    def reads(self, key: str) -> bool:
        """Whether ``objective.<key>`` changes the loss of this objective."""
        if key in _PRESET_WEIGHTS:
            return self.terms is None and (self.name or "ce") in _PRESET_WEIGHTS[key]
        if key in _TERM_KEYS:
            return _TERM_KEYS[key] in self.weights
        return True


def objective_label(name: str | None, terms: dict[str, float] | None) -> str:
    """``kd+scl`` for a preset, ``1·ce + 0.5·kd`` for explicit terms (zero weights left out)."""
    if name or not terms:
        return str(name or "ce")
    return " + ".join(f"{w:g}·{k}" for k, w in terms.items() if w > 0)


def _check_terms(terms: dict[str, float]) -> None:
    for key, weight in terms.items():
        if key not in TERMS:
            raise ConfigError(f"objective.terms: unknown term {key!r}{_did_you_mean(key, TERMS, cutoff=0.5)}; "
                              f"terms are {', '.join(TERMS)}")
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"objective.terms.{key}: expected a weight >= 0, got {weight}")
    if not any(w > 0 for w in terms.values()):
        raise ConfigError(f"objective.terms: expected at least one weight > 0, got {terms}")


def _same_weights(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(math.isclose(a.get(k, 0.0), b.get(k, 0.0), rel_tol=1e-9, abs_tol=1e-12)
               for k in TERMS)


@dataclass
class DecisionConfig:
    """multi_label: which classes a text gets from its per-class sigmoid scores."""

    threshold: float = opt(0.5, "score at or above which a class is predicted (classes "
                           "without a tuned threshold)", low=0.0, high=1.0)
    tune_thresholds: bool = opt(True, "after training, tune a threshold per class on dev "
                                "(best F1 of that class) and save them in the checkpoint")
    at_least_one: bool = opt(False, "a text whose scores are all below threshold gets its "
                             "best-scoring class")

    def validate(self) -> None:
        pass


@dataclass
class Config(Sections):
    """The whole run: ``model``, ``data``, ``train``, ``objective`` and ``decision``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)

    def validate(self) -> Config:
        super().validate()
        if self.objective.name in MULTI_LABEL_PRESETS and self.data.task == "single_label":
            raise ConfigError(f"objective.name {self.objective.name}: a multi_label objective, "
                              "but data.task is single_label; use objective ce / ce+scl, or "
                              "set --data.task multi_label")
        if self.objective.pos_weight is not None and self.data.task == "single_label":
            raise ConfigError("objective.pos_weight: per-class BCE weights need data.task "
                              "multi_label (single_label trains with cross-entropy)")
        return self


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def sections_of(root: type = Config) -> dict[str, type]:
    """``{section name: section dataclass}`` of a config class, in declaration order."""
    return configio.sections_of(root)


def config_keys(section: str | None = None, root: type = Config) -> list[ConfigKey]:
    """Every key of ``section`` (or of all sections) of ``root``, in declaration order."""
    return configio.config_keys(section, root=root)


def config_from_dict(raw: dict[str, Any] | None, source: str = "<dict>", root: type = Config):
    """Build a validated ``root`` (a Config by default) from nested dicts; unknown sections or
    keys are errors."""
    return configio.config_from_dict(raw, source, root=root)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                root: type = Config):
    """Load a YAML file (or the defaults) and apply ``--section.key value`` overrides; ``root``
    is the config class (:class:`Config`, the default, or another :class:`Sections`)."""
    return configio.load_config(path, overrides, root=root)
