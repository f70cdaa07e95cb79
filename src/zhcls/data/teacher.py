"""Validation of the teacher column (soft labels from an LLM or a local teacher).

Teacher rows come from LLMs and are dirty: some sum to 100 (percentages), some to 801, some
miss classes. This module turns one raw JSON row into a clean probability (or logit) vector,
or says exactly why it cannot.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

TEACHER_KINDS = ("probs", "logits")
TEACHER_POLICIES = ("error", "normalize", "skip")
SUM_TOLERANCE = 0.02
PERCENT_TOLERANCE = 2.0


class RowError(ValueError):
    """One data row cannot be used; the message says why (the caller adds file:line)."""


@dataclass
class TeacherReport:
    """Counts of what validation did to the teacher column of one file."""

    percentages: list[int] = field(default_factory=list)
    normalized: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for name, lines in (("percentages rescaled", self.percentages),
                            ("renormalised", self.normalized),
                            ("teacher dropped", self.skipped)):
            if lines:
                parts.append(f"{len(lines)} {name} (first lines: {', '.join(map(str, lines[:5]))})")
        return "; ".join(parts)


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


def clean_teacher_probs(
    values: list[float], policy: str, line: int, report: TeacherReport
) -> list[float] | None:
    """Return a probability vector that sums to 1, or None when the policy drops it.

    - any negative value → error (a probability cannot be negative);
    - sum ≈ 100 → percentages, divided by 100;
    - sum not within ``SUM_TOLERANCE`` of 1 → ``policy``: error | normalize | skip.
    """
    if any(v < 0 for v in values):
        raise RowError(f"teacher probabilities must be >= 0; found {min(values):g}")
    total = sum(values)
    if abs(total - 100.0) <= PERCENT_TOLERANCE:
        report.percentages.append(line)
        return [v / total for v in values]
    if abs(total - 1.0) <= SUM_TOLERANCE:
        return [v / total for v in values]
    if policy == "normalize" and total > 0:
        report.normalized.append(line)
        return [v / total for v in values]
    if policy == "skip" or (policy == "normalize" and total <= 0):
        report.skipped.append(line)
        return None
    raise RowError(
        f"teacher probabilities sum to {total:g}, expected 1 (or 100 for percentages); "
        "set data.teacher_policy to normalize or skip to accept such rows"
    )
