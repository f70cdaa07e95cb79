"""Training objectives: a weighted sum of CE, KD and SupCon terms, with named presets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

from zhcls.config import MULTI_LABEL_PRESETS, OBJECTIVES, PRESETS, TERMS
from zhcls.losses.bce import BCELoss
from zhcls.losses.ce import CELoss
from zhcls.losses.kd import KDLoss
from zhcls.losses.kd_multilabel import MultiLabelKDLoss
from zhcls.losses.supcon import SupConLoss
from zhcls.losses.supcon_multilabel import MultiLabelSupConLoss

if TYPE_CHECKING:
    from zhcls.config import ObjectiveConfig

logger = logging.getLogger(__name__)

__all__ = ["OBJECTIVES", "TASKS", "TERMS", "Objective", "ObjectiveOutput"]

TASKS: tuple[str, ...] = ("single_label", "multi_label")


@dataclass
class ObjectiveOutput:
    """Result of :class:`Objective`.

    Attributes:
        loss: scalar tensor to call ``backward()`` on.
        terms: detached, unweighted scalar tensors for logging. Always ``ce`` (the per-class
            BCE for a multi-label objective: the key stays ``ce``) and ``total``;
            ``kd_soft`` (the ``T^2``-scaled KD term) and ``scl`` when they have a weight; ``kd``
            (``L_KD = beta * L_CE + (1 - beta) * L_soft``) for the ``kd`` / ``kd+scl`` presets.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


