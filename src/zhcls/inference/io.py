"""Streaming input and output for ``zhcls predict``: texts from arguments, a file or stdin;
results as a readable table or as JSONL / TSV / CSV, written chunk by chunk so a file of any
size runs in bounded memory.

Input files, by suffix:

* ``.txt`` / ``.tsv`` / anything else / ``-`` (stdin): one text per line; when a line has tabs
  the first column is the text (so a labelled ``text<TAB>label`` split file works as is);
  blank lines are skipped (stdin whose first line is a JSON object with the text field is
  read as JSONL instead, logged);
* ``.csv``: a header row with a ``text`` column (``text_field`` to name another);
* ``.jsonl``: one JSON object per line with a ``"text"`` field, or a bare JSON string.

Multi-label models: JSONL rows carry ``labels`` (the label set, best first) and ``scores``
(every class by name); CSV / TSV rows have a ``labels`` cell (names joined by ``,``, the
training files' separator) and one ``p_NAME`` column per class; the table shows the label
set with scores.

An empty text inside a record (also one that is empty after normalisation: only control or
zero-width characters) is a :class:`zhcls.errors.DataError` naming file and line, and so is
a file that is not in ``encoding`` (UTF-8 unless told; the message suggests ``--encoding``).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import logging
import os
import sys
import time
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from zhcls.errors import DataError
from zhcls.inference.classifier import InputTextError, blank_text_reason

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("table", "jsonl", "tsv", "csv")
TABLE_TEXT_WIDTH = 48
MAX_LOGGED_WARNINGS = 10


@dataclass(frozen=True)
class InputRecord:
    """A text and the 1-based line (or CSV record) it came from; None for argument texts."""

    text: str
    line: int | None = None


@dataclass
class PredictStats:
    """How many texts were predicted and how long it took (reading and writing included)."""

    count: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def iter_records(path: str | Path, text_field: str = "text", encoding: str = "utf-8"
                 ) -> Iterator[InputRecord]:
    """Lazily read the texts of ``path`` (``-`` is stdin), format chosen by suffix."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}; use e.g. utf-8, gbk or gb18030",
                        path) from None
    if str(path) == "-":
        stream = _stdin_lines(encoding)
        try:
            yield from _stdin_records(stream, text_field)
        except UnicodeDecodeError as exc:
            raise DataError(f"not valid {encoding} ({exc.reason} at byte {exc.start} of a "
                            f"read block){_encoding_hint(encoding)}", "<stdin>") from None
        finally:
            if stream is not sys.stdin:
                stream.detach()  # leave sys.stdin's buffer open
        return
    path = Path(path)
    if not path.is_file():
        raise DataError("is a directory, not a text file" if path.is_dir() else "input file "
                        "not found", path)
    suffix = path.suffix.lower()
    # Lines end at "\n" only, as training reads them (zhcls.data.records.split_lines); CSV
    # records follow the csv module's own rules.
    with path.open(encoding=encoding, newline="" if suffix == ".csv" else "\n") as f:
        try:
            if suffix == ".csv":
                yield from _csv_records(f, path, text_field)
            elif suffix == ".jsonl":
                yield from _jsonl_records(f, path, text_field)
            else:
                yield from _line_records(f, path)
        except UnicodeDecodeError as exc:
            raise _decode_error(path, encoding, exc) from None


def _encoding_hint(encoding: str) -> str:
    if codecs.lookup(encoding).name in ("gbk", "gb18030", "gb2312"):
        return "; check the file's encoding and pass --encoding NAME"
    return "; if the file is GBK-encoded (common for Chinese text) pass --encoding gbk"


def _decode_error(path: Path, encoding: str, exc: UnicodeDecodeError) -> DataError:
    """The first line that does not decode (text-mode reading decodes whole blocks, so the
    exception alone does not know the line)."""
    line = None
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                line = number
                break
    return DataError(f"not valid {encoding} ({exc.reason}, byte 0x{exc.object[exc.start]:02x})"
                     f"{_encoding_hint(encoding)}", path, line)


