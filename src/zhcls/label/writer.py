"""Write a labelled split as a ready knowledge-distillation dataset.

``OUT/{split}.txt`` gets THUCNews lines ``text<TAB>label_id<TAB>[p0, p1, ...]`` (a JSON list
with 6 decimals in label-id order: probabilities, or logits from ``--teacher --emit
logits``); rows whose teacher is missing are written with the two columns
``text<TAB>label_id`` — train such a dataset with ``data.teacher_missing: hard_label_only``. ``class.txt`` and the other split files are copied unchanged, so OUT can
be passed to ``zhcls train`` directly. Shared by ``zhcls label --llm`` and ``--teacher``.

OUT may already hold splits labelled by an earlier run (``--split train`` then ``--split dev``):
those are kept, never replaced by a plain copy, after checking that they are still safe to
keep — the same ``class.txt`` and the same rows as the source split — else a
:class:`~zhcls.errors.DataError` is raised before anything is written
(:func:`labelled_splits`). Text files in OUT that are not splits with a teacher column are
left alone. ``zhcls label`` also keeps one record per labelled split in
``OUT/label_report.json`` under ``"splits"`` and refuses a teacher other than the one the kept
splits were labelled with (:mod:`zhcls.label.report_file`; the Python labelling functions
write a one-run report).

Multi-label data (``task="multi_label"``, or detected from the train file): ``OUT/{split}.jsonl``
with one object a line, ``{"text": ..., "labels": [names], "teacher_probs": [p0, ...]}``:
the gold label set kept as read, and C independent per-class probabilities (6 decimals,
class.txt order, no sum rule; logits with ``--emit logits``). A row without a teacher has
no ``teacher_probs`` field.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zhcls.data.formats import (
    SPLIT_SUFFIXES,
    Example,
    find_split_file,
    has_split,
    read_class_names,
    read_split,
)
from zhcls.errors import DataError
from zhcls.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


def write_labelled_dataset(
    data_dir: str | Path,
    split: str,
    out_dir: str | Path,
    teacher_rows: Sequence[list[float] | None],
    *,
    task: str = "auto",
) -> Path:
    """Write ``OUT/{split}.txt`` with one teacher row per example of ``DATA/{split}`` (same
    order, every line kept), copy ``class.txt`` and the other splits; return the new file.

    ``teacher_rows[i]`` belongs to the i-th example that ``read_split`` returns for the
    split. The input may be .txt/.tsv/.csv/.jsonl; the output is always .txt. Every file is
    written to a temporary name and renamed, so a crash never leaves half a file.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.resolve() == data_dir.resolve():
        raise DataError("the output directory is the input dataset directory; pass a new "
                        "--out directory so the original data is not overwritten", out_dir)
    data = read_label_data(data_dir, split, task)
    class_names, split_path, examples = data.class_names, data.path, data.examples
    if len(teacher_rows) != len(examples):
        raise ValueError(f"{split_path}: {len(examples)} examples but {len(teacher_rows)} "
                         "teacher rows; pass exactly one row (or None) per example")
    keep = set(labelled_splits(data_dir, split, out_dir, data.task))  # raises before writing
    out_dir.mkdir(parents=True, exist_ok=True)
    if data.task == "multi_label":
        return _write_multilabel(data, data_dir, split, out_dir, teacher_rows, keep)
    lines, sanitised = [], 0
    for example, row in zip(examples, teacher_rows, strict=True):
        text = example.text
        # one line per example: tabs and the line breaks the reader knows ("\n", "\r") only
        clean = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
        sanitised += clean != text
        if row is None:
            lines.append(f"{clean}\t{example.label}")
            continue
        _check_row(row, len(class_names), split_path, example.line)
        lines.append(f"{clean}\t{example.label}\t{format_probs(row)}")
    if sanitised:
        logger.warning("%s: %d texts contained tabs or newlines; replaced them with spaces "
                       "(the THUCNews format is one line per example)", split_path, sanitised)
    target = out_dir / f"{split}.txt"
    atomic_write_text(target, "\n".join(lines) + "\n")
    _copy_other_files(data_dir, out_dir, split, keep)
    missing = sum(r is None for r in teacher_rows)
    logger.info("wrote %s (%d rows, %d without teacher)", target, len(lines), missing)
    return target


