"""Pool the window representations of a long text (``data.long_text: chunks``).

A batch of B texts arrives as W windows (rows of the encoder batch) and a ``chunk_mask``
(B, W) bool whose row b marks text b's windows. Each text's windows are pooled on their own:
windows of other texts are masked out exactly (a zero weight in a sum, ``-inf`` before a max or
a softmax), so a text's result never depends on its batch-mates.

* ``mean``: r_b = (1/|W_b|) Σ_{w∈W_b} h_w;
* ``max``: r_b = max_{w∈W_b} h_w (per dimension);
* ``attention``: s_w = vᵀ tanh(A h_w + a), α_bw = softmax over w∈W_b of s_w,
  r_b = Σ_{w∈W_b} α_bw h_w (additive attention, Bahdanau et al. 2015, over windows instead of
  tokens, as in hierarchical attention networks, Yang et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn

POOLINGS = ("mean", "max", "attention")


class ChunkPooler(nn.Module):
    """``forward(reps (W, R), chunk_mask (B, W) bool) -> (B, R)``. Only ``attention`` has
    parameters (A: R → dim, v: dim → 1), so mean/max add none (DDP sees no unused ones)."""

    def __init__(self, kind: str, dim: int, attention_dim: int | None = None):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"chunk pooling must be one of {POOLINGS}, got {kind!r}")
        self.kind = kind
        self.dim = dim
        if kind == "attention":
            hidden = attention_dim or dim
            self.proj = nn.Linear(dim, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)

    def weights(self, reps: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        """Per-text weights over the windows (B, W), zero off a text's windows (mean or
        attention; max has none)."""
        mask = chunk_mask.bool()  # (B, W)
        if self.kind == "mean":
            w = mask.to(reps.dtype)
            return w / w.sum(1, keepdim=True).clamp(min=1)  # (B, W)
        scores = self.v(torch.tanh(self.proj(reps))).squeeze(-1).float()  # (W,)
        scores = scores.unsqueeze(0).masked_fill(~mask, float("-inf"))  # (B, W)
        weights = torch.softmax(scores, dim=1).masked_fill(~mask, 0.0)  # a windowless row: 0
        return weights.to(reps.dtype)  # (B, W)

    def forward(self, reps: torch.Tensor, chunk_mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            masked = reps.unsqueeze(0).masked_fill(~chunk_mask.bool().unsqueeze(-1),
                                                   float("-inf"))  # (B, W, R)
            return masked.amax(dim=1)  # (B, R)
        return self.weights(reps, chunk_mask) @ reps  # (B, W) @ (W, R) -> (B, R)
