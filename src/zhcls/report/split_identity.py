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
    same content (number of examples and SHA-256; the resolved path where no hash is known),
    so identical copies of a split in two dataset directories count as one."""
    def key(r: RunReport) -> tuple:
        where = r.split_digest or str(Path(r.split_path).resolve())
        return where, r.split_metrics.get("num_examples")

    if len({key(r) for r in reports}) == 1:
        return
    split = reports[0].split
    found = "; ".join(
        f"{r.name} on {r.split_path} ({r.split_metrics.get('num_examples', '?')} examples"
        + (f", sha256 {r.split_digest[:12]})" if r.split_digest else ")") for r in reports)
    raise ZhclsError(f"cannot compare runs evaluated on different {split} splits: expected "
                     f"every run on one {split} split, found {found}; pass --data DIR to "
                     f"evaluate every run on one dataset (e.g. --data "
                     f"{Path(reports[0].split_path).parent})")


def split_digest(path: Path) -> str:
    """SHA-256 (hex) of a split file: what the report evaluated, beyond its path."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
