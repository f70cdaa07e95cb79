"""The user-facing classifier: ``Classifier.load(path).predict(texts)``.

``path`` is a zhcls checkpoint directory (PyTorch), a directory written by
``zhcls export --format onnx`` (onnxruntime) or one written by ``zhcls baseline``
(scikit-learn: TF-IDF + linear model, on the texts themselves); all give the same API and the same numbers
to within float32 rounding.

Text rules (the same for the Python API, ``zhcls predict`` and ``zhcls serve``):

* a text must be a ``str``; anything else is an :class:`InputTextError` naming its index;
* a text that is empty after normalisation (nothing but whitespace, control characters and
  zero-width characters such as U+200B or U+FEFF, which the tokenizer drops) is an
  :class:`InputTextError` naming its index (there is nothing to classify, and a silent guess
  would look like a real answer);
* a text whose every token is ``[UNK]`` (the vocabulary knows none of its characters) is
  classified, but its :class:`Prediction` carries a ``warning``;
* a text longer than the model's ``max_length`` tokens (``data.max_length`` of the
  checkpoint, [CLS] and [SEP] included) is handled as in training and evaluation, by the
  checkpoint's ``data.long_text``: truncated to its first ``max_length`` tokens
  (``truncate``), cut to its first and last tokens (``head_tail``), or cut into overlapping
  windows whose representations are pooled (``chunks``; every window, run at most
  ``batch_size`` windows at a time, so memory stays bounded); ``long_text="error"`` makes a
  long text an error instead.

Probabilities are always in label-id order: column ``j`` of :meth:`Classifier.predict_proba`
is ``Classifier.labels[j]``.

A multi-label checkpoint (``data.task: multi_label``, with ``thresholds.json``) gives one
sigmoid score per class and a label set per text (:mod:`zhcls.inference.multilabel`);
:attr:`Classifier.task` says which kind is loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from zhcls.errors import ConfigError, ZhclsError
from zhcls.inference.backends import (  # noqa: F401  (re-exported)
    ONNX_FILE,
    ONNX_INT8_FILE,
    Backend,
    TorchBackend,
    _check_max_length,
    _long_text_spec,
    is_onnx_dir,
)
from zhcls.inference.prediction import (  # noqa: F401  (re-exported)
    InputTextError,
    LabelScore,
    Prediction,
    blank_text_reason,
    multilabel_predictions,
    ranked_predictions,
    unknown_token_warnings,
)

logger = logging.getLogger(__name__)

LONG_TEXT_RULES = ("truncate", "error")


class Classifier:
    """Predict labels and probabilities for Chinese texts with a trained zhcls model.

    Build it with :meth:`load` (or its Hugging Face name :meth:`from_pretrained`, which also
    takes a Hub repo id); ``labels`` names the probability columns (label-id order).
    """

    def __init__(self, backend: Backend, tokenizer, labels: Sequence[str], max_length: int,
                 *, batch_size: int = 64, long_text: str = "truncate", head: str = "",
                 source: str = "", task: str = "single_label", thresholds=None,
                 at_least_one: bool = False):
        if long_text not in LONG_TEXT_RULES:
            raise ConfigError(f"long_text must be one of {LONG_TEXT_RULES}, got {long_text!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.backend = backend
        self.tokenizer = tokenizer
        self.labels: list[str] = list(labels)
        self.max_length = int(max_length)
        self.batch_size = batch_size
        self.long_text = long_text
        self.head = head
        self.source = source
        self.checkpoint = None  # the zhcls Checkpoint for the PyTorch backend
        #: the checkpoint's ``data.long_text`` (a LongTextSpec; None: truncate)
        self.windows = None
        self._set_task(task, thresholds, at_least_one)

    def _set_task(self, task: str, thresholds, at_least_one: bool) -> None:
        """``task``; multi-label: ``thresholds`` (C,) (None: 0.5 each) and ``at_least_one``."""
        from zhcls.inference.multilabel import TASKS, check_thresholds

        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        if task == "single_label" and thresholds is not None:
            raise ConfigError("thresholds are for task='multi_label'")
        self.task = task
        self.thresholds = (check_thresholds(thresholds, len(self.labels))
                           if task == "multi_label" else None)  # (C,) float64
        self.at_least_one = bool(at_least_one)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", *, batch_size: int = 64,
             long_text: str = "truncate", quantized: bool = False,
             max_length: int | None = None, threads: int | None = None,
             precision: str | None = None) -> Classifier:
        """Load a checkpoint directory (PyTorch) or an ONNX export directory (onnxruntime).

        ``device``: ``auto`` | ``cpu`` | ``cuda[:N]``. ``quantized``: use the int8 model of an
        ONNX export made with ``--quantize int8``. ``max_length`` overrides the checkpoint's
        token limit (at most the encoder's position limit). ``threads``: CPU threads for the
        model (onnxruntime: this session; PyTorch: ``torch.set_num_threads``, process-wide);
        None keeps the library default. One thread is often fastest on a busy machine.
        ``precision``: arithmetic on a GPU (``fp32`` | ``bf16`` | ``fp16`` | ``auto``); None
        uses the checkpoint's ``train.precision``, so a model trained in fp32 predicts in fp32.
        """
        path = Path(path)
        if threads is not None and threads < 1:
            raise ZhclsError(f"threads must be >= 1, got {threads}")
        if precision not in (None, "auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
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
        from zhcls.inference.multilabel import decision_kwargs
        from zhcls.modeling.checkpoint import load_checkpoint

        if threads is not None:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(path, resolve_device(device))
        limit = ckpt.model.encoder.config.max_position_embeddings
        length = _check_max_length(max_length or ckpt.config.data.max_length, limit, path)
        precision = precision or ckpt.config.train.precision
        backend = TorchBackend(ckpt.model, ckpt.tokenizer.pad_token_id, precision)
        logger.info("loaded %s (head %s, %d labels) on %s, precision %s", path,
                    ckpt.config.model.head, len(ckpt.labels), backend.device, precision)
        clf = cls(backend, ckpt.tokenizer, ckpt.labels, length, batch_size=batch_size,
                   long_text=long_text, head=ckpt.config.model.head, source=str(path),
                   **decision_kwargs(path, ckpt.labels, ckpt.config.data.task))
        clf.checkpoint = ckpt
        clf.windows = _long_text_spec(ckpt.config, length)
        return clf

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str = "auto", *,
                        revision: str | None = None, token: str | None = None,
                        cache_dir: str | Path | None = None, **load_kwargs: Any) -> Classifier:
        """:meth:`load` under its Hugging Face name: ``name_or_path`` is a local directory or
        a Hub repo id (downloaded with ``huggingface_hub``; the local cache only when
        ``HF_HUB_OFFLINE`` is set). ``load_kwargs`` go to :meth:`load`."""
        from zhcls.inference.hub import resolve_pretrained

        path = resolve_pretrained(name_or_path, revision=revision, token=token,
                                  cache_dir=cache_dir)
        return cls.load(path, device, **load_kwargs)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write this classifier (a zhcls checkpoint or an ONNX export directory, with its
        ``README.md`` model card) to ``save_directory``; :meth:`from_pretrained` reads it."""
        from zhcls.inference.hub import save_pretrained

        return save_pretrained(self, save_directory)

    def push_to_hub(self, repo_id: str, *, token: str | None = None,
                    private: bool | None = None,
                    commit_message: str = "Upload zhcls classifier") -> str:
        """Upload :meth:`save_pretrained`'s directory to the Hub repo ``repo_id`` (needs
        internet and a token: ``huggingface-cli login`` or ``HF_TOKEN``); returns the commit
        URL."""
        from zhcls.inference.hub import push_to_hub

        return push_to_hub(self, repo_id, token=token, private=private,
                           commit_message=commit_message)

    @classmethod
    def _load_onnx(cls, path: Path, device: str, batch_size: int, long_text: str,
                   quantized: bool, max_length: int | None, threads: int | None
                   ) -> Classifier:
        from zhcls.utils import require_extra

        require_extra("export", "onnxruntime")
        from zhcls.inference.multilabel import decision_kwargs
        from zhcls.inference.onnx_backend import OnnxBackend, read_export_info
        from zhcls.modeling.checkpoint import (
            check_labels_digest,
            read_config,
            read_labels,
            read_meta,
        )
        from zhcls.modeling.encoder import load_tokenizer

        info = read_export_info(path)
        meta = read_meta(path)
        labels = read_labels(path)
        check_labels_digest(labels, meta.get("labels_sha256"), path / ONNX_FILE)
        model_file = path / (ONNX_INT8_FILE if quantized else ONNX_FILE)
        if not model_file.is_file():
            raise ZhclsError(f"{path}: {model_file.name} not found; export with `--quantize "
                             "int8` to get the int8 model, or load without quantized=True")
        tokenizer = load_tokenizer(str(path))
        config = read_config(path)
        length = _check_max_length(max_length or config.data.max_length,
                                   info["max_position_embeddings"], path)
        pool = path / info["pool_path"] if info.get("pool_path") else None  # chunks export
        backend = OnnxBackend(model_file, tokenizer.pad_token_id, info["min_seq_len"], device,
                              threads, pool_path=pool)
        logger.info("loaded ONNX export %s (%s, head %s) with %s", path, model_file.name,
                    config.model.head, backend.providers)
        clf = cls(backend, tokenizer, labels, length, batch_size=batch_size,
                  long_text=long_text, head=config.model.head, source=str(model_file),
                  **decision_kwargs(path, labels, config.data.task))
        clf.windows = _long_text_spec(config, length)
        return clf

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
        decision = {"task": ckpt.task, "thresholds": ckpt.thresholds,
                    "at_least_one": ckpt.at_least_one} if ckpt.task == "multi_label" else {}
        return cls(BaselineBackend(ckpt), None, ckpt.labels, 0, batch_size=batch_size,
                   long_text=long_text, head="baseline", source=str(path), **decision)

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
            reason = blank_text_reason(text)
            if reason is not None:
                raise InputTextError(f"text {i + offset}: {reason}; every text needs at least "
                                     "one visible character", i + offset)
        return list(texts)

    def encode(self, texts: list[str], offset: int = 0) -> list:
        """Token ids per text ([CLS] ... [SEP]) under the checkpoint's ``data.long_text``: an
        id list per text (truncate, head_tail) or a list of windows per text (chunks); an
        error for a text over ``max_length`` when ``long_text="error"``. A text backend (the
        baseline) gets the texts unchanged."""
        if getattr(self.backend, "takes_text", False):
            return texts
        if self.long_text != "error" and self.windows is not None \
                and self.windows.mode != "truncate":
            from zhcls.data.dataset import encode_with

            ids = encode_with(self.tokenizer, texts, self.max_length, self.windows)
            self._check_not_blank(texts, ids, offset)
            return ids
        limit = self.max_length + (1 if self.long_text == "error" else 0)
        ids = self.tokenizer(texts, truncation=True, max_length=limit, padding=False,
                             return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        self._check_not_blank(texts, ids, offset)
        for i, row in enumerate(ids):
            if self.long_text == "error" and len(row) > self.max_length:
                per = " per window" if self.windows is not None and \
                    self.windows.mode == "chunks" else ""
                raise InputTextError(f"text {i + offset}: longer than the model's limit of "
                                     f"{self.max_length} tokens{per} ({texts[i][:20]!r}...); "
                                     f"{self._long_text_advice()}", i + offset)
        return ids

    def _long_text_advice(self) -> str:
        """How to read a refused long text (long_text='error'), for this model's reading."""
        mode = self.windows.mode if self.windows is not None else "truncate"
        reads = {"truncate": "which reads its first tokens",
                 "head_tail": "which reads its first and last tokens",
                 "chunks": "which reads every window of it"}[mode]
        return (f"shorten it, or let the model read it as it was trained ({mode}, {reads}): "
                "load with long_text='truncate' (zhcls predict: drop --long-text error)")

    def _check_not_blank(self, texts: list[str], ids: list, offset: int) -> None:
        """A text the tokenizer keeps nothing of is an error (its first window is bare)."""
        specials = self.tokenizer.num_special_tokens_to_add()
        for i, row in enumerate(ids):
            first = row[0] if row and isinstance(row[0], list) else row
            if len(first) <= specials:  # the tokenizer dropped every character
                raise InputTextError(f"text {i + offset}: empty text after normalisation (the "
                                     f"tokenizer keeps none of {texts[i][:20]!r}); every text "
                                     "needs at least one visible character", i + offset)

    def unknown_warnings(self, ids: list[list[int]]) -> list[str | None]:
        """Per text: a warning when every token is the unknown token, else None (a text
        backend such as the baseline has no tokens, hence no warning)."""
        return unknown_token_warnings(self.tokenizer, ids)

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
        string gives a 1-D array (C,). Multi-label: per-class sigmoid scores (rows need not
        sum to 1)."""
        probs = self.scores_of(self.predict_logits(texts, batch_size))  # (N, C)
        return probs[0] if isinstance(texts, str) else probs

    def scores_of(self, logits: np.ndarray) -> np.ndarray:
        """Logits (N, C) → softmax probabilities, or sigmoid scores for multi-label."""
        from zhcls.modeling.forward import sigmoid, softmax

        return sigmoid(logits) if self.task == "multi_label" else softmax(logits)

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
        batch = self.check_texts(texts)
        preds = [pred for pred, _ in self._predict_chunk(batch, top_k, 0, batch_size)]
        return preds[0] if isinstance(texts, str) else preds

    def predict_iter(self, texts: Iterable[str], top_k: int = 1, chunk_size: int = 2048
                     ) -> Iterator[tuple[Prediction, np.ndarray]]:
        """Stream predictions (with each text's probability row) for an iterable of any
        length, ``chunk_size`` texts in memory at a time."""
        self.check_top_k(top_k)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
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

    def _predict_chunk(self, chunk: list[str], top_k: int, offset: int,
                       batch_size: int | None = None
                       ) -> Iterator[tuple[Prediction, np.ndarray]]:
        if not chunk:
            return
        self.check_texts(chunk, offset)
        ids = self.encode(chunk, offset)
        probs = self.scores_of(self.backend.logits(ids, batch_size or self.batch_size))  # (N, C)
        preds = self.to_predictions(probs, top_k, self.unknown_warnings(ids))
        yield from zip(preds, probs, strict=True)

    def check_top_k(self, top_k: int) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) \
                or not 1 <= top_k <= self.num_labels:
            raise InputTextError(f"top_k must be an integer from 1 to {self.num_labels} (the "
                                 f"number of labels), got {top_k!r}")

    def to_predictions(self, probs: np.ndarray, top_k: int = 1,
                       warnings: Sequence[str | None] | None = None) -> list[Prediction]:
        """Rank each row of ``probs`` (N, C); ties keep label-id order. ``warnings``: one per
        row (see :meth:`unknown_warnings`), None for none. Multi-label: label sets under
        the thresholds (:mod:`zhcls.inference.multilabel`)."""
        if self.task == "multi_label":
            return self._multilabel_predictions(probs, top_k, warnings)
        return ranked_predictions(probs, self.labels, top_k, warnings)

    def _multilabel_predictions(self, probs: np.ndarray, top_k: int,
                                warnings: Sequence[str | None] | None) -> list[Prediction]:
        return multilabel_predictions(probs, self.labels, self.thresholds, self.at_least_one,
                                      top_k, warnings)

    def __repr__(self) -> str:
        return (f"Classifier(source={self.source!r}, head={self.head!r}, "
                f"backend={self.backend.name!r}, task={self.task!r}, labels={len(self.labels)}, "
                f"max_length={self.max_length})")
