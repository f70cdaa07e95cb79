"""``transformers.Trainer`` with zhcls's objective: ``compute_loss`` runs the model, the
composable objective (CE / KD / SCL) in training and plain cross-entropy in evaluation (so
runs with different objectives compare), and logs every loss term on its own.

Speed: training batches are grouped by length (dynamic padding pads little) in a random
order, evaluation batches are sorted by length (order does not change metrics), and the
loss terms are summed on the device and read back only when a log line is written (no
host sync per step on GPU). Under DDP (``torchrun``) the Trainer shards batches across
ranks (global batch = per-device batch x world size) and, with
``objective.scl_global_batch``, the contrastive term sees the features of every rank.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from zhcls.config import Config
from zhcls.training.distributed import gather_with_grad, is_distributed

logger = logging.getLogger(__name__)

#: Debug hook: when set to a directory, every rank writes ``rank<N>.json`` there at the end of
#: training (weight digests, fingerprints of the training rows it saw); used by the DDP tests.
RANK_DIGEST_ENV = "ZHCLS_RANK_DIGEST_DIR"


class ShuffledLengthGroupedSampler(Sampler[int]):
    """Indices whose consecutive ``group_size`` slices hold examples of similar length, in a
    random order: shuffle, sort by length inside mega-batches of ``mega_batch_mult`` groups
    (ties stay in shuffled order), cut into groups, then shuffle the groups (the longest goes
    first, so an out-of-memory shows at step 1). Which examples share a group and the order of
    groups change every epoch (``set_epoch``); the order depends only on (seed, epoch), so
    every DDP rank computes the same one before the Trainer shards it.

    ``group_size`` should be the per-device batch x world size: the ranks' batches of one
    step then have similar lengths too (nobody waits for a long batch on another rank)."""

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int = 0,
                 mega_batch_mult: int = 50):
        if group_size < 1 or not len(lengths):
            raise ValueError(f"ShuffledLengthGroupedSampler: expected group_size >= 1 and a non-empty "
                             f"dataset, got group_size {group_size} and {len(lengths)} lengths")
        self.lengths = np.asarray(lengths, dtype=np.int64)  # (N,)
        self.group_size = int(group_size)
        self.mega = self.group_size * max(1, min(mega_batch_mult,
                                                 len(lengths) // (4 * self.group_size)))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))  # (N,)
        groups: list[np.ndarray] = []
        for start in range(0, len(order), self.mega):
            mega = order[start:start + self.mega]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]  # longest first
            groups.extend(mega[i:i + self.group_size] for i in range(0, len(mega), self.group_size))
        last = groups.pop() if len(order) % self.group_size else None  # keep the short one last
        groups = [groups[i] for i in rng.permutation(len(groups))]
        if groups:
            longest = max(range(len(groups)), key=lambda i: self.lengths[groups[i]].max())
            groups[0], groups[longest] = groups[longest], groups[0]
        if last is not None:
            groups.append(last)
        return iter(np.concatenate(groups).tolist())


class ZhclsTrainer(Trainer):
    """Trainer whose loss is a :class:`zhcls.losses.Objective`."""

    def __init__(self, *args, objective: torch.nn.Module, zh_config: Config, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.zh_config = zh_config
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_count = 0
        self._digest: RankDigestCallback | None = None
        if os.environ.get(RANK_DIGEST_ENV):
            self._digest = RankDigestCallback(Path(os.environ[RANK_DIGEST_ENV]), self.args)
            self.add_callback(self._digest)
        if not self.is_world_process_zero():  # replicas log warnings only, as transformers does
            logging.getLogger("zhcls").setLevel(logging.WARNING)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        if not model.training:
            loss = F.cross_entropy(out.logits.float(), labels)
            return (loss, {"logits": out.logits}) if return_outputs else loss
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
        if self._digest is not None:
            self._digest.record_batch(inputs["input_ids"], inputs["attention_mask"])
        return (result.loss, {"logits": out.logits}) if return_outputs else result.loss

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
        return np.argsort(-np.asarray(lengths), kind="stable").tolist()

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
        return self.accelerator.prepare(loader)  # shards whole batches across DDP ranks


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


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RankDigestCallback(TrainerCallback):
    """Debug hook behind ``ZHCLS_RANK_DIGEST_DIR``: writes ``rank<N>.json`` with the weights'
    digest after the last optimisation step and after training (best model reloaded), the
    pid, and a fingerprint of every training row this rank computed a loss on. Under DDP it
    also audits, from its creation on, which files this process creates (``os.mkdir``) or
    opens for writing from Python inside the run directory, and writes them to
    ``rank<N>.writes.json`` when the process exits (C++ writers such as ``torch.save``'s zip
    writer or safetensors are not seen; their directories are)."""

    def __init__(self, out_dir: Path, args):
        self.out_dir = out_dir
        self.rows: list[str] = []
        self.last_step_digest: str | None = None
        self.writes: list[str] = []
        if args.world_size > 1:
            sys.addaudithook(self._audit_hook(os.path.abspath(Path(args.output_dir).parent)))
            atexit.register(self._dump_writes, args.process_index)

    def record_batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            row = [t for t, m in zip(ids, mask, strict=True) if m]
            self.rows.append(hashlib.sha1(str(row).encode()).hexdigest()[:16])

    def _audit_hook(self, root: str):
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def hook(event: str, ev_args: tuple) -> None:
            if event == "open":
                path, mode, flags = ev_args
                writing = any(c in mode for c in "wax+") if isinstance(mode, str) else \
                    isinstance(flags, int) and bool(flags & write_flags)
            elif event in ("os.mkdir", "os.rename", "os.replace"):
                path, writing = ev_args[1] if event != "os.mkdir" else ev_args[0], True
            else:
                return
            if writing and isinstance(path, str | os.PathLike):
                full = os.path.abspath(os.fspath(path))
                if isinstance(full, str) and full.startswith(root + os.sep):
                    self.writes.append(os.path.relpath(full, root))

        return hook

    def _dump_writes(self, rank: int) -> None:
        path = self.out_dir / f"rank{rank}.writes.json"
        path.write_text(json.dumps(sorted(set(self.writes))), encoding="utf-8")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.last_step_digest = weights_digest(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"rank": args.process_index, "world_size": args.world_size, "pid": os.getpid(),
                  "global_step": state.global_step, "last_step_digest": self.last_step_digest,
                  "final_digest": weights_digest(model) if model is not None else None,
                  "rows": self.rows}
        path = self.out_dir / f"rank{args.process_index}.json"
        path.write_text(json.dumps(record), encoding="utf-8")
