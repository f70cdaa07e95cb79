"""``zhcls data-stats DIR``: class balance, lengths, duplicates and suspicious lines of a
dataset, printed as a text report (or JSON), with PNG histograms written to ``--out``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_OUT = "data_stats"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data-stats",
        help="dataset statistics: class balance, lengths, duplicates, suspicious lines",
        description=(
            "Statistics of the train/dev/test splits in DIR (THUCNews text<TAB>label[<TAB>"
            "teacher] files with class.txt, or CSV/JSONL): class counts with imbalance "
            "warnings, text length in characters (and tokens with --tokenizer) with the "
            "max_length covering 95%/99%, duplicates within and across splits, suspicious "
            "lines, and teacher-vs-gold agreement. Multi-label data (detected, or --task "
            "multi_label) reports label cardinality, rows with 0/1/2+ labels, per-class "
            "positive rates, frequent label pairs and a co-occurrence heat map, and per-class "
            "teacher agreement. The report goes to stdout; the PNG "
            f"histograms and stats.json/stats.txt go to --out (default ./{DEFAULT_OUT}/ in the "
            "current directory, never inside DIR)."
        ),
    )
    parser.add_argument("data_dir", metavar="DIR", help="dataset directory with class.txt")
    parser.add_argument("--tokenizer", metavar="PATH_OR_HUB", default=None,
                        help="tokenizer for token lengths: hub name, tokenizer directory, or a "
                             "WordPiece vocab.txt (e.g. bert-base-chinese-vocab.txt)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"folder for PNGs and stats.json/stats.txt (default ./{DEFAULT_OUT}/)")
    parser.add_argument("--no-plots", action="store_true",
                        help="write nothing; only print the report")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="stdout format (default text)")
    _add_task_arguments(parser)
    parser.set_defaults(func=run)


def _add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("auto", "single_label", "multi_label"), default="auto",
                        help="auto (default): multi_label when the train file has a labels list "
                             "or a label field with several separator-joined names/ids")
    parser.add_argument("--label-separator", metavar="SEP", default=",",
                        help="separator of the labels in a multi-label field (default ',')")


def run(args: argparse.Namespace) -> int:
    from zhcls.report.stats import data_stats

    out_dir = None if args.no_plots else Path(args.out)
    stats = data_stats(args.data_dir, tokenizer=args.tokenizer, out_dir=out_dir,
                       task=args.task, label_separator=args.label_separator)
    text = format_report(stats)
    as_json = json.dumps(stats, ensure_ascii=False, indent=2)
    if out_dir is not None:
        (out_dir / "stats.json").write_text(as_json + "\n", encoding="utf-8")
        (out_dir / "stats.txt").write_text(text + "\n", encoding="utf-8")
    print(as_json if args.format == "json" else text)
    return 0


def format_report(stats: dict[str, Any]) -> str:
    """Render the dict returned by :func:`zhcls.report.stats.data_stats` as text."""
    from zhcls.report.stats_multilabel import multilabel_class_lines, multilabel_split_lines

    multi = stats.get("task") == "multi_label"
    lines = [f"Dataset {stats['data_dir']}: {len(stats['class_names'])} classes, splits "
             f"{', '.join(stats['splits'])}" + (f"; tokenizer {stats['tokenizer']}"
                                                if stats.get("tokenizer") else "")
             + ("; multi-label" if multi else "")]
    lines += ["", *(multilabel_class_lines(stats) if multi else _class_table(stats))]
    for name, info in stats["splits"].items():
        lines += ["", f"== {name}: {info['examples']:,} examples ({info['path']})"]
        lines += _split_lines(info)
        if multi:
            lines += multilabel_split_lines(info)
    lines += ["", "== across splits", *_cross_lines(stats["cross_split"])]
    if stats["warnings"]:
        lines += ["", "== warnings", *(f"  ! {w}" for w in stats["warnings"])]
    if stats.get("plots"):
        lines += ["", "== plots", *(f"  {p}" for p in stats["plots"])]
    return "\n".join(lines)


def _class_table(stats: dict[str, Any]) -> list[str]:
    splits = stats["splits"]
    width = max(len(c) for c in stats["class_names"]) + 2
    header = "class".ljust(width) + "".join(f"{s:>16}" for s in splits)
    rows = [header]
    for c in stats["class_names"]:
        cells = []
        for info in splits.values():
            n = info["classes"]["counts"][c]
            cells.append(f"{n:>9,} {n / max(info['examples'], 1):>6.1%}")
        rows.append(c.ljust(width) + "".join(cells))
    ratios = [info["classes"]["max_min_ratio"] for info in splits.values()]
    rows.append("max/min".ljust(width) + "".join(
        f"{'inf' if r is None else f'{r:.2f}':>16}" for r in ratios))
    return rows


def _length_line(label: str, s: dict[str, Any], note: str) -> str:
    return (f"  {label}: mean {s['mean']}, min {s['min']}, p50 {s['p50']}, p90 {s['p90']}, "
            f"p95 {s['p95']}, p99 {s['p99']}, max {s['max']} -> max_length "
            f"{s['max_length_95']} covers 95%, {s['max_length_99']} covers 99%{note}")


def _split_lines(info: dict[str, Any]) -> list[str]:
    out = [_length_line("length (characters)", info["length_chars"], "")]
    tokens = info.get("length_tokens")
    if tokens:
        out.append(_length_line("length (tokens)", tokens, " (incl. [CLS]/[SEP])"))
        top = ", ".join(f"{c!r} x{n}" for c, n in tokens["top_unk"][:5])
        out.append(f"  [UNK] rate {tokens['unk_rate']:.2%}" + (f" (most: {top})" if top else ""))
    dup = info["duplicates"]
    out.append(f"  duplicates: {dup['duplicate_texts']} texts repeated ({dup['extra_rows']} extra "
               f"rows), {dup['conflicting_labels']} with conflicting labels")
    for ex in dup["examples"][:3]:
        out.append(f"    {ex['text']!r} lines {ex['lines']} labels {ex['labels']}")
    for kind, hit in info["suspicious"].items():
        if hit["count"]:
            shown = "; ".join(f"line {e['line']}: {e['text']!r}" for e in hit["examples"][:2])
            out.append(f"  suspicious {kind}: {hit['count']} (e.g. {shown})")
    if info["skipped_count"]:
        out.append(f"  unreadable lines skipped: {info['skipped_count']} "
                   f"(first: {info['first_skip_reason']})")
    teacher = info.get("teacher")
    if teacher and "agreement" in teacher:  # single-label (multi-label: multilabel_split_lines)
        out.append(f"  teacher: {teacher['rows_with_teacher']} rows ({teacher['coverage']:.0%}), "
                   f"argmax agrees with gold {teacher['agreement']:.1%}, mean confidence "
                   f"{teacher['mean_confidence']:.3f}, mean gold prob {teacher['mean_gold_prob']:.3f}")
    column = info.get("teacher_column") or {}
    if column.get("rows"):
        dropped = column["skipped"] + column["invalid"] + column["unusable"]
        out.append(f"  teacher column: {column['rows']} rows; renormalised {column['normalized']}, "
                   f"percentages {column['percentages']}, negatives clipped {column['clipped']}, "
                   f"dropped as invalid {dropped} (entry > 1: {column['invalid']}, unreadable: "
                   f"{column['unusable']})")
    if info.get("teacher_repairs"):
        out.append(f"  teacher column repairs: {info['teacher_repairs']}")
    return out


def _cross_lines(cross: dict[str, Any]) -> list[str]:
    out = []
    for pair, v in cross["pairs"].items():
        out.append(f"  {pair}: {v['shared_texts']} shared texts, {v['conflicting_labels']} "
                   "with different labels")
        a, b = pair.split("/")
        for ex in v["examples"][:2]:
            out.append(f"    {ex['text']!r} {a} {ex[a]} {b} {ex[b]}")
    out.append(f"  texts in more than one split: {cross['texts_in_several_splits']}")
    for split, n in cross["eval_rows_in_train"].items():
        out.append(f"  {split} rows whose text is also in train: {n}")
    return out
