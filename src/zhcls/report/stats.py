"""Dataset statistics before training: class balance, text length in characters and tokens
(and the ``max_length`` that covers 95% / 99%), duplicates within and across splits,
suspicious lines, and teacher-vs-gold agreement. :func:`data_stats` returns a JSON-ready
dict; :func:`zhcls.cli.data_stats.format_report` renders it as a text report.
"""

from __future__ import annotations

import logging
import math
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from zhcls.data.formats import (
    TASKS,
    Example,
    detect_task,
    find_split_file,
    has_split,
    read_class_names,
    read_split,
    resolve_data_dir,
    warn_class_coverage,
)
from zhcls.data.teacher import TeacherRules
from zhcls.errors import DataError, ZhclsError
from zhcls.report.duplicates import (  # noqa: F401  (label_name: re-exported)
    MAX_EXAMPLES,
    cross_duplicates,
    label_name,
    within_duplicates,
)
from zhcls.report.stats_multilabel import (
    STATS_TEACHER_MULTILABEL,
    multilabel_balance,
    multilabel_plots,
    multilabel_teacher,
)
from zhcls.utils import is_cjk

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
PERCENTILES = (50, 90, 95, 99)
IMBALANCE_RATIO = 3.0
RARE_FRACTION = 0.01
MIN_CHARS = 4
MIN_CJK_RATIO = 0.2
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
#: Report the teacher column whatever the objective: repair what can be repaired (counted),
#: drop (and count) the rest, never skip a line for its teacher column.
STATS_TEACHER = TeacherRules(policy="normalize", negative="clip", invalid="skip",
                             drop_unusable=True)


def data_stats(
    data_dir: str | Path,
    *,
    tokenizer: Any = None,
    out_dir: str | Path | None = None,
    task: str = "auto",
    label_separator: str = ",",
) -> dict[str, Any]:
    """Statistics of every split (train/dev/test) found in ``data_dir``.

    ``tokenizer`` is a name / path for ``AutoTokenizer.from_pretrained`` (a directory or a
    ``vocab.txt`` with only a WordPiece vocabulary also works) or a loaded tokenizer; lengths
    count no special tokens, and the suggested ``max_length`` (``max_length_95`` / ``_99``)
    adds 2 for [CLS]/[SEP], as ``data.max_length`` does (from characters: an estimate).
    With ``out_dir`` the length histograms (and class counts) are written there as PNGs.

    ``task`` auto (see :func:`resolve_task`) | single_label | multi_label: multi-label splits
    report label sets (:mod:`zhcls.report.stats_multilabel`) under ``classes`` / ``teacher``.
    """
    data_dir = resolve_data_dir(data_dir, flag="DIR")
    class_names = read_class_names(data_dir / "class.txt")
    task = resolve_task(data_dir, class_names, task, label_separator)
    splits = _read_splits(data_dir, class_names, task, label_separator)
    multi = task == "multi_label"
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    result: dict[str, Any] = {"data_dir": str(data_dir), "class_names": class_names,
                              "tokenizer": _tokenizer_name(tokenizer, tok), "splits": {},
                              "warnings": [], "plots": [], "task": task,
                              **({"label_separator": label_separator} if multi else {})}
    lengths: dict[str, dict[str, list[int]]] = {"characters": {}, "tokens": {}}
    for name, (split, first_error) in splits.items():
        info = _split_stats(split, first_error, class_names, multi, tok, name, lengths)
        result["splits"][name] = info
        result["warnings"] += _split_warnings(name, info)
    result["warnings"] += warn_class_coverage({n: s for n, (s, _) in splits.items()},
                                              class_names)
    result["cross_split"] = cross_duplicates({n: s.examples for n, (s, _) in splits.items()},
                                             class_names)
    result["warnings"] += _cross_warnings(result["cross_split"])
    for message in result["warnings"]:
        logger.warning("%s", message)
    if out_dir is not None:
        result["plots"] = _write_plots(result, lengths, Path(out_dir))
    return result


def _split_stats(split, first_error: str | None, class_names: list[str], multi: bool, tok,
                 name: str, lengths: dict[str, dict[str, list[int]]]) -> dict[str, Any]:
    """One split's entry of :func:`data_stats`; its length lists go into ``lengths``."""
    examples = split.examples
    info = {"path": str(split.path), "examples": len(examples),
            "skipped_lines": split.skipped[:20], "skipped_count": len(split.skipped),
            "first_skip_reason": first_error,
            "teacher_repairs": split.teacher_report.summary() or None,
            "teacher_column": {"rows": split.teacher_rows, **split.teacher_report.counts()}}
    info["classes"] = (multilabel_balance(examples, class_names) if multi
                       else class_balance(examples, class_names))
    chars = [len(e.text) for e in examples]
    lengths["characters"][name] = chars
    info["length_chars"] = length_summary(chars, extra=SPECIAL_TOKENS)
    if tok is not None:
        lengths["tokens"][name], unk = _token_ids(tok, [e.text for e in examples])
        info["length_tokens"] = length_summary(lengths["tokens"][name], extra=SPECIAL_TOKENS)
        info["length_tokens"].update(unk)
    info["duplicates"] = within_duplicates(examples, class_names)
    info["suspicious"] = suspicious_lines(examples)
    info["teacher"] = (multilabel_teacher(examples, class_names) if multi
                       else teacher_agreement(examples))
    return info


