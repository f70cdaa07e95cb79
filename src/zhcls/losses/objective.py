"""Training objectives combining CE, SupCon and KD terms."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import Tensor, nn

from zhcls.losses.ce import CELoss
from zhcls.losses.kd import KDLoss
from zhcls.losses.supcon import SupConLoss

logger = logging.getLogger(__name__)

__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput"]

OBJECTIVES: tuple[str, ...] = ("ce", "ce+scl", "kd", "kd+scl")
_WITH_TEACHER = frozenset({"kd", "kd+scl"})
_WITH_FEATURES = frozenset({"ce+scl", "kd+scl"})


@dataclass
class ObjectiveOutput:
    """Result of :class:`Objective`.

    Attributes:
        loss: scalar tensor to call ``backward()`` on.
        terms: detached scalar tensors for logging. Always ``ce`` and ``total``; plus
            ``scl`` for ``*+scl`` objectives and ``kd_soft`` / ``kd`` for KD objectives.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    r"""Named training objective.

    ================  =========================================================
    name              loss
    ================  =========================================================
    ``ce``            ``L = L_CE``
    ``ce+scl``        ``L = L_CE + lam * L_SCL``
    ``kd``            ``L = L_KD = beta * L_CE + (1 - beta) * L_soft``
    ``kd+scl``        ``L = alpha * L_KD + (1 - alpha) * L_SCL``
    ================  =========================================================

    ``L_CE`` is :class:`~zhcls.losses.ce.CELoss`, ``L_SCL`` is
    :class:`~zhcls.losses.supcon.SupConLoss` (Khosla et al., 2020) on the ``features``
    the caller passes (model representation or projection-head output: the caller
    decides), and ``L_soft`` is the ``T^2``-scaled :class:`~zhcls.losses.kd.KDLoss`
    (Hinton et al., 2015).

    Shapes (``forward``):
        * ``logits``: ``(B, C)``; ``labels``: ``(B,)`` int.
        * ``features``: ``(B, D)``; required by ``*+scl`` objectives, ignored otherwise
          (may be ``None``).
        * ``teacher``: ``(B, C)`` (probabilities or logits, see ``teacher_input``);
          required by KD objectives, ignored otherwise.
        * ``teacher_mask``: optional ``(B,)`` bool, rows that have a teacher. With a
          mask, ``L_soft`` averages over masked rows only while ``L_CE`` uses all rows.

    Args:
        name: one of :data:`OBJECTIVES`.
        lam: weight of ``L_SCL`` in ``ce+scl``.
        alpha: weight of ``L_KD`` in ``kd+scl``, in ``[0, 1]``.
        beta: weight of ``L_CE`` inside ``L_KD``, in ``[0, 1]``.
        temperature: KD temperature ``T``.
        scl_temperature: SupCon temperature ``tau``.
        positives: SupCon anchor mode, ``"all"`` or ``"only"``.
        teacher_input: KD teacher format, ``"probs"``, ``"logits"`` or ``"probs_as_logits"``.
    """

    def __init__(
        self,
        name: str,
        *,
        lam: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.5,
        temperature: float = 2.0,
        scl_temperature: float = 0.07,
        positives: str = "all",
        teacher_input: str = "probs",
    ) -> None:
        super().__init__()
        if name not in OBJECTIVES:
            raise ValueError(
                f"Objective: expected name in {OBJECTIVES}, found {name!r}; "
                "pick one of the listed objectives."
            )
        _check_weights(lam=lam, alpha=alpha, beta=beta)
        self.name = name
        self.lam, self.alpha, self.beta = float(lam), float(alpha), float(beta)
        self.ce = CELoss()
        self.scl: SupConLoss | None = None
        self.kd: KDLoss | None = None
        if name in _WITH_FEATURES:
            self.scl = SupConLoss(temperature=scl_temperature, positives=positives)
        if name in _WITH_TEACHER:
            self.kd = KDLoss(temperature=temperature, teacher_input=teacher_input,
                             validate=False)  # the data layer validated the teacher column

    @property
    def needs_teacher(self) -> bool:
        """Whether ``forward`` requires a ``teacher`` tensor (KD objectives)."""
        return self.name in _WITH_TEACHER

    @property
    def needs_features(self) -> bool:
        """Whether ``forward`` requires ``features`` (objectives with a SupCon term)."""
        return self.name in _WITH_FEATURES

    def extra_repr(self) -> str:
        return f"name={self.name!r}, lam={self.lam}, alpha={self.alpha}, beta={self.beta}"

    def forward(
        self,
        logits: Tensor,
        features: Tensor | None,
        labels: Tensor,
        teacher: Tensor | None = None,
        teacher_mask: Tensor | None = None,
        feature_labels: Tensor | None = None,
    ) -> ObjectiveOutput:
        """``feature_labels`` labels the rows of ``features`` when they differ from the
        batch (e.g. features all-gathered across DDP ranks); defaults to ``labels``."""
        self._check_call(features, teacher)
        terms: dict[str, Tensor] = {}
        ce = self.ce(logits, labels)
        terms["ce"] = ce
        loss = ce
        if self.kd is not None:
            assert teacher is not None  # guaranteed by _check_call
            soft = self.kd(logits, teacher, teacher_mask)
            loss = self.beta * ce + (1.0 - self.beta) * soft
            terms["kd_soft"] = soft
            terms["kd"] = loss
        if self.scl is not None:
            assert features is not None  # guaranteed by _check_call
            scl = self.scl(features, labels if feature_labels is None else feature_labels)
            terms["scl"] = scl
            if self.name == "ce+scl":
                loss = ce + self.lam * scl
            else:  # kd+scl
                loss = self.alpha * loss + (1.0 - self.alpha) * scl
        terms["total"] = loss
        return ObjectiveOutput(loss=loss, terms={k: v.detach() for k, v in terms.items()})

    def _check_call(self, features: Tensor | None, teacher: Tensor | None) -> None:
        if self.needs_teacher and teacher is None:
            raise ValueError(
                f"Objective {self.name!r}: expected a teacher tensor, found None; the data "
                "needs a teacher column (the third column: teacher probabilities or logits "
                "per example), or use objective 'ce' (or 'ce+scl') instead."
            )
        if self.needs_features and features is None:
            raise ValueError(
                f"Objective {self.name!r}: expected features of shape (B, D) for the SupCon "
                "term, found None; pass the sentence representation (or projection-head "
                "output), or use objective 'ce' / 'kd' instead."
            )


def _check_weights(*, lam: float, alpha: float, beta: float) -> None:
    if not float(lam) >= 0.0:
        raise ValueError(f"Objective: expected lam >= 0, found {lam!r}; use e.g. lam=1.0.")
    for key, value in (("alpha", alpha), ("beta", beta)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(
                f"Objective: expected {key} in [0, 1], found {value!r}; "
                f"it is a convex weight, use e.g. {key}=0.5."
            )