class Objective(nn.Module):
    r"""Training objective ``L = w_ce * L_CE + w_kd * L_soft + w_scl * L_SCL``.

    Give the weights explicitly (``terms={"ce": 1.0, "kd": 0.5, "scl": 0.3}``, any weights
    >= 0 over ``ce``, ``kd``, ``scl``) or name a preset, which fixes them from the research
    formulas (:data:`zhcls.config.PRESETS`):

    ================  ===========================================  ======================
    name              loss                                         weights (ce, kd, scl)
    ================  ===========================================  ======================
    ``ce``            ``L_CE``                                     ``1, 0, 0``
    ``ce+scl``        ``L_CE + lam * L_SCL``                       ``1, 0, lam``
    ``kd``            ``L_KD = beta * L_CE + (1 - beta) * L_soft``  ``beta, 1-beta, 0``
    ``kd+scl``        ``alpha * L_KD + (1 - alpha) * L_SCL``        ``alpha*beta,
                                                                   alpha*(1-beta), 1-alpha``
    ``bce``           ``L_BCE`` (multi-label only)                  ``1, 0, 0``
    ``bce+scl``       ``L_BCE + lam * L_SCL`` (multi-label only)    ``1, 0, lam``
    ================  ===========================================  ======================

    A term with weight 0 is not computed (and needs no teacher / features). ``L_CE`` is
    :class:`~zhcls.losses.ce.CELoss`, ``L_SCL`` is :class:`~zhcls.losses.supcon.SupConLoss`
    (Khosla et al., 2020) on the ``features`` the caller passes (model representation or
    projection-head output: the caller decides), and ``L_soft`` is the ``T^2``-scaled
    :class:`~zhcls.losses.kd.KDLoss` (Hinton et al., 2015).

    ``task="multi_label"`` swaps each term for its multi-label version, keeping the weights:
    the ``ce`` term is the per-class :class:`~zhcls.losses.bce.BCELoss` (with ``pos_weight``),
    ``kd`` the per-class :class:`~zhcls.losses.kd_multilabel.MultiLabelKDLoss` and ``scl`` the
    label-overlap :class:`~zhcls.losses.supcon_multilabel.MultiLabelSupConLoss`;
    :meth:`formula` and :meth:`describe` then name the first term ``bce``. Every preset works
    for multi-label data (``bce`` / ``bce+scl`` are the clearer names of ``ce`` / ``ce+scl``
    there); with ``task="single_label"`` they mean ``ce`` / ``ce+scl`` and log a warning
    (``zhcls.config`` refuses them with ``data.task: single_label``).

    Shapes (``forward``):
        * ``logits``: ``(B, C)``; ``labels``: ``(B,)`` int (single-label) or ``(B, C)``
          multi-hot float (multi-label); the other shape raises ``ValueError``.
        * ``features``: ``(B, D)``; required when ``scl`` has a weight, else may be ``None``.
        * ``teacher``: ``(B, C)`` (probabilities or logits, see ``teacher_input``); required
          when ``kd`` has a weight, ignored otherwise.
        * ``teacher_mask``: optional ``(B,)`` bool, rows that have a teacher. With a
          mask, ``L_soft`` sums the masked rows and divides by the whole batch ``B`` (a lone
          teacher row weighs 1/B; see :class:`~zhcls.losses.kd.KDLoss`); ``L_CE`` uses all rows.

    Args:
        name: a preset from :data:`OBJECTIVES`, or ``None`` when ``terms`` is given. Both
            may be given only if they agree.
        terms: weights of ``ce``, ``kd``, ``scl``; missing terms weigh 0.
        lam, alpha, beta: preset weights (see the table), ignored with ``terms`` alone.
        temperature: KD temperature ``T``.
        scl_temperature: SupCon temperature ``tau``.
        positives: SupCon anchor mode, ``"all"`` or ``"only"``.
        teacher_input: KD teacher format, ``"probs"``, ``"logits"`` or ``"probs_as_logits"``
            (the last single-label only).
        task: ``"single_label"`` (default) or ``"multi_label"``.
        pos_weight: multi-label BCE weight of each class's positives, ``(C,)``; ``None``
            means all 1. Refused for single-label.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        terms: dict[str, float] | None = None,
        lam: float = 1.0,
        alpha: float = 0.5,
        beta: float = 0.5,
        temperature: float = 2.0,
        scl_temperature: float = 0.07,
        positives: str = "all",
        teacher_input: str = "probs",
        task: str = "single_label",
        pos_weight: Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        _check_task(name, task, pos_weight)
        self.name, self.task = name, task
        self.lam, self.alpha, self.beta = float(lam), float(alpha), float(beta)
        self.weights = _resolve_weights(name, terms, lam=lam, alpha=alpha, beta=beta)
        multi = task == "multi_label"
        self.ce: CELoss | BCELoss = BCELoss(pos_weight) if multi else CELoss()
        self.scl: SupConLoss | None = None
        self.kd: KDLoss | MultiLabelKDLoss | None = None
        if "scl" in self.weights:
            scl_cls = MultiLabelSupConLoss if multi else SupConLoss
            self.scl = scl_cls(temperature=scl_temperature, positives=positives)
        if "kd" in self.weights:
            kd_cls = MultiLabelKDLoss if multi else KDLoss
            self.kd = kd_cls(temperature=temperature, teacher_input=teacher_input,
                             validate=False)  # the data layer validated the teacher column

    @classmethod
    def from_config(cls, o: ObjectiveConfig, task: str = "single_label",
                    pos_weight: Tensor | Sequence[float] | None = None) -> Objective:
        """The objective of a validated ``config.objective`` for ``task`` (the resolved
        ``data.task``). ``pos_weight`` (e.g. computed from the training counts for
        ``objective.pos_weight_auto``) wins over ``o.pos_weight``; both ``None``: all 1.
        A pos_weight with ``task="single_label"`` raises ``ValueError``."""
        if pos_weight is None:
            pos_weight = o.pos_weight
        return cls(o.name, terms=o.terms, lam=o.lam, alpha=o.alpha, beta=o.beta,
                   temperature=o.temperature, scl_temperature=o.scl_temperature,
                   positives=o.positives, teacher_input=o.teacher_input, task=task,
                   pos_weight=pos_weight)

    @property
    def needs_teacher(self) -> bool:
        """Whether ``forward`` requires a ``teacher`` tensor (the KD term has a weight)."""
        return self.kd is not None

    @property
    def needs_features(self) -> bool:
        """Whether ``forward`` requires ``features`` (the SupCon term has a weight)."""
        return self.scl is not None

    def _term_name(self, key: str) -> str:
        """How a term is named to the user: the ``ce`` term is ``bce`` for multi-label."""
        return "bce" if key == "ce" and self.task == "multi_label" else key

    def formula(self) -> str:
        """``L = 0.25·ce + 0.25·kd + 0.5·scl`` (``bce`` for ``ce`` when multi-label)."""
        return "L = " + " + ".join(f"{w:g}·{self._term_name(k)}"
                                   for k, w in self.weights.items())

    def describe(self) -> list[str]:
        """One line for the objective, then one per active loss: its config and citation."""
        task = " (multi_label)" if self.task == "multi_label" else ""
        lines = [f"objective {self.name or 'terms'}{task}: {self.formula()}"]
        for key, module in (("ce", self.ce), ("kd", self.kd), ("scl", self.scl)):
            if module is not None and key in self.weights:
                lines.append(f"  {self._term_name(key)}: {module!r} — {module.citation}")
        return lines

    def extra_repr(self) -> str:
        task = ", task='multi_label'" if self.task == "multi_label" else ""
        return f"name={self.name!r}, weights={self.weights}{task}"

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
        self._check_labels(logits, labels)
        w = self.weights
        ce = self.ce(logits, labels)
        terms: dict[str, Tensor] = {"ce": ce}
        loss = w["ce"] * ce if "ce" in w else None
        if self.kd is not None:
            assert teacher is not None  # guaranteed by _check_call
            soft = self.kd(logits, teacher, teacher_mask)
            terms["kd_soft"] = soft
            if self.name in ("kd", "kd+scl"):
                terms["kd"] = self.beta * ce + (1.0 - self.beta) * soft
            loss = w["kd"] * soft if loss is None else loss + w["kd"] * soft
        if self.scl is not None:
            assert features is not None  # guaranteed by _check_call
            scl = self.scl(features, labels if feature_labels is None else feature_labels)
            terms["scl"] = scl
            loss = w["scl"] * scl if loss is None else loss + w["scl"] * scl
        assert loss is not None  # at least one weight > 0, checked in __init__
        terms["total"] = loss
        return ObjectiveOutput(loss=loss, terms={k: v.detach() for k, v in terms.items()})

    def _check_labels(self, logits: Tensor, labels: Tensor) -> None:
        """Labels in the task's form: ``(B,)`` ids single-label, ``(B, C)`` multi-hot."""
        shape = tuple(labels.shape)
        if self.task == "multi_label" and (labels.dim() != 2 or labels.shape != logits.shape):
            raise ValueError(
                f"Objective {self.name or self.formula()!r} (multi_label): expected multi-hot "
                f"labels of shape {tuple(logits.shape)} (B, C) float, found {shape} "
                f"{labels.dtype}; the data must be read with task multi_label (the collator "
                "then gives (B, C) labels), or build the objective with task='single_label'."
            )
        if self.task == "single_label" and labels.dim() != 1:
            raise ValueError(
                f"Objective {self.name or self.formula()!r} (single_label): expected integer "
                f"class ids of shape ({logits.shape[0]},), found {shape} {labels.dtype}; for "
                "multi-hot labels build the objective with task='multi_label'."
            )

    def _check_call(self, features: Tensor | None, teacher: Tensor | None) -> None:
        if self.needs_teacher and teacher is None:
            raise ValueError(
                f"Objective {self.name or self.formula()!r}: expected a teacher tensor, found "
                "None; the data needs a teacher column (the third column: teacher probabilities "
                "or logits per example), or use objective 'ce' (or 'ce+scl') instead."
            )
        if self.needs_features and features is None:
            raise ValueError(
                f"Objective {self.name or self.formula()!r}: expected features of shape (B, D) "
                "for the SupCon term, found None; pass the sentence representation (or "
                "projection-head output), or use objective 'ce' / 'kd' instead."
            )