def load_tokenizer(name_or_path: str | Path) -> Any:
    """:func:`zhcls.modeling.encoder.load_tokenizer` (hub name, tokenizer directory, or a
    directory holding only ``vocab.txt``), plus a WordPiece ``vocab.txt`` file itself."""
    from zhcls.modeling.encoder import load_tokenizer as load_model_tokenizer

    path = Path(name_or_path).expanduser()
    if not path.is_file():
        return load_model_tokenizer(str(name_or_path))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_bytes(path.read_bytes())
        try:
            tok = load_model_tokenizer(tmp)
        except ZhclsError:
            raise
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise DataError(f"cannot build a WordPiece tokenizer from this file ({exc}); "
                            "expected a vocab.txt with one token per line incl. [UNK]",
                            path) from None
    expected = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    if len(tok) < expected:
        raise DataError(f"tokenizer built from {path} has {len(tok)} tokens but the file has "
                        f"{expected} lines; expected a WordPiece vocab.txt (one token per line)",
                        path)
    return tok


def class_balance(examples: list[Example], class_names: list[str]) -> dict[str, Any]:
    """Counts per class, max/min ratio, classes under 1% and a warning when imbalanced."""
    counts = Counter(e.label for e in examples)
    total = len(examples)
    per_class = {name: counts.get(i, 0) for i, name in enumerate(class_names)}
    low, high = min(per_class.values()), max(per_class.values())
    ratio = high / low if low else None
    rare = [n for n, c in per_class.items() if c < RARE_FRACTION * total]
    warning = None
    if ratio is None:
        empty = [n for n, c in per_class.items() if c == 0]
        warning = f"no examples of {', '.join(empty)}"
    elif ratio > IMBALANCE_RATIO or rare:
        warning = f"imbalanced: max/min = {ratio:.1f}"
        if rare:
            warning += f"; under 1%: {', '.join(rare)}"
    return {"counts": per_class, "max_min_ratio": ratio, "rare": rare, "warning": warning}


def coverage_length(values: list[int], pct: float) -> int:
    """Smallest L with at least ``pct`` percent of ``values`` <= L (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return int(ordered[rank - 1])


def length_summary(values: list[int], *, extra: int) -> dict[str, Any]:
    """Mean, min, percentiles, max and the ``max_length`` covering 95 / 99% (+ ``extra``)."""
    if not values:
        return {}
    out: dict[str, Any] = {"mean": round(sum(values) / len(values), 2), "min": min(values)}
    out.update({f"p{p}": coverage_length(values, p) for p in PERCENTILES})
    out["max"] = max(values)
    out["max_length_95"] = out["p95"] + extra
    out["max_length_99"] = out["p99"] + extra
    return out


def suspicious_lines(examples: list[Example]) -> dict[str, Any]:
    """Very short texts, texts with under 20% CJK, and texts with tabs / control characters."""
    checks = {
        f"shorter_than_{MIN_CHARS}_chars": lambda t: len(t) < MIN_CHARS,
        "mostly_non_cjk": lambda t: cjk_ratio(t) < MIN_CJK_RATIO,
        "tab": lambda t: "\t" in t,
        "control_chars": lambda t: any(unicodedata.category(c) in ("Cc", "Cf") and c != "\t"
                                       for c in t),
    }
    out: dict[str, Any] = {}
    for name, check in checks.items():
        hits = [e for e in examples if check(e.text)]
        out[name] = {"count": len(hits),
                     "examples": [{"line": e.line, "text": e.text} for e in hits[:MAX_EXAMPLES]]}
    return out


def cjk_ratio(text: str) -> float:
    """Fraction of non-space characters that are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if is_cjk(c)) / len(chars)


def teacher_agreement(examples: list[Example]) -> dict[str, Any] | None:
    """Agreement of the teacher's argmax with the gold label and its mean confidence."""
    rows = [e for e in examples if e.teacher is not None]
    if not rows:
        return None
    agree = sum(1 for e in rows if _argmax(e.teacher) == e.label)
    return {
        "rows_with_teacher": len(rows),
        "coverage": round(len(rows) / len(examples), 4),
        "agreement": round(agree / len(rows), 4),
        "mean_confidence": round(sum(max(e.teacher) for e in rows) / len(rows), 4),
        "mean_gold_prob": round(sum(e.teacher[e.label] for e in rows) / len(rows), 4),
    }


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def resolve_task(data_dir: Path, class_names: list[str], task: str, label_separator: str) -> str:
    """``task`` itself, or for auto the task :func:`detect_task` reads from the train file
    (the first split present when there is no train)."""
    if task != "auto":
        if task not in TASKS:
            raise ValueError(f"task must be auto or one of {TASKS}, got {task!r}")
        return task
    present = [n for n in SPLITS if has_split(data_dir, n)]
    if not present:
        return "single_label"  # _read_splits says what is missing
    path = find_split_file(data_dir, present[0])
    task = detect_task(path, class_names, label_separator=label_separator)
    logger.info("data-stats: task %s (detected from %s; --task to override)", task, path.name)
    return task


