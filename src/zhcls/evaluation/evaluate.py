"""Evaluate a model on a labelled split: metrics (:mod:`zhcls.evaluation.metrics`),
``metrics.json``, ``report.txt``, ``wrong_samples.jsonl`` and ``predictions.npz``. Pictures of
these numbers are drawn by :mod:`zhcls.report` (the CLI composes both)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from zhcls.data.formats import SplitData
from zhcls.evaluation.metrics import (
    compute_report,
    format_multilabel_report,
    format_report,
    named_scores,
)
from zhcls.evaluation.multilabel import split_task, write_multilabel_evaluation
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)


def evaluate_model(model, tokenizer, split: SplitData, class_names: list[str],
                   out_dir: str | Path, *, config=None, batch_size: int = 256,
                   max_length: int | None = None, precision: str | None = None,
                   input_ids: list[list[int]] | None = None,
                   thresholds: np.ndarray | float | None = None,
                   at_least_one: bool | None = None) -> dict:
    """Evaluate on ``split``; write metrics.json, report.txt, wrong samples and predictions.
    ``input_ids``: the split already tokenised (by :func:`zhcls.data.dataset.encode_texts`,
    as training does), so it is not tokenised again.
    ``precision`` (``fp32`` | ``bf16`` | ``fp16``; None = bf16/fp16 autocast on CUDA) sets the
    autocast of the forward passes on GPU (see ``zhcls.modeling.forward.autocast_dtype``).
    Multi-label splits (``split.task == "multi_label"``) are scored with per-class sigmoids
    decided by ``thresholds`` ((C,) or one float) and ``at_least_one``; None takes
    ``config.decision`` (threshold 0.5, no forced label without a config)."""
    from zhcls.modeling.forward import forward_ids, forward_texts, sigmoid, softmax

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    max_length = max_length or (config.data.max_length if config is not None else 32)
    if input_ids is None:
        result = forward_texts(model, tokenizer, split.texts, max_length, batch_size,
                               with_representations=True, precision=precision)
    else:
        result = forward_ids(model, input_ids, tokenizer.pad_token_id, batch_size,
                             with_representations=True, precision=precision)
    if split_task(split) == "multi_label":
        decision = getattr(config, "decision", None)
        if thresholds is None:
            thresholds = decision.threshold if decision is not None else 0.5
        if at_least_one is None:
            at_least_one = bool(decision.at_least_one) if decision is not None else False
        return write_evaluation(sigmoid(result.logits), result.representations, split,
                                class_names, out, thresholds=thresholds,
                                at_least_one=at_least_one)
    return write_evaluation(softmax(result.logits), result.representations, split,
                            class_names, out)


def write_evaluation(probs: np.ndarray, representations: np.ndarray, split: SplitData,
                     class_names: list[str], out_dir: str | Path, *,
                     thresholds: np.ndarray | float | None = None,
                     at_least_one: bool = False) -> dict:
    """Metrics of ``probs`` (N, C) against ``split``'s gold labels; writes metrics.json,
    report.txt, wrong_samples.jsonl and predictions.npz into ``out_dir``. For a multi-label
    split ``probs`` are per-class sigmoid scores, decided by
    :func:`~zhcls.evaluation.metrics.apply_thresholds` with ``thresholds`` (None: 0.5) and
    ``at_least_one`` (see :func:`write_multilabel_evaluation`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if split_task(split) == "multi_label":
        return write_multilabel_evaluation(probs, representations, split, class_names, out,
                                           thresholds=0.5 if thresholds is None else thresholds,
                                           at_least_one=at_least_one)
    gold = np.asarray(split.labels)
    pred = probs.argmax(axis=1)
    metrics = compute_report(gold, pred, class_names)
    metrics["loss"] = round(float(-np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, 1)
                                          ).mean()), 4)
    metrics["split"] = str(split.path)
    metrics["examples_sha256"] = split.examples_digest()
    atomic_write_json(out / "metrics.json", metrics)
    text = format_report(metrics, class_names)
    (out / "report.txt").write_text(text + "\n", encoding="utf-8")
    _write_wrong_samples(out / "wrong_samples.jsonl", split, probs, pred, class_names)
    np.savez_compressed(out / "predictions.npz", probs=probs, gold=gold,
                        representations=representations)
    logger.info("evaluation of %s written to %s", split.path, out)
    return metrics


