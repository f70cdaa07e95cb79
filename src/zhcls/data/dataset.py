"""Tokenise once (cached on disk), then batch with dynamic padding.

The cache key covers what determines the tokens and nothing else: the validated texts, the
tokenizer (class, vocabulary, normalisation; not its mutable truncation state) and
``max_length``. A second run on the same data skips tokenisation; any change re-tokenises.
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
) -> EncodedDataset:
    """Tokenise a split, reusing the on-disk cache when the key matches."""
    key = _cache_key(split, tokenizer, max_length)
    cache_file = Path(cache_dir or default_cache_dir()) / f"{key}.pt"
    input_ids = None
    if cache_file.is_file():
        try:
            input_ids = torch.load(cache_file, weights_only=True)["input_ids"]
            logger.info("tokenised %s from cache %s", split.path.name, cache_file)
        except (OSError, RuntimeError, KeyError) as exc:
            logger.warning("ignoring unreadable tokenisation cache %s (%s)", cache_file, exc)
    if input_ids is None:
        input_ids = encode_texts(tokenizer, split.texts, max_length)
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


def _cache_key(split: SplitData, tokenizer: PreTrainedTokenizerBase, max_length: int) -> str:
    h = hashlib.sha256()
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(f"|{max_length}|{len(split.examples)}|".encode())
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
        ids, mask = pad_ids([list(it["input_ids"]) for it in items], self.pad_token_id)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                 "labels": _stack_labels([it["labels"] for it in items])}
        if "teacher" in items[0]:
            batch["teacher"] = torch.stack([it["teacher"] for it in items])  # (B, C)
            batch["teacher_mask"] = torch.stack([it["teacher_mask"] for it in items])  # (B,)
        return batch


def _stack_labels(labels: list) -> torch.Tensor:
    """(B, C) float32 from multi-hot rows (multi-label), else (B,) long class ids."""
    if isinstance(labels[0], torch.Tensor) and labels[0].dim() == 1:
        return torch.stack(labels).to(torch.float32)  # (B, C)
    return torch.tensor(labels, dtype=torch.long)  # (B,)
