"""``zhcls label --teacher CKPT``: soft labels from a local teacher model.

The teacher is a zhcls checkpoint directory, a ``zhcls baseline`` directory (its calibrated
probabilities; ``--emit logits`` writes their logarithms, or log-odds for a multi-label
one) or a Hugging Face sequence-classification model
(directory or hub name) whose labels match the dataset's ``class.txt``. It runs batched and
sorted by length over a split and writes a ready KD dataset (see :mod:`zhcls.label.writer`).
A multi-label teacher (a multi-label baseline, or a checkpoint whose ``thresholds.json`` or
``data.task`` says multi_label) writes per-class sigmoid scores, not a softmax; it must
label multi-label data.

A baseline fitted on train is near-certain on its own training texts, so its labels of train
carry little beyond the gold label. ``cross_fit=K`` (``--cross-fit K``) gives out-of-fold labels
instead: the baseline's unfitted pipeline (``sklearn.base.clone``, same hyperparameters) is
refitted on K-1 stratified, seeded folds of the labelled split and labels the held-out fold, so
every text's teacher distribution comes from a model that never saw it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from zhcls.errors import CheckpointError, ConfigError, DataError
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class LocalLabelReport:
    """What labelling did: counts, agreement of the teacher's argmax with gold, confidence."""

    split_file: str
    output_file: str
    examples: int
    emit: str
    agreement: float
    mean_confidence: float
    seconds: float
    cross_fit: dict | None = None  # {"folds", "seed", "stratified"} for out-of-fold labels


class _HFTeacher(torch.nn.Module):
    """Adapts AutoModelForSequenceClassification to zhcls's (logits, representation) output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        from zhcls.modeling.model import ClassifierOutput

        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, C)
        return ClassifierOutput(logits=logits, representation=logits)


def load_teacher(teacher: str | Path, class_names: list[str], device: torch.device,
                 max_length: int | None = None):
    """(model, tokenizer, max_length) for a zhcls checkpoint or an HF classifier.

    ``max_length`` (tokens per text, [CLS]/[SEP] included): default the checkpoint's own
    ``data.max_length``; for an HF classifier, zhcls' ``data.max_length`` default — the
    length the student will train on — capped at the encoder's position limit."""
    from zhcls.modeling.checkpoint import check_labels_match, load_checkpoint

    path = Path(teacher)
    if (path / "zhcls.yaml").is_file():
        ckpt = load_checkpoint(path, device)
        check_labels_match(ckpt.labels, class_names, f"teacher {path}")
        return ckpt.model, ckpt.tokenizer, max_length or ckpt.config.data.max_length
    from transformers import AutoModelForSequenceClassification

    from zhcls.modeling.encoder import _from_hub, load_tokenizer

    loader = AutoModelForSequenceClassification.from_pretrained
    model = loader(str(path)) if path.is_dir() else _from_hub(loader, str(teacher))
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if len(names) != len(class_names):
        raise CheckpointError(f"teacher {teacher}: {len(names)} output classes but class.txt "
                              f"names {len(class_names)}")
    if names != class_names and not all(n.startswith("LABEL_") for n in names):
        raise CheckpointError(f"teacher {teacher}: id2label {names[:5]}... does not match "
                              f"class.txt {class_names[:5]}...; the order must be the same")
    from zhcls.config import DataConfig

    limit = getattr(model.config, "max_position_embeddings", None) or 512
    length = min(max_length or DataConfig().max_length, limit)
    return _HFTeacher(model).to(device).eval(), load_tokenizer(str(teacher)), length


