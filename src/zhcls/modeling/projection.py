"""Projection head used only to feed the contrastive loss (Khosla et al., 2020)."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["ProjectionHead", "PROJECTION_KINDS"]

PROJECTION_KINDS: tuple[str, ...] = ("linear", "mlp")


class ProjectionHead(nn.Module):
    r"""SupCon projection head ``z = normalize(g(h))``.

    As in Khosla et al., "Supervised Contrastive Learning" (NeurIPS 2020), the head maps
    the encoder representation to the space where the contrastive loss is computed and
    is used only for the loss (discarded at inference; the classifier reads ``h``).

    * ``kind="linear"``: ``g(h) = W h + b``.
    * ``kind="mlp"``: ``g(h) = W2 relu(W1 h + b1) + b2`` with hidden size ``in_dim``.

    The output rows are L2-normalised (zero rows stay zero).

    Shapes:
        * input ``(B, in_dim)``, output ``(B, out_dim)``.

    Args:
        in_dim: encoder hidden size (e.g. 768).
        out_dim: projection size, 128 in the paper.
        kind: ``"linear"`` or ``"mlp"``.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, kind: str = "linear") -> None:
        super().__init__()
        if int(in_dim) < 1 or int(out_dim) < 1:
            raise ValueError(
                f"ProjectionHead: expected in_dim >= 1 and out_dim >= 1, found "
                f"in_dim={in_dim!r}, out_dim={out_dim!r}; pass the encoder hidden size and "
                "e.g. out_dim=128."
            )
        if kind not in PROJECTION_KINDS:
            raise ValueError(
                f"ProjectionHead: expected kind in {PROJECTION_KINDS}, found {kind!r}; "
                'use "linear" or "mlp".'
            )
        self.in_dim, self.out_dim, self.kind = int(in_dim), int(out_dim), kind
        if kind == "linear":
            self.net: nn.Module = nn.Linear(self.in_dim, self.out_dim)
        else:
            self.net = nn.Sequential(
                nn.Linear(self.in_dim, self.in_dim),
                nn.ReLU(inplace=True),
                nn.Linear(self.in_dim, self.out_dim),
            )

    def forward(self, hidden: Tensor) -> Tensor:
        if hidden.dim() != 2 or hidden.shape[-1] != self.in_dim:
            raise ValueError(
                f"ProjectionHead: expected input of shape (B, {self.in_dim}), found "
                f"{tuple(hidden.shape)}; pass the pooled sentence representation."
            )
        return F.normalize(self.net(hidden), p=2.0, dim=-1)  # (B, out_dim)