def _write_wrong_samples(path: Path, split: SplitData, probs: np.ndarray, pred: np.ndarray,
                         class_names: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, ex in enumerate(split.examples):
            if pred[i] == ex.label:
                continue
            row = {"line": ex.line, "text": ex.text, "gold": class_names[ex.label],
                   "predicted": class_names[int(pred[i])],
                   "probabilities": named_scores(class_names, probs[i])}
            if ex.teacher is not None:
                row["teacher"] = named_scores(class_names, ex.teacher)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def eval_out_dir(checkpoint: str | Path, split: str, data: SplitData,
                 out_dir: str | Path | None = None) -> Path:
    """Where an evaluation of ``data`` goes: ``out_dir``, else ``CKPT/eval_{split}``, which
    keeps the evaluation recorded there (e.g. by ``zhcls baseline``) unless it is of the same
    examples (its ``examples_sha256``; for older records, the same file where its recorded
    path still exists): the evaluation of another dataset is refused, pointing at ``--out``."""
    from zhcls.errors import ConfigError

    if out_dir:
        return check_eval_out(out_dir)
    out = Path(checkpoint) / f"eval_{split}"
    try:
        earlier = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        where = str(earlier["split"])
    except (OSError, ValueError, KeyError, TypeError):
        return out
    digest = earlier.get("examples_sha256")
    if digest is not None:
        same = digest == data.examples_digest()
    else:
        same = not Path(where).is_file() or Path(where).resolve() == Path(data.path).resolve()
    if not same:
        raise ConfigError(f"{out} holds the evaluation of {where}, not of {data.path}: pass "
                          f"--out DIR to evaluate another dataset without replacing it (or "
                          f"delete {out})")
    return out


# What an evaluation writes (metrics.json, report.txt, ...; the plots are *.png).
EVAL_FILES = ("metrics.json", "report.txt", "wrong_samples.jsonl", "predictions.npz")


def check_eval_out(out_dir: str | Path) -> Path:
    """An explicit ``--out``: refused (one-line ConfigError) when it is a file, or a run,
    checkpoint or dataset directory, unless it is an earlier evaluation output (a
    ``metrics.json`` with a ``"split"`` and only evaluation files beside it)."""
    from zhcls.utils import check_out_not_file, describe_dir, refuse_foreign_out

    out = check_out_not_file(out_dir)
    found = describe_dir(out)
    if found is None:
        return out
    names = [p.name for p in out.iterdir()]
    try:
        own = "split" in json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        own = False
    if own and all(n in EVAL_FILES or n.endswith(".png") or n.startswith(".") for n in names):
        return out
    refuse_foreign_out(out, found, "an earlier `zhcls evaluate` output (metrics.json with "
                       "its split)")
    return out


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, *, split: str = "test",
                        out_dir: str | Path | None = None, batch_size: int | None = None,
                        device: str = "auto") -> dict:
    """Load ``checkpoint`` and evaluate it on ``data_dir``'s split (class.txt must match).
    ``batch_size``: texts per forward pass, >= 1 (ValueError otherwise); None takes the
    checkpoint's ``train.eval_batch_size``, as training evaluated."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"evaluate_checkpoint: batch_size must be >= 1 or None, got "
                         f"{batch_size}")
    from zhcls.data.formats import resolve_data_dir
    from zhcls.devices import resolve_device
    from zhcls.modeling.checkpoint import load_checkpoint
    from zhcls.modeling.ngram import is_baseline_dir

    data_dir = resolve_data_dir(data_dir)  # DIR or the research layout DIR/data, for both kinds
    warn_if_tuned_on(checkpoint, split)
    if is_baseline_dir(checkpoint):
        return evaluate_baseline(checkpoint, data_dir, split=split, out_dir=out_dir)
    ckpt = load_checkpoint(checkpoint, resolve_device(device))
    decision = checkpoint_decision(checkpoint, ckpt.config, ckpt.labels)
    data = read_eval_split(ckpt.config, ckpt.labels, data_dir, split, decision is not None)
    class_names = ckpt.labels  # read_eval_split checked that class.txt names the same
    out = eval_out_dir(checkpoint, split, data, out_dir)
    thresholds, at_least_one = decision if decision is not None else (None, None)
    return evaluate_model(ckpt.model, ckpt.tokenizer, data, class_names, out,
                          config=ckpt.config,
                          batch_size=(ckpt.config.train.eval_batch_size if batch_size is None
                                      else batch_size),
                          precision=ckpt.config.train.precision,  # as training evaluated it
                          thresholds=thresholds, at_least_one=at_least_one)


def read_eval_split(config, labels: list[str], data_dir: str | Path, split: str,
                    multi_label: bool) -> SplitData:
    """``split`` of ``data_dir`` read as the model with ``config`` and ``labels`` was trained:
    class.txt must name the same classes in the same order; its encoding, label format and
    (multi-label) separator; the teacher column, if any, as the objective reads it (kept for
    wrong_samples.jsonl, never required)."""
    from zhcls.data.formats import find_split_file, read_class_names, read_split
    from zhcls.modeling.checkpoint import check_labels_match

    class_file = Path(data_dir) / "class.txt"
    class_names = read_class_names(class_file, config.data.encoding)
    check_labels_match(labels, class_names, str(class_file))
    kind = "logits" if config.objective.teacher_input == "logits" else "probs"
    task = {"task": "multi_label", "label_separator": config.data.label_separator} \
        if multi_label else {}  # single-label: read exactly as before
    return read_split(find_split_file(data_dir, split), class_names, teacher_kind=kind,
                      teacher_policy="skip", encoding=config.data.encoding,
                      label_format=config.data.label_format, **task)


def checkpoint_decision(checkpoint: str | Path, config, class_names: list[str]
                        ) -> tuple[np.ndarray, bool] | None:
    """The multi-label decision of a checkpoint, by the rule the Classifier loads it with
    (:func:`zhcls.modeling.checkpoint.read_thresholds` for the checkpoint's ``data.task``):
    a multi-label checkpoint without ``thresholds.json`` is damaged, not silently decided at
    0.5; None for a single-label checkpoint."""
    from zhcls.modeling.checkpoint import read_thresholds

    return read_thresholds(checkpoint, class_names, config.data.task)


def format_evaluation(metrics: dict, class_names: list[str]) -> str:
    """The text report of :func:`write_evaluation`'s metrics (single- or multi-label)."""
    if metrics.get("task") == "multi_label":
        return format_multilabel_report(metrics, class_names)
    return format_report(metrics, class_names)



def warn_if_tuned_on(checkpoint: str | Path, split: str) -> None:
    """A multi-label checkpoint's thresholds were fitted on one split (dev): its numbers on
    that split flatter the model; say so next to them."""
    file = Path(checkpoint) / "thresholds.json"
    if file.is_file() and json.loads(file.read_text("utf-8")).get("tuned_on") == split:
        logger.warning("%s: the per-class thresholds of %s were tuned on this %s split, so "
                       "these %s numbers are optimistic; report a split the run did not "
                       "tune on", split, checkpoint, split, split)


def evaluate_baseline(checkpoint: str | Path, data_dir: str | Path, *, split: str = "test",
                      out_dir: str | Path | None = None) -> dict:
    """Evaluate a ``zhcls baseline`` checkpoint; the same files as :func:`evaluate_model`
    (its probabilities stand in for the representations of the maps)."""
    from zhcls.data.formats import find_split_file, read_class_names, read_split
    from zhcls.modeling.checkpoint import check_labels_match
    from zhcls.modeling.ngram import BaselineBackend, load_baseline

    ckpt = load_baseline(checkpoint)
    class_names = read_class_names(Path(data_dir) / "class.txt")
    check_labels_match(ckpt.labels, class_names, str(Path(data_dir) / "class.txt"))
    data = read_split(find_split_file(data_dir, split), class_names, teacher_policy="skip",
                      task=ckpt.task)  # a multi-label baseline reads label sets
    probs = BaselineBackend(ckpt).probs(data.texts)  # (N, C): distributions or per-class scores
    out = eval_out_dir(checkpoint, split, data, out_dir)
    if ckpt.task == "multi_label":
        return write_evaluation(probs, probs, data, class_names, out,
                                thresholds=ckpt.thresholds, at_least_one=ckpt.at_least_one)
    return write_evaluation(probs, probs, data, class_names, out)
