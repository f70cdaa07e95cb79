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
            "current directory); an --out inside DIR is refused (the dataset is never "
            "written to). The suggested max_length counts [CLS]/[SEP], as data.max_length "
            "does; from characters it is an estimate (about one token per Chinese character)."
        ),
    )
    parser.add_argument("data_dir", metavar="DIR", help="dataset directory with class.txt")
    parser.add_argument("--tokenizer", metavar="PATH_OR_HUB", default=None,
                        help="tokenizer for token lengths: hub name, tokenizer directory, or a "
                             "WordPiece vocab.txt (e.g. bert-base-chinese-vocab.txt)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"folder for PNGs and stats.json/stats.txt, outside DIR (default "
                             f"./{DEFAULT_OUT}/)")
    parser.add_argument("--no-plots", action="store_true",
                        help="write nothing; only print the report")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="stdout format (default text)")
    _add_task_arguments(parser)
    _add_long_text_options(parser)
    parser.set_defaults(func=run)


def _add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("auto", "single_label", "multi_label"), default="auto",
                        help="auto (default): multi_label when the train file has a labels list "
                             "or a label field with several separator-joined names/ids")
    parser.add_argument("--label-separator", metavar="SEP", default=",",
                        help="separator of the labels in a multi-label field (default ',')")


def _add_long_text_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "long text (with --tokenizer): how many tokens/characters each data.long_text setting "
        "drops at --max-length")
    group.add_argument("--max-length", type=int, default=512, metavar="N",
                       help="data.max_length to measure against, [CLS]/[SEP] included "
                            "(default 512)")
    group.add_argument("--head-tokens", type=int, default=None, metavar="N",
                       help="head_tail: tokens kept from the start (default a quarter of N - 2)")
    group.add_argument("--chunk-stride", type=int, default=None, metavar="N",
                       help="chunks: tokens between window starts (default half of N - 2)")
    group.add_argument("--max-chunks", type=int, default=8, metavar="K",
                       help="chunks: windows kept per text, as data.max_chunks in training "
                            "(default 8)")


def run(args: argparse.Namespace) -> int:
    from zhcls.report.stats import data_stats
    from zhcls.utils import atomic_write_text

    out_dir = None if args.no_plots else check_out_dir(Path(args.out), Path(args.data_dir))
    spec = long_text_spec(args) if args.tokenizer else None  # bad flags fail before the work
    stats = data_stats(args.data_dir, tokenizer=args.tokenizer, out_dir=out_dir,
                       task=args.task, label_separator=args.label_separator)
    if spec is not None:
        stats["long_text"] = long_text_stats(args, spec)
    text = format_report(stats)
    as_json = json.dumps(stats, ensure_ascii=False, indent=2)
    if out_dir is not None:
        atomic_write_text(out_dir / "stats.json", as_json + "\n")
        atomic_write_text(out_dir / "stats.txt", text + "\n")
    print(as_json if args.format == "json" else text)
    return 0


def check_out_dir(out: Path, data_dir: Path) -> Path:
    """``out``, unless it is a file or (inside) the dataset directory: data-stats never
    writes there."""
    from zhcls.errors import ConfigError
    from zhcls.utils import check_out_not_file

    check_out_not_file(out)
    if data_dir.is_dir() and out.resolve().is_relative_to(data_dir.resolve()):
        raise ConfigError(f"--out {out} is {out.resolve()}, inside the dataset directory "
                          f"{data_dir.resolve()}; data-stats never writes into the dataset: run "
                          "it from another directory or give --out a folder outside it (or "
                          "--no-plots)")
    return out


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
    if stats.get("long_text"):
        lines += ["", *_long_text_lines(stats["long_text"])]
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


def _length_line(label: str, s: dict[str, Any], note: str, approx: bool = False) -> str:
    """Length percentiles and the data.max_length ([CLS]/[SEP] included) covering 95 / 99%."""
    about = "~" if approx else ""
    return (f"  {label}: mean {s['mean']}, min {s['min']}, p50 {s['p50']}, p90 {s['p90']}, "
            f"p95 {s['p95']}, p99 {s['p99']}, max {s['max']} -> max_length "
            f"{about}{s['max_length_95']} covers 95%, {about}{s['max_length_99']} covers 99%"
            f"{note}")


def _split_lines(info: dict[str, Any]) -> list[str]:
    out = [_length_line("length (characters)", info["length_chars"],
                        " (incl. [CLS]/[SEP]; an estimate from characters)", approx=True)]
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


def long_text_spec(args: argparse.Namespace):
    """The head_tail / chunks settings the long-text section measures (flags checked)."""
    from zhcls.data.dataset import LongTextSpec
    from zhcls.errors import ConfigError

    if args.max_length < 3 or args.max_chunks < 1:
        raise ConfigError(f"--max-length must be >= 3 and --max-chunks >= 1, got "
                          f"{args.max_length} and {args.max_chunks}")
    content = args.max_length - 2
    spec = LongTextSpec.of("chunks", args.max_length, args.head_tokens, args.chunk_stride,
                           args.max_chunks)
    if not 0 <= spec.head_tokens <= content or not 1 <= spec.stride <= content:
        raise ConfigError(f"--head-tokens must be 0 to {content} and --chunk-stride 1 to "
                          f"{content} (the text tokens of a window at --max-length "
                          f"{args.max_length}), got {spec.head_tokens} and {spec.stride}")
    return spec


def long_text_stats(args: argparse.Namespace, spec) -> dict[str, Any]:
    """Per split: what truncate, head_tail and chunks (at most ``--max-chunks`` windows) drop
    at ``--max-length`` (:func:`zhcls.data.long_text.drop_stats`)."""
    from zhcls.data.formats import find_split_file, has_split, read_class_names, read_split
    from zhcls.data.long_text import drop_stats
    from zhcls.report.stats import SPLITS, load_tokenizer

    tok = load_tokenizer(args.tokenizer)
    data_dir = Path(args.data_dir)
    class_names = read_class_names(data_dir / "class.txt")
    out = {}
    for name in SPLITS:
        if has_split(data_dir, name):
            split = read_split(find_split_file(data_dir, name), class_names, on_bad_line="skip")
            out[name] = drop_stats(tok, split.texts, args.max_length,
                                   head_tokens=spec.head_tokens, stride=spec.stride,
                                   max_chunks=spec.max_chunks)
    return out


def _long_text_lines(info: dict[str, Any]) -> list[str]:
    first = next(iter(info.values()))
    lines = [f"== long text at max_length {first['max_length']} (head_tail head "
             f"{first['head_tokens']}, chunks stride {first['stride']}, max_chunks "
             f"{first['max_chunks']}, the training cap; evaluation and prediction read every window): "
             "text dropped per setting"]
    for name, s in info.items():
        lines.append(f"  {name}: {s['texts_over_max_length']:,} of {s['texts']:,} texts over "
                     f"max_length; windows per text mean {s['windows_mean']}, max "
                     f"{s['windows_max']}")
        for mode, d in s["settings"].items():
            lines.append(f"    {mode:<9} drops {d['dropped_tokens']:,} tokens "
                         f"({d['dropped_token_share']:.1%} of {s['tokens']:,}), ~"
                         f"{d['dropped_chars']:,} characters, in {d['texts_losing_text']:,} texts")
    return lines