def read_label_split(data_dir: str | Path, split: str) -> tuple[list[str], Path, list[Example]]:
    """(class names, split file, examples) exactly as both labelling modes read them: the
    first ``DATA/{split}.{txt,tsv,csv,jsonl}``; an existing teacher column is ignored."""
    data = read_label_data(data_dir, split)
    return data.class_names, data.path, data.examples


@dataclass
class LabelData:
    """A split as the labelling modes read it; ``task`` single_label or multi_label (then
    ``Example.label`` is a sorted list of class ids)."""

    class_names: list[str]
    path: Path
    examples: list[Example]
    task: str


def read_label_data(data_dir: str | Path, split: str, task: str = "auto") -> LabelData:
    """Read ``DATA/{split}`` for labelling. ``task="auto"``: multi_label when the train file
    (or, without one, the split itself) holds multi-label rows (logged)."""
    from zhcls.data.formats import detect_task

    data_dir = Path(data_dir)
    class_names = read_class_names(data_dir / "class.txt")
    split_path = find_split_file(data_dir, split)
    if task == "auto":
        probe = find_split_file(data_dir, "train") if has_split(data_dir, "train") else split_path
        task = detect_task(probe, class_names)
        if task == "multi_label":
            logger.info("task auto: %s holds multi-label rows; labelling %s as multi-label",
                        probe, split_path)
    if task == "multi_label":
        examples = read_split(split_path, class_names, task="multi_label", teacher_policy="skip",
                              ignore_teacher=True).examples
    else:
        examples = read_split(split_path, class_names, ignore_teacher=True).examples
    return LabelData(class_names, split_path, examples, task)


def _write_multilabel(data: LabelData, data_dir: Path, split: str, out_dir: Path,
                      teacher_rows: Sequence[list[float] | None], keep: set[str]) -> Path:
    lines = []
    for example, row in zip(data.examples, teacher_rows, strict=True):
        obj: dict = {"text": example.text, "labels": [data.class_names[i] for i in example.label]}
        if row is not None:
            _check_row(row, len(data.class_names), data.path, example.line)
            obj["teacher_probs"] = [round(float(p), 6) for p in row]
        lines.append(json.dumps(obj, ensure_ascii=False))
    _copy_other_files(data_dir, out_dir, split, keep)  # first: removes a stale OUT/{split}.jsonl
    target = out_dir / f"{split}.jsonl"
    atomic_write_text(target, "\n".join(lines) + "\n")
    for suffix in SPLIT_SUFFIXES:  # the reader takes the first split file it finds
        stale = out_dir / f"{split}{suffix}"
        if suffix != ".jsonl" and stale.exists():
            stale.unlink()
    logger.info("wrote %s (%d multi-label rows, %d without teacher)", target, len(lines),
                sum(r is None for r in teacher_rows))
    return target


def format_probs(row: Sequence[float]) -> str:
    """``[0.05, 0.9, 0.05]`` → ``"[0.050000, 0.900000, 0.050000]"`` (6 decimals)."""
    return "[" + ", ".join(f"{float(p):.6f}" for p in row) + "]"


def _check_row(row: Sequence[float], k: int, path: Path, line: int) -> None:
    if len(row) != k:
        raise ValueError(f"{path}:{line}: teacher row has {len(row)} values, class.txt names "
                         f"{k} classes")
    if not all(isinstance(p, (int, float)) and math.isfinite(p) for p in row):
        raise ValueError(f"{path}:{line}: teacher row {json.dumps(list(row))[:80]} must hold "
                         "finite numbers (probabilities, or logits for --emit logits)")


def _copy_other_files(data_dir: Path, out_dir: Path, split: str, keep: set[str]) -> None:
    """Copy ``class.txt`` and the other splits into OUT, except those in ``keep`` (already
    labelled there; no file of theirs is copied, so no second format sits beside them)."""
    for src in sorted(data_dir.iterdir()):
        if not src.is_file():
            continue
        is_split = src.suffix.lower() in SPLIT_SUFFIXES and src.stem != "class"
        if is_split and src.stem in keep:
            continue
        if src.name == "class.txt" or (is_split and src.stem != split):
            tmp = _tmp_name(out_dir / src.name)
            shutil.copyfile(src, tmp)
            os.replace(tmp, out_dir / src.name)
        elif is_split and src.stem == split and src.suffix.lower() != ".txt":
            stale = out_dir / src.name
            if stale.exists():
                stale.unlink()


