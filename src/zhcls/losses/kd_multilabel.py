"""Per-class (binary) soft-target distillation for multi-label students (Hinton et al., 2015)."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zhcls.losses.kd import check_kd_inputs

logger = logging.getLogger(__name__)

__all__ = ["MULTILABEL_TEACHER_INPUTS", "MultiLabelKDLoss"]

MULTILABEL_TEACHER_INPUTS: tuple[str, ...] = ("probs", "logits")

# Teacher probabilities are clamped to [eps, 1 - eps] before logit(); 1 - 1e-6 is exact
# enough in fp32 (1 - 1e-8 would round to 1.0 and give an infinite logit).
_PROB_EPS = 1e-6
# Slack when checking that "probs" teachers lie in [0, 1] (rounded CSV values etc.).
_PROB_TOL = 1e-3


class MultiLabelKDLoss(nn.Module):
    r"""Soft-target distillation from a per-class teacher: ``T^2 * mean binary KL``.

    Reference: G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
    Network", 2015, which tempers one softmax over the classes. A multi-label teacher gives
    one probability per class and they need NOT sum to 1, so there is no softmax over the
    classes to temper. The binary extension used here treats every class ``c`` as its own
    two-way softmax over the scores ``(u_c, 0)`` (yes / no), where ``u_c`` is the class's
    logit; Hinton's tempered softmax of that pair is ``softmax((u_c, 0) / T)[0] =
    sigma(u_c / T)``. So per class::

        u_c = logit(clamp(p_c, 1e-6, 1 - 1e-6))   (teacher_input "probs")
        u_c = z_t[c]                              (teacher_input "logits")
        q_c = sigma(u_c / T)                      (tempered teacher target)
        s_c = sigma(z_s[c] / T)                   (tempered student)
        KL_ic = q_c * log(q_c / s_c) + (1 - q_c) * log((1 - q_c) / (1 - s_c))
        L   = T^2 * sum_i mask_i * (1/C) * sum_c KL_ic / B

    ``KL_ic`` is the binary cross-entropy ``BCE(s_c; target q_c)`` MINUS the target's own
    entropy ``H(q_c)``. The entropy does not depend on the student, so the gradient is
    exactly the gradient of BCE on the tempered soft targets; subtracting it makes the loss
    0 when the student matches the teacher (as :class:`~zhcls.losses.kd.KDLoss`, a KL, is),
    so the logged value reads as "distance to the teacher", not as a teacher-dependent
    floor. ``T^2`` keeps the soft-term gradients on the scale of the hard-label term when
    ``T`` changes, as in the paper. With ``T = 1`` the target is the teacher's probability
    itself; ``T > 1`` pulls every target toward 0.5.

    Everything is computed from log-sigmoids of the tempered scores (``log q = logsigmoid(u/T)``,
    ``log(1 - q) = logsigmoid(-u/T)``), so no ``log 0`` occurs. The teacher is a constant
    target: it is detached, no gradient flows into it.

    Shapes:
        * ``student_logits``: ``(B, C)`` per-class scores of the student.
        * ``teacher``: ``(B, C)`` per-class probabilities in ``[0, 1]`` (``"probs"``; no sum
          rule) or per-class logits (``"logits"``).
        * ``mask`` (optional): ``(B,)`` bool, True for rows that have a teacher. Rows without
          a teacher contribute 0 (their values are never read, so they may hold NaN). As in
          :class:`~zhcls.losses.kd.KDLoss` the sum is divided by the whole batch ``B``, not by
          the number of teacher rows: every teacher row weighs ``1/B`` as in the BCE it is
          mixed with.
        * returns a scalar tensor: fp32 (fp64 when the student logits are fp64).

    Edge cases:
        * ``mask`` all False -> 0, attached to the student graph so ``backward`` works.
        * student equal to teacher (``z_s = logit(p)``, or ``z_s = z_t``) -> 0.
        * teacher probabilities of exactly 0 or 1 are clamped, so targets and gradients stay
          finite.
        * computed in fp32 with autocast disabled, so fp16/bf16 inputs give the fp32 result.
        * ``"probs"`` values outside ``[0, 1]`` raise ``ValueError`` when ``validate`` is
          True (a host sync); training passes ``validate=False`` (the data layer checked the
          column). No host-device synchronisation in ``forward`` with ``validate=False``.
        * ``teacher_input="probs_as_logits"`` (a single-label research-code replica) has no
          multi-label meaning and is rejected.

    Args:
        temperature: ``T > 0``.
        teacher_input: ``"probs"`` (default) or ``"logits"``.
        validate: check that ``"probs"`` teachers lie in ``[0, 1]`` (costs a host sync).
    """

    citation: ClassVar[str] = (
        "G. Hinton, O. Vinyals, J. Dean, \"Distilling the Knowledge in a Neural Network\", "
        "NIPS 2014 Deep Learning Workshop, arXiv:1503.02531; per-class binary extension: each "
        "class a tempered two-way softmax, sigma(logit/T)"
    )

    def __init__(self, temperature: float = 2.0, teacher_input: str = "probs",
                 validate: bool = True) -> None:
        super().__init__()
        if not float(temperature) > 0.0 or not math.isfinite(float(temperature)):
            raise ValueError(
                f"MultiLabelKDLoss: expected a finite temperature > 0, found {temperature!r}; "
                "use e.g. 2.0 (typical values are 1 to 5)."
            )
        if teacher_input not in MULTILABEL_TEACHER_INPUTS:
            raise ValueError(
                f"MultiLabelKDLoss: expected teacher_input in {MULTILABEL_TEACHER_INPUTS}, "
                f"found {teacher_input!r}; use \"probs\" for per-class teacher probabilities "
                "or \"logits\" for per-class teacher logits (probs_as_logits is single-label "
                "only)."
            )
        self.temperature = float(temperature)
        self.teacher_input = teacher_input
        self.validate = validate

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``MultiLabelKDLoss(**loss.config())`` rebuilds it."""
        return {"temperature": self.temperature, "teacher_input": self.teacher_input}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def forward(
        self, student_logits: Tensor, teacher: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        check_kd_inputs(student_logits, teacher, mask, "MultiLabelKDLoss")
        dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
        t = self.temperature
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            student = student_logits.to(dtype) / t  # (B, C)
            target = teacher.detach().to(device=student.device, dtype=dtype)  # (B, C)
            keep = None
            if mask is not None:
                keep = mask.to(student.device)  # (B,)
                # rows without a teacher get a finite stand-in (p = 0.5), weighted 0 below
                neutral = torch.zeros_like(target) if self.teacher_input == "logits" \
                    else torch.full_like(target, 0.5)
                target = torch.where(keep[:, None], target, neutral)
            u = self.teacher_scores(target) / t  # (B, C) tempered teacher logits
            log_q, log_1mq = F.logsigmoid(u), F.logsigmoid(-u)  # (B, C)
            log_s, log_1ms = F.logsigmoid(student), F.logsigmoid(-student)  # (B, C)
            kl = log_q.exp() * (log_q - log_s) + log_1mq.exp() * (log_1mq - log_1ms)  # (B, C)
            kl_rows = kl.mean(dim=-1)  # (B,)
            if keep is not None:
                kl_rows = kl_rows * keep.to(dtype)  # (B,)
            return kl_rows.sum() / student.shape[0] * (t * t)

    def teacher_scores(self, teacher: Tensor) -> Tensor:
        """Untempered per-class teacher logits ``u``, shape ``(B, C)``, no grad."""
        if self.teacher_input == "logits":
            return teacher
        if self.validate:
            _check_probabilities(teacher)
        return torch.logit(teacher, eps=_PROB_EPS)  # clamps to [eps, 1 - eps] first


def _check_probabilities(teacher: Tensor) -> None:
    lo, hi = float(teacher.min()), float(teacher.max())  # a host sync: validation only
    if lo < -_PROB_TOL or hi > 1.0 + _PROB_TOL or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(
            f'MultiLabelKDLoss(teacher_input="probs"): expected per-class teacher probabilities '
            f"in [0, 1], found values in [{lo:.4g}, {hi:.4g}]; if the teacher column holds "
            'logits use teacher_input="logits".'
        )
