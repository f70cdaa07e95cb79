"""The step plan and precision of a fine-tuning run: :class:`Schedule` / :func:`plan_schedule`
(the optimizer steps the Trainer will take), :func:`training_arguments` (the Trainer's
``TrainingArguments``) and the device checks they read (precision, bf16 CPUs, TF32, DDP)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from zhcls.config import Config
from zhcls.errors import ConfigError, ZhclsError

logger = logging.getLogger(__name__)


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        if precision in ("bf16", "fp16") and not torch.cuda.is_available():
            raise ZhclsError(f"train.precision {precision} needs a CUDA GPU; use fp32 on CPU")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


@dataclass(frozen=True)
class Schedule:
    """The optimizer steps of a run as the Trainer will take them: per rank the training
    loader yields ``batches_per_epoch`` batches, ``grad_accum`` of them make one step."""

    processes: int
    per_device_batch: int
    grad_accum: int
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @property
    def global_batch(self) -> int:
        return self.processes * self.per_device_batch * self.grad_accum


def plan_schedule(config: Config, n_train: int, world_size: int = 1,
                  labels: Sequence[int] | None = None) -> Schedule:
    """Steps per epoch, total and warm-up steps from what each of ``world_size`` ranks'
    training loader really yields: ``ceil(n_train / (world_size x batch))`` batches (the
    Trainer's sampler sharded by accelerate), or the label-aware sampler's length (``labels``
    given with ``train.label_aware_batches``); a step is ``grad_accum`` batches."""
    t = config.train
    if t.label_aware_batches and labels is not None:
        from zhcls.data.samplers import LabelAwareBatchSampler

        try:
            batches = len(LabelAwareBatchSampler(labels, t.batch_size, num_replicas=world_size))
        except ValueError as exc:
            raise ConfigError(f"train.label_aware_batches: {exc}") from None
    else:
        batches = math.ceil(n_train / (world_size * t.batch_size))
    steps = max(1, math.ceil(batches / t.grad_accum))  # as Trainer.set_initial_training_values
    total = t.max_steps if t.max_steps > 0 else math.ceil(steps * t.epochs)
    return Schedule(world_size, t.batch_size, t.grad_accum, batches, steps, total,
                    int(round(t.warmup_ratio * total)))


def training_arguments(config: Config, out: Path, n_train: int,
                       labels: Sequence[int] | None = None):
    """TrainingArguments for the run; step counts follow :func:`plan_schedule` for the
    number of processes the arguments see (``torchrun`` sets it)."""
    from transformers import TrainingArguments

    t = config.train
    precision = resolve_precision(t.precision)
    if t.precision == "auto" and precision == "fp32" and cpu_has_native_bf16():
        precision = "bf16"  # bf16 autocast: ~5x faster matmuls on AVX512-BF16 / AMX CPUs
    metric = {"loss": "eval_loss"}.get(t.metric_for_best, f"eval_{t.metric_for_best}")
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size, num_train_epochs=t.epochs,
        max_steps=t.max_steps, learning_rate=t.lr, weight_decay=t.weight_decay,
        warmup_steps=0, lr_scheduler_type="linear",
        gradient_accumulation_steps=t.grad_accum,
        # bertadam clips each parameter itself, as the research code does
        max_grad_norm=0.0 if t.optimizer == "bertadam" else t.max_grad_norm,
        eval_strategy="steps", eval_steps=t.eval_steps, save_strategy="steps",
        save_steps=t.eval_steps, save_total_limit=t.save_total_limit, load_best_model_at_end=True,
        metric_for_best_model=metric, greater_is_better=t.metric_for_best != "loss",
        logging_steps=t.logging_steps, logging_nan_inf_filter=False, report_to=[], seed=t.seed, data_seed=t.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", tf32=_tf32_available() or None,
        dataloader_num_workers=t.num_workers, dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False, label_names=["labels"], torch_compile=t.compile,
        disable_tqdm=False, save_only_model=False, use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=_ddp_find_unused(config),
        ddp_backend=_ddp_backend(), restore_callback_states_from_checkpoint=True,
    )
    # The world size is known once the arguments exist (they set up the process group).
    plan = plan_schedule(config, n_train, args.world_size, labels)
    args.warmup_steps = plan.warmup_steps
    args.eval_steps = args.save_steps = min(t.eval_steps, plan.total_steps)
    return args


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AVX512-BF16 or AMX-BF16), where bf16
    autocast trains several times faster than fp32; elsewhere bf16 would be emulated."""
    if torch.cuda.is_available() or not hasattr(torch.cpu, "get_capabilities"):
        return False
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def _ddp_backend() -> str | None:
    """gloo for CPU runs under torchrun (accelerate would pick MPI when torch has it); the
    default (NCCL on GPUs) otherwise. Single-process runs must not name a backend."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if launched and not torch.cuda.is_available() else None


def _tf32_available() -> bool:
    """TF32 matmuls need an Ampere or newer GPU (TrainingArguments rejects tf32 elsewhere)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def _ddp_find_unused(config: Config) -> bool:
    """DDP must look for parameters without gradients when the model has some: the projection
    head when no SCL term uses it (heads that read token states are built without the
    encoder's pooler, see :func:`zhcls.modeling.model.drop_unused_pooler`)."""
    return config.objective.representation != "head" and not config.objective.uses_scl


def log_plan(config: Config, data, args, plan: Schedule) -> None:
    """What will run, once at start (replicas log warnings only); ``data`` is the
    run's ``PreparedData``."""
    from zhcls.training.trainer import args_precision

    t = config.train
    logger.info("data: %s", ", ".join(f"{k} {len(v)}" for k, v in data.encoded.items()))
    if "test" not in data.splits:
        logger.info("no test split in %s: the run reports dev only (a decision split must not "
                    "also be the reported one: hold out part of dev or train as test)",
                    config.data.dir)
    d = config.data
    reading = {"truncate": f"truncate to {d.max_length} tokens",
               "head_tail": f"head_tail: first {d.resolved_head_tokens()} and last "
                            f"{d.max_length - 2 - d.resolved_head_tokens()} text tokens",
               "chunks": f"chunks: windows of {d.max_length} tokens every "
                         f"{d.resolved_stride()}, at most {d.max_chunks} per text in training, "
                         f"{d.chunk_pooling} pooling"}[d.long_text]
    logger.info("task %s; long texts: %s (data.long_text)", d.task, reading)
    if d.unused_long_text_options():
        logger.warning("%s: ignored, since this run's data.long_text is %s; set "
                       "--data.long_text to the mode named to use them, or leave them out",
                       ", ".join(d.unused_long_text_options()), d.long_text)
    logger.info("model %s (%s), objective %s, lr %g, eval every %d steps, precision %s",
                config.model.head, config.model.pretrained, config.objective.label, t.lr,
                args.eval_steps, args_precision(args))
    m = config.model
    if m.ngram_buckets:
        logger.info("hashed n-gram bag beside the head: orders %s, %d buckets x %d, its own lr %g "
                    "(model.ngram_*)", m.ngram_orders, m.ngram_buckets, m.ngram_dim, m.ngram_lr)
    length = f"train.max_steps {t.max_steps}" if t.max_steps > 0 else f"{t.epochs:g} epochs"
    logger.info("schedule: %d process%s x per-device batch %d x grad_accum %d = global batch "
                "%d; %d optimizer steps per epoch, %d total steps (%s), %d warm-up steps "
                "(train.warmup_ratio %g)", plan.processes, "" if plan.processes == 1 else "es",
                plan.per_device_batch, plan.grad_accum, plan.global_batch, plan.steps_per_epoch,
                plan.total_steps, length, plan.warmup_steps, t.warmup_ratio)
    logger.info("optimizer %s%s", t.optimizer, "" if not t.ema_decay else
                f"; dev evaluations and best/ of the weights' moving average, decay "
                f"{t.ema_decay:g} (train.ema_decay)")
