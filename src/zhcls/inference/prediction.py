"""What :class:`zhcls.inference.classifier.Classifier` returns and the text rule it shares
with :mod:`zhcls.inference.io`: :class:`Prediction` (with :class:`LabelScore`),
:class:`InputTextError` and :func:`blank_text_reason` (from :mod:`zhcls.data.text_rules`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zhcls.data.text_rules import blank_text_reason
from zhcls.errors import ZhclsError

__all__ = ["InputTextError", "LabelScore", "Prediction", "blank_text_reason",
           "multilabel_predictions", "ranked_predictions", "unknown_token_warnings"]


class InputTextError(ZhclsError, ValueError):
    """A text handed to the classifier breaks the text rules (wrong type, empty, too long)."""

    def __init__(self, message: str, index: int | None = None):
        self.index = index
        super().__init__(message)


@dataclass(frozen=True)
class LabelScore:
    """One ranked label: its name, id and probability."""

    label: str
    label_id: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score}


@dataclass(frozen=True)
class Prediction:
    """The result for one text: the best label and its probability; ``top_k`` holds the
    ``k`` best labels, best first, when ``top_k > 1`` was asked (else None).

    Multi-label (:mod:`zhcls.inference.multilabel`): ``labels`` is the label set (classes at
    or above their threshold, best first), ``scores`` every class's sigmoid score by name;
    ``label`` / ``label_id`` / ``score`` are the first of ``labels`` (None when it is empty).
    Both are None for a single-label prediction."""

    label: str | None
    label_id: int | None
    score: float | None
    top_k: tuple[LabelScore, ...] | None = None
    warning: str | None = None  # e.g. every token was [UNK]: the label is a guess
    labels: tuple[LabelScore, ...] | None = None  # multi-label only
    scores: dict[str, float] | None = field(default=None, hash=False)  # multi-label only

    @property
    def is_multi_label(self) -> bool:
        return self.labels is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by ``zhcls predict --format jsonl`` and ``zhcls serve``;
        multi-label: ``{"labels": [{"label", "label_id", "score"}, ...], "scores": {name:
        score}}`` (plus ``top_k`` / ``warning`` as for single-label)."""
        if self.labels is not None:
            out: dict[str, Any] = {"labels": [item.to_dict() for item in self.labels],
                                   "scores": dict(self.scores or {})}
        else:
            out = {"label": self.label, "label_id": self.label_id, "score": self.score}
        if self.top_k is not None:
            out["top_k"] = [item.to_dict() for item in self.top_k]
        if self.warning is not None:
            out["warning"] = self.warning
        return out


def ranked_predictions(probs: np.ndarray, labels: Sequence[str], top_k: int = 1,
                       warnings: Sequence[str | None] | None = None) -> list[Prediction]:
    """Single-label: rank each row of ``probs`` (N, C); ties keep label-id order."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]  # (N, k)
    warnings = warnings if warnings is not None else [None] * len(probs)
    out = []
    for row, ranked, warning in zip(probs, order, warnings, strict=True):
        best = int(ranked[0])
        ranked_labels = None
        if top_k > 1:
            ranked_labels = tuple(LabelScore(labels[int(j)], int(j), float(row[j]))
                                  for j in ranked)
        out.append(Prediction(labels[best], best, float(row[best]), ranked_labels,
                              warning))
    return out


def multilabel_predictions(probs: np.ndarray, labels: Sequence[str], thresholds,
                           at_least_one: bool, top_k: int,
                           warnings: Sequence[str | None] | None) -> list[Prediction]:
    """Multi-label: the label set of each row of ``probs`` (N, C) under ``thresholds`` (C,)."""
    from zhcls.inference.multilabel import decide

    decided, order = decide(probs, thresholds, at_least_one)  # (N, C) each
    warnings = warnings if warnings is not None else [None] * len(probs)
    out = []
    for row, on, ranked, warning in zip(probs, decided, order, warnings, strict=True):
        ranked_scores = [LabelScore(labels[int(j)], int(j), float(row[j]))
                         for j in ranked]
        chosen = tuple(x for x in ranked_scores if on[x.label_id])
        best = (chosen[0].label, chosen[0].label_id, chosen[0].score) if chosen \
            else (None, None, None)
        out.append(Prediction(
            *best,
            tuple(ranked_scores[:top_k]) if top_k > 1 else None, warning, labels=chosen,
            scores={name: float(p) for name, p in zip(labels, row, strict=True)}))
    return out


def unknown_token_warnings(tokenizer, ids: list) -> list[str | None]:
    """Per text: a warning when every token of ``ids`` is ``tokenizer``'s unknown token, else
    None (no tokenizer, as for the baseline: no warnings)."""
    if tokenizer is None:
        return [None] * len(ids)
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids) - {unk}
    out: list[str | None] = []
    for row in ids:
        if row and isinstance(row[0], list):  # chunks: the windows of one text
            row = [i for window in row for i in window]
        content = [i for i in row if i not in special]
        only_unk = unk is not None and bool(content) and all(i == unk for i in content)
        out.append(f"every token is {tokenizer.unk_token}: the vocabulary knows none of "
                   "these characters, so the label is a guess" if only_unk else None)
    return out