def label_with_checkpoint(teacher: str | Path, data_dir: str | Path, split: str,
                          out_dir: str | Path, *, emit: str = "probs", batch_size: int = 64,
                          device: str | None = None, max_length: int | None = None,
                          cross_fit: int | None = None, seed: int = 0) -> LocalLabelReport:
    """Run ``teacher`` over ``DATA/split`` and write ``OUT`` as a ready KD dataset
    (``max_length``: see :func:`load_teacher`). ``cross_fit=K`` (baseline teachers only):
    out-of-fold labels from K refits on stratified folds seeded by ``seed`` (module docstring)."""
    from zhcls.devices import resolve_device
    from zhcls.label.writer import (
        REPORT_NAME,
        read_label_data,
        teacher_quality,
        write_labelled_dataset,
    )
    from zhcls.modeling.forward import forward_texts, sigmoid, softmax
    from zhcls.modeling.ngram import is_baseline_dir

    if emit not in ("probs", "logits"):
        raise ValueError(f"emit must be 'probs' or 'logits', got {emit!r}")
    baseline = is_baseline_dir(teacher)
    if cross_fit is not None:
        _check_cross_fit(teacher, baseline, cross_fit)
    start = time.perf_counter()
    data = read_label_data(data_dir, split)
    class_names, split_path, examples = data.class_names, data.path, data.examples
    texts = [e.text for e in examples]
    if cross_fit is not None:
        teacher_task = "single_label"  # cross-fitting refits on one gold id per example
        logits = _cross_fit_logits(teacher, class_names, examples, split_path, cross_fit,
                                   seed)  # (N, C)
    elif baseline:
        teacher_task, logits = _baseline_logits(teacher, class_names, texts)  # (N, C)
    else:
        model, tokenizer, max_length = load_teacher(teacher, class_names,
                                                    resolve_device(device or "auto"),
                                                    max_length)
        teacher_task = _checkpoint_task(teacher)
        logger.info("labelling %d examples of %s with %s", len(examples), split_path, teacher)
        logits = forward_texts(model, tokenizer, texts, max_length, batch_size,
                               progress=None).logits  # (N, C); a bar on a terminal only
    multi = _check_tasks(teacher, teacher_task, data.task, split_path)
    probs = sigmoid(logits) if multi else softmax(logits)  # (N, C): scores or a distribution
    rows = (probs if emit == "probs" else logits).tolist()
    out_file = write_labelled_dataset(data_dir, split, out_dir, rows, task=data.task)
    if multi:
        agreement, confidence = teacher_quality([e.label for e in examples], probs.tolist())
    else:
        gold = np.array([e.label for e in examples])
        agreement = float((probs.argmax(1) == gold).mean())
        confidence = float(probs.max(1).mean())
    report = LocalLabelReport(
        split_file=str(split_path), output_file=str(out_file), examples=len(examples), emit=emit,
        agreement=round(agreement, 4), mean_confidence=round(confidence, 4),
        seconds=round(time.perf_counter() - start, 2),
        cross_fit=None if cross_fit is None else {"folds": cross_fit, "seed": seed,
                                                  "stratified": True})
    atomic_write_json(Path(out_dir) / REPORT_NAME, asdict(report))
    what = "" if cross_fit is None else f" out-of-fold ({cross_fit} stratified folds, seed {seed})"
    logger.info("teacher%s agrees with gold on %.2f%% of %s (mean confidence %.3f); wrote %s",
                what, 100 * report.agreement, split_path, report.mean_confidence, out_file)
    return report


def _checkpoint_task(teacher: str | Path) -> str:
    """multi_label for a zhcls checkpoint with a multi-label ``thresholds.json`` or
    ``data.task: multi_label`` in its ``zhcls.yaml``; single_label otherwise (HF models)."""
    import json

    import yaml

    path = Path(teacher)
    try:
        if (path / "thresholds.json").is_file():
            record = json.loads((path / "thresholds.json").read_text(encoding="utf-8"))
            if isinstance(record, dict) and record.get("task") == "multi_label":
                return "multi_label"
        if (path / "zhcls.yaml").is_file():
            config = yaml.safe_load((path / "zhcls.yaml").read_text(encoding="utf-8")) or {}
            if (config.get("data") or {}).get("task") == "multi_label":
                return "multi_label"
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"teacher {path}: cannot read its task ({exc})") from None
    return "single_label"


