"""``OUT/label_report.json`` across runs: labelling another split into an OUT that holds
splits labelled earlier keeps their records under ``"splits"``, and refuses a different
teacher (one dataset has one kind of teacher column). Used by ``zhcls label``; the labelled
files themselves are protected by :func:`zhcls.label.writer.labelled_splits`."""

from __future__ import annotations

import json
from pathlib import Path

from zhcls.errors import DataError
from zhcls.label.writer import REPORT_NAME, check_label_output, labelled_splits
from zhcls.utils import atomic_write_json


def read_report_entries(out_dir: str | Path) -> dict[str, dict]:
    """The per-split records of ``OUT/label_report.json`` ({} when there is none); a report
    of one run (no ``"splits"``) is one record, its split from ``split`` or the output file."""
    path = Path(out_dir) / REPORT_NAME
    if not path.is_file():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"unreadable label report ({exc}); expected the JSON object an "
                        "earlier zhcls label wrote. Restore it, or delete it to start a new "
                        "one", path) from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type(obj).__name__}; restore it, or "
                        "delete it to start a new report", path)
    if isinstance(obj.get("splits"), dict):
        return {k: v for k, v in obj["splits"].items() if isinstance(v, dict)}
    name = _report_split(obj)
    return {name: obj} if name else {}


def _report_split(obj: dict) -> str | None:
    if isinstance(obj.get("split"), str):
        return obj["split"]
    output = obj.get("output_file") or obj.get("output")
    return Path(output).stem if isinstance(output, str) else None


def _teacher_of(entry: dict) -> tuple[str | None, str]:
    teacher = entry.get("teacher")
    if teacher is None and isinstance(entry.get("model"), str):
        teacher = f"--llm {entry['model']}"  # a report from before "teacher" was recorded
    return teacher, entry.get("emit") or "probs"


def prepare_output(data_dir: str | Path, split: str, out_dir: str | Path, teacher: str,
                   emit: str = "probs", task: str = "auto") -> dict[str, dict]:
    """Check, before any labelling, that ``split`` may be labelled into OUT by ``teacher``
    (``"--teacher /abs/path"`` or ``"--llm MODEL"``) with ``emit``: the kept splits
    (:func:`labelled_splits`) must come from the same teacher and emit, so one dataset has
    one kind of teacher column; an OUT with data files but no ``label_report.json`` is
    refused (:func:`check_label_output`). Returns the report records of the kept splits."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir() or out_dir.resolve() == Path(data_dir).resolve():
        return {}
    check_label_output(out_dir)  # another dataset, not an earlier output of zhcls label
    kept = labelled_splits(data_dir, split, out_dir, task)
    entries = {k: v for k, v in read_report_entries(out_dir).items() if k in kept}
    for name, entry in entries.items():
        old, old_emit = _teacher_of(entry)
        if (old is not None and old != teacher) or old_emit != emit:
            raise DataError(f"{name} was labelled by {old or 'a teacher'} (emit {old_emit}) but "
                            f"this run uses {teacher} (emit {emit}); one dataset needs one "
                            f"teacher. Label {split} into a new --out, or rerun with "
                            f"{old or 'the same teacher'}" + (f" --emit {old_emit}"
                                                               if old_emit != emit else ""),
                            out_dir / REPORT_NAME)
    return entries


def merge_label_report(out_dir: str | Path, split: str, teacher: str, emit: str,
                       kept: dict[str, dict]) -> None:
    """Rewrite the one-run ``OUT/label_report.json`` that labelling ``split`` just wrote as
    that run's record (top level, as before, plus ``teacher`` and ``emit``) and
    ``"splits"``: the ``kept`` records of the earlier splits and this one."""
    path = Path(out_dir) / REPORT_NAME
    if not path.is_file():
        return
    latest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(latest, dict) or "splits" in latest or _report_split(latest) != split:
        return  # not a report of this run
    entry = {**latest, "teacher": teacher, "emit": latest.get("emit") or emit}
    splits = {k: v for k, v in kept.items() if k != split}
    atomic_write_json(path, {**entry, "splits": {**splits, split: entry}})
