"""``transformers.Trainer`` with zhcls's objective: ``compute_loss`` runs the model, the
composable objective (CE / KD / SCL) in training and plain cross-entropy in evaluation (so
runs with different objectives compare), and logs every loss term on its own."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from zhcls.config import Config
from zhcls.training.distributed import gather_with_grad, is_distributed

logger = logging.getLogger(__name__)


class ZhclsTrainer(Trainer):
    """Trainer whose loss is a :class:`zhcls.losses.Objective`."""

    def __init__(self, *args, objective: torch.nn.Module, zh_config: Config, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.zh_config = zh_config
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_count = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        if not model.training:
            loss = F.cross_entropy(out.logits.float(), labels)
            return (loss, {"logits": out.logits}) if return_outputs else loss
        features = out.features if out.features is not None else out.representation  # (B, D)
        feat_labels = labels
        if self.zh_config.objective.scl_global_batch and is_distributed():
            features, feat_labels = gather_with_grad(features), gather_with_grad(labels)
        result = self.objective(
            out.logits, features, labels, teacher=inputs.get("teacher"),
            teacher_mask=inputs.get("teacher_mask"), feature_labels=feat_labels,
        )
        for name, value in result.terms.items():
            self._term_sums[name] += float(value)
        self._term_count += 1
        return (result.loss, {"logits": out.logits}) if return_outputs else result.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_count:
            for name, total in self._term_sums.items():
                if name != "total":
                    logs[f"loss_{name}"] = round(total / self._term_count, 6)
            self._term_sums.clear()
            self._term_count = 0
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.zh_config.train.group_by_length and hasattr(dataset, "lengths"):
            generator = torch.Generator().manual_seed(self.args.seed)
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                lengths=dataset.lengths, generator=generator,
            )
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self) -> DataLoader:
        if not self.zh_config.train.label_aware_batches:
            return super().get_train_dataloader()
        from zhcls.data.samplers import LabelAwareBatchSampler

        sampler = LabelAwareBatchSampler(self.train_dataset.labels, self._train_batch_size,
                                         seed=self.args.seed)
        loader = DataLoader(self.train_dataset, batch_sampler=sampler,
                            collate_fn=self.data_collator,
                            num_workers=self.args.dataloader_num_workers,
                            pin_memory=self.args.dataloader_pin_memory)
        return self.accelerator.prepare(loader)


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy and macro-F1 from (logits, labels)."""
    from sklearn.metrics import f1_score

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    preds = np.asarray(logits).argmax(-1)
    return {"accuracy": float((preds == labels).mean()),
            "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0))}


class ZhclsProgressCallback(ProgressCallback):
    """A progress bar whose postfix shows the running train loss and the last dev accuracy;
    log dicts go to the logger instead of being printed over the bar."""

    def __init__(self):
        super().__init__()
        self._postfix: dict[str, str] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs:
            self._postfix["loss"] = f"{logs['loss']:.4f}"
        if "eval_accuracy" in logs:
            self._postfix["dev_acc"] = f"{logs['eval_accuracy']:.4f}"
            self._postfix["dev_loss"] = f"{logs['eval_loss']:.4f}"
            logger.info("step %d: dev loss %.4f, dev accuracy %.4f, macro-F1 %.4f",
                        state.global_step, logs["eval_loss"], logs["eval_accuracy"],
                        logs.get("eval_macro_f1", float("nan")))
        if self.training_bar is not None:
            self.training_bar.set_postfix(self._postfix, refresh=False)


class HistoryCallback(TrainerCallback):
    """Remembers where epochs end (in steps), for the curves in reports."""

    def __init__(self):
        self.epoch_steps: list[int] = []

    def on_epoch_end(self, args, state, control, **kwargs):
        self.epoch_steps.append(state.global_step)
