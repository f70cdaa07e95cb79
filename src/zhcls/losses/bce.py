"""Per-class binary cross-entropy for multi-label classification, computed in fp32."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["BCELoss"]


class BCELoss(nn.Module):
    r"""Mean binary cross-entropy with logits over every (example, class) cell.

    One independent sigmoid per class: class ``c`` of example ``i`` is a yes/no decision
    with probability ``sigma(z_ic)``.

    Formula, for logits ``z`` and multi-hot labels ``y`` (``y_ic = 1`` when example ``i``
    has class ``c``) and per-class positive weights ``w_c`` (all 1 without ``pos_weight``)::

        l_ic = -[ w_c * y_ic * log sigma(z_ic) + (1 - y_ic) * log(1 - sigma(z_ic)) ]
        L    = (1 / (B * C)) * sum_i sum_c l_ic

    as :func:`torch.nn.functional.binary_cross_entropy_with_logits` (log-sum-exp form, so
    large ``|z|`` never gives ``log 0``). ``w_c > 1`` up-weights the positives of class ``c``
    (a rare aspect); the usual choice is ``w_c = (N - n_c) / n_c`` from the training counts
    (``objective.pos_weight_auto``), which makes the positives and the negatives of ``c``
    weigh the same in total. Negatives are never re-weighted.

    Shapes:
        * ``logits``: ``(B, C)`` raw scores, any floating dtype (cast to fp32 inside, with
          autocast disabled, so fp16/bf16 logits give the fp32 result; fp64 stays fp64).
        * ``labels``: ``(B, C)`` multi-hot targets (float, bool or int), same shape as the
          logits. Values in ``[0, 1]`` other than 0/1 are used as soft targets as they are.
        * ``pos_weight`` (constructor): ``(C,)`` positive finite weights (a tensor or a list;
          ``config()`` gives the list), or ``None``.
        * returns a scalar tensor: fp32 (fp64 when the logits are fp64).

    Edge cases:
        * an all-negative row (an example with no label) is allowed: it contributes
          ``log(1 + exp(z_ic))`` for every class, pushing all its scores down.
        * ``B = 0`` is rejected with ``ValueError`` (the mean over zero rows is undefined).
        * ``labels`` of shape ``(B,)`` (class ids) are rejected with ``ValueError``: convert
          them to multi-hot, or use :class:`~zhcls.losses.ce.CELoss` for single-label data.
        * no host-device synchronisation in ``forward`` (``pos_weight`` is moved to the
          logits' device there; the shapes are checked, the label values are not).

    Args:
        pos_weight: per-class weight of the positives, ``(C,)``; ``None`` means all 1.
    """

    citation: ClassVar[str] = (
        "per-class sigmoid binary cross-entropy (binary relevance); pos_weight as in "
        "torch.nn.BCEWithLogitsLoss. Cf. J. Nam et al., \"Large-scale Multi-label Text "
        "Classification - Revisiting Neural Networks\", ECML PKDD 2014, arXiv:1312.5419"
    )

    pos_weight: Tensor | None

    def __init__(self, pos_weight: Tensor | Sequence[float] | None = None) -> None:
        super().__init__()
        if pos_weight is not None:
            pos_weight = _checked_pos_weight(pos_weight)
        # not persistent: the weight is rebuilt from the config, not read from a state dict
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``BCELoss(**loss.config())`` rebuilds this loss."""
        pw = self.pos_weight
        return {"pos_weight": None if pw is None else pw.tolist()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        _check_inputs(logits, labels, self.pos_weight)
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=logits.device.type, enabled=False):
            z = logits.to(dtype)  # (B, C)
            y = labels.to(device=z.device, dtype=dtype)  # (B, C)
            pw = None
            if self.pos_weight is not None:
                pw = self.pos_weight.to(device=z.device, dtype=dtype)  # (C,)
            return F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction="mean")


def _checked_pos_weight(pos_weight: Tensor | Sequence[float]) -> Tensor:
    """A detached fp32 copy of ``pos_weight`` after checking it is ``(C,)``, finite, > 0."""
    pw = torch.as_tensor(pos_weight).detach().to(torch.float32).cpu()
    values = pw.reshape(-1).tolist()  # construction time: a host copy is fine here
    if pw.dim() != 1 or not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"BCELoss: expected pos_weight of shape (C,) with finite weights > 0, found shape "
            f"{tuple(pw.shape)} with values {values[:8]}; pass one weight per class in "
            "class.txt order, e.g. (N - n_c) / n_c, or None."
        )
    return pw


def _check_inputs(logits: Tensor, labels: Tensor, pos_weight: Tensor | None) -> None:
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(
            f"BCELoss: expected logits of shape (B, C) with B >= 1, found "
            f"{tuple(logits.shape)}; pass one row of class scores per example."
        )
    if not isinstance(labels, Tensor) or labels.shape != logits.shape:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels)
        raise ValueError(
            f"BCELoss: expected multi-hot labels of shape {tuple(logits.shape)} (same as the "
            f"logits), found {shape}; pass a (B, C) 0/1 matrix (class ids of shape (B,) are "
            "single-label: use CELoss / task single_label)."
        )
    if pos_weight is not None and pos_weight.shape[0] != logits.shape[1]:
        raise ValueError(
            f"BCELoss: expected pos_weight with one weight per class ({logits.shape[1]}), "
            f"found {pos_weight.shape[0]}; give one weight per class in class.txt order."
        )
