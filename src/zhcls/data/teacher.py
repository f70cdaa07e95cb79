"""Validation of the teacher column (soft labels from an LLM or a local teacher).

Teacher rows come from LLMs and are dirty: some sum to 100 (percentages), some to 1.186, some
to 801 with an entry above 1, some hold a tiny negative value. This module turns one raw JSON
row into a clean probability (or logit) vector, or says exactly why it cannot:

* sum ≈ 1 → used as is (divided by its sum); sum ≈ 100 → percentages, divided by 100;
* a negative entry → ``negative``: ``error``, or ``clip`` entries down to ``-tolerance`` to 0
  (counted); a value below ``-tolerance`` is never a probability;
* every entry in [0, 1] but the sum is off → ``policy``: ``error`` | ``normalize`` | ``skip``;
* an entry > 1 while the sum is not ≈ 100 is not a probability vector in any reading:
  ``invalid``: ``skip`` (default: the row trains on the hard label only, counted apart) or
  ``error``; ``normalize`` never renormalises such a row.

Multi-label (``TeacherRules(task="multi_label")``): a row holds C independent per-class
probabilities, each in [0, 1], with no sum rule. ``negative`` applies as above (clip small
negatives to 0 or stop); an entry > 1 is no probability: ``invalid`` skip (counted) or error
(percentages cannot be told apart from a bad row without a sum, so they are not rescaled).
``policy`` has no sum to check: ``skip`` still drops unreadable rows (as in single-label),
and ``normalize`` is refused with a :class:`~zhcls.errors.ConfigError` — renormalising
independent per-class probabilities would change what they mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from zhcls.errors import ConfigError

TEACHER_KINDS = ("probs", "logits")
TEACHER_POLICIES = ("error", "normalize", "skip")
TEACHER_NEGATIVE = ("error", "clip")
TEACHER_INVALID = ("skip", "error")
TEACHER_TASKS = ("single_label", "multi_label")
SUM_TOLERANCE = 0.02
PERCENT_TOLERANCE = 2.0
NEGATIVE_TOLERANCE = 0.01


class RowError(ValueError):
    """One data row cannot be used; the message says why (the caller adds file:line)."""


@dataclass(frozen=True)
class TeacherRules:
    """How the teacher column is read: ``kind`` probs|logits and the repair policies."""

    kind: str = "probs"
    policy: str = "error"
    negative: str = "error"
    tolerance: float = NEGATIVE_TOLERANCE
    invalid: str = "skip"
    drop_unusable: bool = False  # True: an unparsable teacher drops the teacher, not the line
    task: str = "single_label"  # multi_label: C independent probabilities, no sum rule

    def __post_init__(self) -> None:
        for name, value, choices in (("kind", self.kind, TEACHER_KINDS),
                                     ("task", self.task, TEACHER_TASKS),
                                     ("policy", self.policy, TEACHER_POLICIES),
                                     ("negative", self.negative, TEACHER_NEGATIVE),
                                     ("invalid", self.invalid, TEACHER_INVALID)):
            if value not in choices:
                raise ValueError(f"teacher {name} must be one of {choices}, got {value!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"teacher tolerance must be in [0, 1), got {self.tolerance}")
        if self.task == "multi_label" and self.policy == "normalize":
            raise ConfigError("data.teacher_policy normalize: multi-label teacher rows are "
                              "independent per-class probabilities with no sum rule, there is "
                              "nothing to renormalise; set data.teacher_policy error (the "
                              "default) or skip")


@dataclass
class TeacherReport:
    """Line numbers of what validation did to the teacher column of one file."""

    percentages: list[int] = field(default_factory=list)
    normalized: list[int] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # sum off, dropped by policy skip
    invalid: list[int] = field(default_factory=list)  # entry > 1, not a probability vector
    unusable: list[int] = field(default_factory=list)  # unparsable / negative, dropped

    @property
    def dropped(self) -> list[int]:
        """Lines whose teacher column was present but dropped as invalid."""
        return sorted(self.skipped + self.invalid + self.unusable)

    def summary(self) -> str:
        parts = []
        for name, lines in (("percentages rescaled", self.percentages),
                            ("renormalised (sum not 1)", self.normalized),
                            ("small negatives clipped to 0", self.clipped),
                            ("dropped: sum not 1 (teacher_policy skip)", self.skipped),
                            ("dropped: entry > 1, not a probability vector", self.invalid),
                            ("dropped: unreadable", self.unusable)):
            if lines:
                parts.append(f"{len(lines)} {name} (first lines: {', '.join(map(str, lines[:5]))})")
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in
                ("percentages", "normalized", "clipped", "skipped", "invalid", "unusable")}


def parse_teacher_field(raw: str, num_classes: int) -> list[float]:
    """Parse a JSON list such as ``[0.05, 0.9, 0.05]``; check length and finiteness."""
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RowError(
            f"teacher column is not a JSON list of numbers ({exc.msg}); found {raw[:60]!r}"
        ) from None
    if isinstance(values, dict):
        raise RowError("teacher column is a JSON object; expected a list in label-id order")
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise RowError(f"teacher column must be a JSON list of numbers; found {raw[:60]!r}")
    if len(values) != num_classes:
        raise RowError(
            f"teacher column has {len(values)} values but class.txt names {num_classes} classes"
        )
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise RowError("teacher column contains NaN or infinity")
    return out


def sum_reading(total: float) -> str:
    """How a row of teacher values reads from its sum: ``"percent"`` (within
    :data:`PERCENT_TOLERANCE` of 100), ``"probability"`` (within :data:`SUM_TOLERANCE` of 1) or
    ``"other"``. The one rule the data readers and the LLM answer parser share."""
    if abs(total - 100.0) <= PERCENT_TOLERANCE:
        return "percent"
    if abs(total - 1.0) <= SUM_TOLERANCE:
        return "probability"
    return "other"


def clean_teacher_probs(
    values: list[float], policy: str | TeacherRules, line: int, report: TeacherReport
) -> list[float] | None:
    """Return a probability vector that sums to 1, or None when the rules drop it (the line
    is recorded in ``report``); raise :class:`RowError` saying which setting accepts it."""
    rules = policy if isinstance(policy, TeacherRules) else TeacherRules(policy=policy)
    values = _clip_negatives(values, rules, line, report)
    if rules.task == "multi_label":
        return _clean_multilabel(values, rules, line, report)
    total = sum(values)
    reading = sum_reading(total)
    if reading == "percent":
        report.percentages.append(line)
    if reading != "other":
        return [v / total for v in values]
    if max(values) > 1.0 and rules.policy != "error":
        if rules.invalid == "error":
            raise RowError(f"teacher entry {max(values):g} > 1 while the row sums to {total:g} "
                           "(not 1 or 100): not a probability vector in any reading; set "
                           "data.teacher_invalid skip to train such rows on the hard label")
        report.invalid.append(line)
        return None
    if max(values) > 1.0:  # policy "error": renormalising would not be the fix either
        raise RowError(f"teacher entry {max(values):g} > 1 while the values sum to {total:g} "
                       "(not 1 or 100): not a probability vector in any reading; fix the row, "
                       "or set data.teacher_policy skip to train it on the hard label "
                       "(normalize drops such rows too, counted apart)")
    if rules.policy == "normalize" and total > 0:
        report.normalized.append(line)
        return [v / total for v in values]
    if rules.policy in ("skip", "normalize"):
        report.skipped.append(line)
        return None
    raise RowError(
        f"teacher probabilities sum to {total:g}, expected 1 (or 100 for percentages); "
        "set data.teacher_policy to normalize or skip to accept such rows"
    )


def _clean_multilabel(values: list[float], rules: TeacherRules, line: int,
                      report: TeacherReport) -> list[float] | None:
    """Per-class probabilities (negatives already handled): every entry must be <= 1."""
    high = max(values)
    if high <= 1.0:
        return values
    if rules.invalid == "error":
        raise RowError(f"teacher entry {high:g} > 1: multi-label teacher rows hold one "
                       "probability in [0, 1] per class; fix the row, or set "
                       "data.teacher_invalid skip to train such rows on the hard labels")
    report.invalid.append(line)
    return None


def _clip_negatives(values: list[float], rules: TeacherRules, line: int,
                    report: TeacherReport) -> list[float]:
    low = min(values)
    if low >= 0:
        return values
    if rules.negative == "clip" and low >= -rules.tolerance:
        report.clipped.append(line)
        return [max(v, 0.0) for v in values]
    if rules.negative == "clip":
        raise RowError(f"teacher probabilities must be >= 0; found {low:g}, below "
                       f"-data.teacher_negative_tolerance ({-rules.tolerance:g}); fix the row or "
                       "set data.teacher_policy skip to drop such teachers")
    raise RowError(f"teacher probabilities must be >= 0; found {low:g}; set "
                   "data.teacher_negative clip to turn values down to "
                   f"-data.teacher_negative_tolerance ({-rules.tolerance:g}) into 0")