def _resolve_weights(name: str | None, terms: dict[str, float] | None, *, lam: float,
                     alpha: float, beta: float) -> dict[str, float]:
    """The active (weight > 0) terms in TERMS order, from the preset and/or the terms."""
    if name is not None and name not in OBJECTIVES:
        raise ValueError(
            f"Objective: expected name in {OBJECTIVES}, found {name!r}; pick one of the listed "
            "presets or pass terms={'ce': 1.0, 'kd': 0.5, 'scl': 0.3}."
        )
    if name is None and terms is None:
        raise ValueError("Objective: expected a preset name or terms, found neither; "
                         "use e.g. Objective('ce') or Objective(terms={'ce': 1.0}).")
    if terms is not None:
        bad = {k: v for k, v in terms.items() if k not in TERMS or not float(v) >= 0.0}
        if bad or not any(float(v) > 0 for v in terms.values()):
            raise ValueError(f"Objective: expected terms over {TERMS} with weights >= 0, at "
                             f"least one > 0; found {terms}.")
    preset = None
    if name is not None:
        _check_weights(lam=lam, alpha=alpha, beta=beta)
        preset = PRESETS[name](float(lam), float(alpha), float(beta))
    chosen = terms if terms is not None else preset
    assert chosen is not None
    if preset is not None and terms is not None and any(
            abs(preset.get(k, 0.0) - float(terms.get(k, 0.0))) > 1e-9 for k in TERMS):
        raise ValueError(f"Objective: preset {name!r} has weights {preset} but terms are "
                         f"{terms}; pass only one of them.")
    return {k: float(chosen[k]) for k in TERMS if float(chosen.get(k, 0.0)) > 0.0}


def _check_task(name: str | None, task: str,
                pos_weight: Tensor | Sequence[float] | None) -> None:
    if task not in TASKS:
        raise ValueError(f"Objective: expected task in {TASKS}, found {task!r}; use "
                         "'multi_label' for multi-hot labels, else 'single_label'.")
    if task == "single_label" and name in MULTI_LABEL_PRESETS:
        # config.validate refuses these with data.task single_label; with data.task auto the
        # task is only known once the data is read, so the caller checks it there.
        logger.warning("objective %r names the multi-label per-class BCE but task is "
                       "single_label: it trains softmax cross-entropy, as %r", name,
                       name.replace("bce", "ce"))
    if task == "single_label" and pos_weight is not None:
        raise ValueError("Objective: pos_weight weighs the positives of each class in the "
                         "multi-label BCE, found it with task='single_label'; drop it or pass "
                         "task='multi_label'.")


def _check_weights(*, lam: float, alpha: float, beta: float) -> None:
    if not float(lam) >= 0.0:
        raise ValueError(f"Objective: expected lam >= 0, found {lam!r}; use e.g. lam=1.0.")
    for key, value in (("alpha", alpha), ("beta", beta)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(
                f"Objective: expected {key} in [0, 1], found {value!r}; "
                f"it is a convex weight, use e.g. {key}=0.5."
            )
