"""Supervised contrastive loss (Khosla et al., 2020)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["SupConLoss", "POSITIVES_MODES"]

POSITIVES_MODES: tuple[str, ...] = ("all", "only")

# Added to the positive count so an anchor without positives gives 0 / 1e-9 = 0, not NaN.
_EPS = 1e-9


class SupConLoss(nn.Module):
    r"""Supervised contrastive loss (SupCon), single view per example.

    Reference: P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020
    (``L^{sup}_{out}``, eq. 2), following the authors' reference implementation.

    Formula, for features ``f`` (rows L2-normalised) and labels ``y``::

        s_ij        = f_i . f_j / tau                       (then minus max_j s_ij, detached)
        P(i)        = { j != i : y_j == y_i }               (positives of anchor i)
        log_prob_ij = s_ij - log sum_{k != i} exp(s_ik)
        l_i         = - sum_{j in P(i)} log_prob_ij / (|P(i)| + 1e-9)
        L           = mean over anchors of l_i

    The row-max subtraction is for numerical stability only; ``log_prob`` is invariant
    to it. The reference code's ``tau / base_tau`` factor is not applied (it is 1 for the
    usual ``base_tau = tau``).

    ``positives`` selects which anchors enter the mean:

    * ``"all"`` (reference behaviour, default): mean over all ``B`` anchors; an anchor
      whose class occurs once in the batch has ``l_i = 0`` but still counts, so the loss
      shrinks by the fraction of such anchors.
    * ``"only"``: mean only over anchors with at least one positive. Preferable for
      small batches with many classes, where many anchors are singletons and "all"
      would dilute the loss (and its gradient) by a batch-dependent factor. If no anchor
      has a positive the loss is 0 (still attached to the graph so ``backward`` works).

    Shapes:
        * ``features``: ``(B, D)`` sentence representations. They are expected to be
          L2-normalised already, but are normalised again inside with
          :func:`torch.nn.functional.normalize` (a no-op for unit rows; zero rows stay 0).
          Multi-view inputs ``(B, V, D)`` must be flattened to ``(B*V, D)`` with labels
          repeated accordingly.
        * ``labels``: ``(B,)`` integer class ids.
        * returns a scalar tensor: fp32, or fp64 when ``features`` is fp64.

    Edge cases:
        * ``B = 1`` or all labels distinct -> 0 (never NaN), with finite (zero) gradients.
        * identical features -> finite loss ``log(B - 1)`` per anchor with positives.
        * the computation is done in fp32 with autocast disabled, so fp16/bf16 inputs
          give the fp32 result.
        * nothing depends on the process rank: features/labels gathered from all ranks
          can be passed as one global batch.

    Args:
        temperature: ``tau > 0``.
        positives: ``"all"`` or ``"only"`` (see above).
    """

    citation: ClassVar[str] = (
        "P. Khosla et al., \"Supervised Contrastive Learning\", NeurIPS 2020, arXiv:2004.11362 "
        "(L^sup_out, eq. 2)"
    )

    def __init__(self, temperature: float = 0.07, positives: str = "all") -> None:
        super().__init__()
        if not float(temperature) > 0.0:
            raise ValueError(
                f"SupConLoss: expected temperature > 0, found {temperature!r}; "
                "use e.g. 0.07 (paper) or 0.1."
            )
        if positives not in POSITIVES_MODES:
            raise ValueError(
                f"SupConLoss: expected positives in {POSITIVES_MODES}, found {positives!r}; "
                'use "all" (reference) or "only" (mean over anchors with a positive).'
            )
        self.temperature = float(temperature)
        self.positives = positives

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``SupConLoss(**loss.config())`` rebuilds this loss."""
        return {"temperature": self.temperature, "positives": self.positives}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        self._check_inputs(features, labels)
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=features.device.type, enabled=False):
            feats = F.normalize(features.to(dtype), p=2.0, dim=1)  # (B, D)
            if feats.shape[0] == 1:
                # No k != i exists: the denominator is empty. Defined as 0, kept on the graph.
                return feats.sum() * 0.0
            per_anchor, has_pos = self._per_anchor(feats, labels)  # (B,), (B,)
            if self.positives == "all":
                return per_anchor.mean()
            # no host sync: anchors without a positive have l_i = 0 and are weighted 0 too
            n_anchors = has_pos.sum().to(dtype).clamp_min(1.0)
            return (per_anchor * has_pos.to(dtype)).sum() / n_anchors

    @staticmethod
    def _check_inputs(features: Tensor, labels: Tensor) -> None:
        _check_inputs(features, labels)

    def _pair_weights(self, labels: Tensor, feats: Tensor) -> Tensor:
        """Weight ``w_ij`` of positive ``j`` for anchor ``i``: ``1[y_j == y_i]``, ``(B, B)``,
        diagonal 0, in the dtype and on the device of ``feats``."""
        b = feats.shape[0]
        labels = labels.reshape(-1, 1).to(feats.device)  # (B, 1)
        same = torch.eq(labels, labels.T).to(feats.dtype)  # (B, B)
        logits_mask = 1.0 - torch.eye(b, dtype=feats.dtype, device=feats.device)  # (B, B)
        return same * logits_mask  # (B, B), diagonal zeroed

    def _per_anchor(self, feats: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``l_i`` for every anchor and whether anchor ``i`` has a positive."""
        b = feats.shape[0]
        pos_mask = self._pair_weights(labels, feats)  # (B, B), diagonal 0

        sim = feats @ feats.T / self.temperature  # (B, B)
        row_max, _ = sim.max(dim=1, keepdim=True)  # (B, 1)
        sim = sim - row_max.detach()  # (B, B)

        # log sum_{k != i} exp(s_ik): exclude self with -inf; finite since B >= 2.
        eye = torch.eye(b, dtype=torch.bool, device=feats.device)  # (B, B)
        log_denom = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
        log_prob = sim - log_denom  # (B, B)

        n_pos = pos_mask.sum(dim=1)  # (B,)
        mean_log_prob_pos = (pos_mask * log_prob).sum(dim=1) / (n_pos + _EPS)  # (B,)
        return -mean_log_prob_pos, n_pos > 0


def _check_features(features: Tensor, who: str) -> None:
    if not isinstance(features, Tensor) or features.dim() != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features)
        raise ValueError(
            f"{who}: expected features of shape (B, D), found {shape}; "
            "pass one representation per example (flatten views to (B*V, D))."
        )
    if features.shape[0] == 0:
        raise ValueError(
            f"{who}: expected a non-empty batch, found B=0; skip empty batches upstream."
        )
    if not features.is_floating_point():
        raise ValueError(
            f"{who}: expected floating-point features, found dtype {features.dtype}; "
            "pass the model's hidden states, not token ids."
        )


def _check_inputs(features: Tensor, labels: Tensor) -> None:
    _check_features(features, "SupConLoss")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels)
        raise ValueError(
            f"SupConLoss: expected labels of shape ({features.shape[0]},) matching features, "
            f"found {shape}; pass one integer class id per feature row."
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"SupConLoss: expected integer labels, found dtype {labels.dtype}; "
            "convert with labels.long()."
        )
