"""Batched forward passes for evaluation and prediction: sorted by length, dynamically
padded, no grad, restored to input order. On a GPU the arithmetic follows ``precision`` (the
checkpoint's ``train.precision``): ``fp32`` runs in float32, ``bf16`` / ``fp16`` autocast to
that type, ``auto`` autocasts to bf16 where supported (else fp16). On CPU it is float32."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from zhcls.data.dataset import encode_with, is_windowed


@dataclass
class ForwardResult:
    """``logits`` (N, C) float32 in input order; ``representations`` (N, R) when asked."""

    logits: np.ndarray
    representations: np.ndarray | None = None


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first)."""
    from zhcls.data.samplers import longest_first

    order = longest_first(lengths)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`zhcls.data.dataset.pad_ids` as tensors on ``device``: ids, mask (B, T)."""
    from zhcls.data.dataset import pad_ids

    ids, mask = pad_ids(seqs, pad_id)
    return (torch.from_numpy(ids).to(device, non_blocking=True),
            torch.from_numpy(mask).to(device, non_blocking=True))


def autocast_dtype(device: torch.device, precision: str | None = "auto") -> torch.dtype | None:
    """The autocast dtype of a forward pass on ``device`` under ``precision`` (None or
    ``auto``: bf16 on CUDA, fp16 without bf16; ``fp32``: no autocast); None = float32. No
    autocast on CPU."""
    precision = precision or "auto"
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


@torch.inference_mode()
def forward_texts(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 256,
                  with_representations: bool = False, progress: bool | None = False,
                  precision: str | None = None) -> ForwardResult:
    """Run ``model`` over ``texts``; returns float32 arrays in the order of ``texts``. Long
    texts follow the model's ``long_text`` (truncate, head_tail, or every window of chunks).
    ``progress``: True / False, or None for a bar only when stderr is a terminal (tqdm.auto:
    in a notebook, None shows the notebook bar).
    ``precision``: see :func:`autocast_dtype`."""
    ids = encode_with(tokenizer, texts, max_length, getattr(model, "long_text", None))
    return forward_ids(model, ids, tokenizer.pad_token_id, batch_size, with_representations,
                       progress, precision)


@torch.inference_mode()
def forward_ids(model, ids: list[list[int]], pad_id: int, batch_size: int = 256,
                with_representations: bool = False, progress: bool | None = False,
                precision: str | None = None) -> ForwardResult:
    """``ids``: one id list per text, or (chunks) a list of windows per text, run at most
    ``batch_size`` windows at a time and pooled per text after the encoder, so memory is
    bounded by ``batch_size`` windows plus one (W, R) row per window of the longest text.
    ``progress``: as in :func:`forward_texts`."""
    device = next(model.parameters()).device
    dtype = autocast_dtype(device, precision)
    was_training = model.training
    model.eval()
    logits = reps = None
    windowed = is_windowed(ids)
    batches = (window_groups(ids, batch_size) if windowed
               else length_sorted_batches([len(x) for x in ids], batch_size))
    bar_off = None if progress is None else not progress  # tqdm: None is off when not a TTY
    for batch in tqdm(batches, desc="predicting", unit="batch", disable=bar_off):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if windowed:
                out = _pooled_forward(model, [ids[i] for i in batch], pad_id, batch_size, device)
            else:
                input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, device)
                out = model(input_ids=input_ids, attention_mask=mask)
        if logits is None:
            logits = np.zeros((len(ids), out.logits.shape[1]), dtype=np.float32)
            if with_representations:
                reps = np.zeros((len(ids), out.representation.shape[1]), dtype=np.float32)
        logits[batch] = out.logits.float().cpu().numpy()
        if with_representations:
            reps[batch] = out.representation.float().cpu().numpy()
    model.train(was_training)
    if logits is None:  # no texts: empty arrays with the right number of columns
        logits = np.zeros((0, model.num_labels), dtype=np.float32)
        if with_representations:
            reps = np.zeros((0, model.rep_dim), dtype=np.float32)
    return ForwardResult(logits=logits, representations=reps)


def window_groups(ids: list[list[list[int]]], batch_size: int) -> list[list[int]]:
    """Text indices (longest first) grouped so a group holds at most ``batch_size`` windows,
    except a text with more windows, which is a group of its own."""
    from zhcls.data.samplers import longest_first

    groups: list[list[int]] = []
    count = 0
    for i in longest_first([sum(len(w) for w in x) for x in ids]):
        if not groups or count + len(ids[i]) > batch_size:
            groups.append([])
            count = 0
        groups[-1].append(i)
        count += len(ids[i])
    return groups


def _pooled_forward(model, texts: list[list[list[int]]], pad_id: int, batch_size: int,
                    device):
    """The windows of ``texts`` through encoder + head, ``batch_size`` windows at a time,
    then pooled per text and classified: the result of ``model(..., chunk_mask)``."""
    windows = [w for text in texts for w in text]
    parts = []
    for start in range(0, len(windows), batch_size):
        input_ids, mask = pad_batch(windows[start:start + batch_size], pad_id, device)
        parts.append(model.window_representations(input_ids, mask)[0])  # (w, R)
    rep = torch.cat(parts)  # (W, R)
    chunk_mask = torch.zeros(len(texts), len(windows), dtype=torch.bool, device=device)  # (B, W)
    start = 0
    for row, text in enumerate(texts):
        chunk_mask[row, start:start + len(text)] = True
        start += len(text)
    return model.classify(model.chunk_pooler(rep, chunk_mask))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function (multi-label scores), overflow-free for any logit."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64))).astype(
        np.float32)
