"""Read labelled text in the research formats: THUCNews ``text<TAB>label[<TAB>teacher]``
files with a ``class.txt``, and CSV / JSONL files with ``text``, ``label`` and an optional
``teacher_probs`` field. Every bad line is an error naming file, line, expected and found.

Multi-label (``task="multi_label"``): the label field holds ids / names joined by
``label_separator`` (``text<TAB>体育,财经``; a CSV ``label`` or ``labels`` column likewise), or
JSONL gives a ``labels`` list; an empty field / list is an example with no label. Each
example's label is then the sorted list of its distinct ids. :func:`detect_task` tells the two
tasks apart from a training file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from zhcls.data.labels import (
    LABEL_FORMATS,
    FileLevelError,
    LabelReader,
    cardinality,
    task_of_labels,
)
from zhcls.data.records import RECORD_READERS, decode_text, split_lines, tsv_records
from zhcls.data.teacher import (
    RowError,
    TeacherReport,
    TeacherRules,
    clean_teacher_probs,
    parse_teacher_field,
)
from zhcls.data.text_rules import blank_text_reason
from zhcls.errors import DataError

logger = logging.getLogger(__name__)

SPLIT_SUFFIXES = (".txt", ".tsv", ".csv", ".jsonl")
ON_BAD_LINE = ("error", "skip")
TASKS = ("single_label", "multi_label")


@dataclass
class Example:
    """One labelled sentence. ``line`` is the 1-based line (or CSV record) it came from.
    ``label``: a class id (single-label) or the sorted distinct ids, maybe none (multi-label)."""

    text: str
    label: int | list[int]
    teacher: list[float] | None = None
    line: int = 0


@dataclass
class SplitData:
    """The examples of one file, plus what validation skipped or repaired."""

    path: Path
    examples: list[Example]
    skipped: list[int] = field(default_factory=list)
    skip_reasons: dict[int, str] = field(default_factory=dict)
    teacher_rows: int = 0  # lines with a non-empty teacher column (read or not)
    teacher_report: TeacherReport = field(default_factory=TeacherReport)
    task: str = "single_label"

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> list[int] | list[list[int]]:
        return [e.label for e in self.examples]

    def examples_digest(self) -> str:
        """SHA-256 (hex) of the (text, label) rows in order: which examples these are,
        whatever the file's format or extra columns (a teacher column does not change it)."""
        h = hashlib.sha256()
        for e in self.examples:
            h.update(json.dumps([e.text, e.label], ensure_ascii=False).encode("utf-8") + b"\n")
        return h.hexdigest()

    def label_sets(self) -> list[list[int]]:
        """Every example's labels as a list (a single label -> a list of one)."""
        return [e.label if isinstance(e.label, list) else [e.label] for e in self.examples]

    def label_matrix(self, num_classes: int) -> np.ndarray:
        """(N, C) float32 multi-hot matrix of the labels (one-hot for single-label)."""
        out = np.zeros((len(self.examples), num_classes), dtype=np.float32)  # (N, C)
        for row, ids in enumerate(self.label_sets()):
            out[row, ids] = 1.0
        return out

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
    text = decode_text(path.read_bytes(), path, encoding)
    names = [ln.strip() for ln in split_lines(text)]
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