def _check_tasks(teacher: str | Path, teacher_task: str, data_task: str, split: Path) -> bool:
    """True for multi-label; a single-label teacher cannot label multi-label data (nor the
    other way round)."""
    if teacher_task != data_task:
        raise CheckpointError(f"teacher {teacher} is {teacher_task} but {split} holds "
                              f"{data_task} data; use a teacher trained for the same task")
    return data_task == "multi_label"


def _baseline_logits(teacher: str | Path, class_names: list[str], texts: list[str]
                     ) -> tuple[str, np.ndarray]:
    """(task, logits (N, C)) of a baseline: single-label the log of its calibrated
    probabilities (softmax gives them back), multi-label their log-odds (sigmoid does)."""
    from zhcls.modeling.checkpoint import check_labels_match
    from zhcls.modeling.ngram import BaselineBackend, load_baseline

    ckpt = load_baseline(teacher)
    check_labels_match(ckpt.labels, class_names, f"teacher {teacher}")
    logger.info("labelling %d examples with the baseline %s", len(texts), teacher)
    return ckpt.task, BaselineBackend(ckpt).logits(texts, len(texts))


def _check_cross_fit(teacher: str | Path, baseline: bool, folds: int) -> None:
    if not baseline:
        raise ConfigError(f"--cross-fit needs a `zhcls baseline` teacher; {teacher} is not one "
                          "(a neural or HF teacher cannot be refitted per fold here); drop "
                          "--cross-fit or pass a baseline directory")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"--cross-fit: expected a number of folds >= 2, got {folds!r}")


def cross_fit_probs(pipeline, texts: list[str], labels: list[int], num_labels: int,
                    folds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities (N, C) and each text's fold id (N,): fold k is labelled by a
    clone of ``pipeline`` fitted on the other folds (StratifiedKFold, shuffled with ``seed``)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from zhcls.modeling.ngram import fit_pipeline, predict_proba

    y = np.asarray(labels)
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)  # (N, C)
    fold_of = np.full(len(texts), -1, dtype=np.int64)  # (N,)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (fit_idx, held_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        logger.info("cross-fit fold %d/%d: fitting on %d texts, labelling %d", k + 1, folds,
                    len(fit_idx), len(held_idx))
        model = fit_pipeline(clone(pipeline), [texts[i] for i in fit_idx], y[fit_idx].tolist())
        probs[held_idx] = predict_proba(model, [texts[i] for i in held_idx], num_labels)
        fold_of[held_idx] = k
    assert (fold_of >= 0).all()
    return probs, fold_of


def _cross_fit_logits(teacher: str | Path, class_names: list[str], examples: list,
                      split_path: Path, folds: int, seed: int) -> np.ndarray:
    """Log of out-of-fold probabilities (N, C) from the baseline's refitted pipeline."""
    from zhcls.modeling.checkpoint import check_labels_match
    from zhcls.modeling.ngram import load_baseline

    ckpt = load_baseline(teacher)
    check_labels_match(ckpt.labels, class_names, f"teacher {teacher}")
    bad = next((e for e in examples if not isinstance(e.label, int)), None)
    if bad is not None:
        shown = [class_names[j] for j in bad.label] if isinstance(bad.label, list) else bad.label
        raise DataError(f"--cross-fit is for single-label data: it refits the baseline on one "
                        f"gold class per text, and this text has the label set {shown!r} "
                        "(multi-label data); label it without --cross-fit (in-sample teacher "
                        "probabilities)", split_path, bad.line)
    counts = np.bincount([e.label for e in examples], minlength=len(class_names))
    if counts[counts > 0].min() < folds:
        raise DataError(f"--cross-fit {folds}: a class has only {counts[counts > 0].min()} "
                        "example(s), fewer than the folds; pass a smaller --cross-fit",
                        split_path)
    probs, _ = cross_fit_probs(ckpt.pipeline, [e.text for e in examples],
                               [e.label for e in examples], len(class_names), folds, seed)
    return np.log(np.clip(probs, 1e-30, 1.0)).astype(np.float32)
