"""The user-facing classifier: ``Classifier.load(path).predict(texts)``.

``path`` is a zhcls checkpoint directory (PyTorch), a directory written by
``zhcls export --format onnx`` (onnxruntime) or one written by ``zhcls baseline``
(scikit-learn: TF-IDF + linear model, on the texts themselves); all give the same API and the same numbers
to within float32 rounding.

Text rules (the same for the Python API, ``zhcls predict`` and ``zhcls serve``):

* a text must be a ``str``; anything else is an :class:`InputTextError` naming its index;
* an empty or whitespace-only text is an :class:`InputTextError` naming its index (there is
  nothing to classify, and a silent guess would look like a real answer);
* a text longer than the model's ``max_length`` tokens (``data.max_length`` of the
  checkpoint, [CLS] and [SEP] included) is truncated to its first ``max_length`` tokens,
  exactly as in training and evaluation; ``long_text="error"`` makes that an error instead.

Probabilities are always in label-id order: column ``j`` of :meth:`Classifier.predict_proba`
is ``Classifier.labels[j]``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

LONG_TEXT_RULES = ("truncate", "error")
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"


class InputTextError(ZhclsError, ValueError):
    """A text handed to the classifier breaks the text rules (wrong type, empty, too long)."""

    def __init__(self, message: str, index: int | None = None):
        self.index = index
        super().__init__(message)


@dataclass(frozen=True)
class LabelScore:
    """One ranked label: its name, id and probability."""

    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score}


@dataclass(frozen=True)
class Prediction:
    """The result for one text: the best label and its probability; ``top_k`` holds the
    ``k`` best labels, best first, when ``top_k > 1`` was asked (else None)."""

    label: str
    label_id: int
    score: float
    top_k: tuple[LabelScore, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``zhcls predict --format jsonl`` and ``zhcls serve``."""
        out: dict[str, Any] = {"label": self.label, "label_id": self.label_id,
                               "score": self.score}
        if self.top_k is not None:
            out["top_k"] = [item.to_dict() for item in self.top_k]
        return out


class Backend(Protocol):
    """Turns token ids (unpadded, any lengths) into logits (N, C) float32 in input order."""

    name: str

    def logits(self, ids: list[list[int]], batch_size: int) -> np.ndarray: ...


