"""Supervised contrastive loss for multi-label data: positives weighted by label overlap."""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
from torch import Tensor

from zhcls.losses.supcon import SupConLoss, _check_features

logger = logging.getLogger(__name__)

__all__ = ["MultiLabelSupConLoss"]


class MultiLabelSupConLoss(SupConLoss):
    r"""SupCon whose positives are weighted by the Jaccard overlap of the label sets.

    Formula, for features ``f`` (rows L2-normalised) and label sets ``Y_i`` (the classes
    marked 1 in row ``i`` of the multi-hot ``labels``)::

        s_ij        = f_i . f_j / tau                       (then minus max_j s_ij, detached)
        w_ij        = |Y_i & Y_j| / |Y_i | Y_j|   for j != i   (Jaccard; 0 if the union is
                                                                  empty), w_ii = 0
        log_prob_ij = s_ij - log sum_{k != i} exp(s_ik)
        l_i         = - sum_j w_ij * log_prob_ij / (sum_j w_ij + 1e-9)
        L           = mean over anchors of l_i              ("all" or "only", as SupConLoss)

    Every other example sharing at least one label with the anchor is a positive, pulled in
    proportion to the overlap (identical sets weigh 1, ``{a, b}`` vs ``{a}`` weighs 1/2);
    examples sharing no label are negatives only (they stay in the denominator). ``l_i`` is
    the ``w``-weighted mean of ``-log_prob`` over the positives. With one-hot labels (one
    label per row) ``w_ij`` is exactly SupCon's 0/1 positive mask, so this loss equals
    :class:`~zhcls.losses.supcon.SupConLoss` on the class ids (same code path).

    References and where this departs from them:

    * P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (``L^sup_out``):
      the base loss; ``log_prob``, the max trick and the ``positives`` modes are those of
      :class:`~zhcls.losses.supcon.SupConLoss`.
    * Weighting positives by the Jaccard index of the label sets is the idea of the
      "Jaccard Similarity Contrastive Loss" (JSCL) of N. Lin et al., "An Effective Deployment
      of Contrastive Learning in Multi-label Text Classification", arXiv:2212.00552 (checked:
      the loss's name and aim, from the abstract; not its exact normalisation) and of
      pytorch-metric-learning's ``MultiSupConLoss`` (checked: its documented equation
      ``-1/|N(i)| sum_{p in N(i)} s_ip log_prob_ip`` with ``N(i) = {p : s_ip >= c}``).
      This loss departs from that equation in three ways: (1) it divides by the total weight
      ``sum_j w_ij`` instead of the number of positives, so ``l_i`` is a weighted mean and
      one-hot labels give SupCon exactly; (2) there is no overlap threshold (``c -> 0+``:
      any shared label makes a positive); (3) two EMPTY label sets are not positives of each
      other (``w = 0``): an example with no label has no positive and contributes 0.
    * Related, not followed: X. Su, R. Wang, X. Dai, "Contrastive Learning-Enhanced Nearest
      Neighbor Mechanism for Multi-Label Text Classification", ACL 2022 (short), also a
      multi-label contrastive objective (checked: abstract only).

    Shapes:
        * ``features``: ``(B, D)``, normalised inside as in SupConLoss.
        * ``labels``: ``(B, C)`` multi-hot (float, bool or int); a value counts as a label
          when it is ``> 0.5`` (so label-smoothed targets give the same positives).
        * returns a scalar tensor: fp32, or fp64 when ``features`` is fp64.

    Edge cases:
        * an anchor with no positive (``sum_j w_ij = 0``: no other row shares a label, or
          the anchor has no label at all) has ``l_i = 0``, never NaN, with finite gradients;
          ``"only"`` leaves it out of the mean, ``"all"`` counts it as 0.
        * ``B = 1`` -> 0. No host-device synchronisation in ``forward``.
        * ``labels`` of shape ``(B,)`` (class ids) are rejected with ``ValueError``: use
          :class:`~zhcls.losses.supcon.SupConLoss` for single-label data.

    Args:
        temperature: ``tau > 0``.
        positives: ``"all"`` or ``"only"`` (see :class:`~zhcls.losses.supcon.SupConLoss`).
    """

    citation: ClassVar[str] = (
        "P. Khosla et al., \"Supervised Contrastive Learning\", NeurIPS 2020, arXiv:2004.11362, "
        "with positives weighted by the Jaccard overlap of label sets as in N. Lin et al., "
        "\"An Effective Deployment of Contrastive Learning in Multi-label Text "
        "Classification\", arXiv:2212.00552 (JSCL), normalised by the total weight"
    )

    @staticmethod
    def _check_inputs(features: Tensor, labels: Tensor) -> None:
        _check_features(features, "MultiLabelSupConLoss")
        if not isinstance(labels, Tensor) or labels.dim() != 2 \
                or labels.shape[0] != features.shape[0]:
            shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels)
            raise ValueError(
                f"MultiLabelSupConLoss: expected multi-hot labels of shape "
                f"({features.shape[0]}, C) matching the features, found {shape}; pass one 0/1 "
                "row per feature row (class ids of shape (B,) are single-label: use "
                "SupConLoss / task single_label)."
            )

    def _pair_weights(self, labels: Tensor, feats: Tensor) -> Tensor:
        """Jaccard weight ``w_ij`` of the label sets, ``(B, B)``, diagonal 0, 0 for an empty
        union, in the dtype and on the device of ``feats``."""
        b = feats.shape[0]
        y = (labels.to(feats.device) > 0.5).to(feats.dtype)  # (B, C) 0/1
        inter = y @ y.T  # (B, B) |Y_i & Y_j|
        size = y.sum(dim=1)  # (B,) |Y_i|
        union = size[:, None] + size[None, :] - inter  # (B, B) |Y_i | Y_j|
        jaccard = torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))
        off_diag = 1.0 - torch.eye(b, dtype=feats.dtype, device=feats.device)  # (B, B)
        return jaccard * off_diag  # (B, B)
