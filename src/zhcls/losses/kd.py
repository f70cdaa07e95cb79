"""Soft-target knowledge-distillation loss (Hinton et al., 2015)."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

__all__ = ["KDLoss", "TEACHER_INPUTS"]

TEACHER_INPUTS: tuple[str, ...] = ("probs", "logits", "probs_as_logits")

_PROB_FLOOR = 1e-8
# Slack when checking that "probs" teachers lie in [0, 1] (rounded CSV values etc.).
_PROB_TOL = 1e-3


class KDLoss(nn.Module):
    r"""Soft-target distillation term ``T^2 * KL(q_T || p_T)``.

    Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", 2015. Multiplying by ``T^2`` keeps the soft-term gradients on the same
    scale as the hard-label cross-entropy when ``T`` changes.

    Formula, per row ``i`` with student logits ``z_s`` and temperature ``T``::

        log p_T = log_softmax(z_s / T)                       (student)
        q_T     = teacher target, depending on teacher_input:
                  "probs":           softmax(log(max(p, 1e-8)) / T)  = p^(1/T), renormalised
                  "logits":          softmax(z_t / T)
                  "probs_as_logits": softmax(p / T)
        KL_i    = sum_c q_T[c] * (log q_T[c] - log p_T[c])
        L       = T^2 * mean_i KL_i                          (batchmean reduction)

    ``"probs"`` and ``"logits"`` give the same target when ``p = softmax(z_t)``.
    ``"probs_as_logits"`` reproduces research code that fed raw probabilities to a
    softmax as if they were logits: since ``p in [0, 1]`` the scores differ by at most
    ``1/T``, which flattens every teacher toward uniform (a ``[0.9, 0.05, 0.05]`` teacher
    becomes about ``[0.44, 0.28, 0.28]`` at ``T = 2``). It exists only to reproduce those
    numbers and is never the default.

    The teacher is a constant target: it is detached, no gradient flows into it.

    Shapes:
        * ``student_logits``: ``(B, C)``.
        * ``teacher``: ``(B, C)`` probabilities (``"probs"``, ``"probs_as_logits"``) or
          logits (``"logits"``).
        * ``mask`` (optional): ``(B,)`` bool, True for rows that have a teacher. Rows
          without a teacher contribute 0 (their teacher values are never read, so they may
          hold NaN placeholders). The sum is divided by the whole batch ``B``, not by the
          number of rows with a teacher: every teacher row weighs ``1/B``, as every row does
          in the cross-entropy it is mixed with, so a batch with one teacher row does not
          give that row ``B`` times the weight (``L = T^2 * sum_i mask_i KL_i / B``).
        * returns a scalar tensor: fp32 (fp64 when the student logits are fp64).

    Edge cases:
        * ``mask`` all False -> 0, attached to the student graph so ``backward`` works.
        * student equal to teacher (same distribution) -> 0.
        * computed in fp32 with autocast disabled, so fp16/bf16 inputs give the fp32 result.
        * ``"probs"`` values outside ``[0, 1]`` raise ``ValueError`` (they are logits) when
          ``validate`` is True. Training passes ``validate=False``: the data layer checked
          the teacher column when it was read, and the check costs a host sync per step.
        * no host-device synchronisation in ``forward`` with ``validate=False``.

    Args:
        temperature: ``T > 0``.
        teacher_input: one of ``"probs"`` (default), ``"logits"``, ``"probs_as_logits"``.
    """

    citation: ClassVar[str] = (
        "G. Hinton, O. Vinyals, J. Dean, \"Distilling the Knowledge in a Neural Network\", "
        "NIPS 2014 Deep Learning Workshop, arXiv:1503.02531"
    )

    def __init__(self, temperature: float = 2.0, teacher_input: str = "probs",
                 validate: bool = True) -> None:
        super().__init__()
        self.validate = validate
        if not float(temperature) > 0.0 or not math.isfinite(float(temperature)):
            raise ValueError(
                f"KDLoss: expected a finite temperature > 0, found {temperature!r}; "
                "use e.g. 2.0 (typical values are 1 to 5)."
            )
        if teacher_input not in TEACHER_INPUTS:
            raise ValueError(
                f"KDLoss: expected teacher_input in {TEACHER_INPUTS}, found {teacher_input!r}; "
                'use "probs" for teacher probabilities or "logits" for teacher logits.'
            )
        self.temperature = float(temperature)
        self.teacher_input = teacher_input

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``KDLoss(**loss.config())`` rebuilds this loss."""
        return {"temperature": self.temperature, "teacher_input": self.teacher_input}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def forward(
        self, student_logits: Tensor, teacher: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        check_kd_inputs(student_logits, teacher, mask)
        dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
        t = self.temperature
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            student = student_logits.to(dtype)  # (B, C)
            target = teacher.detach().to(device=student.device, dtype=dtype)  # (B, C)
            keep = None
            if mask is not None:
                keep = mask.to(student.device)  # (B,)
                # rows without a teacher get a finite stand-in target, weighted 0 below
                target = torch.where(keep[:, None], target, self._neutral_target(target))
            log_q = self.target_log_probs(target)  # (B, C)
            log_p = F.log_softmax(student / t, dim=-1)  # (B, C)
            kl_rows = (log_q.exp() * (log_q - log_p)).sum(dim=-1)  # (B,)
            if keep is not None:
                kl_rows = kl_rows * keep.to(dtype)  # (B,)
            return kl_rows.sum() / student.shape[0] * (t * t)

    def _neutral_target(self, target: Tensor) -> Tensor:
        """A valid teacher row of the right kind (uniform), for rows that have none."""
        if self.teacher_input == "logits":
            return torch.zeros_like(target)
        return torch.full_like(target, 1.0 / target.shape[-1])

    def target_log_probs(self, teacher: Tensor) -> Tensor:
        """Log of the tempered teacher target ``log q_T``, shape ``(B, C)``, no grad."""
        t = self.temperature
        if self.teacher_input in ("logits", "probs_as_logits"):
            # Same expression; for "probs_as_logits" the tensor holds probabilities.
            return F.log_softmax(teacher / t, dim=-1)
        if self.validate:
            self._check_probabilities(teacher)
        return F.log_softmax(teacher.clamp_min(_PROB_FLOOR).log() / t, dim=-1)

    @staticmethod
    def _check_probabilities(teacher: Tensor) -> None:
        lo, hi = float(teacher.min()), float(teacher.max())  # a host sync: validation only
        if lo < -_PROB_TOL or hi > 1.0 + _PROB_TOL:
            raise ValueError(
                f'KDLoss(teacher_input="probs"): expected teacher probabilities in [0, 1], '
                f"found values in [{lo:.4g}, {hi:.4g}]; if the teacher column holds logits "
                'use teacher_input="logits".'
            )


def check_kd_inputs(student_logits: Tensor, teacher: Tensor, mask: Tensor | None,
                    loss: str = "KDLoss") -> None:
    """Shapes of a KD call (student (B, C), teacher (B, C), mask (B,) bool); ``loss`` names the
    loss in the message. Shared by :class:`KDLoss` and the multi-label KD loss."""
    if student_logits.dim() != 2 or student_logits.shape[0] == 0:
        raise ValueError(
            f"{loss}: expected student_logits of shape (B, C) with B >= 1, found "
            f"{tuple(student_logits.shape)}; pass one row of class scores per example."
        )
    if teacher.shape != student_logits.shape:
        raise ValueError(
            f"{loss}: expected teacher of shape {tuple(student_logits.shape)} (same as the "
            f"student logits), found {tuple(teacher.shape)}; the teacher must give one value "
            "per class in the student's label order."
        )
    if mask is None:
        return
    if mask.dtype != torch.bool or mask.shape != student_logits.shape[:1]:
        raise ValueError(
            f"{loss}: expected a bool mask of shape ({student_logits.shape[0]},), found "
            f"dtype {mask.dtype} and shape {tuple(mask.shape)}; pass has_teacher.bool() "
            "with one entry per row."
        )
