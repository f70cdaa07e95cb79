"""Checks that stop a run with a clear message instead of producing a wrong model:
``data.max_length`` against the encoder's position limit and the head's minimum (before any
training step), and a callback that stops a run whose loss becomes non-finite (before a
diverged model can be saved as ``best/``)."""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

from zhcls.config import Config, ModelConfig
from zhcls.errors import ConfigError, ZhclsError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = 2  # [CLS] and [SEP] are part of data.max_length
DPCNN_REGION = 3  # the DPCNN region embedding's kernel


def head_min_length(model: ModelConfig) -> tuple[int, str]:
    """The smallest ``data.max_length`` with which ``model.head`` sees any text, and why."""
    if model.head == "bert_CNN":
        k = max(model.filter_sizes)
        return k + SPECIAL_TOKENS, (f"its largest kernel ({k}, model.filter_sizes) needs {k} text "
                                    "tokens besides [CLS] and [SEP]")
    if model.head == "bert_DPCNN":
        return DPCNN_REGION + SPECIAL_TOKENS, (f"its region embedding (kernel {DPCNN_REGION}) "
                                               f"needs {DPCNN_REGION} text tokens besides [CLS] "
                                               "and [SEP]")
    return SPECIAL_TOKENS + 1, "at least one text token besides [CLS] and [SEP]"


def check_max_length(config: Config, position_limit: int) -> None:
    """``data.max_length`` (tokens incl. [CLS]/[SEP]) must fit the encoder's
    ``max_position_embeddings`` and leave the head some text; raise :class:`ConfigError`."""
    n = config.data.max_length
    if n > position_limit:
        raise ConfigError(
            f"--data.max_length {n} exceeds the encoder's position limit of {position_limit} "
            f"tokens (max_position_embeddings of {config.model.pretrained}; [CLS] and [SEP] "
            f"count); use --data.max_length {position_limit} or less")
    minimum, why = head_min_length(config.model)
    if n < minimum:
        raise ConfigError(
            f"--data.max_length {n} is below the minimum of {minimum} for model.head "
            f"{config.model.head}: {why}; use --data.max_length {minimum} or more")


class DivergedError(ZhclsError):
    """The training (or dev) loss became nan or infinite."""


class NonFiniteLossCallback(TrainerCallback):
    """Raise :class:`DivergedError` as soon as a logged loss (training loss, a loss term, the
    dev loss, or, without fp16 loss scaling, the gradient norm) is nan or infinite. The
    Trainer logs before it evaluates and saves, so a diverged model never becomes ``best/``.
    Needs ``logging_nan_inf_filter=False`` (otherwise the Trainer hides nan losses)."""

    def __init__(self, config: Config):
        self.config = config

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, value in (logs or {}).items():
            watched = key in ("loss", "eval_loss") or key.startswith("loss_") or (
                key == "grad_norm" and not args.fp16)  # fp16 overflow steps are skipped
            if watched and isinstance(value, (int, float)) and not math.isfinite(value):
                self._stop(key, value, state)

    def _stop(self, key: str, value: float, state) -> None:
        t = self.config.train
        raise DivergedError(
            f"training diverged: {key} is {value} at step {state.global_step} (epoch "
            f"{state.epoch or 0:.2f}); stopped before saving a diverged model as best/ (earlier "
            f"checkpoints stay under {t.output_dir}/checkpoints). Lower --train.lr (now {t.lr:g}), "
            f"keep --train.max_grad_norm > 0 (now {t.max_grad_norm:g}), or check the teacher "
            "column and objective weights")
