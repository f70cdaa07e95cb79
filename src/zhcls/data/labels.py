"""Label ids from a split's label column: integer ids or class names from ``class.txt``, as
``data.label_format`` says (``auto`` | ``id`` | ``name``). ``auto`` refuses a file where a
label reads both ways with different meanings (numeric class names).

Multi-label rows (:meth:`LabelReader.parse_multi`) hold a set of labels: a JSON list, or a
text field of ids / names joined by ``data.label_separator`` (``体育,财经``). An empty field or
list is an example with no label (all negatives). A field that is itself a class name is read
as that one class, so a class name holding the separator still reads alone; where class names
hold the separator, a field of several labels cannot be split reliably: use JSONL ``labels``
lists or another separator (the error says so).
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from pathlib import Path

from zhcls.data.teacher import RowError
from zhcls.errors import DataError

LABEL_FORMATS = ("auto", "id", "name")

logger = logging.getLogger(__name__)


class FileLevelError(DataError):
    """A problem of the whole file (not one line): never skipped by ``on_bad_line: skip``."""


class LabelReader:
    """Label ids from ids or class names, by ``data.label_format`` (auto | id | name)."""

    def __init__(self, class_names: list[str], label_format: str, path: Path):
        self.names = class_names
        self.num_classes = len(class_names)
        self.name_to_id = {n: i for i, n in enumerate(class_names)}
        self.format = label_format
        self.path = path

    def parse(self, raw, line: int) -> int:
        if isinstance(raw, bool):
            raise RowError(f"label must be an integer id or a class name; found {raw!r}")
        s = str(raw).strip()
        if not s:
            raise RowError("empty label; expected an integer id or a class name from class.txt")
        as_id = raw if isinstance(raw, int) else _int_or_none(s)
        as_name = self.name_to_id.get(s)
        if self.format == "name" or (self.format == "auto" and not isinstance(raw, int)
                                     and as_name is not None):
            if as_name is None:
                raise RowError(f"label {s!r} is not a class name from class.txt ({self._shown()});"
                               f" data.label_format is name{self._suggest(s)}")
            if self.format == "auto" and as_id is not None and as_id != as_name \
                    and 0 <= as_id < self.num_classes:
                raise FileLevelError(
                    f"label {s!r} is ambiguous: class name {s!r} (id {as_name}) or label id "
                    f"{as_id} (class {self.names[as_id]!r}); class.txt has numeric class names. "
                    "Set data.label_format id (labels are 0-based ids) or name (labels are "
                    "class names)", self.path, line)
            return as_name
        if as_id is None and self.format == "id":
            raise RowError(f"label {s!r} is not an integer id (data.label_format is id; set it "
                           "to auto or name to read class names)")
        if as_id is None:
            raise RowError(f"label {s!r} is neither an integer id nor a class name from class.txt "
                           f"({self._shown()}){self._suggest(s)}{self._several(s)}")
        if not 0 <= as_id < self.num_classes:
            raise RowError(f"label id {as_id} out of range; class.txt has {self.num_classes} "
                           f"classes (ids 0..{self.num_classes - 1})")
        return as_id

    def parse_multi(self, raw, line: int, separator: str = ",") -> list[int]:
        """The sorted distinct label ids of a multi-label row: ``raw`` is a list (JSONL
        ``labels``) or a string of labels joined by ``separator``; empty = no label."""
        if isinstance(raw, list):
            items, where = raw, f"labels list {_short(raw)}"
        elif isinstance(raw, (str, int)) and not isinstance(raw, bool):
            items, where = self._split_field(str(raw), separator), f"label field {_short(raw)}"
        else:
            raise RowError(f"labels must be a list of class names / ids or a {separator!r}-"
                           f"separated string; found {type(raw).__name__} {_short(raw)}")
        ids: dict[int, object] = {}
        for pos, item in enumerate(items, start=1):
            if isinstance(item, str) and not item.strip():
                raise RowError(f"empty label (item {pos}) in {where}; expected a class name or "
                               f"id between separators (e.g. 'a{separator}b'), nothing else")
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise RowError(f"label item {pos} in {where} must be a class name or an integer "
                               f"id; found {type(item).__name__} {_short(item)}")
            try:
                label = self.parse(item, line)
            except RowError as exc:
                raise RowError(f"{exc} (item {pos} in {where}){self._other_separator(item, separator)}"
                               ) from None
            if label in ids:
                raise RowError(f"duplicate label {item!r} in {where} (class {self.names[label]!r} "
                               f"already given as {ids[label]!r}); list each label once")
            ids[label] = item
        return sorted(ids)

    def _joined_by(self, s, skip: str | None = None) -> str | None:
        """The separator (other than ``skip``) that splits ``s`` into known class names only,
        or None: the field looks like several labels joined."""
        if not isinstance(s, str):
            return None
        for sep in ("|", ";", "，", "、", "/", " ", ","):
            parts = [x.strip() for x in s.split(sep)]
            if sep != skip and len(parts) > 1 and all(x in self.name_to_id for x in parts):
                return sep
        return None

    def _several(self, s: str) -> str:
        """Single-label reading: a hint when the field is several known labels joined."""
        sep = self._joined_by(s)
        return "" if sep is None else (
            f"; it looks like several labels joined by {sep!r}: for multi-label data set "
            f"--data.task multi_label --data.label_separator {sep!r}")

    def _other_separator(self, item, separator: str) -> str:
        """Multi-label reading: a hint when an unknown item is known labels joined by another
        separator."""
        sep = self._joined_by(item, skip=separator)
        return "" if sep is None else (
            f"; it looks like labels joined by {sep!r}: set data.label_separator {sep!r} "
            "(zhcls data-stats: --label-separator)")

    def _split_field(self, s: str, separator: str) -> list[str]:
        s = s.strip()
        if not s:
            return []
        if s in self.name_to_id:  # a class name holding the separator reads as itself
            return [s]
        items = s.split(separator)
        if len(items) > 1 and self.names_with(separator):
            unknown = [i.strip() for i in items if i.strip() not in self.name_to_id]
            if unknown:
                raise RowError(f"cannot split label field {_short(s)} on {separator!r}: class "
                               f"names {self.names_with(separator)[:3]} contain the separator; "
                               "set data.label_separator to a character no class name holds, "
                               "or use JSONL with a labels list")
        return [i.strip() for i in items]

    def names_with(self, separator: str) -> list[str]:
        """The class names that contain ``separator`` (splitting them would be ambiguous)."""
        return [n for n in self.names if separator in n]

    def _suggest(self, s: str) -> str:
        close = difflib.get_close_matches(s, self.names, n=1, cutoff=0.5)
        return f"; did you mean {close[0]!r}?" if close else ""

    def _shown(self) -> str:
        return ", ".join(self.names[:10]) + (" ..." if len(self.names) > 10 else "")


def _int_or_none(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cardinality(label_sets: list[list[int]]) -> dict[str, float | int]:
    """Rows, mean labels per row (label cardinality) and rows with 0, 1 and 2+ labels."""
    sizes = Counter(min(len(s), 2) for s in label_sets)
    rows = len(label_sets)
    mean = sum(len(s) for s in label_sets) / rows if rows else 0.0
    return {"rows": rows, "cardinality": mean, "no_label": sizes[0], "one_label": sizes[1],
            "two_plus": sizes[2]}


def task_of_labels(rows: list, class_names: list[str], separator: str, name: str) -> str:
    """The task that the raw label values of a file's rows (JSON lists or text fields) show,
    logged with the counts behind it (see :func:`zhcls.data.formats.detect_task`)."""
    lists = [r for r in rows if isinstance(r, list)]
    clashing = [n for n in class_names if separator in n]
    sizes = [len(r) if isinstance(r, list) else _field_size(r, separator) for r in rows]
    several = sum(n > 1 for n in sizes)
    if lists:
        task = "multi_label"
        why = f"{len(lists)} of {len(rows)} rows hold a labels list, {several} with 2+ labels"
    elif clashing:
        task = "single_label"
        why = (f"class names {clashing[:3]} contain the label separator {separator!r}, so label "
               "fields are not split to detect the task (set data.task multi_label if rows hold "
               "several labels)")
    else:
        task = "multi_label" if several else "single_label"
        why = f"{several} of {len(rows)} rows have 2+ {separator!r}-separated labels"
    empty = sum(n == 0 for n in sizes)
    if empty and task == "single_label":
        why += f"; {empty} rows have an empty label (allowed in multi_label only)"
    logger.info("%s: %s -> data.task %s", name, why, task)
    return task


def _field_size(raw, separator: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return 1
    return sum(bool(p.strip()) for p in str(raw).split(separator))
