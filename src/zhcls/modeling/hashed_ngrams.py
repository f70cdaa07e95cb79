"""A bag of hashed token n-grams beside the encoder (``model.ngram_buckets > 0``).

For each order n in ``orders``, every run of n consecutive tokens of a window that all lie
under the attention mask ([CLS] and [SEP] included, so "starts with" / "ends with" n-grams
exist; padding never) is hashed into one of ``buckets`` rows of an embedding table:

    h_0 = n,   h_k = (h_(k-1) · P + t_k) mod M   (k = 1..n),   bucket = h_n mod buckets

with M = 2^31 − 1 (a prime) and P = 1_000_000_007, a polynomial hash modulo a prime: every step
stays below 2^62, so int64 never overflows (for token ids below 2^31), and it traces to ONNX
as integer Mul/Add/Mod. (An earlier version used P = 2^16 + 1 and reduced modulo the
power-of-two bucket count only, which made a bigram's bucket depend on little more than
t_1 + t_2: 100k distinct bigrams hit half the rows a random hash hits.) The window's vector is the mean of the embeddings of its n-grams, all orders together:

    g = (1 / N) Σ_{n, t} E[h_n(t)],   N = number of valid n-grams (a window with none: g = 0)

Shapes: ``input_ids`` / ``attention_mask`` (W, T) → g (W, D). The model concatenates g to
the head's representation, so the classifier (and the contrastive loss) see both.

Why: from random initialisation a small character encoder has to learn from 33k titles that
"央行" or "季后赛" means finance or sports; a bag of hashed n-grams gets those directly, as a
character n-gram TF-IDF does. This is fastText's hashing trick (Joulin et al. 2017, "Bag of
Tricks for Efficient Text Classification", §2.2), here over WordPiece ids; for Chinese BERT,
ZEN (Diao et al. 2020) adds n-gram representations too, with an n-gram vocabulary and its own
transformer. This module is the much simpler hashed bag, computed from ``input_ids`` inside the
model, so tokenisation, prediction, the service and ONNX export need nothing new.

Edge cases: windows shorter than n contribute no n-gram of that order; collisions are not
avoided (distinct n-grams may share a row, as in fastText); padded and unpadded copies of a
text give the same g. The n-grams are those of each window as the encoder sees it: with
``data.long_text: chunks`` every window starts with [CLS] (so windows after the first add
"starts with" n-grams) and overlapping windows count their shared n-grams in each; with
``head_tail`` the cut adds the n-grams that span it.
"""

from __future__ import annotations

import torch
from torch import nn

PRIME = 1_000_000_007
MODULUS = 2**31 - 1  # a prime; h < MODULUS and PRIME < 2^30 keep h·PRIME + t below 2^62
MAX_ORDER = 4  # model.ngram_orders' range (config.py checks the same)


class HashedNgramBag(nn.Module):
    """``forward(input_ids (W, T), attention_mask (W, T)) -> (W, dim)``: the mean embedding of
    the window's hashed n-grams (formula in the module docstring)."""

    def __init__(self, buckets: int, dim: int, orders: list[int]) -> None:
        super().__init__()
        if buckets < 1 or dim < 1:
            raise ValueError(f"buckets and dim must be positive, got {buckets}, {dim}")
        if not orders or any(not 1 <= n <= MAX_ORDER for n in orders):
            raise ValueError(f"n-gram orders must lie in 1..{MAX_ORDER}, got {orders}")
        self.buckets = buckets
        self.orders = sorted(set(orders))
        self.out_dim = dim
        self.embedding = nn.Embedding(buckets, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / dim, 1.0 / dim)  # fastText's init

    def hashes(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bucket ids (W, G) and their validity (W, G) bool, all orders side by side."""
        ids = input_ids.long()  # (W, T)
        mask = attention_mask.bool()  # (W, T)
        length = ids.shape[1]
        out, valid = [], []
        for n in self.orders:
            if length < n:
                continue
            h = torch.full_like(ids[:, : length - n + 1], n)  # (W, T - n + 1): h_0 = n
            ok = torch.ones_like(h, dtype=torch.bool)  # (W, T - n + 1)
            for k in range(n):
                h = torch.remainder(h * PRIME + ids[:, k: length - n + 1 + k], MODULUS)
                ok = ok & mask[:, k: length - n + 1 + k]
            out.append(torch.remainder(h, self.buckets))
            valid.append(ok)
        if not out:
            empty = ids[:, :0]
            return empty, empty.bool()
        return torch.cat(out, dim=1), torch.cat(valid, dim=1)  # (W, G)

    def spread_to_tokens(self, ngram_scores: torch.Tensor, length: int) -> torch.Tensor:
        """Per-n-gram scores (G,) in :meth:`hashes` order (each order's start positions side
        by side), each spread evenly over its n tokens: (T,) for a window of ``length``."""
        out = ngram_scores.new_zeros(length)  # (T,)
        offset = 0
        for n in self.orders:
            if length < n:
                continue
            starts = length - n + 1
            share = ngram_scores[offset: offset + starts] / n  # (T - n + 1,)
            for k in range(n):
                out[k: k + starts] += share
            offset += starts
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        buckets, valid = self.hashes(input_ids, attention_mask)  # (W, G)
        emb = self.embedding(buckets)  # (W, G, D)
        weight = valid.to(emb.dtype).unsqueeze(-1)  # (W, G, 1)
        count = weight.sum(1).clamp(min=1.0)  # (W, 1)
        return (emb * weight).sum(1) / count  # (W, D)
