"""``zhcls export CKPT --format onnx --out DIR``: the whole classifier (encoder + head +
linear layer) as one ONNX graph ``(input_ids, attention_mask) → logits`` with dynamic batch and
sequence axes, plus the tokenizer, labels and config, so ``Classifier.load(DIR)`` runs it on
onnxruntime with the same API. A ``data.long_text: chunks`` checkpoint becomes two graphs:
``model.onnx`` ``(input_ids, attention_mask) (W, T) → representation (W, R)`` per window, run
in bounded window batches, and ``pool.onnx`` ``(representation, chunk_mask (B, W)) → logits``
(the chunk pooler and classifier), as :func:`zhcls.modeling.forward.forward_ids` does.

Every head exports (packed RNNs included) with PyTorch's TorchScript-based exporter, which
turns ``pack_padded_sequence`` into ONNX ``LSTM``/``GRU`` nodes with per-row sequence lengths.
The export is checked before it is declared done: on :data:`CHECK_TEXTS` (plus any texts the
caller passes) onnxruntime's probabilities must match PyTorch's within ``tolerance``.

A multi-label checkpoint exports the same graph (logits); the directory carries its
``thresholds.json`` and ``export.json`` says ``"task": "multi_label"``, so the Classifier on
the export applies the sigmoid and the same decision. The parity check compares the sigmoid
scores then.

``quantize="int8"`` also writes ``model.int8.onnx`` (onnxruntime dynamic quantisation: int8
weights, activations quantised on the fly) and records how far its probabilities move.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from zhcls.errors import ZhclsError
from zhcls.utils import atomic_write_json, replace_dir

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "hf")
QUANTIZE = ("none", "int8")
DEFAULT_OPSET = 17
POOL_FILE = "pool.onnx"  # chunks checkpoints: window pooling + classifier
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt", "labels.json", "zhcls.yaml", "meta.json", "encoder_config.json",
                "README.md", "thresholds.json")
MANIFEST = ".zhcls-export-files.json"  # what the export wrote (--overwrite removes only that)
KNOWN_OUTPUTS = (*COPIED_FILES, "model.onnx", POOL_FILE, "model.int8.onnx", "export.json",
                 "config.json", "model.safetensors", "added_tokens.json")
# Parity probes: short, long, mixed script, a single character.
CHECK_TEXTS = (
    "好", "中超联赛第十轮主队逆转取胜", "央行宣布下调存款准备金率 银行理财产品收益率继续下滑",
    "新款iPhone搭载自研芯片，售价5999元起", "《英雄联盟》全球总决赛门票今日开售",
    "教育部：2024年高考报名人数达1342万 各地考点做好防疫准备工作",
    "房价" * 40, "周杰伦新专辑首周销量破百万 演唱会一票难求",
)


@dataclass
class ExportResult:
    """What was written, and how closely onnxruntime matches PyTorch on the check texts."""

    out_dir: Path
    model_path: Path
    head: str
    opset: int
    check_texts: int
    max_abs_prob_diff: float
    int8_path: Path | None = None
    int8_max_abs_prob_diff: float | None = None
    int8_top1_agreement: float | None = None
    extra: dict = field(default_factory=dict)

    def moved_to(self, out_dir: Path) -> ExportResult:
        """This result with its paths in ``out_dir`` (the export was written elsewhere)."""
        return replace(self, out_dir=out_dir, model_path=out_dir / self.model_path.name,
                       int8_path=self.int8_path and out_dir / self.int8_path.name)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


class LogitsOnly(torch.nn.Module):
    """The classifier as the graph sees it: ``(input_ids, attention_mask) → logits (B, C)``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, C)


class WindowRepresentation(torch.nn.Module):
    """``data.long_text: chunks``, graph 1: ``(input_ids, attention_mask) (W, T) →
    representation (W, R)``, encoder + head per window (run in bounded window batches)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.window_representations(input_ids, attention_mask)[0]  # (W, R)


class PoolClassify(torch.nn.Module):
    """``chunks``, graph 2: ``(representation (W, R), chunk_mask (B, W) bool) → logits (B, C)``:
    the chunk pooler and the classifier."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, representation: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.model.chunk_pooler(representation, chunk_mask)  # (B, R)
        return self.model.classify(pooled).logits  # (B, C)


def min_seq_len(config) -> int:
    """Shortest padded length the graph accepts: a CNN head's widest kernel (the PyTorch head
    pads short inputs itself; the traced graph keeps the long-input branch)."""
    return max(config.model.filter_sizes) if config.model.head == "bert_CNN" else 1


