"""``zhcls export CKPT --format hf --out DIR``: a plain Hugging Face sequence classifier.

The ``bert`` and ``ERNIE`` heads are exactly what ``transformers`` builds for
``AutoModelForSequenceClassification``: encoder → pooled [CLS] (tanh(W·h_CLS)) → dropout →
linear. Their weights are renamed (``encoder.*`` → ``bert.*`` / ``ernie.*``, ``classifier.*``
kept) into that class and saved with ``save_pretrained``, with ``id2label`` / ``label2id``,
the tokenizer (``model_max_length`` = the checkpoint's ``data.max_length``) and a model card,
so ``AutoModelForSequenceClassification.from_pretrained(DIR)`` and
``pipeline("text-classification", model=DIR)`` load it without zhcls installed. A
multi-label checkpoint gets ``problem_type="multi_label_classification"``, so the pipeline
applies a sigmoid per class (its per-class thresholds stay in zhcls' ``thresholds.json``,
which is copied beside the weights; transformers itself has no threshold setting).

The other heads (``bert_CNN``, ``bert_RNN``, ``bert_RCNN``, ``bert_DPCNN``, ``bert_GRU_att``)
put their own layers (convolutions, RNNs, attention) between the encoder and the linear layer;
transformers has no class with those layers, so they are refused with that reason (use
``--format onnx``, which runs any head without zhcls' PyTorch code).

Before the export is declared done, the saved directory is loaded back with transformers and
its probabilities must match zhcls' on :data:`zhcls.inference.export.CHECK_TEXTS` within
``tolerance``.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from zhcls.errors import ZhclsError
from zhcls.inference.export import (
    CHECK_TEXTS,
    ExportResult,
    _max_diff,
    _torch_probs,
    checkpoint_task,
    export_target,
    scores_from_logits,
)
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)

HF_HEADS = ("bert", "ERNIE")
HF_WEIGHTS = "model.safetensors"


def export_hf(checkpoint: str | Path, out_dir: str | Path, *,
              check_texts: list[str] | None = None, tolerance: float = 1e-5,
              overwrite: bool = False) -> ExportResult:
    """Write ``checkpoint`` as a transformers sequence-classification directory and verify it
    (see module docstring)."""
    from zhcls.modeling.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, "cpu")
    if ckpt.config.model.ngram_buckets:
        raise ZhclsError(
            f"{checkpoint}: trained with model.ngram_buckets {ckpt.config.model.ngram_buckets} "
            "(a hashed n-gram bag beside the encoder), which no transformers class has. Use "
            "--format onnx (runs on onnxruntime without zhcls) or Classifier.load(CKPT)")
    head = ckpt.config.model.head
    if head not in HF_HEADS:
        raise ZhclsError(
            f"{checkpoint}: head {head!r} cannot be exported with --format hf: transformers' "
            "AutoModelForSequenceClassification is encoder → pooled [CLS] → linear (the "
            f"{' and '.join(HF_HEADS)} heads), while {head} adds its own layers between the "
            "encoder and the classifier that no transformers class has. Use --format onnx "
            "(any head; runs on onnxruntime without zhcls) or Classifier.load(CKPT)")
    if ckpt.config.data.long_text != "truncate":
        raise ZhclsError(
            f"{checkpoint}: trained with data.long_text {ckpt.config.data.long_text}, which a "
            "transformers sequence-classification model does not do (it truncates); serve the "
            "checkpoint itself (zhcls predict / zhcls serve / Classifier.load(CKPT))"
            + ("" if ckpt.config.data.long_text == "chunks" else " or use --format onnx"))
    hf_model = to_hf_model(ckpt)
    texts = list(CHECK_TEXTS) + list(check_texts or [])
    with export_target(checkpoint, out_dir, overwrite) as staging:
        result = _write_hf(ckpt, hf_model, checkpoint, staging, texts, tolerance)
    result = result.moved_to(Path(out_dir))
    logger.info("exported %s to %s as %s (max |Δp| %.2e on %d texts)", checkpoint,
                result.out_dir, result.extra["architecture"], result.max_abs_prob_diff,
                result.check_texts)
    return result


def _write_hf(ckpt, hf_model, checkpoint: str | Path, out: Path, texts: list[str],
              tolerance: float) -> ExportResult:
    """The transformers directory in ``out``, verified on ``texts``."""
    head = ckpt.config.model.head
    hf_model.save_pretrained(str(out))
    tokenizer = copy.deepcopy(ckpt.tokenizer)
    tokenizer.model_max_length = ckpt.config.data.max_length  # truncation=True cuts here
    tokenizer.save_pretrained(str(out))
    if checkpoint_task(ckpt) == "multi_label":
        shutil.copy2(ckpt.path / "thresholds.json", out / "thresholds.json")
    diff = _max_diff(_torch_probs(ckpt, texts), hf_probs(out, texts))
    result = ExportResult(out_dir=out, model_path=out / HF_WEIGHTS, head=head, opset=0,
                          check_texts=len(texts), max_abs_prob_diff=diff,
                          extra={"architecture": type(hf_model).__name__})
    if diff > tolerance:
        raise ZhclsError(f"{checkpoint}: the transformers export's probabilities differ from "
                         f"zhcls' by up to {diff:.2e} (> {tolerance:g}) on {len(texts)} check "
                         "texts; the export is wrong (nothing was written; please report it)")
    _write_card(out, ckpt, result)
    return result


def to_hf_model(ckpt) -> torch.nn.Module:
    """The checkpoint's weights in transformers' own sequence-classification class."""
    from transformers import AutoModelForSequenceClassification

    model = ckpt.model
    if getattr(model.encoder, "pooler", None) is None:
        raise ZhclsError(f"{ckpt.path}: the encoder has no pooler, but transformers' sequence "
                         "classifier reads the pooled [CLS] vector; use --format onnx")
    config = copy.deepcopy(model.encoder.config)
    config.num_labels = len(ckpt.labels)
    config.id2label = dict(enumerate(ckpt.labels))
    config.label2id = {name: i for i, name in enumerate(ckpt.labels)}
    config.problem_type = ("multi_label_classification" if checkpoint_task(ckpt) == "multi_label"
                           else "single_label_classification")
    config.classifier_dropout = ckpt.config.model.dropout
    hf = AutoModelForSequenceClassification.from_config(config)
    prefix = hf.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in model.classifier.state_dict().items()})
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ZhclsError(
            f"{ckpt.path}: {type(hf).__name__} (encoder type {config.model_type!r}) is not "
            f"encoder → pooler → linear: missing {missing[:4]}, unexpected {unexpected[:4]}; "
            "this encoder's classifier cannot hold zhcls' head. Use --format onnx")
    return hf.eval()


def hf_probs(directory: str | Path, texts: list[str], batch_size: int = 16) -> np.ndarray:
    """Probabilities (N, C) from the exported directory, loaded by transformers alone
    (per-class sigmoid scores for ``problem_type`` multi_label_classification)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    task = ("multi_label" if model.config.problem_type == "multi_label_classification"
            else "single_label")
    rows = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], truncation=True, padding=True,
                      return_tensors="pt")
            logits = model(**enc).logits  # (B, C)
            rows.append(scores_from_logits(logits.float().numpy(), task))
    return np.concatenate(rows)


def _write_card(out: Path, ckpt, result: ExportResult) -> None:
    from zhcls.modeling.model_card import write_model_card

    atomic_write_json(out / "export.json", {
        "format": "hf", "architecture": result.extra["architecture"], "head": result.head,
        "source": str(ckpt.path), "max_length": ckpt.config.data.max_length,
        "check_texts": result.check_texts, "max_abs_prob_diff": result.max_abs_prob_diff})
    write_model_card(ckpt.path, out, library_name="transformers")
