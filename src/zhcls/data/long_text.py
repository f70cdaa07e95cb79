"""Texts longer than ``max_length``: truncate, head + tail, or overlapping windows.

Every mode returns, per text, a list of windows, each ``[CLS] ... [SEP]`` of at most
``max_length`` ids (``content = max_length - 2`` text tokens):

* ``truncate``: one window, the first ``content`` tokens (what BERT training always did);
* ``head_tail``: one window, the first ``head_tokens`` and the last ``content - head_tokens``
  tokens of a long text (Sun, Qiu, Xu & Huang, 2019, "How to Fine-Tune BERT for Text
  Classification?", CCL 2019, section 5.3.1: head 128 + tail 382 of 510 was their best);
* ``chunks``: windows of ``content`` tokens starting at 0, ``stride``, ``2 stride``, ...
  until a window reaches the text's end (the last one may be shorter); ``max_chunks`` keeps
  that many spread evenly over the text, first and last included. The windows come from the
  fast tokenizer's own ``return_overflowing_tokens`` (its ``stride`` argument is the OVERLAP
  of consecutive windows, ``content - stride`` in our terms), so one tokenisation serves all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MODES = ("truncate", "head_tail", "chunks")


def window_starts(n_tokens: int, content: int, stride: int) -> list[int]:
    """Start offsets of the ``chunks`` windows over ``n_tokens`` text tokens (the reference the
    tokenizer's overflow windows are checked against)."""
    starts = [0]
    while starts[-1] + content < n_tokens:
        starts.append(starts[-1] + stride)
    return starts


def spread(n: int, k: int | None) -> list[int]:
    """``k`` of ``range(n)`` spread evenly, first and last kept (all when ``k`` is None or
    ``k >= n``; the first only when ``k == 1``)."""
    if k is None or k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return [int(i) for i in np.linspace(0, n - 1, k).round()]  # distinct: step >= 1


def encode_long(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
                mode: str, *, head_tokens: int, stride: int, max_chunks: int | None = None
                ) -> list[list[list[int]]]:
    """Per text a list of windows of token ids (see the module docstring)."""
    content = max_length - 2
    if mode not in MODES:
        raise ValueError(f"long-text mode must be one of {MODES}, got {mode!r}")
    if not 0 <= head_tokens <= content or not 1 <= stride <= content:
        raise ValueError(f"need 0 <= head_tokens <= {content} and 1 <= stride <= {content}, got "
                         f"head_tokens={head_tokens}, stride={stride}")
    texts = list(texts)
    if not texts:
        return []
    if mode == "truncate":
        ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        return [[row] for row in ids]
    if mode == "head_tail":
        return [[row] for row in _head_tail(tokenizer, texts, content, head_tokens)]
    return _chunks(tokenizer, texts, max_length, stride, max_chunks)


def _wrap(tokenizer, row: list[int]) -> list[int]:
    """``[CLS] row [SEP]`` (the BERT-family single-text layout)."""
    return [tokenizer.cls_token_id, *row, tokenizer.sep_token_id]


def _head_tail(tokenizer, texts: list[str], content: int, head: int) -> list[list[int]]:
    tokens = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False,
                       return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    out = []
    for row in tokens:
        if len(row) > content:
            tail = content - head
            row = row[:head] + (row[len(row) - tail:] if tail else [])
        out.append(_wrap(tokenizer, row))
    return out


def _chunks(tokenizer, texts: list[str], max_length: int, stride: int,
            max_chunks: int | None) -> list[list[list[int]]]:
    content = max_length - 2
    if not getattr(tokenizer, "is_fast", False):  # slow tokenizers: slice one tokenisation
        tokens = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False,
                           return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        windows = [[_wrap(tokenizer, row[s:s + content])
                    for s in window_starts(len(row), content, stride)] for row in tokens]
    else:
        enc = tokenizer(texts, truncation=True, max_length=max_length, stride=content - stride,
                        return_overflowing_tokens=True, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
        windows = [[] for _ in texts]
        for row, owner in zip(enc["input_ids"], enc["overflow_to_sample_mapping"], strict=True):
            windows[owner].append(row)
    return [[w[i] for i in spread(len(w), max_chunks)] for w in windows]


def drop_stats(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, *,
               head_tokens: int, stride: int, max_chunks: int | None) -> dict:
    """How much of ``texts`` each long-text setting leaves unseen, in text tokens and
    characters (a dropped token counts as its text's mean characters per token):
    ``truncate`` and ``head_tail`` drop ``n - (max_length - 2)`` tokens of a longer text (the
    end, resp. the middle); ``chunks`` with ``max_chunks`` drops the tokens no kept window
    covers (with every window, nothing)."""
    content = max_length - 2
    texts = list(texts)
    tokens = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False,
                       return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lost = {key: np.zeros(len(texts)) for key in MODES}  # (N,) dropped tokens per text
    windows = np.zeros(len(texts), dtype=np.int64)  # (N,) all windows per text
    for i, row in enumerate(tokens):
        n = len(row)
        starts = window_starts(n, content, stride)
        windows[i] = len(starts)
        kept = np.zeros(n, dtype=bool)
        for j in spread(len(starts), max_chunks):
            kept[starts[j]:starts[j] + content] = True
        lost["truncate"][i] = lost["head_tail"][i] = max(0, n - content)
        lost["chunks"][i] = n - int(kept.sum())
    n_tok = np.array([len(t) for t in tokens], dtype=np.float64)  # (N,)
    chars_per_token = np.array([len(t) for t in texts]) / np.maximum(n_tok, 1)  # (N,)
    settings = {key: {"dropped_tokens": int(v.sum()),
                      "dropped_chars": int(round(float((v * chars_per_token).sum()))),
                      "dropped_token_share": round(float(v.sum() / max(n_tok.sum(), 1)), 4),
                      "texts_losing_text": int((v > 0).sum())} for key, v in lost.items()}
    return {"max_length": max_length, "head_tokens": head_tokens, "stride": stride,
            "max_chunks": max_chunks, "texts": len(texts), "tokens": int(n_tok.sum()),
            "chars": sum(len(t) for t in texts),
            "texts_over_max_length": int((n_tok > content).sum()),
            "windows_mean": round(float(windows.mean()), 2) if len(texts) else 0.0,
            "windows_max": int(windows.max(initial=0)), "settings": settings}
