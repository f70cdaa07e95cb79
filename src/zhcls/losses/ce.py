"""Cross-entropy loss as an ``nn.Module`` computed in fp32."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["CELoss"]


class CELoss(nn.Module):
    r"""Mean softmax cross-entropy over a batch.

    Formula::

        L = -(1/B) * sum_i log softmax(z_i)[y_i]

    With ``label_smoothing = eps`` the one-hot target is replaced by
    ``(1 - eps) * onehot(y) + eps / C`` (as in :func:`torch.nn.functional.cross_entropy`).

    Shapes:
        * ``logits``: ``(B, C)`` raw scores, any floating dtype (cast to fp32 inside,
          with autocast disabled, so fp16/bf16 logits give the fp32 result).
        * ``labels``: ``(B,)`` integer class ids in ``[0, C)``.
        * returns a scalar fp32 tensor.

    Edge cases:
        * ``B = 0`` is rejected with ``ValueError`` (the mean over zero rows is undefined).

    Args:
        label_smoothing: smoothing ``eps`` in ``[0, 1)``; ``0`` means plain cross-entropy.
    """

    citation: ClassVar[str] = (
        "softmax cross-entropy; label smoothing: C. Szegedy et al., \"Rethinking the Inception "
        "Architecture for Computer Vision\", CVPR 2016, arXiv:1512.00567"
    )

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(
                f"CELoss: expected label_smoothing in [0, 1), found {label_smoothing!r}; "
                "pass e.g. 0.0 (off) or 0.1."
            )
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() != 2:
            raise ValueError(
                f"CELoss: expected logits of shape (B, C), found shape {tuple(logits.shape)}; "
                "reshape to one row of class scores per example."
            )
        if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"CELoss: expected labels of shape ({logits.shape[0]},) matching logits, "
                f"found shape {tuple(labels.shape)}; pass one integer class id per row."
            )
        if logits.shape[0] == 0:
            raise ValueError(
                "CELoss: expected a non-empty batch, found B=0; skip empty batches upstream."
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return F.cross_entropy(
                logits.float(),  # (B, C)
                labels.long(),  # (B,)
                label_smoothing=self.label_smoothing,
            )

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``CELoss(**loss.config())`` rebuilds this loss."""
        return {"label_smoothing": self.label_smoothing}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())