REPORT_NAME = "label_report.json"
LLM_CACHE_NAME = ".zhcls_label_cache.sqlite"  # zhcls.label.llm.CACHE_NAME


def labelled_splits(data_dir: str | Path, split: str, out_dir: str | Path,
                    task: str = "auto") -> list[str]:
    """The splits other than ``split`` that OUT already holds with teacher labels (an
    ``OUT/{s}.txt`` or ``.jsonl`` with a teacher column), which the writer keeps. Raises a
    DataError when keeping them is unsafe: ``DATA/class.txt`` differs from ``OUT/class.txt``
    (their teacher columns would name other classes) or ``DATA/{s}`` no longer holds the
    rows they were labelled from."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not out_dir.is_dir() or out_dir.resolve() == data_dir.resolve():
        return []
    names = read_class_names(data_dir / "class.txt")
    out_names = read_class_names(out_dir / "class.txt") if (out_dir / "class.txt").is_file() \
        else names
    if task == "auto":
        task = read_label_data(data_dir, split).task
    found = {}
    for path in sorted(out_dir.iterdir()):
        if (path.suffix in (".txt", ".jsonl") and path.stem not in (split, "class")
                and path.is_file() and _has_teacher(path, out_names, task)):
            found[path.stem] = path
    if found and out_names != names:
        files = ", ".join(p.name for p in found.values())
        raise DataError(f"lists {len(names)} classes {names[:5]} but {out_dir / 'class.txt'}, "
                        f"which {files} were labelled with, lists {out_names[:5]}; their "
                        "teacher columns would name other classes. Label into a new --out, "
                        f"or delete {files} from {out_dir} to drop them",
                        data_dir / "class.txt")
    for name, path in found.items():
        if has_split(data_dir, name):
            _check_same_rows(data_dir, name, path, names, task)
    return sorted(found)


def check_label_output(out_dir: Path) -> None:
    """Refuse an OUT holding data files (``class.txt``, split files) that ``zhcls label``
    did not write: it has no ``label_report.json`` (nor the LLM answer cache of a run to
    resume), so it is another dataset whose files labelling would replace."""
    from zhcls.errors import ConfigError

    names = {p.name for p in out_dir.iterdir() if p.is_file()}
    if REPORT_NAME in names or LLM_CACHE_NAME in names:
        return
    data = sorted(n for n in names if n == "class.txt" or (
        Path(n).suffix.lower() in SPLIT_SUFFIXES and Path(n).stem in ("train", "dev", "test")))
    if data:
        raise ConfigError(f"--out {out_dir}: holds the dataset files {', '.join(data[:4])} but "
                          f"no {REPORT_NAME}, so zhcls label did not write it and labelling "
                          "would replace them. Pass a new or empty directory")


def _has_teacher(path: Path, class_names: list[str], task: str) -> bool:
    """Whether ``path`` is a split file with a teacher column; any other text file in OUT (a
    descriptions file copied from DATA, the user's notes) is not, and is left alone."""
    try:
        split = read_split(path, class_names, task=task, read_teacher=False)
    except DataError:
        return False
    return split.teacher_rows > 0


def _check_same_rows(data_dir: Path, name: str, path: Path, class_names: list[str],
                     task: str) -> None:
    """``path`` (labelled from ``DATA/{name}``) must hold the same (text, label) rows."""
    source = read_label_data(data_dir, name, task)
    kept = read_split(path, class_names, task=task, teacher_policy="skip",
                      ignore_teacher=True).examples
    clean = path.suffix == ".txt"  # the .txt writer turns tabs and line breaks into spaces
    want = [(_one_line(e.text) if clean else e.text, e.label) for e in source.examples]
    have = [(e.text, e.label) for e in kept]
    if want == have:
        return
    pairs = enumerate(zip(want, have, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(want), len(have)))
    where = f"line {kept[at].line}" if at < len(kept) else "its end"
    raise DataError(f"holds teacher labels for {len(have)} rows that no longer match "
                    f"{source.path} ({len(want)} rows; first difference at {where}); relabel "
                    f"it with --split {name}, or delete {path.name} to take a fresh copy",
                    path)


def _one_line(text: str) -> str:
    return text.replace("\t", " ").replace("\r", " ").replace("\n", " ").strip()


def _tmp_name(path: Path) -> Path:
    """A fresh hidden name next to ``path`` (created with the usual umask permissions)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented UTF-8 JSON via a temporary file and rename."""
    atomic_write_json(path, obj)


@dataclass
class LabelReport:
    """Outcome of one ``zhcls label --llm`` run (also written to ``OUT/label_report.json``).

    Row counts are over the lines of the split (duplicated texts are asked once): ``labelled``
    rows have a teacher, ``from_cache`` of them were answered by an earlier run, ``failed``
    rows have none (``failure_kinds`` counts why, ``failed_lines`` lists the first ones).
    ``agreement`` is the share of labelled rows whose teacher argmax equals the gold label,
    ``mean_confidence`` their mean max probability (multi-label: see :func:`teacher_quality`). Token counts and cost cover this run's
    responses (``usage`` fields); ``transient_errors`` counts retried HTTP errors/timeouts.
    """

    split: str
    model: str
    output: str | None
    cache: str
    rows: int
    unique_texts: int
    labelled: int = 0
    from_cache: int = 0
    requested: int = 0
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    failed_lines: list[int] = field(default_factory=list)
    agreement: float | None = None
    mean_confidence: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_cost: float | None = None
    http_requests: int = 0
    transient_errors: dict[str, int] = field(default_factory=dict)
    parse_retries: int = 0
    repairs: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    requests_per_second: float = 0.0
    dry_run: bool = False
    prompt_preview: str | None = None
    estimated_requests: int | None = None
    estimated_prompt_tokens: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few human-readable lines for the log / terminal."""
        if self.dry_run:
            cached = self.unique_texts - (self.estimated_requests or 0)
            return (f"dry run: {self.rows} rows, {self.unique_texts} distinct texts "
                    f"({cached} already cached), {self.estimated_requests} requests needed, "
                    f"~{self.estimated_prompt_tokens} prompt tokens")
        lines = [
            f"{self.split}: {self.labelled}/{self.rows} rows labelled ({self.from_cache} from "
            f"cache, {self.requested} texts requested), {self.failed} failed"
            + (f" {self.failure_kinds} (first lines: {self.failed_lines[:5]})"
               if self.failed else ""),
            f"agreement with gold {_fmt(self.agreement)}, mean confidence "
            f"{_fmt(self.mean_confidence)}",
            f"{self.http_requests} HTTP requests in {self.wall_seconds:.1f}s "
            f"({self.requests_per_second:.1f}/s), retried errors {self.transient_errors or 0}, "
            f"parse retries {self.parse_retries}",
            f"tokens: {self.prompt_tokens} prompt + {self.completion_tokens} completion"
            + (f", estimated cost {self.estimated_cost:.4f}" if self.estimated_cost is not None
               else ""),
        ]
        if self.output:
            lines.append(f"wrote {self.output}")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def teacher_quality(labels: Sequence[int | Sequence[int]],
                    rows: Sequence[list[float] | None]) -> tuple[float | None, float | None]:
    """(agreement of argmax with the gold labels, mean max probability) over rows with a
    teacher; (None, None) when there are none. Multi-label (label lists): agreement is the
    share of rows whose classes at probability >= 0.5 are exactly the gold set, confidence
    the mean over rows and classes of max(p, 1 - p)."""
    pairs = [(label, row) for label, row in zip(labels, rows, strict=True) if row]
    if not pairs:
        return None, None
    if not isinstance(pairs[0][0], int):
        agree = sum({i for i, p in enumerate(row) if p >= 0.5} == set(label)
                    for label, row in pairs)
        confidence = sum(sum(max(p, 1 - p) for p in row) / len(row) for _, row in pairs)
        return agree / len(pairs), confidence / len(pairs)
    agree = sum(max(range(len(row)), key=row.__getitem__) == label for label, row in pairs)
    return agree / len(pairs), sum(max(row) for _, row in pairs) / len(pairs)
