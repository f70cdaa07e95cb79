"""``train()``: read → tokenise → fine-tune with Trainer → best checkpoint → test metrics.

It returns what it computed; pictures and the run report are composed on top of it by
:func:`zhcls.workflows.pipeline.train_and_report` (what ``zhcls train`` runs)."""

from __future__ import annotations

import copy
import logging
import math
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
from zhcls.training.schedule import (  # noqa: F401  (re-exported)
    Schedule,
    _ddp_backend,
    _ddp_find_unused,
    _tf32_available,
    cpu_has_native_bf16,
    log_plan,
    plan_schedule,
    resolve_precision,
    training_arguments,
)
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
            "no training line has one; label the data with `zhcls label` or use --objective.name ce",
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


def resolve_run_config(config: Config, data_dir: str | Path | None,
                       out_dir: str | Path | None) -> tuple[Config, Path, Path]:
    """The run's resolved copy of ``config`` (the caller's is untouched): data and output
    directories set, ``data.task`` auto detected from the training file. Its fingerprint is
    what a run directory records (``zhcls sweep`` checks finished runs against it)."""
    from zhcls.training.tasks import resolve_task

    data_dir = data_dir or config.data.dir
    if data_dir is None:
        raise ZhclsError("no dataset given: pass --data DIR (or set data.dir in the config)")
    data_dir = resolve_data_dir(data_dir)
    config = copy.deepcopy(config)
    config.data.dir = str(data_dir)
    out = Path(out_dir or config.train.output_dir)
    config.train.output_dir = str(out)
    resolve_task(config, data_dir, read_class_names(data_dir / "class.txt", config.data.encoding))
    return config, data_dir, out


def train(config: Config, data_dir: str | Path | None = None, out_dir: str | Path | None = None
          ) -> TrainResult:
    """Fine-tune ``config.model`` on ``data_dir``; the best checkpoint lands in ``OUT/best``."""
    from transformers import set_seed

    from zhcls.devices import apply_threads
    from zhcls.modeling.encoder import check_encoder_path, load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model
    from zhcls.training.guards import check_max_length
    from zhcls.training.rundir import inspect_run_dir, run_fingerprint

    threads = apply_threads(config.train.threads, "train.threads")
    logger.info("CPU threads for training: %d (train.threads / $ZHCLS_THREADS; unset = torch's "
                "default)", threads)
    check_encoder_path(config.model.pretrained)
    config, data_dir, out = resolve_run_config(config, data_dir, out_dir)
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
    trainer, history, tensorboard = _build_trainer(config, data, tokenizer, model, args, out,
                                                   run_dir)
    log_plan(config, data, args,
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
        dev, test = _save_best(trainer, tokenizer, config, data, out, history)
    return TrainResult(out, best, dev, test, trainer.is_world_process_zero())


def _build_trainer(config: Config, data: PreparedData, tokenizer, model, args, out: Path,
                   run_dir):
    """The run's ZhclsTrainer with its callbacks (early stopping, history, non-finite loss
    guard, TensorBoard, progress); returns ``(trainer, history, tensorboard or None)``."""
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import ProgressCallback

    from zhcls.training.guards import NonFiniteLossCallback
    from zhcls.training.trainer import (
        HistoryCallback,
        ZhclsProgressCallback,
        ZhclsTrainer,
        metrics_function,
    )

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
    if config.train.ema_decay > 0:
        from zhcls.training.ema import WeightAverage, WeightAverageCallback

        trainer.weight_average = WeightAverage(trainer.model, config.train.ema_decay)
        trainer.add_callback(WeightAverageCallback(trainer))
    trainer.remove_callback(ProgressCallback)
    weights = (f"weight average at this step, train.ema_decay {config.train.ema_decay:g}"
               if config.train.ema_decay > 0 else "model at this step")
    trainer.add_callback(ZhclsProgressCallback(config.decision.threshold, weights=weights))
    return trainer, history, tensorboard


def _save_best(trainer, tokenizer, config: Config, data: PreparedData, out: Path,
               history) -> tuple[dict, dict | None]:
    """Main process, after training: thresholds (multi-label), the final dev/test numbers, the
    best checkpoint in ``out/best``, history.json and metrics.json; returns ``(dev, test)``."""
    from zhcls.modeling.checkpoint import save_checkpoint

    best = out / "best"
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
                                           "best_weights": _best_weights(trainer, config),
                                           "best_step": dev["step"],
                                           "global_step": trainer.state.global_step})
    logger.info("best checkpoint: %s", best)
    return dev, test


def _best_weights(trainer, config: Config) -> str | None:
    """The file in the best Trainer checkpoint whose weights ``best/`` holds: the weight
    average's with ``train.ema_decay`` (the model files there are the raw weights)."""
    from zhcls.training.ema import EMA_FILE

    best = trainer.state.best_model_checkpoint
    if best is None:
        return None
    return str(Path(best) / (EMA_FILE if config.train.ema_decay > 0 else "model.safetensors"))


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
    if config.train.ema_decay > 0:
        what += f", its weight average (train.ema_decay {config.train.ema_decay:g})"
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


def _write_history(out: Path, log_history: list[dict], epoch_steps: list[int]) -> None:
    atomic_write_json(out / "history.json", {"log_history": log_history, "epoch_steps": epoch_steps})

