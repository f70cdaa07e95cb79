"""``zhcls predict CKPT "文本一" "文本二"`` | ``--file in.txt|.csv|.jsonl`` | stdin"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify texts (arguments, a file or stdin)",
                       description="Classify texts with a checkpoint or an ONNX export. Texts "
                       "come from the arguments, --file (.txt/.tsv: first tab column; .csv: "
                       "'text' column; .jsonl: 'text' field; '-' = stdin) or stdin.")
    p.add_argument("checkpoint", help="checkpoint directory or ONNX export directory")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", help="input file (.txt/.tsv/.csv/.jsonl) or - for stdin")
    p.add_argument("--format", choices=("table", "jsonl", "tsv", "csv"),
                   help="output format (default: the --out suffix's: .jsonl/.json → jsonl, "
                   ".tsv → tsv, .csv → csv; otherwise a readable table). A --format that "
                   "contradicts such a suffix is an error")
    p.add_argument("--out", help="write results to this file instead of stdout (its suffix "
                   "chooses the format, see --format; not a path inside the checkpoint)")
    p.add_argument("--top-k", type=int, default=1, help="also list the K best labels "
                   "(multi-label: the K best-scoring classes, whatever their threshold)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--chunk-size", type=int, default=2048,
                   help="texts read, predicted and written at a time (bounds memory)")
    p.add_argument("--probs", action="store_true",
                   help="add every label's probability (label-id order; not in the table; "
                   "multi-label csv/tsv/jsonl always have every class's score)")
    p.add_argument("--text-field", default="text", help="CSV column / JSONL field of the text")
    p.add_argument("--encoding", default="utf-8",
                   help="encoding of --file / stdin (default utf-8; gbk or gb18030 for GBK files)")
    p.add_argument("--long-text", default="truncate", choices=("truncate", "error"),
                   help="texts over the model's max_length tokens: truncate (default: read "
                        "them as the checkpoint's data.long_text says: the first tokens, "
                        "head_tail, or every window for chunks) or error (refuse them)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: library "
                   "default; 1 is often fastest on a busy machine)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="GPU arithmetic (default: the checkpoint's train.precision)")
    p.add_argument("--quantized", action="store_true",
                   help="use model.int8.onnx of an ONNX export made with --quantize int8")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    # accepts_overrides: texts given after options (`--top-k 3 "文本"`) arrive as extras.
    p.set_defaults(func=run, accepts_overrides=True)


def check_options(args: argparse.Namespace) -> None:
    """Flag values argparse cannot check; errors name the flag."""
    import codecs

    from zhcls.errors import ConfigError
    from zhcls.inference.out_checks import check_input_file, check_out, output_format
    from zhcls.utils import check_at_least_one

    check_at_least_one(args, "batch_size", "chunk_size", "top_k", "threads")
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise ConfigError(f"--encoding {args.encoding!r} is not a known encoding; use e.g. "
                          "utf-8, gbk or gb18030") from None
    check_input_file(args.file)
    check_out(args.out, args.file, args.checkpoint)
    args.format = output_format(args.format, args.out)


def run(args: argparse.Namespace) -> int:
    from zhcls.errors import ZhclsError
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.io import (
        InputRecord,
        count_records,
        iter_records,
        output_stream,
        predict_records,
    )

    stray = [x for x in getattr(args, "overrides", []) if x.startswith("-") and len(x) > 1]
    if stray:
        raise ZhclsError(f"zhcls predict: unknown option(s) {' '.join(stray)}; see "
                         "`zhcls predict --help`")
    check_options(args)
    args.texts = list(args.texts) + list(getattr(args, "overrides", []))
    if args.texts and args.file:
        raise ZhclsError("give texts as arguments or --file, not both")
    if args.texts:
        records, total, source = [InputRecord(t) for t in args.texts], len(args.texts), None
    elif args.file:
        records = iter_records(args.file, args.text_field, args.encoding)
        total, source = count_records(args.file), args.file
    elif not sys.stdin.isatty():
        records = iter_records("-", args.text_field, args.encoding)
        total, source = None, "<stdin>"
    else:
        raise ZhclsError('no input: give texts (zhcls predict CKPT "文本"), --file PATH, or '
                         "pipe text into stdin (one text per line)")
    clf = Classifier.load(args.checkpoint, args.device, batch_size=args.batch_size,
                          long_text=args.long_text, quantized=args.quantized,
                          threads=args.threads, precision=args.precision)
    clf.check_top_k(args.top_k)
    if args.texts:
        clf.check_texts(args.texts, offset=1)  # before any output; "text 1": the first
    with output_stream(args.out) as out:
        stats = predict_records(clf, records, out, fmt=args.format, top_k=args.top_k,
                                chunk_size=args.chunk_size, with_probs=args.probs,
                                total=total, progress=args.progress, source=source)
    if source is not None or args.out:
        print(f"predicted {stats.count} texts in {stats.seconds:.2f} s "
              f"({stats.texts_per_second:.0f} texts/s, {clf.backend.name})"
              + (f" → {args.out}" if args.out else ""), file=sys.stderr)
    return 0
