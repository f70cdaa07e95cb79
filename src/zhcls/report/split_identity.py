"""Which split a run report evaluated, by content: comparisons refuse runs evaluated on
different splits (a per-class difference across two sets of examples means nothing)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from zhcls.errors import ZhclsError

if TYPE_CHECKING:
    from zhcls.report.run_report import RunReport


def check_same_split(reports: list[RunReport]) -> None:
    """Refuse to compare runs evaluated on different splits: a comparison's numbers and
    per-class differences only mean something on one set of examples. The same split is the
    same examples: the SHA-256 of its (text, label) rows (``examples_sha256`` of the
    evaluation), so a copy elsewhere or the same rows with a teacher column count as one; for
    reports saved before that was recorded, the file's SHA-256 (else its resolved path) and
    the number of examples."""
    def key(r: RunReport) -> tuple:
        rows = r.split_metrics.get("examples_sha256")
        where = rows or r.split_digest or str(Path(r.split_path).resolve())
        return where, r.split_metrics.get("num_examples")

    if len({key(r) for r in reports}) == 1:
        return
    split = reports[0].split
    found = "; ".join(
        f"{r.name} on {r.split_path} ({r.split_metrics.get('num_examples', '?')} examples"
        + (f", rows sha256 {r.split_metrics['examples_sha256'][:12]})"
           if r.split_metrics.get("examples_sha256") else ")") for r in reports)
    raise ZhclsError(f"cannot compare runs evaluated on different {split} splits: expected "
                     f"every run on one {split} split, found {found}; pass --data DIR to "
                     f"evaluate every run on one dataset (e.g. --data "
                     f"{Path(reports[0].split_path).parent})")


def split_digest(path: Path) -> str:
    """SHA-256 (hex) of a split file's bytes: a saved report is reused only while it holds."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
