"""Tokenise once (cached on disk), then batch with dynamic padding.

The cache key covers what determines the tokens and nothing else: the validated texts, the
tokenizer (class, vocabulary, normalisation; not its mutable truncation state),
``max_length`` and the long-text settings (``data.long_text`` with its head, stride and
window cap; truncate keeps the key it always had). A second run on the same data skips tokenisation; any change re-tokenises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from zhcls.data.formats import SplitData

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    root = os.environ.get("ZHCLS_CACHE") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    sub = "" if os.environ.get("ZHCLS_CACHE") else "zhcls"
    return Path(root).expanduser() / sub / "tokenized"


#: Tokenizer settings that change which ids a text gets (slow tokenizers have no backend).
_SLOW_SETTINGS = ("do_lower_case", "tokenize_chinese_chars", "strip_accents", "never_split")


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """Hash of what decides the token ids: the tokenizer class and its serialized backend
    (vocabulary, normaliser, pre-tokenizer, model, post-processor). The backend's
    ``truncation`` and ``padding`` entries are left out: they are mutable state that every
    ``tokenizer(..., truncation=True)`` call rewrites (``max_length`` is keyed apart)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
    else:
        state = {"vocab": tokenizer.get_vocab(),
                 "settings": {k: getattr(tokenizer, k, None) for k in _SLOW_SETTINGS}}
    state["class"] = type(tokenizer).__name__
    payload = json.dumps(state, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class EncodedDataset(Dataset):
    """Token ids per example (unpadded), labels, and teacher rows with a presence mask.
    Multi-label (``task="multi_label"``): ``labels[i]`` is a list of class ids (maybe empty)
    and an item's ``labels`` the (C,) float32 multi-hot row of ``num_labels`` classes."""

    def __init__(self, input_ids: list[list[int]], labels: list[int] | list[list[int]],
                 teacher: torch.Tensor | None = None, teacher_mask: torch.Tensor | None = None,
                 num_labels: int | None = None, task: str = "single_label"):
        if task == "multi_label" and num_labels is None:
            raise ValueError("EncodedDataset: multi_label needs num_labels (the class count)")
        self.input_ids = input_ids
        self.labels = labels
        self.teacher = teacher  # (N, C) float32 or None
        self.teacher_mask = teacher_mask  # (N,) bool or None
        self.num_labels = num_labels
        self.task = task
        self.lengths = [len(x) for x in input_ids]

    def __len__(self) -> int:
        return len(self.labels)

    def _label(self, i: int) -> int | torch.Tensor:
        if self.task != "multi_label":
            return self.labels[i]
        row = torch.zeros(self.num_labels, dtype=torch.float32)  # (C,)
        row[list(self.labels[i])] = 1.0
        return row

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "labels": self._label(i)}
        if self.teacher is not None:
            item["teacher"] = self.teacher[i]
            item["teacher_mask"] = self.teacher_mask[i]
        return item


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
                 ) -> list[list[int]]:
    """Batch-tokenise with truncation to ``max_length`` (incl. [CLS]/[SEP]), no padding."""
    return tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def encode_split(
    split: SplitData,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    num_labels: int,
    cache_dir: str | Path | None = None,
    *,
    long_text: str = "truncate",
    head_tokens: int | None = None,
    stride: int | None = None,
    max_chunks: int | None = None,
) -> EncodedDataset:
    """Tokenise a split, reusing the on-disk cache when the key matches. ``long_text`` (with
    ``head_tokens``, ``stride``, ``max_chunks``; see :mod:`zhcls.data.long_text`): truncate and
    head_tail give one id list per text, chunks a list of windows per text."""
    spec = LongTextSpec.of(long_text, max_length, head_tokens, stride, max_chunks)
    key = _cache_key(split, tokenizer, max_length, spec)
    cache_file = Path(cache_dir or default_cache_dir()) / f"{key}.pt"
    input_ids = None
    if cache_file.is_file():
        try:
            input_ids = torch.load(cache_file, weights_only=True)["input_ids"]
            logger.info("tokenised %s from cache %s", split.path.name, cache_file)
        except (OSError, RuntimeError, KeyError) as exc:
            logger.warning("ignoring unreadable tokenisation cache %s (%s)", cache_file, exc)
    if input_ids is None:
        input_ids = encode_with(tokenizer, split.texts, max_length, spec)
        _atomic_save({"input_ids": input_ids}, cache_file)
    teacher = mask = None
    if split.has_teacher:
        teacher = torch.zeros(len(split.examples), num_labels, dtype=torch.float32)  # (N, C)
        mask = torch.zeros(len(split.examples), dtype=torch.bool)  # (N,)
        for i, ex in enumerate(split.examples):
            if ex.teacher is not None:
                teacher[i] = torch.tensor(ex.teacher)
                mask[i] = True
    return EncodedDataset(input_ids, split.labels, teacher, mask, num_labels=num_labels,
                          task=split.task)


