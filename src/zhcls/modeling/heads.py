"""Classification heads over encoder outputs, named as in the research repos.

Every head maps ``(token_states (B, T, H), pooled (B, H), mask (B, T))`` to a sentence
representation ``(B, R)`` (what the classifier sees, and what the contrastive loss uses) and
optionally per-token attention weights ``(B, T)``. Padding is masked everywhere, so a padded
and an unpadded copy of a sentence give the same representation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

NEG_INF = -1e4  # large negative that is still finite in fp16


class Head(nn.Module):
    """Base: ``forward`` returns ``(representation (B, R), attention (B, T) | None)``."""

    out_dim: int

    def forward(
        self, states: torch.Tensor, pooled: torch.Tensor | None, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class PooledHead(Head):
    """``bert`` / ``ERNIE``: the pooled [CLS] vector (tanh(W·h_CLS)); [CLS] state if no pooler."""

    def __init__(self, hidden: int):
        super().__init__()
        self.out_dim = hidden

    def forward(self, states, pooled, mask):
        return (pooled if pooled is not None else states[:, 0]), None  # (B, H)


class CNNHead(Head):
    """``bert_CNN``: TextCNN over token states, kernels ``filter_sizes`` × ``num_filters``,
    ReLU, max-pool over the windows that lie inside the sentence."""

    def __init__(self, hidden: int, filter_sizes: list[int], num_filters: int):
        super().__init__()
        self.filter_sizes = list(filter_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, num_filters, k) for k in self.filter_sizes)
        self.out_dim = num_filters * len(self.filter_sizes)

    def forward(self, states, pooled, mask):
        x = (states * mask.unsqueeze(-1)).transpose(1, 2)  # (B, H, T), padding zeroed
        lengths = mask.sum(1)  # (B,)
        max_k = max(self.filter_sizes)
        if x.size(2) < max_k:
            x = F.pad(x, (0, max_k - x.size(2)))  # (B, H, max_k)
        outs = []
        for k, conv in zip(self.filter_sizes, self.convs, strict=True):
            y = F.relu(conv(x))  # (B, F, T - k + 1)
            positions = torch.arange(y.size(2), device=y.device)
            valid = positions.unsqueeze(0) < (lengths - k + 1).clamp(min=1).unsqueeze(1)  # (B, T')
            outs.append(y.masked_fill(~valid.unsqueeze(1), NEG_INF).amax(dim=2))  # (B, F)
        return torch.cat(outs, dim=1), None  # (B, F * len(filter_sizes))


def _run_packed(rnn: nn.RNNBase, states: torch.Tensor, mask: torch.Tensor):
    """Run a batch-first RNN on the real tokens only; returns (outputs (B, T, D), h_n)."""
    lengths = mask.sum(1).clamp(min=1).cpu()
    packed = pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
    out, h = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=states.size(1))
    return out, h  # (B, T, D)


class RNNHead(Head):
    """``bert_RNN``: 2-layer BiLSTM; representation = last layer's final forward state (at the
    last real token) ⊕ final backward state (at the first token)."""

    def __init__(self, hidden: int, rnn_hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(hidden, rnn_hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out_dim = 2 * rnn_hidden

    def forward(self, states, pooled, mask):
        _, (h_n, _) = _run_packed(self.lstm, states, mask)  # h_n (layers * 2, B, h)
        return torch.cat([h_n[-2], h_n[-1]], dim=1), None  # (B, 2h)


class RCNNHead(Head):
    """``bert_RCNN``: BiLSTM outputs ⊕ token states, ReLU, max-pool over real tokens."""

    def __init__(self, hidden: int, rnn_hidden: int, layers: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(hidden, rnn_hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out_dim = 2 * rnn_hidden + hidden

    def forward(self, states, pooled, mask):
        out, _ = _run_packed(self.lstm, states, mask)  # (B, T, 2h)
        x = F.relu(torch.cat([states, out], dim=2))  # (B, T, H + 2h)
        x = x.masked_fill(~mask.bool().unsqueeze(-1), NEG_INF)
        return x.amax(dim=1), None  # (B, H + 2h)


class DPCNNHead(Head):
    """``bert_DPCNN`` (Johnson & Zhang 2017): region embedding (conv k=3), two convs, then a
    pyramid of blocks (max-pool k=3 stride 2, two convs, residual). "Same" convolutions with
    padding zeroed and pooling that tracks each sentence's true length keep padded and
    unpadded inputs identical; the pyramid depth comes from ``max_length`` (not the batch),
    and a masked max-pool over what is left gives the representation."""

    def __init__(self, hidden: int, num_filters: int, max_length: int):
        super().__init__()
        self.region = nn.Conv1d(hidden, num_filters, 3, padding=1)
        self.conv = nn.Conv1d(num_filters, num_filters, 3, padding=1)
        self.blocks = 0
        length = max_length
        while length > 2:
            length = (length - 1) // 2 + 1
            self.blocks += 1
        self.out_dim = num_filters

    def _conv(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(x) * valid)  # zero padding before each "same" conv

    def forward(self, states, pooled, mask):
        lengths = mask.sum(1).clamp(min=1)  # (B,)
        valid = mask.unsqueeze(1).to(states.dtype)  # (B, 1, T)
        x = self.region(states.transpose(1, 2) * valid)  # (B, F, T)
        x = self._conv(x, valid)
        x = self._conv(x, valid)
        for _ in range(self.blocks):
            x = x.masked_fill(valid == 0, NEG_INF)
            px = F.max_pool1d(x, 3, stride=2, padding=1)  # (B, F, ceil(T / 2))
            lengths = (lengths - 1) // 2 + 1
            positions = torch.arange(px.size(2), device=px.device)
            valid = (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(px.dtype)
            px = px * valid
            x = px + self._conv(self._conv(px, valid), valid)  # (B, F, T')
        x = x.masked_fill(valid == 0, NEG_INF)
        return x.amax(dim=2), None  # (B, F)


class GRUAttentionHead(Head):
    """``bert_GRU_att``: 2-layer BiGRU + additive attention pooling (Bahdanau-style):
    u_t = tanh(W h_t + b), a_t = softmax_t(vᵀ u_t) over real tokens, r = Σ_t a_t h_t.
    Returns the weights a (B, T) (zero on padding) for explanations."""

    def __init__(self, hidden: int, rnn_hidden: int, layers: int, attention_dim: int,
                 dropout: float):
        super().__init__()
        self.gru = nn.GRU(hidden, rnn_hidden, layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.proj = nn.Linear(2 * rnn_hidden, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)
        self.out_dim = 2 * rnn_hidden

    def forward(self, states, pooled, mask):
        out, _ = _run_packed(self.gru, states, mask)  # (B, T, 2h)
        scores = self.v(torch.tanh(self.proj(out))).squeeze(-1)  # (B, T)
        scores = scores.float().masked_fill(~mask.bool(), float("-inf"))
        weights = torch.softmax(scores, dim=1).to(out.dtype)  # (B, T)
        return torch.bmm(weights.unsqueeze(1), out).squeeze(1), weights  # (B, 2h), (B, T)
