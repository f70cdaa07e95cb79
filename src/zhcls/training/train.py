"""``train()``: read → tokenise → fine-tune with Trainer → best checkpoint → test metrics.

It returns what it computed; pictures and the run report are composed on top of it by
:func:`zhcls.workflows.pipeline.train_and_report` (what ``zhcls train`` runs)."""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from zhcls.config import Config
from zhcls.data.dataset import Collator, EncodedDataset, encode_split
from zhcls.data.formats import (
    SplitData,
    find_split_file,
    has_split,
    read_class_names,
    read_split,
    resolve_data_dir,
    warn_class_coverage,
)
from zhcls.data.teacher import TeacherRules, sum_reading
from zhcls.errors import ConfigError, DataError, ZhclsError
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where things went and the headline numbers."""

    output_dir: Path
    best_dir: Path
    dev_metrics: dict
    test_metrics: dict | None
    is_main_process: bool = True


@dataclass
class PreparedData:
    class_names: list[str]
    splits: dict[str, SplitData]
    encoded: dict[str, EncodedDataset]


def read_dataset(config: Config, data_dir: str | Path, splits=("train", "dev", "test"),
                 required=("train", "dev")) -> dict[str, SplitData]:
    """Read and validate the splits that exist (``required`` ones must exist). The teacher
    column is validated only when the objective reads it (KD). ``data.task: auto`` is
    resolved here (detected from train, logged) and written into ``config``."""
    from zhcls.training.tasks import resolve_task

    data_dir = resolve_data_dir(data_dir)
    class_names = read_class_names(data_dir / "class.txt", config.data.encoding)
    d = config.data
    rules = TeacherRules(kind="logits" if config.objective.teacher_input == "logits" else "probs",
                         policy=d.teacher_policy, negative=d.teacher_negative,
                         tolerance=d.teacher_negative_tolerance, invalid=d.teacher_invalid)
    if config.data.task == "auto":  # train() resolved it already; direct callers get it here
        resolve_task(config, data_dir, class_names)
    out = {}
    for name in splits:
        if name not in required and not has_split(data_dir, name):
            continue
        path = find_split_file(data_dir, name)
        out[name] = read_split(path, class_names, on_bad_line=d.on_bad_line,
                               label_format=d.label_format, teacher_rules=rules,
                               read_teacher=config.objective.uses_teacher, encoding=d.encoding,
                               task=d.task, label_separator=d.label_separator)
    return out


def check_teacher_coverage(config: Config, train: SplitData) -> None:
    """KD needs a teacher row per training example unless told to fall back to hard labels.
    Rows whose teacher column was present but dropped as invalid (by the teacher policies)
    train on the hard label and are reported as such, apart from rows without the column."""
    if not config.objective.uses_teacher:
        if train.teacher_rows:
            logger.info("%s: teacher column present on %d training lines, not read (objective "
                        "%s does not use it; `zhcls data-stats` reports it)", train.path,
                        train.teacher_rows, config.objective.name)
        return
    dropped = set(train.teacher_report.dropped)
    if dropped:
        logger.warning("%s: %d training lines had a teacher column that was dropped as invalid "
                       "(%s); they train on the hard label only", train.path, len(dropped),
                       train.teacher_report.summary())
    missing = [e.line for e in train.examples if e.teacher is None and e.line not in dropped]
    if len(dropped) == len(train.examples):
        raise DataError(f"every training line's teacher column was dropped as invalid "
                        f"({train.teacher_report.summary()}); fix the teacher column or use "
                        "objective ce", train.path)
    if not missing:
        return
    if len(missing) == len(train.examples):
        raise DataError(
            f"objective {config.objective.label!r} needs teacher soft labels (a third column) but "
            "no training line has one; label the data with `zhcls label` or use objective ce",
            train.path)
    if config.data.teacher_missing == "error":
        raise DataError(
            f"{len(missing)} training lines have no teacher column (first lines: "
            f"{', '.join(map(str, missing[:5]))}); add it, or set data.teacher_missing "
            "hard_label_only to train those lines on the hard label only", train.path)
    logger.warning("%d training lines without teacher: hard label only", len(missing))


def check_teacher_input(config: Config, train: SplitData) -> None:
    """Probabilities read as ``teacher_input: logits`` give a near-uniform teacher: stop when
    most teacher rows are probability vectors (entries >= 0, summing to 1 or 100). Real
    logits almost never are; real LLM probability columns have a few dirty rows, so one
    such row must not switch the check off. ``probs_as_logits`` forces the reading."""
    if not config.objective.uses_teacher or config.objective.teacher_input != "logits":
        return
    rows = [e.teacher for e in train.examples if e.teacher is not None]
    probs = sum(1 for r in rows if min(r) >= 0 and sum_reading(sum(r)) != "other")
    if rows and probs > len(rows) / 2:
        raise ConfigError(
            f"{train.path}: {probs} of {len(rows)} teacher rows are probability vectors "
            "(entries >= 0, sum 1 or 100) but objective.teacher_input is logits: "
            "softmax(probs / T) is a near-uniform teacher. Set --objective.teacher_input probs "
            "(or probs_as_logits to reproduce research code that fed probabilities as logits)")


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        if precision in ("bf16", "fp16") and not torch.cuda.is_available():
            raise ZhclsError(f"train.precision {precision} needs a CUDA GPU; use fp32 on CPU")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def prepare(config: Config, data_dir: str | Path, tokenizer) -> PreparedData:
    from zhcls.modeling.encoder import MAX_UNK_RATE, unk_rate

    data_dir = resolve_data_dir(data_dir)
    splits = read_dataset(config, data_dir)  # resolves data.task auto
    class_names = read_class_names(data_dir / "class.txt", config.data.encoding)
    warn_class_coverage(splits, class_names)
    check_teacher_coverage(config, splits["train"])
    check_teacher_input(config, splits["train"])
    sample = splits["train"].texts[:2000]
    rate = unk_rate(tokenizer, sample)
    logger.info("tokenizer [UNK] rate on %d training texts: %.2f%%", len(sample), 100 * rate)
    if rate > MAX_UNK_RATE:
        raise DataError(f"the tokenizer maps {rate:.0%} of training tokens to [UNK]; the "
                        "vocabulary does not cover this data", splits["train"].path)
    d = config.data  # long text: the max_chunks cap is for training only
    encoded = {name: encode_split(s, tokenizer, d.max_length, len(class_names), d.cache_dir,
                                  long_text=d.long_text, head_tokens=d.resolved_head_tokens(),
                                  stride=d.resolved_stride(),
                                  max_chunks=d.max_chunks if name == "train" else None)
               for name, s in splits.items()}
    return PreparedData(class_names, splits, encoded)


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


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        logger.warning("tensorboard is not installed; TensorBoard logs are off")
        return False
    return True


def build_objective(config: Config, pos_weight: torch.Tensor | None = None) -> torch.nn.Module:
    from zhcls.losses import Objective

    # an unresolved task (a config not yet through prepare/train) builds the single-label
    # objective; multi-hot labels would then be refused by the objective, never misread
    task = "single_label" if config.data.task == "auto" else config.data.task
    objective = Objective.from_config(config.objective, task=task, pos_weight=pos_weight)
    for line in objective.describe():  # each loss with its settings and citation
        logger.info("%s", line)
    return objective


def train(config: Config, data_dir: str | Path | None = None, out_dir: str | Path | None = None
          ) -> TrainResult:
    """Fine-tune ``config.model`` on ``data_dir``; the best checkpoint lands in ``OUT/best``."""
    from transformers import EarlyStoppingCallback, set_seed
    from transformers.trainer_callback import ProgressCallback

    from zhcls.devices import apply_threads
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model
    from zhcls.training.guards import NonFiniteLossCallback, check_max_length
    from zhcls.training.rundir import inspect_run_dir, run_fingerprint
    from zhcls.training.tasks import resolve_task
    from zhcls.training.trainer import (
        HistoryCallback,
        ZhclsProgressCallback,
        ZhclsTrainer,
        metrics_function,
    )

    threads = apply_threads(config.train.threads, "train.threads")
    logger.info("CPU threads for training: %d (train.threads / $ZHCLS_THREADS; unset = torch's "
                "default)", threads)
    data_dir = data_dir or config.data.dir
    if data_dir is None:
        raise ZhclsError("no dataset given: pass --data DIR (or set data.dir in the config)")
    data_dir = resolve_data_dir(data_dir)
    config = copy.deepcopy(config)  # the run's resolved copy; the caller's config is untouched
    config.data.dir = str(data_dir)
    out = Path(out_dir or config.train.output_dir)
    config.train.output_dir = str(out)
    resolve_task(config, data_dir, read_class_names(data_dir / "class.txt", config.data.encoding))
    run_dir = inspect_run_dir(out, config, run_fingerprint(config, data_dir))  # refuse early
    set_seed(config.train.seed)
    tokenizer = load_tokenizer(config.model.pretrained)
    encoder = load_encoder(config.model.pretrained)
    check_max_length(config, encoder.config.max_position_embeddings)
    data = prepare(config, data_dir, tokenizer)
    model = build_model(encoder, config, len(data.class_names))
    train_labels = data.encoded["train"].labels
    args = training_arguments(config, out, len(train_labels), train_labels)
    with args.main_process_first(desc="run directory", local=False):
        if args.process_index == 0:
            run_dir.apply()
    patience = max(1, math.ceil(config.train.require_improvement / args.eval_steps))
    history = HistoryCallback()
    trainer = ZhclsTrainer(
        model=model, args=args, train_dataset=data.encoded["train"],
        eval_dataset=data.encoded["dev"], data_collator=Collator(tokenizer.pad_token_id),
        compute_metrics=metrics_function(config), zh_config=config,
        objective=build_objective(config, _pos_weight(config, data)),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience), history,
                   NonFiniteLossCallback(config)],
    )
    tensorboard = None
    if config.train.tensorboard and _has_tensorboard():
        from zhcls.training.trainer import TensorBoardLogCallback

        tensorboard = TensorBoardLogCallback(out / "tensorboard")
        trainer.add_callback(tensorboard)
    trainer.run_record = run_dir.record  # stored with every Trainer checkpoint
    history.epoch_steps = list(run_dir.epoch_steps)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ZhclsProgressCallback(config.decision.threshold))
    _log_plan(config, data, args,
              plan_schedule(config, len(train_labels), args.world_size, train_labels))
    try:
        trainer.train(resume_from_checkpoint=str(run_dir.resume_from) if run_dir.resume_from
                      else None)
    finally:
        if tensorboard is not None:  # no writer thread or file handle left per run
            tensorboard.close()
    best = out / "best"
    dev = test = None
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
        decision = None
        if config.data.task == "multi_label":
            from zhcls.training.tasks import decide_thresholds

            decision = decide_thresholds(model, tokenizer, config, data, trainer.precision)
        dev, test = _final_evaluation(trainer, model, tokenizer, config, data, out, decision)
        save_checkpoint(best, trainer.model, tokenizer, config, data.class_names,
                        metrics={"dev": dev, "test": test},
                        thresholds=decision.thresholds if decision else None,
                        tuned_on=decision.tuned_on if decision else None)
        _write_history(out, trainer.state.log_history, history.epoch_steps)
        atomic_write_json(out / "metrics.json", {"dev": dev, "test": test,
                                           "best_checkpoint": trainer.state.best_model_checkpoint,
                                           "best_step": dev["step"],
                                           "global_step": trainer.state.global_step})
        logger.info("best checkpoint: %s", best)
    return TrainResult(out, best, dev, test, trainer.is_world_process_zero())


def _final_evaluation(trainer, model, tokenizer, config: Config, data: PreparedData,
                      out: Path, decision=None) -> tuple[dict, dict | None]:
    """The numbers a run reports: the best checkpoint (loaded at the end of training; its
    autocast wrapper taken off, so these are the saved weights' numbers) on dev and test,
    each computed once by :func:`zhcls.evaluation.evaluate.evaluate_model`, the function
    ``zhcls evaluate`` uses, with the checkpoint's own eval batch size. Multi-label runs
    decide with ``decision`` (the thresholds saved with the checkpoint)."""
    from zhcls.evaluation.evaluate import evaluate_model

    step = trainer.state.best_global_step or trainer.state.global_step
    what = f"best checkpoint, step {step}"  # computed as `zhcls evaluate` computes it
    extra = {} if decision is None else {"thresholds": decision.thresholds,
                                         "at_least_one": decision.at_least_one}
    results: dict[str, dict | None] = {"dev": None, "test": None}
    for split in ("dev", "test"):
        if split not in data.splits or (split == "test" and not config.train.evaluate_test):
            continue
        metrics = evaluate_model(model, tokenizer, data.splits[split], data.class_names,
                                 out / f"eval_{split}", config=config,
                                 input_ids=data.encoded[split].input_ids,  # tokenised once
                                 batch_size=config.train.eval_batch_size,
                                 precision=trainer.precision, **extra)
        metrics["step"] = step
        if decision is None:
            logger.info("%s (%s; as zhcls evaluate computes it): loss %.4f, accuracy %.4f, "
                        "macro-F1 %.4f", split, what,
                        metrics["loss"], metrics["accuracy"], metrics["macro_f1"])
        else:
            logger.info("%s (%s, %s; as zhcls evaluate computes it): loss %.4f, micro-F1 "
                        "%.4f, macro-F1 %.4f, subset accuracy %.4f", split, what,
                        decision.describe(), metrics["loss"], metrics["micro_f1"],
                        metrics["macro_f1"], metrics["subset_accuracy"])
        results[split] = metrics
    return results["dev"], results["test"]


def _pos_weight(config: Config, data: PreparedData) -> torch.Tensor | None:
    if config.data.task != "multi_label":
        return None
    from zhcls.training.tasks import pos_weight

    return pos_weight(config, data.splits["train"].label_matrix(len(data.class_names)))


def _log_plan(config: Config, data: PreparedData, args, plan: Schedule) -> None:
    """What will run, once at start (replicas log warnings only)."""
    from zhcls.training.trainer import args_precision

    t = config.train
    logger.info("data: %s", ", ".join(f"{k} {len(v)}" for k, v in data.encoded.items()))
    logger.info("model %s (%s), objective %s, lr %g, eval every %d steps, precision %s",
                config.model.head, config.model.pretrained, config.objective.label, t.lr,
                args.eval_steps, args_precision(args))
    length = f"train.max_steps {t.max_steps}" if t.max_steps > 0 else f"{t.epochs:g} epochs"
    logger.info("schedule: %d process%s x per-device batch %d x grad_accum %d = global batch "
                "%d; %d optimizer steps per epoch, %d total steps (%s), %d warm-up steps "
                "(train.warmup_ratio %g)", plan.processes, "" if plan.processes == 1 else "es",
                plan.per_device_batch, plan.grad_accum, plan.global_batch, plan.steps_per_epoch,
                plan.total_steps, length, plan.warmup_steps, t.warmup_ratio)
    logger.info("optimizer %s", t.optimizer)


def _write_history(out: Path, log_history: list[dict], epoch_steps: list[int]) -> None:
    atomic_write_json(out / "history.json", {"log_history": log_history, "epoch_steps": epoch_steps})