@dataclass(frozen=True)
class LongTextSpec:
    """``data.long_text`` with its resolved settings (``max_chunks`` None = every window)."""

    mode: str = "truncate"
    head_tokens: int = 0
    stride: int = 1
    max_chunks: int | None = None

    @classmethod
    def of(cls, mode: str, max_length: int, head_tokens: int | None = None,
           stride: int | None = None, max_chunks: int | None = None) -> LongTextSpec:
        from zhcls.config import DataConfig  # its resolved_* hold the one default formula

        data = DataConfig(max_length=max_length, long_text=mode, head_tokens=head_tokens,
                          chunk_stride=stride)
        return cls.from_config(data, max_chunks)

    @classmethod
    def from_config(cls, data, max_chunks: int | None = None) -> LongTextSpec:
        """From a :class:`zhcls.config.DataConfig` (``max_chunks``: the training cap or None)."""
        return cls(data.long_text, data.resolved_head_tokens(), data.resolved_stride(),
                   max_chunks)

    def key(self) -> str:
        return "" if self.mode == "truncate" else (
            f"{self.mode}|{self.head_tokens}|{self.stride}|{self.max_chunks}|")


def encode_with(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
                spec: LongTextSpec | None) -> list:
    """Token ids per text under ``spec``: an id list (truncate, head_tail) or a list of
    windows (chunks)."""
    if spec is None or spec.mode == "truncate":
        return encode_texts(tokenizer, texts, max_length)
    from zhcls.data.long_text import encode_long

    windows = encode_long(tokenizer, texts, max_length, spec.mode, head_tokens=spec.head_tokens,
                          stride=spec.stride, max_chunks=spec.max_chunks)
    return windows if spec.mode == "chunks" else [w[0] for w in windows]


def _cache_key(split: SplitData, tokenizer: PreTrainedTokenizerBase, max_length: int,
               spec: LongTextSpec | None = None) -> str:
    h = hashlib.sha256()
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(f"|{max_length}|{len(split.examples)}|".encode())
    h.update(spec.key().encode() if spec is not None else b"")  # truncate: the old key
    for ex in split.examples:  # the validated texts, so skip/encoding options are covered
        h.update(ex.text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:24]


def _atomic_save(obj: dict, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache must not stop training
        logger.warning("could not write tokenisation cache %s (%s)", path, exc)


def pad_ids(seqs: list[list[int]], pad_id: int, min_len: int = 1
            ) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token-id lists to the longest (at least ``min_len``): ids and attention mask,
    both int64 (B, T). The one padder of training, forward passes and the ONNX backend."""
    longest = max(min_len, max(len(s) for s in seqs))
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(seqs), longest), dtype=np.int64)  # (B, T)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


@dataclass
class Collator:
    """Pads a list of examples to the longest in the batch (dynamic padding). ``labels``:
    (B,) long class ids, or (B, C) float32 multi-hot for multi-label items."""

    pad_token_id: int

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        ids, mask, chunk_mask = collate_windows([it["input_ids"] for it in items],
                                                self.pad_token_id)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                 "labels": _stack_labels([it["labels"] for it in items])}
        if "teacher" in items[0]:
            batch["teacher"] = torch.stack([it["teacher"] for it in items])  # (B, C)
            batch["teacher_mask"] = torch.stack([it["teacher_mask"] for it in items])  # (B,)
        if chunk_mask is not None:
            batch["chunk_mask"] = torch.from_numpy(chunk_mask)  # (B, W)
        return batch


def _stack_labels(labels: list) -> torch.Tensor:
    """(B, C) float32 from multi-hot rows (multi-label), else (B,) long class ids."""
    if isinstance(labels[0], torch.Tensor) and labels[0].dim() == 1:
        return torch.stack(labels).to(torch.float32)  # (B, C)
    return torch.tensor(labels, dtype=torch.long)  # (B,)


def is_windowed(ids: list) -> bool:
    """True when ``ids`` holds window lists per text (chunks), not one id list per text."""
    return bool(ids) and bool(ids[0]) and isinstance(ids[0][0], list | tuple)


def collate_windows(ids: list, pad_id: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pad one id list per text (ids, mask (B, T); chunk mask None) or, for window lists, all
    windows of the batch in text order: ids, mask (W, T) and chunk mask (B, W) bool, row b
    True on text b's windows."""
    if not is_windowed(ids):
        return (*pad_ids([list(x) for x in ids], pad_id), None)
    flat = [list(w) for windows in ids for w in windows]
    ids_arr, mask = pad_ids(flat, pad_id)  # (W, T)
    chunk_mask = np.zeros((len(ids), len(flat)), dtype=bool)  # (B, W)
    start = 0
    for row, windows in enumerate(ids):
        chunk_mask[row, start:start + len(windows)] = True
        start += len(windows)
    return ids_arr, mask, chunk_mask
