"""Label ids from a split's label column: integer ids or class names from ``class.txt``, as
``data.label_format`` says (``auto`` | ``id`` | ``name``). ``auto`` refuses a file where a
label reads both ways with different meanings (numeric class names)."""

from __future__ import annotations

from pathlib import Path

from zhcls.data.teacher import RowError
from zhcls.errors import DataError

LABEL_FORMATS = ("auto", "id", "name")


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
                               " data.label_format is name")
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
                           f"({self._shown()})")
        if not 0 <= as_id < self.num_classes:
            raise RowError(f"label id {as_id} out of range; class.txt has {self.num_classes} "
                           f"classes (ids 0..{self.num_classes - 1})")
        return as_id

    def _shown(self) -> str:
        return ", ".join(self.names[:10]) + (" ..." if len(self.names) > 10 else "")


def _int_or_none(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None
