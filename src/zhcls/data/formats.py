"""Read labelled text in the research formats: THUCNews ``text<TAB>label[<TAB>teacher]``
files with a ``class.txt``, and CSV / JSONL files with ``text``, ``label`` and an optional
``teacher_probs`` field. Every bad line is an error naming file, line, expected and found.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zhcls.data.teacher import (
    TEACHER_KINDS,
    TEACHER_POLICIES,
    RowError,
    TeacherReport,
    clean_teacher_probs,
    parse_teacher_field,
)
from zhcls.errors import DataError

logger = logging.getLogger(__name__)

SPLIT_SUFFIXES = (".txt", ".tsv", ".csv", ".jsonl")
ON_BAD_LINE = ("error", "skip")


@dataclass
class Example:
    """One labelled sentence. ``line`` is the 1-based line (or CSV record) it came from."""

    text: str
    label: int
    teacher: list[float] | None = None
    line: int = 0


@dataclass
class SplitData:
    """The examples of one file, plus what validation skipped or repaired."""

    path: Path
    examples: list[Example]
    skipped: list[int] = field(default_factory=list)
    teacher_report: TeacherReport = field(default_factory=TeacherReport)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> list[int]:
        return [e.label for e in self.examples]

    @property
    def has_teacher(self) -> bool:
        return any(e.teacher is not None for e in self.examples)


def read_class_names(path: str | Path, encoding: str = "utf-8") -> list[str]:
    """Read ``class.txt``: one class name per line, line i names label id i."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            "class.txt not found; expected one class name per line (line i names label id i). "
            "Create it next to train.txt",
            path,
        )
    text = _decode(path.read_bytes(), path, encoding)
    names = [ln.strip() for ln in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError("class.txt is empty; expected one class name per line", path)
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name:
            raise DataError("empty class name; every line must name a class", path, i)
        if name in seen:
            raise DataError(
                f"duplicate class name {name!r} (already on line {seen[name]}); "
                "class names must be unique",
                path,
                i,
            )
        seen[name] = i
    return names


def find_split_file(data_dir: str | Path, split: str) -> Path:
    """Return ``DIR/split.{txt,tsv,csv,jsonl}``; error listing what was looked for."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"dataset directory not found (looking for the {split} split)", data_dir)
    for suffix in SPLIT_SUFFIXES:
        candidate = data_dir / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    tried = ", ".join(f"{split}{s}" for s in SPLIT_SUFFIXES)
    raise DataError(f"no {split} split found; looked for {tried}", data_dir)


def read_split(
    path: str | Path,
    class_names: list[str],
    *,
    on_bad_line: str = "error",
    teacher_kind: str = "probs",
    teacher_policy: str = "error",
    encoding: str = "utf-8",
    ignore_teacher: bool = False,
) -> SplitData:
    """Read one split file (format chosen by suffix) into validated examples.
    ``ignore_teacher`` drops any teacher column unread (``zhcls label`` relabels)."""
    path = Path(path)
    if on_bad_line not in ON_BAD_LINE:
        raise ValueError(f"on_bad_line must be one of {ON_BAD_LINE}, got {on_bad_line!r}")
    if teacher_kind not in TEACHER_KINDS:
        raise ValueError(f"teacher_kind must be one of {TEACHER_KINDS}, got {teacher_kind!r}")
    if teacher_policy not in TEACHER_POLICIES:
        raise ValueError(f"teacher_policy must be one of {TEACHER_POLICIES}, got {teacher_policy!r}")
    if not path.is_file():
        raise DataError("file not found", path)
    text = _decode(path.read_bytes(), path, encoding)
    rows = _RECORD_READERS.get(path.suffix.lower(), _tsv_records)(text, path)
    split = SplitData(path=path, examples=[])
    name_to_id = {n: i for i, n in enumerate(class_names)}
    for line, fields in rows:
        if ignore_teacher:
            fields.pop("teacher_probs", None)
        try:
            example = _make_example(fields, line, class_names, name_to_id,
                                    teacher_kind, teacher_policy, split.teacher_report)
        except (DataError, RowError) as exc:
            err = exc if isinstance(exc, DataError) else DataError(str(exc), path, line)
            if err.path is None:
                err = DataError(str(err), path, line)
            if on_bad_line == "error":
                raise err from None
            split.skipped.append(line)
            continue
        split.examples.append(example)
    _log_summary(split)
    if not split.examples:
        raise DataError("no usable examples in file", path)
    return split


def _decode(raw: bytes, path: Path, encoding: str) -> str:
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


def _tsv_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        cols = raw.rstrip("\r").split("\t")
        if len(cols) not in (2, 3):
            raise DataError(
                f"expected 2 or 3 tab-separated columns (text, label[, teacher]); found {len(cols)}",
                path,
                line,
            )
        fields = {"text": cols[0], "label": cols[1]}
        if len(cols) == 3:
            fields["teacher_probs"] = cols[2]
        yield line, fields


def _csv_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = {"text", "label"} - set(reader.fieldnames or [])
    if missing:
        raise DataError(
            f"CSV header must have columns text,label[,teacher_probs]; missing {sorted(missing)}; "
            f"found {reader.fieldnames}",
            path,
            1,
        )
    for row in reader:
        yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}


def _jsonl_records(text: str, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path, line) from None
        if not isinstance(obj, dict) or "text" not in obj or "label" not in obj:
            raise DataError('expected a JSON object with "text" and "label"', path, line)
        fields = {"text": obj["text"], "label": obj["label"]}
        if obj.get("teacher_probs") is not None:
            tp = obj["teacher_probs"]
            fields["teacher_probs"] = tp if isinstance(tp, str) else json.dumps(tp)
        yield line, fields


_RECORD_READERS = {".csv": _csv_records, ".jsonl": _jsonl_records}


def _make_example(fields, line, class_names, name_to_id, teacher_kind, teacher_policy, report):
    text = fields["text"]
    if not isinstance(text, str) or not text.strip():
        raise RowError("empty text; every example needs a non-empty sentence")
    label = _parse_label(fields["label"], class_names, name_to_id)
    teacher = None
    raw_teacher = fields.get("teacher_probs")
    if raw_teacher is not None and str(raw_teacher).strip():
        values = parse_teacher_field(str(raw_teacher), len(class_names))
        teacher = values if teacher_kind == "logits" else clean_teacher_probs(
            values, teacher_policy, line, report)
    return Example(text=text.strip(), label=label, teacher=teacher, line=line)


def _parse_label(raw, class_names: list[str], name_to_id: dict[str, int]) -> int:
    if isinstance(raw, bool):
        raise RowError(f"label must be an integer id or a class name; found {raw!r}")
    if isinstance(raw, int):
        value = raw
    else:
        s = str(raw).strip()
        if s in name_to_id:
            return name_to_id[s]
        try:
            value = int(s)
        except ValueError:
            shown = ", ".join(class_names[:10]) + (" ..." if len(class_names) > 10 else "")
            raise RowError(
                f"label {s!r} is neither an integer id nor a class name from class.txt ({shown})"
            ) from None
    if not 0 <= value < len(class_names):
        raise RowError(
            f"label id {value} out of range; class.txt has {len(class_names)} classes "
            f"(ids 0..{len(class_names) - 1})"
        )
    return value


def _log_summary(split: SplitData) -> None:
    if split.skipped:
        logger.warning(
            "%s: skipped %d bad lines (first: %s)", split.path, len(split.skipped),
            ", ".join(map(str, split.skipped[:5])),
        )
    summary = split.teacher_report.summary()
    if summary:
        logger.warning("%s: teacher column: %s", split.path, summary)