class TorchBackend:
    """A PyTorch :class:`zhcls.modeling.model.ZhclsModel` run through
    :func:`zhcls.modeling.forward.forward_ids` (length-sorted batches, no grad, autocast on GPU)."""

    name = "torch"

    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id

    @property
    def device(self):
        return next(self.model.parameters()).device

    def logits(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        from zhcls.modeling.forward import forward_ids

        return forward_ids(self.model, ids, self.pad_id, batch_size).logits


def is_onnx_dir(path: str | Path) -> bool:
    """True for a directory written by ``zhcls export --format onnx``."""
    return (Path(path) / ONNX_FILE).is_file()


class Classifier:
    """Predict labels and probabilities for Chinese texts with a trained zhcls model.

    Build it with :meth:`load`; ``labels`` names the probability columns (label-id order).
    """

    def __init__(self, backend: Backend, tokenizer, labels: Sequence[str], max_length: int,
                 *, batch_size: int = 64, long_text: str = "truncate", head: str = "",
                 source: str = ""):
        if long_text not in LONG_TEXT_RULES:
            raise ValueError(f"long_text must be one of {LONG_TEXT_RULES}, got {long_text!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.tokenizer = tokenizer
        self.labels: list[str] = list(labels)
        self.max_length = int(max_length)
        self.batch_size = batch_size
        self.long_text = long_text
        self.head = head
        self.source = source

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", *, batch_size: int = 64,
             long_text: str = "truncate", quantized: bool = False,
             max_length: int | None = None, threads: int | None = None) -> Classifier:
        """Load a checkpoint directory (PyTorch) or an ONNX export directory (onnxruntime).

        ``device``: ``auto`` | ``cpu`` | ``cuda[:N]``. ``quantized``: use the int8 model of an
        ONNX export made with ``--quantize int8``. ``max_length`` overrides the checkpoint's
        token limit (at most the encoder's position limit). ``threads``: CPU threads for the
        model (onnxruntime: this session; PyTorch: ``torch.set_num_threads``, process-wide);
        None keeps the library default. One thread is often fastest on a busy machine.
        """
        path = Path(path)
        if threads is not None and threads < 1:
            raise ZhclsError(f"threads must be >= 1, got {threads}")
        if is_onnx_dir(path):
            return cls._load_onnx(path, device, batch_size, long_text, quantized, max_length,
                                  threads)
        from zhcls.modeling.ngram import is_baseline_dir

        if is_baseline_dir(path):
            return cls._load_baseline(path, batch_size, long_text, quantized)
        if quantized:
            raise ZhclsError(f"{path}: quantized=True needs an ONNX export directory made with "
                             "`zhcls export CKPT --format onnx --quantize int8 --out DIR`")
        import torch

        from zhcls.devices import resolve_device
        from zhcls.modeling.checkpoint import load_checkpoint

        if threads is not None:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(path, resolve_device(device))
        limit = ckpt.model.encoder.config.max_position_embeddings
        length = _check_max_length(max_length or ckpt.config.data.max_length, limit, path)
        backend = TorchBackend(ckpt.model, ckpt.tokenizer.pad_token_id)
        logger.info("loaded %s (head %s, %d labels) on %s", path, ckpt.config.model.head,
                    len(ckpt.labels), backend.device)
        return cls(backend, ckpt.tokenizer, ckpt.labels, length, batch_size=batch_size,
                   long_text=long_text, head=ckpt.config.model.head, source=str(path))

    @classmethod
    def _load_onnx(cls, path: Path, device: str, batch_size: int, long_text: str,
                   quantized: bool, max_length: int | None, threads: int | None
                   ) -> Classifier:
        from zhcls.inference.onnx_backend import OnnxBackend, read_export_info
        from zhcls.modeling.checkpoint import read_config, read_labels
        from zhcls.modeling.encoder import load_tokenizer

        info = read_export_info(path)
        model_file = path / (ONNX_INT8_FILE if quantized else ONNX_FILE)
        if not model_file.is_file():
            raise ZhclsError(f"{path}: {model_file.name} not found; export with `--quantize "
                             "int8` to get the int8 model, or load without quantized=True")
        tokenizer = load_tokenizer(str(path))
        config = read_config(path)
        length = _check_max_length(max_length or config.data.max_length,
                                   info["max_position_embeddings"], path)
        backend = OnnxBackend(model_file, tokenizer.pad_token_id, info["min_seq_len"], device,
                              threads)
        logger.info("loaded ONNX export %s (%s, head %s) with %s", path, model_file.name,
                    config.model.head, backend.providers)
        return cls(backend, tokenizer, read_labels(path), length, batch_size=batch_size,
                   long_text=long_text, head=config.model.head, source=str(model_file))

    @classmethod
    def _load_baseline(cls, path: Path, batch_size: int, long_text: str, quantized: bool
                       ) -> Classifier:
        """A ``zhcls baseline`` checkpoint: scikit-learn on the texts themselves (no tokenizer,
        no length limit: ``max_length`` 0 means none)."""
        from zhcls.modeling.ngram import BaselineBackend, load_baseline

        if quantized:
            raise ZhclsError(f"{path}: a baseline checkpoint has no quantized model; load it "
                             "without quantized=True")
        ckpt = load_baseline(path)
        logger.info("loaded baseline %s (%d labels)", path, len(ckpt.labels))
        return cls(BaselineBackend(ckpt), None, ckpt.labels, 0, batch_size=batch_size,
                   long_text=long_text, head="baseline", source=str(path))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    # ---- encoding -------------------------------------------------------------------------

    def check_texts(self, texts: str | Iterable[str], offset: int = 0) -> list[str]:
        """Apply the type and emptiness rules; returns the texts as a list (any iterable of
        strings is accepted: list, tuple, numpy array, pandas Series)."""
        if isinstance(texts, str):
            texts = [texts]
        elif isinstance(texts, bytes | bytearray) or not isinstance(texts, Iterable):
            raise InputTextError(f"expected a string or a list of strings, found "
                                 f"{type(texts).__name__}" + ("; decode it first (UTF-8)"
                                                              if isinstance(texts, bytes) else ""))
        elif not isinstance(texts, list):
            texts = list(texts)  # tuples, numpy arrays, pandas Series, generators
        for i, text in enumerate(texts):
            if not isinstance(text, str):  # numpy.str_ is a str
                raise InputTextError(f"text {i + offset}: expected a string, found "
                                     f"{type(text).__name__} {text!r:.40}", i + offset)
            if not text.strip():
                raise InputTextError(f"text {i + offset}: empty text; every text needs at least "
                                     "one non-space character", i + offset)
        return list(texts)

    def encode(self, texts: list[str], offset: int = 0) -> list[list[int]]:
        """Token ids per text ([CLS] ... [SEP]), truncated to ``max_length`` or an error when
        ``long_text="error"``. A text backend (the baseline) gets the texts unchanged."""
        if getattr(self.backend, "takes_text", False):
            return texts
        limit = self.max_length + (1 if self.long_text == "error" else 0)
        ids = self.tokenizer(texts, truncation=True, max_length=limit, padding=False,
                             return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        if self.long_text == "error":
            for i, row in enumerate(ids):
                if len(row) > self.max_length:
                    raise InputTextError(
                        f"text {i + offset}: longer than the model's limit of {self.max_length} "
                        f"tokens ({texts[i][:20]!r}...); shorten it or load with "
                        "long_text='truncate'", i + offset)
        return ids

    # ---- prediction -----------------------------------------------------------------------

    def predict_logits(self, texts: str | Sequence[str], batch_size: int | None = None
                       ) -> np.ndarray:
        """Raw scores (N, C) float32 in label-id order."""
        batch = self.check_texts(texts)
        if not batch:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        return self.backend.logits(self.encode(batch), batch_size or self.batch_size)

    @overload
    def predict_proba(self, texts: str, batch_size: int | None = None) -> np.ndarray: ...
    @overload
    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None
                      ) -> np.ndarray: ...

    def predict_proba(self, texts, batch_size=None):
        """Probabilities (N, C) in label-id order (``labels`` names the columns); a single
        string gives a 1-D array (C,)."""
        from zhcls.modeling.forward import softmax

        probs = softmax(self.predict_logits(texts, batch_size))  # (N, C)
        return probs[0] if isinstance(texts, str) else probs

    @overload
    def predict(self, texts: str, top_k: int = 1, batch_size: int | None = None
                ) -> Prediction: ...
    @overload
    def predict(self, texts: Sequence[str], top_k: int = 1, batch_size: int | None = None
                ) -> list[Prediction]: ...

    def predict(self, texts, top_k=1, batch_size=None):
        """One :class:`Prediction` per text, in input order; a single string gives one
        :class:`Prediction` (not a list)."""
        self.check_top_k(top_k)
        probs = self.predict_proba(self.check_texts(texts), batch_size)  # (N, C)
        preds = self.to_predictions(probs, top_k)
        return preds[0] if isinstance(texts, str) else preds

    def predict_iter(self, texts: Iterable[str], top_k: int = 1, chunk_size: int = 2048
                     ) -> Iterator[tuple[Prediction, np.ndarray]]:
        """Stream predictions (with each text's probability row) for an iterable of any
        length, ``chunk_size`` texts in memory at a time."""
        self.check_top_k(top_k)
        chunk: list[str] = []
        done = 0
        for text in texts:
            chunk.append(text)
            if len(chunk) >= chunk_size:
                yield from self._predict_chunk(chunk, top_k, done)
                done += len(chunk)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk, top_k, done)

    def _predict_chunk(self, chunk: list[str], top_k: int, offset: int
                       ) -> Iterator[tuple[Prediction, np.ndarray]]:
        from zhcls.modeling.forward import softmax

        self.check_texts(chunk, offset)
        probs = softmax(self.backend.logits(self.encode(chunk, offset), self.batch_size))
        yield from zip(self.to_predictions(probs, top_k), probs, strict=True)

    def check_top_k(self, top_k: int) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) \
                or not 1 <= top_k <= self.num_labels:
            raise InputTextError(f"top_k must be an integer from 1 to {self.num_labels} (the "
                                 f"number of labels), got {top_k!r}")

    def to_predictions(self, probs: np.ndarray, top_k: int = 1) -> list[Prediction]:
        """Rank each row of ``probs`` (N, C); ties keep label-id order."""
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]  # (N, k)
        out = []
        for row, ranked in zip(probs, order, strict=True):
            best = int(ranked[0])
            ranked_labels = None
            if top_k > 1:
                ranked_labels = tuple(LabelScore(self.labels[int(j)], int(j), float(row[j]))
                                      for j in ranked)
            out.append(Prediction(self.labels[best], best, float(row[best]), ranked_labels))
        return out

    def __repr__(self) -> str:
        return (f"Classifier(source={self.source!r}, head={self.head!r}, "
                f"backend={self.backend.name!r}, labels={len(self.labels)}, "
                f"max_length={self.max_length})")


def _check_max_length(max_length: int, limit: int, path: Path) -> int:
    if not 2 < max_length <= limit:
        raise ZhclsError(f"{path}: max_length {max_length} is outside 3..{limit} (the encoder's "
                         "position limit); pick a value in that range")
    return max_length