@contextmanager
def export_target(checkpoint: str | Path, out_dir: str | Path, overwrite: bool
                  ) -> Iterator[Path]:
    """A staging directory beside ``out_dir`` to export into; when the block succeeds it
    replaces ``out_dir`` (:func:`zhcls.utils.replace_dir`), when it fails it is removed and
    ``out_dir`` is as it was. ``out_dir`` must be new or empty, or with ``overwrite`` an
    earlier export (its ``export.json``) holding only what that export wrote."""
    out = Path(out_dir)
    if out.resolve() == Path(checkpoint).resolve():
        raise ZhclsError(f"--out {out} is the checkpoint itself; pick a new directory")
    if out.exists() and not out.is_dir():
        raise ZhclsError(f"--out {out} is a file; pass a new or empty directory")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if names and not overwrite:
        raise ZhclsError(f"--out {out} is not empty (it holds {_listed(names)}); pass a new or "
                         "empty directory, or --overwrite to replace an earlier export there "
                         "(nothing was changed)")
    foreign = _not_exported(out, names)
    if foreign:
        raise ZhclsError(f"--overwrite: {out} holds what `zhcls export` did not write "
                         f"({_listed(foreign)}); move it away or pass a new --out (nothing was "
                         "changed)")
    staging = out.with_name(f".{out.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        yield staging
        atomic_write_json(staging / MANIFEST, sorted(p.name for p in staging.iterdir()))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if names:
        logger.info("replacing the earlier export in %s", out)
    replace_dir(staging, out)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _not_exported(out: Path, names: list[str]) -> list[str]:
    """The names in ``out`` that no export wrote: all of them without ``export.json``; else
    those outside its manifest (exports before the manifest: outside the known outputs), an
    ``evaluate`` of the export (``eval_*``) counting as the export's."""
    if not (out / "export.json").is_file():
        return names
    try:
        written = set(json.loads((out / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        written = set(KNOWN_OUTPUTS)
    return [n for n in names if n not in written and n != MANIFEST and not n.startswith("eval_")]


def export_onnx(checkpoint: str | Path, out_dir: str | Path, *, opset: int = DEFAULT_OPSET,
                quantize: str = "none", check_texts: list[str] | None = None,
                tolerance: float = 1e-4, overwrite: bool = False) -> ExportResult:
    """Export ``checkpoint`` to ``out_dir`` and verify it (see module docstring)."""
    from zhcls.modeling.checkpoint import load_checkpoint
    from zhcls.utils import require_extra

    require_extra("export")
    if quantize not in QUANTIZE:
        raise ZhclsError(f"--quantize must be one of {QUANTIZE}, got {quantize!r}")
    ckpt = load_checkpoint(checkpoint, "cpu")
    texts = list(CHECK_TEXTS) + list(check_texts or [])
    with export_target(checkpoint, out_dir, overwrite) as staging:
        result = _write_onnx(ckpt, Path(checkpoint), staging, opset, quantize, texts, tolerance)
    result = result.moved_to(Path(out_dir))
    logger.info("exported %s to %s (max |Δp| %.2e on %d texts)", checkpoint, result.model_path,
                result.max_abs_prob_diff, result.check_texts)
    return result


def _write_onnx(ckpt, checkpoint: Path, out: Path, opset: int, quantize: str, texts: list[str],
                tolerance: float) -> ExportResult:
    """The graph(s), side files and export.json in ``out``, verified on ``texts``."""
    model_path = out / "model.onnx"
    min_len = min_seq_len(ckpt.config)
    pool_path = out / POOL_FILE if ckpt.config.data.long_text == "chunks" else None
    _trace_to_onnx(ckpt, model_path, opset, min_len, windows=pool_path is not None)
    if pool_path is not None:
        _trace_pool(ckpt, pool_path, opset)
    _copy_side_files(checkpoint, out)
    torch_probs = _torch_probs(ckpt, texts)  # (N, C); multi-label: sigmoid scores
    diff = _max_diff(torch_probs, _onnx_probs(model_path, texts, min_len, ckpt, pool_path))
    result = ExportResult(out_dir=out, model_path=model_path, head=ckpt.config.model.head,
                          opset=opset, check_texts=len(texts), max_abs_prob_diff=diff)
    if diff > tolerance:
        raise ZhclsError(f"{checkpoint}: the ONNX export's onnxruntime probabilities differ "
                         f"from PyTorch by up to {diff:.2e} (> {tolerance:g}) on {len(texts)} "
                         f"check texts for head {result.head!r}; the export is wrong (nothing "
                         "was written). Try another --opset")
    if quantize == "int8":
        result.int8_path = _quantize_int8(model_path, out / "model.int8.onnx")
        q_probs = _onnx_probs(result.int8_path, texts, min_len, ckpt, pool_path)
        result.int8_max_abs_prob_diff = _max_diff(torch_probs, q_probs)
        result.int8_top1_agreement = float((q_probs.argmax(1) == torch_probs.argmax(1)).mean())
    _write_info(out, result, ckpt, min_len, pool_path)
    return result


def _trace_pool(ckpt, pool_path: Path, opset: int) -> None:
    model = ckpt.model
    reps = torch.randn(3, model.rep_dim)  # (W, R)
    mask = torch.tensor([[True, True, False], [False, False, True]])  # (B, W)
    axes = {"representation": {0: "windows"}, "chunk_mask": {0: "batch", 1: "windows"},
            "logits": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(PoolClassify(model).eval(), (reps, mask), str(pool_path),
                              dynamo=False, input_names=["representation", "chunk_mask"],
                              output_names=["logits"], dynamic_axes=axes, opset_version=opset)
    except Exception as exc:  # the exporter raises many untyped errors
        raise ZhclsError(f"chunk pooling {ckpt.config.data.chunk_pooling!r} could not be "
                         f"exported to ONNX (opset {opset}): {type(exc).__name__}: {exc}") from exc


def _trace_to_onnx(ckpt, model_path: Path, opset: int, min_len: int,
                   windows: bool = False) -> None:
    tok = ckpt.tokenizer
    # Two rows of different lengths so the packed-RNN path is traced with real padding.
    enc = tok(["中超联赛第十轮主队逆转取胜", "央行降准"], padding=True, return_tensors="pt",
              return_token_type_ids=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]  # (2, T)
    if ids.shape[1] < min_len:
        extra = min_len - ids.shape[1]
        ids = torch.nn.functional.pad(ids, (0, extra), value=tok.pad_token_id)
        mask = torch.nn.functional.pad(mask, (0, extra), value=0)
    wrapper = (WindowRepresentation if windows else LogitsOnly)(ckpt.model).eval()
    output = "representation" if windows else "logits"
    axes = {"input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"}, output: {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (ids, mask), str(model_path), dynamo=False,
                              input_names=["input_ids", "attention_mask"],
                              output_names=[output], dynamic_axes=axes, opset_version=opset)
    except Exception as exc:  # the exporter raises many untyped errors
        raise ZhclsError(f"head {ckpt.config.model.head!r} could not be exported to ONNX "
                         f"(opset {opset}): {type(exc).__name__}: {exc}") from exc


def _copy_side_files(src: Path, out: Path) -> None:
    for name in COPIED_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)


def checkpoint_task(ckpt) -> str:
    """``multi_label`` when the checkpoint has a multi-label decision, else ``single_label``."""
    from zhcls.modeling.checkpoint import read_thresholds

    multi = read_thresholds(ckpt.path, ckpt.labels, ckpt.config.data.task) is not None
    return "multi_label" if multi else "single_label"


def scores_from_logits(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax probabilities, or per-class sigmoid scores for ``multi_label`` (N, C)."""
    from zhcls.modeling.forward import sigmoid, softmax

    return sigmoid(logits) if task == "multi_label" else softmax(logits)


def _torch_probs(ckpt, texts: list[str]) -> np.ndarray:
    from zhcls.modeling.forward import forward_texts

    logits = forward_texts(ckpt.model, ckpt.tokenizer, texts, ckpt.config.data.max_length,
                           batch_size=4).logits  # (N, C)
    return scores_from_logits(logits, checkpoint_task(ckpt))


def _onnx_probs(model_path: Path, texts: list[str], min_len: int, ckpt,
                pool_path: Path | None = None) -> np.ndarray:
    from zhcls.data.dataset import encode_with
    from zhcls.inference.onnx_backend import OnnxBackend

    backend = OnnxBackend(model_path, ckpt.tokenizer.pad_token_id, min_len, "cpu",
                          pool_path=pool_path)
    ids = encode_with(ckpt.tokenizer, texts, ckpt.config.data.max_length,
                      ckpt.model.long_text)  # as the checkpoint reads long texts
    return scores_from_logits(backend.logits(ids, batch_size=4), checkpoint_task(ckpt))


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _quantize_int8(model_path: Path, int8_path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs every tensor it skips on the root logger
    try:
        quantize_dynamic(str(model_path), str(int8_path), weight_type=QuantType.QInt8)
    except Exception as exc:  # onnxruntime raises untyped errors
        raise ZhclsError(f"int8 quantisation of {model_path} failed: {exc}") from exc
    finally:
        root.setLevel(level)
    return int8_path


def _write_info(out: Path, result: ExportResult, ckpt, min_len: int,
                pool_path: Path | None = None) -> None:
    output = "logits" if pool_path is None else "representation"
    info = {"format": "onnx", "inputs": ["input_ids", "attention_mask"], "outputs": [output],
            "min_seq_len": min_len, "max_length": ckpt.config.data.max_length,
            "max_position_embeddings": ckpt.model.encoder.config.max_position_embeddings,
            "source": str(ckpt.path), "torch_version": torch.__version__,
            "task": checkpoint_task(ckpt),
            **{k: v for k, v in result.to_dict().items() if k not in ("out_dir", "extra")}}
    info["model_path"] = result.model_path.name  # relative: the directory can be moved
    if result.int8_path is not None:
        info["int8_path"] = result.int8_path.name
    if pool_path is not None:  # chunks: window graph (model.onnx) + pooling graph
        info["pool_path"] = pool_path.name
        info["pool_inputs"] = ["representation", "chunk_mask"]
    atomic_write_json(out / "export.json", info)