def _stdin_lines(encoding: str) -> TextIO:
    """stdin with lines ending at "\n" only (a lone "\r" stays in the text)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # replaced by a text stream (tests, notebooks)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding=encoding, newline="\n")


def _stdin_records(stream: TextIO, field: str) -> Iterator[InputRecord]:
    """stdin has no suffix: JSON lines holding a ``field`` (e.g. ``head -3 test.jsonl |``) are
    read as JSONL (logged), anything else one text per line."""
    first: list[str] = []
    for raw in stream:
        first.append(raw)
        if raw.strip():
            break
    lines = itertools.chain(first, stream)
    if first and _is_json_record(first[-1], field):
        logger.info("<stdin>: JSON lines with a %r field, read as JSONL (their %r values are "
                    "classified)", field, field)
        yield from _jsonl_records(lines, "<stdin>", field)
    else:
        yield from _line_records(lines, "<stdin>")


def _is_json_record(raw: str, field: str) -> bool:
    if not raw.lstrip().startswith("{"):
        return False
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and isinstance(obj.get(field), str)


def _line_records(f: TextIO, where) -> Iterator[InputRecord]:
    for line, raw in enumerate(f, start=1):
        raw = raw.rstrip("\r\n")
        if not raw.strip():
            continue
        text = raw.split("\t", 1)[0]
        reason = blank_text_reason(text)
        if reason is not None:
            raise DataError(f"{reason} in the first tab-separated column", where, line)
        yield InputRecord(text, line)


def _csv_records(f: TextIO, path: Path, field: str) -> Iterator[InputRecord]:
    reader = csv.DictReader(f)
    if field not in (reader.fieldnames or []):
        raise DataError(f"CSV header must have a {field!r} column (or pass --text-field NAME); "
                        f"found {reader.fieldnames}", path, 1)
    for row in reader:
        text = row.get(field)
        reason = blank_text_reason(text or "")
        if reason is not None:
            raise DataError(f"{reason} in the {field!r} field", path, reader.line_num)
        yield InputRecord(text, reader.line_num)


def _jsonl_records(f: TextIO, path: Path, field: str) -> Iterator[InputRecord]:
    for line, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path, line) from None
        text = obj.get(field) if isinstance(obj, dict) else obj
        if not isinstance(text, str):
            raise DataError(f'expected a JSON object with a string "{field}" field or a JSON '
                            f"string; found {raw.strip()[:60]}", path, line)
        reason = blank_text_reason(text)
        if reason is not None:
            raise DataError(f"{reason} in the {field!r} field", path, line)
        yield InputRecord(text, line)


def count_records(path: str | Path) -> int | None:
    """Number of non-blank lines (a progress-bar total) for line-based files; None otherwise."""
    path = Path(path)
    if str(path) == "-" or path.suffix.lower() == ".csv" or not path.is_file():
        return None
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip())


def display_width(text: str) -> int:
    """Terminal columns: wide and full-width characters (CJK) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` display columns, with an ellipsis when cut."""
    text = " ".join(text.split())
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


class ResultWriter:
    """Writes one row per prediction in ``fmt`` (see :data:`OUTPUT_FORMATS`);
    ``multi_label``: label sets (see the module docstring)."""

    def __init__(self, out: TextIO, fmt: str, labels: list[str], top_k: int = 1,
                 with_probs: bool = False, multi_label: bool = False):
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
        self.out, self.fmt, self.labels = out, fmt, labels
        self.top_k, self.with_probs, self.multi_label = top_k, with_probs, multi_label
        self.label_width = max(5, *(display_width(n) for n in labels))
        self._csv = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",",
                               lineterminator="\n")
        self.rows = 0

    def header(self) -> None:
        if self.multi_label:
            return self._multilabel_header()
        cols = ["line", "label", "score"] + (["top_k"] if self.top_k > 1 else [])
        if self.with_probs and self.fmt != "table":
            cols += [f"p_{name}" for name in self.labels]
        if self.fmt in ("tsv", "csv"):
            self._csv.writerow([*cols, "text"])
        elif self.fmt == "table":
            ranked = "  top-k" if self.top_k > 1 else ""
            self.out.write(f"{'#':>5}  {pad('label', self.label_width)}  {'score':>6}  "
                           f"{pad('text', TABLE_TEXT_WIDTH)}{ranked}\n")

    def write(self, record: InputRecord, pred, probs) -> None:
        self.rows += 1
        line = record.line if record.line is not None else self.rows
        if self.multi_label and self.fmt != "jsonl":
            return self._multilabel_row(line, record, pred)
        if self.fmt == "jsonl":
            row = {"line": record.line} if record.line is not None else {}
            row.update({"text": record.text, **pred.to_dict()})
            if self.with_probs:
                row["probs"] = [float(p) for p in probs]
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif self.fmt == "table":
            ranked = ""
            if pred.top_k is not None:
                ranked = "  " + ", ".join(f"{x.label} {x.score:.3f}" for x in pred.top_k)
            self.out.write(f"{line:>5}  {pad(pred.label, self.label_width)}  {pred.score:6.4f}  "
                           f"{pad(clip(record.text, TABLE_TEXT_WIDTH), TABLE_TEXT_WIDTH)}"
                           f"{ranked}\n")
        else:
            cols = [line, pred.label, repr(pred.score)]
            if pred.top_k is not None:
                cols.append(";".join(f"{x.label}:{x.score!r}" for x in pred.top_k))
            if self.with_probs:
                cols += [repr(float(p)) for p in probs]
            self._csv.writerow([*cols, " ".join(record.text.split())])

    def _multilabel_header(self) -> None:
        if self.fmt == "table":
            self.out.write(f"{'#':>5}  {pad('text', TABLE_TEXT_WIDTH)}  labels (score)"
                           + ("  | top-k" if self.top_k > 1 else "") + "\n")
        elif self.fmt in ("tsv", "csv"):
            cols = ["line", "labels"] + (["top_k"] if self.top_k > 1 else [])
            self._csv.writerow([*cols, *(f"p_{name}" for name in self.labels), "text"])

    def _multilabel_row(self, line: int, record: InputRecord, pred) -> None:
        if self.fmt == "table":
            chosen = ", ".join(f"{x.label} {x.score:.3f}" for x in pred.labels) or "(none)"
            ranked = ""
            if pred.top_k is not None:
                ranked = "  | " + ", ".join(f"{x.label} {x.score:.3f}" for x in pred.top_k)
            text = pad(clip(record.text, TABLE_TEXT_WIDTH), TABLE_TEXT_WIDTH)
            self.out.write(f"{line:>5}  {text}  {chosen}{ranked}\n")
            return
        cols = [line, ",".join(x.label for x in pred.labels)]
        if pred.top_k is not None:
            cols.append(";".join(f"{x.label}:{x.score!r}" for x in pred.top_k))
        cols += [repr(pred.scores[name]) for name in self.labels]
        self._csv.writerow([*cols, " ".join(record.text.split())])


def predict_records(clf, records: Iterable[InputRecord], out: TextIO, *, fmt: str = "jsonl",
                    top_k: int = 1, chunk_size: int = 2048, with_probs: bool = False,
                    total: int | None = None, progress: bool | None = None,
                    source: str | None = None) -> PredictStats:
    """Predict ``records`` chunk by chunk and write each chunk before reading the next.

    ``progress``: True / False, or None for a bar only when stderr is a terminal. ``source``
    names the input in errors (a text the classifier rejects is reported at its line).
    Predictions with a warning (every token [UNK]) carry it in JSONL and are logged.
    """
    from tqdm import tqdm

    writer = ResultWriter(out, fmt, clf.labels, top_k, with_probs,
                          multi_label=getattr(clf, "task", "single_label") == "multi_label")
    writer.header()
    start = time.perf_counter()
    held: deque[InputRecord] = deque()  # records read but not yet written (≤ one chunk)

    def texts() -> Iterator[str]:
        for record in records:
            held.append(record)
            yield record.text

    bar = tqdm(total=total, unit="text", disable=(None if progress is None else not progress),
               file=sys.stderr, dynamic_ncols=True)
    warned = 0
    with bar:
        try:
            for pred, probs in clf.predict_iter(texts(), top_k=top_k, chunk_size=chunk_size):
                record = held.popleft()
                writer.write(record, pred, probs)
                bar.update(1)
                if pred.warning is not None:
                    warned += 1
                    if warned <= MAX_LOGGED_WARNINGS:
                        logger.warning("%s: %s", _where(source, record, writer.rows), pred.warning)
        except InputTextError as exc:
            if exc.index is None or not 0 <= exc.index - writer.rows < len(held):
                raise
            record = held[exc.index - writer.rows]
            message = str(exc).split(": ", 1)[-1]
            if record.line is None:  # an argument text: numbered from 1, as lines are
                raise InputTextError(f"text {exc.index + 1}: {message}", exc.index) from None
            raise DataError(message, source or "text", record.line or exc.index + 1) from None
    if warned > MAX_LOGGED_WARNINGS:
        logger.warning("%d texts in all had a warning (see the warning field of --format jsonl)",
                       warned)
    out.flush()
    return PredictStats(count=writer.rows, seconds=time.perf_counter() - start)


def _where(source: str | None, record: InputRecord, row: int) -> str:
    if record.line is not None:
        return f"{source or 'input'}:{record.line}"
    return f"text {row}"


@contextmanager
def output_stream(path: str | None) -> Iterator[TextIO]:
    """stdout (as UTF-8) when ``path`` is None or ``-``; otherwise a UTF-8 text file written
    beside ``path`` and renamed onto it only when the block ends without an error, so a failed
    run leaves neither a partial file nor a damaged earlier one."""
    if path in (None, "-"):
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(encoding="utf-8")
        yield sys.stdout
        return
    target = Path(path)
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: written as it is
        if target.is_dir():
            raise DataError("is a directory; --out takes a file path", target)
        with open(target, "w", encoding="utf-8", newline="") as f:
            yield f
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:  # mode follows the umask
            yield f
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
