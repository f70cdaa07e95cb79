"""The record readers under :func:`zhcls.data.formats.read_split`: bytes to text, and text to
``(line number, fields)`` records per format (THUCNews TSV, CSV, JSONL). A record that cannot
be read is a :class:`~zhcls.data.teacher.RowError` in place of its fields, so the caller
decides (``on_bad_line``) whether it stops the read or is skipped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from zhcls.data.teacher import RowError
from zhcls.errors import DataError

FIELDS = ("text", "label", "labels", "teacher_probs")


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split on ``\n`` only (a trailing ``\r`` is dropped): U+2028, U+0085,
    form feeds and lone ``\r`` stay inside a text, as ``zhcls predict`` reads them."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def decode_text(raw: bytes, path: Path, encoding: str) -> str:
    """``raw`` decoded (UTF-8 with or without BOM, or ``encoding``); an error names the line."""
    try:
        return raw.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"cannot decode byte {raw[exc.start:exc.start + 1]!r} as {encoding}; "
            "save the file as UTF-8 or pass data.encoding (e.g. gb18030)",
            path,
            line,
        ) from None


Record = tuple[int, "dict[str, str] | RowError"]


def tsv_records(text: str, path: Path) -> Iterator[Record]:
    for line, raw in enumerate(split_lines(text), start=1):
        if not raw.strip():
            continue
        cols = raw.split("\t")
        if len(cols) not in (2, 3):
            yield line, RowError(f"expected 2 or 3 tab-separated columns (text, label[, teacher]);"
                                 f" found {len(cols)}")
            continue
        fields = {"text": cols[0], "label": cols[1]}
        if len(cols) == 3:
            fields["teacher_probs"] = cols[2]
        yield line, fields


def csv_records(text: str, path: Path) -> Iterator[Record]:
    reader = csv.DictReader(io.StringIO(text, newline="\n"))
    header = reader.fieldnames or []
    if {"label", "labels"} <= set(header):
        raise DataError(f"CSV header has both label and labels columns; keep one; found {header}",
                        path, 1)
    missing = {"text", "label"} - set(header) - ({"label"} if "labels" in header else set())
    if missing:
        raise DataError(
            f"CSV header must have columns text,label[,teacher_probs]; missing {sorted(missing)}; "
            f"found {reader.fieldnames}",
            path,
            1,
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowError(f"unreadable CSV record ({exc})")
            continue
        if None in row or any(v is None for v in row.values()):
            found = len(header) + len(row.get(None) or []) - sum(v is None for v in row.values())
            yield reader.line_num, RowError(f"expected {len(header)} comma-separated columns "
                                            f"({','.join(header)}); found {found}")
            continue
        yield reader.line_num, {"label" if k == "labels" else k: v for k, v in row.items()
                                if k in FIELDS}


def jsonl_records(text: str, path: Path) -> Iterator[Record]:
    for line, raw in enumerate(split_lines(text), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield line, RowError(f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict) or "text" not in obj or ("label" in obj) == ("labels" in obj):
            both = isinstance(obj, dict) and "label" in obj and "labels" in obj
            yield line, RowError('expected a JSON object with "text" and "label" (or a "labels" '
                                 'list)' + ('; found both "label" and "labels"' if both else ""))
            continue
        if "labels" in obj and not isinstance(obj["labels"], list):
            yield line, RowError(f'"labels" must be a JSON list of class names or ids; found '
                                 f"{type(obj['labels']).__name__} {str(obj['labels'])[:40]!r}")
            continue
        fields = {"text": obj["text"], "label": obj.get("label", obj.get("labels"))}
        if obj.get("teacher_probs") is not None:
            tp = obj["teacher_probs"]
            fields["teacher_probs"] = tp if isinstance(tp, str) else json.dumps(tp)
        yield line, fields


RECORD_READERS = {".csv": csv_records, ".jsonl": jsonl_records}