def _read_splits(data_dir: Path, class_names: list[str], task: str = "single_label",
                 label_separator: str = ",") -> dict[str, tuple[Any, str | None]]:
    out = {}
    rules = STATS_TEACHER_MULTILABEL if task == "multi_label" else STATS_TEACHER
    for name in SPLITS:
        if not has_split(data_dir, name):
            continue
        path = find_split_file(data_dir, name)
        read = dict(teacher_rules=rules, task=task, label_separator=label_separator)
        try:
            split = read_split(path, class_names, on_bad_line="skip", **read)
        except DataError as exc:  # every line skipped: name the first one and why
            raise _first_bad_line(path, class_names, read) or exc from None
        first_error = split.skip_reasons[split.skipped[0]] if split.skipped else None
        out[name] = (split, first_error)
    if not out:
        raise DataError(f"no split files found; expected {', '.join(SPLITS)} as "
                        ".txt/.tsv/.csv/.jsonl next to class.txt", data_dir)
    return out


def _first_bad_line(path: Path, class_names: list[str], read: dict[str, Any]) -> DataError | None:
    """``FILE:LINE: no usable examples ...; the first: WHY`` for a file whose every line was
    skipped (None when no line is bad: an empty file)."""
    try:
        read_split(path, class_names, on_bad_line="error", **read)
    except DataError as err:
        if err.line is not None:
            why = str(err).removeprefix(f"{err.path}:{err.line}: ")
            return DataError(f"no usable examples: every line was skipped; the first: {why}",
                             path, err.line)
    return None


def _token_ids(tok: Any, texts: list[str]) -> tuple[list[int], dict[str, Any]]:
    """Token counts (no special tokens), the [UNK] rate and the characters that became [UNK]."""
    unk_id = getattr(tok, "unk_token_id", None)
    try:
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers have no offsets
        enc, offsets = tok(texts, add_special_tokens=False), None
    ids = enc["input_ids"]
    total = sum(len(x) for x in ids)
    unk_chars: Counter[str] = Counter()
    unk = 0
    for i, row in enumerate(ids):
        for j, token in enumerate(row):
            if token == unk_id:
                unk += 1
                if offsets is not None:
                    a, b = offsets[i][j]
                    unk_chars[texts[i][a:b]] += 1
    info = {"unk_rate": round(unk / total, 5) if total else 0.0,
            "top_unk": [[c, n] for c, n in unk_chars.most_common(10)]}
    return [len(x) for x in ids], info


def _tokenizer_name(arg: Any, tok: Any) -> str | None:
    if tok is None:
        return None
    return str(arg) if isinstance(arg, (str, Path)) else getattr(tok, "name_or_path", None)


def _split_warnings(name: str, info: dict[str, Any]) -> list[str]:
    out = []
    if info["classes"]["warning"]:
        out.append(f"{name}: {info['classes']['warning']}")
    if info["skipped_count"]:
        out.append(f"{name}: {info['skipped_count']} unreadable lines skipped "
                   f"(first: {info['first_skip_reason']})")
    unk = info.get("length_tokens", {}).get("unk_rate", 0.0)
    if unk > 0.01:
        out.append(f"{name}: {unk:.1%} of tokens are [UNK]; does the tokenizer match the text?")
    dup = info["duplicates"]
    if dup["conflicting_labels"]:
        out.append(f"{name}: {dup['conflicting_labels']} duplicated texts carry different labels")
    return out


def _cross_warnings(cross: dict[str, Any]) -> list[str]:
    out = []
    for pair, v in cross["pairs"].items():
        if v["shared_texts"]:
            why = " (train/eval overlap inflates scores)" if pair.startswith("train/") else ""
            out.append(f"{pair}: {v['shared_texts']} texts occur in both splits{why}")
    return out


def _write_plots(result: dict[str, Any], lengths: dict[str, dict[str, list[int]]],
                 out_dir: Path) -> list[str]:
    from zhcls.report.plots import plot_class_counts, plot_length_histogram

    written = []
    first = next(iter(result["splits"]))
    for unit, per_split in lengths.items():
        if not per_split:
            continue
        key = "length_chars" if unit == "characters" else "length_tokens"
        s = result["splits"][first][key]
        marks = {f"{first} p95": s["p95"], f"{first} p99": s["p99"]}
        path = out_dir / f"length_{unit}.png"
        label = unit if unit == "characters" else "tokens, without [CLS]/[SEP]"
        written.append(str(plot_length_histogram(per_split, path, unit=label, marks=marks)))
    counts = {n: info["classes"]["counts"] for n, info in result["splits"].items()}
    if result.get("task") == "multi_label":
        written.append(str(plot_class_counts(
            counts, out_dir / "class_counts.png",
            title="Share of label occurrences per split (multi-label)")))
        written += multilabel_plots(result, out_dir)
        return written
    written.append(str(plot_class_counts(counts, out_dir / "class_counts.png")))
    return written