def resolve_data_dir(data_dir: str | Path, flag: str = "--data") -> Path:
    """The directory holding ``class.txt``: ``DIR`` itself, or ``DIR/data`` (the research
    layout ``THUCNews/data/{train,dev,test,class}.txt`` that ``run.py`` reads). A path that
    does not exist is an error suggesting close names (``thucnews`` for ``THUCNews``)."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        hint = _close_matches(data_dir)
        raise DataError(f"dataset directory does not exist (given as {flag})"
                        + (f"; did you mean {' or '.join(hint)}?" if hint else ""), data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{flag} must be a directory holding class.txt and train/dev/test "
                        "files; found a file", data_dir)
    if not (data_dir / "class.txt").is_file() and (data_dir / "data" / "class.txt").is_file():
        logger.info("dataset: using %s (the research layout DIR/data/)", data_dir / "data")
        return data_dir / "data"
    if not (data_dir / "class.txt").is_file():
        raise DataError(f"class.txt not found in {data_dir} nor in {data_dir / 'data'}; expected "
                        "one class name per line (line i names label id i) next to train.txt",
                        data_dir / "class.txt")
    return data_dir


def _close_matches(path: Path) -> list[str]:
    parent = path.parent if path.parent.is_dir() else None
    if parent is None:
        return []
    names = [p.name for p in parent.iterdir() if p.is_dir()]
    lower = {n.lower(): n for n in names}
    if path.name.lower() in lower:
        return [str(parent / lower[path.name.lower()])]
    close = difflib.get_close_matches(path.name.lower(), list(lower), n=3, cutoff=0.6)
    return [str(parent / lower[c]) for c in close]


def has_split(data_dir: str | Path, split: str) -> bool:
    """Whether ``DIR`` holds any file of ``split`` (``find_split_file`` then picks it)."""
    return any((Path(data_dir) / f"{split}{s}").is_file() for s in SPLIT_SUFFIXES)


def find_split_file(data_dir: str | Path, split: str) -> Path:
    """Return ``DIR/split.{txt,tsv,csv,jsonl}``; error listing what was looked for, or naming
    both files when more than one format of the split is present."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"dataset directory not found (looking for the {split} split)", data_dir)
    found = [data_dir / f"{split}{s}" for s in SPLIT_SUFFIXES if (data_dir / f"{split}{s}").is_file()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise DataError(f"{names} both exist; which one is the {split} split is ambiguous. "
                        "Keep one (move the other out of the directory)", data_dir)
    if found:
        return found[0]
    tried = ", ".join(f"{split}{s}" for s in SPLIT_SUFFIXES)
    hint = ""
    others = [s for s in ("train", "dev", "test") if s != split and has_split(data_dir, s)]
    if others and split == "test":
        hint = f"; this dataset has {' and '.join(others)}: evaluate one with --split dev"
    raise DataError(f"no {split} split found; looked for {tried}{hint}", data_dir)


def _check_choices(**given: tuple[str, tuple[str, ...]]) -> None:
    """A programming error (the CLI and configs validate first): ``name=(value, choices)``."""
    for name, (value, choices) in given.items():
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def read_split(
    path: str | Path,
    class_names: list[str],
    *,
    on_bad_line: str = "error",
    label_format: str = "auto",
    teacher_kind: str = "probs",
    teacher_policy: str = "error",
    teacher_rules: TeacherRules | None = None,
    read_teacher: bool = True,
    encoding: str = "utf-8",
    ignore_teacher: bool = False,
    task: str = "single_label",
    label_separator: str = ",",
) -> SplitData:
    """Read one split file (format chosen by suffix) into validated examples.
    ``ignore_teacher`` drops any teacher column unread (``zhcls label`` relabels).
    ``read_teacher=False`` leaves the teacher column unread (objectives without KD): it is
    counted (``teacher_rows``), never validated. ``teacher_rules`` overrides
    ``teacher_kind``/``teacher_policy`` with every teacher setting; when the column is read,
    their ``task`` becomes ``task`` (multi-label: per-class probabilities, no sum rule, and
    ``teacher_policy`` normalize is a ConfigError; see :mod:`zhcls.data.teacher`)."""
    path = Path(path)
    _check_choices(on_bad_line=(on_bad_line, ON_BAD_LINE), label_format=(label_format,
                   LABEL_FORMATS), task=(task, TASKS))
    rules = teacher_rules or TeacherRules(kind=teacher_kind, policy=teacher_policy)
    if read_teacher and not ignore_teacher and rules.task != task:
        rules = replace(rules, task=task)  # an unread column is never refused
    if not path.is_file():
        raise DataError("file not found", path)
    text = decode_text(path.read_bytes(), path, encoding)
    rows = RECORD_READERS.get(path.suffix.lower(), tsv_records)(text, path)
    split = SplitData(path=path, examples=[], task=task)
    labels = LabelReader(class_names, label_format, path)
    separator = label_separator if task == "multi_label" else None
    for line, fields in rows:
        if ignore_teacher:
            fields.pop("teacher_probs", None)
        try:
            if isinstance(fields, RowError):
                raise fields
            example = _make_example(fields, line, labels, rules if read_teacher else None,
                                    split, separator)
        except FileLevelError:
            raise
        except (DataError, RowError) as exc:
            err = exc if isinstance(exc, DataError) else DataError(str(exc), path, line)
            if err.path is None:
                err = DataError(str(err), path, line)
            if on_bad_line == "error":
                raise err from None
            split.skipped.append(line)
            split.skip_reasons.setdefault(line, str(err))
            continue
        split.examples.append(example)
    _log_summary(split)
    if not split.examples:
        raise DataError("no usable examples in file", path)
    return split


def detect_task(path: str | Path, class_names: list[str], *, label_separator: str = ",",
                encoding: str = "utf-8") -> str:
    """``"multi_label"`` when any row of the (training) file has a JSONL ``labels`` list or a
    label field of more than one ``label_separator``-separated name / id, else
    ``"single_label"``; logs what was found. Rows the readers would reject are not counted.
    Where class names contain the separator, fields are not split (that is logged)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found (detecting data.task from it)", path)
    text = decode_text(path.read_bytes(), path, encoding)
    rows = [f["label"] for _, f in RECORD_READERS.get(path.suffix.lower(), tsv_records)(text, path)
            if not isinstance(f, RowError)]
    return task_of_labels(rows, class_names, label_separator, path.name)


def _make_example(fields, line: int, labels: LabelReader, rules: TeacherRules | None,
                  split: SplitData, separator: str | None) -> Example:
    text = fields["text"]
    reason = blank_text_reason(text) if isinstance(text, str) else "empty text"
    if reason is not None:
        raise RowError(f"{reason}; every example needs a non-empty sentence")
    if separator is not None:
        label: int | list[int] = labels.parse_multi(fields["label"], line, separator)
    elif isinstance(fields["label"], list):
        raise RowError(f"label is a list {str(fields['label'])[:40]}: multi-label data; set "
                       "data.task multi_label (or auto) to read label sets")
    else:
        label = labels.parse(fields["label"], line)
    teacher = None
    raw_teacher = fields.get("teacher_probs")
    if raw_teacher is not None and str(raw_teacher).strip():
        split.teacher_rows += 1
        if rules is not None:
            teacher = _read_teacher(str(raw_teacher), labels.num_classes, rules, line,
                                    split.teacher_report)
    return Example(text=text.strip(), label=label, teacher=teacher, line=line)


def _read_teacher(raw: str, num_classes: int, rules: TeacherRules, line: int,
                  report: TeacherReport) -> list[float] | None:
    try:
        values = parse_teacher_field(raw, num_classes)
        return values if rules.kind == "logits" else clean_teacher_probs(values, rules, line,
                                                                         report)
    except RowError:
        if rules.policy == "skip" or rules.drop_unusable:
            report.unusable.append(line)
            return None
        raise


def warn_class_coverage(splits: dict[str, SplitData], class_names: list[str]) -> list[str]:
    """Warn (and return the warnings) about classes with no training examples, naming them,
    and classes that dev/test hold but train does not."""
    if "train" not in splits:
        return []
    in_train = _present(splits["train"])
    absent = [class_names[i] for i in range(len(class_names)) if i not in in_train]
    out = []
    what = ("examples labelled with" if splits["train"].task == "multi_label"
            else "training examples of")
    if absent:
        out.append(f"{splits['train'].path}: no {what} {len(absent)} of "
                   f"{len(class_names)} classes: {', '.join(absent)} (the model cannot learn them)")
    for name, split in splits.items():
        extra = sorted({class_names[i] for i in _present(split) - in_train})
        if name != "train" and extra:
            out.append(f"{split.path}: {name} has examples of classes that train has none of: "
                       f"{', '.join(extra)}")
    for message in out:
        logger.warning("%s", message)
    return out


def _present(split: SplitData) -> set[int]:
    return {i for ids in split.label_sets() for i in ids}


def _log_summary(split: SplitData) -> None:
    if split.task == "multi_label":
        c = cardinality(split.label_sets())
        logger.info("%s: %d multi-label examples, %.3f labels per example; %d with no label, "
                    "%d with one, %d with 2+", split.path, c["rows"], c["cardinality"],
                    c["no_label"], c["one_label"], c["two_plus"])
    if split.skipped:
        logger.warning(
            "%s: skipped %d bad lines (first: %s)", split.path, len(split.skipped),
            ", ".join(map(str, split.skipped[:5])),
        )
    summary = split.teacher_report.summary()
    if summary:
        logger.warning("%s: teacher column: %s", split.path, summary)
