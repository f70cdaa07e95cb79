"""``transformers.Trainer`` with zhcls's objective: ``compute_loss`` runs the model, the
composable objective (CE / KD / SCL) in training and plain cross-entropy in evaluation (so
runs with different objectives compare), and logs every loss term on its own.

Speed: training batches are grouped by length (dynamic padding pads little) in a random
order, evaluation batches are sorted by length (order does not change metrics), and the
loss terms are summed on the device and read back only when a log line is written (no
host sync per step on GPU). Under DDP (``torchrun``) the Trainer shards batches across
ranks (global batch = per-device batch x world size; label-aware batches are sharded by
their sampler instead) and, with ``objective.scl_global_batch``, the contrastive term sees
the features of every rank. Evaluation runs at the training precision (fp32: no autocast).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from zhcls.config import Config
from zhcls.data.samplers import ShuffledLengthGroupedSampler, longest_first
from zhcls.training.distributed import gather_with_grad, is_distributed
from zhcls.training.ema import WeightAveraging

logger = logging.getLogger(__name__)

#: Debug hook: when set to a directory, every rank writes ``rank<N>.json`` there at the end of
#: training (weight digests, fingerprints of the training rows it saw); used by the DDP tests.


class ZhclsTrainer(WeightAveraging, Trainer):
    """Trainer whose loss is a :class:`zhcls.losses.Objective` (and, with ``train.ema_decay``,
    whose evaluated and saved weights are an average: :class:`WeightAveraging`)."""

    def __init__(self, *args, objective: torch.nn.Module, zh_config: Config, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.zh_config = zh_config
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_count = 0
        if not self.is_world_process_zero():  # replicas log warnings only, as transformers does
            logging.getLogger("zhcls").setLevel(logging.WARNING)

    @property
    def precision(self) -> str:
        """``train.precision`` as resolved for this run: fp32, bf16 or fp16."""
        return args_precision(self.args)

    def eval_autocast(self) -> contextlib.AbstractContextManager:
        """The autocast of evaluation forward passes: the training precision, so fp32 means
        no autocast (explicitly off, whatever an enclosing context says)."""
        return precision_autocast(self.precision, self.args.device.type)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        if not model.training:
            with self.eval_autocast():
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            chunk_mask=inputs.get("chunk_mask"),  # eval batch: all windows
                            window_batch=self.args.per_device_eval_batch_size)
            loss = eval_loss(out.logits, labels, self.zh_config.data.task)
            return (loss, {"logits": out.logits}) if return_outputs else loss
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    chunk_mask=inputs.get("chunk_mask"))
        features = out.features if out.features is not None else out.representation  # (B, D)
        feat_labels = labels
        if self.zh_config.objective.scl_global_batch and is_distributed():
            # Every rank computes the contrastive loss over the global batch but back-propagates
            # through its own rows only; DDP averages gradients over ranks, so the local rows'
            # gradient is scaled by the world size to equal one process on the global batch.
            world = torch.distributed.get_world_size()
            features = gather_with_grad(features, grad_scale=float(world))  # (W*B, D)
            feat_labels = gather_with_grad(labels)  # (W*B,)
        result = self.objective(
            out.logits, features, labels, teacher=inputs.get("teacher"),
            teacher_mask=inputs.get("teacher_mask"), feature_labels=feat_labels,
        )
        self._add_terms(result.terms)
        return (result.loss, {"logits": out.logits}) if return_outputs else result.loss

    def create_optimizer(self, model=None):
        """AdamW (transformers' own) or, for ``train.optimizer: bertadam``, the research
        optimiser (:mod:`zhcls.training.optim`), with the same decay / no-decay groups. A model
        with a hashed n-gram bag gets a third group for its table: ``model.ngram_lr``, no
        weight decay (a fastText-style table learns at its own, much higher rate)."""
        t = self.zh_config.train
        opt_model = self.model if model is None else model
        bag = getattr(getattr(opt_model, "module", opt_model), "ngrams", None)
        if self.optimizer is not None or (t.optimizer != "bertadam" and bag is None):
            return super().create_optimizer(model)
        table = {id(p) for p in bag.parameters()} if bag is not None else set()
        decay = set(self.get_decay_parameter_names(opt_model))
        named = [(n, p) for n, p in opt_model.named_parameters()
                 if p.requires_grad and id(p) not in table]
        groups = [{"params": [p for n, p in named if n in decay], "weight_decay": t.weight_decay},
                  {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
        if bag is not None:
            groups.append({"params": list(bag.parameters()), "weight_decay": 0.0,
                           "lr": self.zh_config.model.ngram_lr})
        if t.optimizer == "bertadam":
            from zhcls.training.optim import BertAdam

            self.optimizer = BertAdam(groups, lr=t.lr, max_grad_norm=t.max_grad_norm)
        else:  # the optimizer transformers would build (fused AdamW), on these groups
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The research schedule over the real number of optimizer steps for bertadam."""
        if self.zh_config.train.optimizer != "bertadam" or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        from zhcls.training.optim import research_schedule

        self.lr_scheduler = research_schedule(optimizer or self.optimizer, num_training_steps,
                                              self.zh_config.train.warmup_ratio)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def _save_checkpoint(self, model, trial) -> None:
        """Atomic: written into ``checkpoints/.staging``, renamed when complete (rundir.py)."""
        from zhcls.training.rundir import staged_trainer_checkpoint

        with staged_trainer_checkpoint(self, trial):
            super()._save_checkpoint(model, trial)

    def _add_terms(self, terms: dict[str, torch.Tensor]) -> None:
        """Sum the detached loss terms on their device: no host sync until the next log."""
        for name, value in terms.items():
            if name == "total":
                continue
            value = value.detach().float()
            self._term_sums[name] = self._term_sums[name] + value if name in self._term_sums \
                else value.clone()
        self._term_count += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The Trainer's logs plus the mean of each loss term since the last log
        (``loss_<term>``) and, beside ``learning_rate`` (the encoder's, the Trainer's first
        group), the n-gram table's own rate (``learning_rate_ngram``)."""
        k = self._ngram_group()
        base = getattr(self.lr_scheduler, "base_lrs", None)  # LambdaLR: one factor, all groups
        if "learning_rate" in logs and k is not None and base:  # at the logged step
            logs["learning_rate_ngram"] = logs["learning_rate"] * base[k] / base[0]
        if "loss" in logs and self._term_count:
            names = sorted(self._term_sums)
            means = torch.stack([self._term_sums[n] for n in names]) / self._term_count  # (K,)
            if is_distributed():  # every rank logs at the same steps, as the Trainer's loss
                torch.distributed.all_reduce(means)
                means /= torch.distributed.get_world_size()
            for name, value in zip(names, means.tolist(), strict=True):
                logs[f"loss_{name}"] = round(value, 6)
            self._term_sums.clear()
            self._term_count = 0
        super().log(logs, start_time)

    def _ngram_group(self) -> int | None:
        """Index of the optimizer's param group holding the n-gram table (by identity: a
        resumed optimizer's groups are the saved dicts), None without a bag."""
        model = getattr(self.model, "module", self.model)
        bag = getattr(model, "ngrams", None)
        if bag is None or self.optimizer is None:
            return None
        table = {id(p) for p in bag.parameters()}
        for k, group in enumerate(self.optimizer.param_groups):
            if any(id(p) in table for p in group["params"]):
                return k
        return None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.zh_config.train.group_by_length and hasattr(dataset, "lengths"):
            group = self.args.per_device_train_batch_size * max(1, self.args.world_size)
            return ShuffledLengthGroupedSampler(dataset.lengths, group, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        """Longest first, sorted: batches pad little and metrics do not depend on order."""
        lengths = getattr(eval_dataset, "lengths", None)
        if lengths is None:
            return super()._get_eval_sampler(eval_dataset)
        return longest_first(lengths)

    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's loader, or with ``train.label_aware_batches`` a loader over a
        :class:`LabelAwareBatchSampler` that shards the epoch across DDP ranks itself. That
        loader is not passed to ``accelerator.prepare``: its batch-sampler sharding would
        split the batches again and drop every batch whose size is not exactly
        ``batch_size`` (label-aware batches vary by design). The Trainer moves the inputs to
        the device and calls ``set_epoch`` on it every epoch."""
        if not self.zh_config.train.label_aware_batches:
            return super().get_train_dataloader()
        from zhcls.data.samplers import LabelAwareBatchSampler

        sampler = LabelAwareBatchSampler(self.train_dataset.labels, self._train_batch_size,
                                         seed=self.args.seed, num_replicas=self.args.world_size,
                                         rank=self.args.process_index)
        return EpochDataLoader(self.train_dataset, batch_sampler=sampler,
                               collate_fn=self.data_collator,
                               num_workers=self.args.dataloader_num_workers,
                               pin_memory=self.args.dataloader_pin_memory)


class EpochDataLoader(DataLoader):
    """A DataLoader whose ``set_epoch`` reaches its batch sampler (the Trainer calls it at
    the start of every epoch; a plain DataLoader has none)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


def args_precision(args) -> str:
    """The precision TrainingArguments train at: fp32, bf16 or fp16."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def precision_autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for a resolved precision: bf16 / fp16 autocast, or for fp32
    autocast disabled."""
    if precision == "fp32":
        return torch.autocast(device_type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type, dtype=dtype)


def eval_loss(logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
    """Dev loss, the same for every objective so runs compare: cross-entropy (single-label,
    labels (B,)) or per-class binary cross-entropy averaged over B x C (multi-label, labels
    (B, C) multi-hot), in float32."""
    if task == "multi_label":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def metrics_function(config: Config):
    """``compute_metrics`` for the Trainer: :func:`zhcls.training.tasks.eval_metrics` of the
    run's task (accuracy and macro-F1 as ``zhcls evaluate`` computes them; multi-label adds
    micro-F1, at ``decision.threshold``)."""
    from zhcls.training.tasks import eval_metrics

    task, threshold = config.data.task, config.decision.threshold
    if task != "multi_label":
        return compute_metrics

    def multilabel_compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = _predictions(eval_pred)
        return eval_metrics(logits, labels, task, threshold)

    return multilabel_compute_metrics


def compute_metrics(eval_pred) -> dict[str, float]:
    """Single-label accuracy and macro-F1 over all classes from (logits (N, C), labels (N,)),
    by the same function as ``zhcls evaluate`` (:func:`zhcls.evaluation.metrics.headline_metrics`)."""
    from zhcls.training.tasks import eval_metrics

    logits, labels = _predictions(eval_pred)
    return eval_metrics(logits, labels, "single_label")


def _predictions(eval_pred) -> tuple[np.ndarray, np.ndarray]:
    logits = eval_pred.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    return np.asarray(logits), np.asarray(eval_pred.label_ids)


class ZhclsProgressCallback(ProgressCallback):
    """A progress bar whose postfix shows the running train loss and the last dev accuracy;
    log dicts go to the logger instead of being printed over the bar. When stderr is not a
    terminal (a log file, ``nohup``, CI) there are no bars, whose redraws would fill the file,
    and the train loss gets a log line at every ``logging_steps`` instead."""

    def __init__(self, threshold: float = 0.5, bars: bool | None = None,
                 weights: str = "model at this step"):
        super().__init__()
        self._postfix: dict[str, str] = {}
        self.threshold = threshold  # multi-label dev metrics decide every class at it
        self.weights = weights  # what the dev numbers are of
        stderr_isatty = getattr(sys.stderr, "isatty", None)  # sys.stderr may be None
        self.bars = bool(stderr_isatty and stderr_isatty()) if bars is None else bars
        self._started = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.monotonic()
        if self.bars:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.bars:
            super().on_prediction_step(args, state, control, eval_dataloader, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)

    def _train_line(self, logs: dict) -> str:
        """The train loss (and its terms), both learning rates and the time, from one log."""
        terms = ", ".join(f"{k[5:]} {v:.4f}" for k, v in sorted(logs.items())
                          if k.startswith("loss_"))
        line = (f"train loss {logs['loss']:.4f} ({terms + '; ' if terms else ''}mean over the "
                f"last logging_steps)")
        if "learning_rate" in logs:
            line += f", encoder lr {logs['learning_rate']:.3g}"
        if "learning_rate_ngram" in logs:
            line += f", n-gram table lr {logs['learning_rate_ngram']:.3g}"
        return line + f", {time.monotonic() - self._started:.0f} s since training (re)started"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            self._postfix["loss"] = f"{logs['loss']:.4f}"
            if not self.bars:
                logger.info("step %d/%d: %s", state.global_step, state.max_steps,
                            self._train_line(logs))
        if "eval_accuracy" in logs:
            if "eval_micro_f1" not in logs:  # multi-label shows micro-F1 instead (below)
                self._postfix["dev_acc"] = f"{logs['eval_accuracy']:.4f}"
            self._postfix["dev_loss"] = f"{logs['eval_loss']:.4f}"
            how = "bf16 autocast" if args.bf16 else "fp16 autocast" if args.fp16 else "fp32"
            if "eval_micro_f1" in logs:  # multi-label: label sets at decision.threshold
                logger.info("step %d: dev loss %.4f, micro-F1 %.4f, macro-F1 %.4f, subset "
                            "accuracy %.4f (%s, every class at threshold "
                            "%g, %s)", state.global_step, logs["eval_loss"],
                            logs["eval_micro_f1"], logs.get("eval_macro_f1", float("nan")),
                            logs["eval_accuracy"], self.weights, self.threshold, how)
                self._postfix["dev_micro_f1"] = f"{logs['eval_micro_f1']:.4f}"
            else:
                logger.info("step %d: dev loss %.4f, dev accuracy %.4f, macro-F1 %.4f (%s, %s)",
                            state.global_step, logs["eval_loss"], logs["eval_accuracy"],
                            logs.get("eval_macro_f1", float("nan")), self.weights, how)
        if self.training_bar is not None:
            self.training_bar.set_postfix(self._postfix, refresh=False)


class HistoryCallback(TrainerCallback):
    """Remembers where epochs end (in steps), for the curves in reports. The Trainer also
    fires ``on_epoch_end`` when ``max_steps`` stops it mid-epoch; that is no boundary."""

    def __init__(self):
        self.epoch_steps: list[int] = []

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.epoch is not None and abs(state.epoch - round(state.epoch)) < 1e-6:
            self.epoch_steps.append(state.global_step)


class TensorBoardLogCallback(TrainerCallback):
    """TensorBoard scalars in ``log_dir``, written by the world process zero only (no empty
    event files from other DDP ranks), and kept open after training so the final
    ``trainer.evaluate()`` lands in the same run (transformers' callback closes its writer
    at train end and opens a new one under ``OUTPUT/runs``). Call :meth:`close` when done:
    it ends the writer's thread and file handle."""

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir))
        for key, value in logs.items():
            if isinstance(value, int | float):
                name = key.removeprefix("eval_")
                self.writer.add_scalar(f"eval/{name}" if key.startswith("eval_") else f"train/{key}",
                                       value, state.global_step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (its writer thread ends); a later log reopens."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


