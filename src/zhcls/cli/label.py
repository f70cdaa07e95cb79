"""``zhcls label``: write teacher soft labels for knowledge distillation.

Two teachers: ``--llm MODEL`` asks an LLM over an OpenAI-compatible chat-completions API
(:func:`zhcls.label.llm.label_with_llm`); ``--teacher CKPT`` runs a trained zhcls checkpoint
(:func:`zhcls.label.local.label_with_checkpoint`). Both write ``OUT/{split}.txt`` with a
teacher column (``OUT/{split}.jsonl`` with ``labels`` and ``teacher_probs`` for multi-label
data) plus the other splits and ``class.txt``, ready for ``zhcls train``.
"""

from __future__ import annotations

import argparse
import logging

from zhcls.errors import ConfigError, ZhclsError

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  DEEPSEEK_API_KEY=... zhcls label --llm deepseek-chat --base-url https://api.deepseek.com/v1 \\
      --api-key-env DEEPSEEK_API_KEY --data data/thucnews --split train --out data/thucnews_kd
  zhcls label --llm qwen2.5:7b --base-url http://127.0.0.1:11434/v1 --api-key-env none \\
      --data data/thucnews --out data/kd --dry-run
  zhcls label --teacher runs/teacher/best --data data/thucnews --out data/kd
  zhcls label --teacher runs/baseline --cross-fit 5 --data data/thucnews --out data/kd_oof
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label", help="write teacher soft labels (LLM or local checkpoint) for distillation",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from zhcls.label.options import add_arguments

    mode = p.add_mutually_exclusive_group(required=True)
    add_arguments(None, mode)  # --llm MODEL
    mode.add_argument("--teacher", metavar="CKPT", help="label with a trained zhcls checkpoint")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="dataset directory with class.txt and {train,dev,test}.{txt,csv,jsonl}")
    p.add_argument("--split", default="train", help="split to label (default: train)")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")
    local = p.add_argument_group("--teacher options")
    local.add_argument("--emit", choices=("probs", "logits"), default="probs",
                       help="teacher column: probabilities or raw logits (default: probs)")
    local.add_argument("--batch-size", type=int, default=64,
                       help="texts per forward pass of the teacher (default: 64)")
    local.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    local.add_argument("--cross-fit", type=int, default=None, metavar="K",
                       help="baseline teacher only: out-of-fold labels; refit the baseline's "
                            "pipeline on K-1 stratified folds of the split and label the "
                            "held-out fold, K times (a baseline is near-certain on texts it "
                            "was fitted on)")
    local.add_argument("--cross-fit-seed", type=int, default=0, metavar="N",
                       help="seed of the --cross-fit fold shuffle (default: 0)")
    add_arguments(p.add_argument_group("--llm options (zhcls.label.options.LLMOptions)"), None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.utils import check_at_least_one, check_out_not_file

    check_out_not_file(args.out)
    if args.teacher:  # before OUT is looked at or written
        check_at_least_one(args, "batch_size")
    if args.cross_fit is not None and not args.teacher:
        raise ConfigError("--cross-fit refits a `zhcls baseline` teacher per fold; it needs "
                          "--teacher BASELINE_DIR, not --llm")
    from zhcls.label.report_file import merge_label_report, prepare_output

    # an OUT with splits labelled earlier: check before any (paid) labelling that they can
    # be kept, then keep their records in label_report.json
    teacher, emit = _teacher_identity(args)
    task = "auto" if args.teacher else getattr(args, "task", None) or "auto"
    kept = prepare_output(args.data, args.split, args.out, teacher, emit, task)
    if args.teacher:
        _run_teacher(args)
        merge_label_report(args.out, args.split, teacher, emit, kept)
        return 0
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    from zhcls.label import llm
    from zhcls.label.options import from_namespace

    report = llm.label_with_llm(args.data, args.split, args.out, from_namespace(args))
    if report.dry_run:
        print("----- first prompt -----")
        print(report.prompt_preview)
        print("------------------------")
    else:
        merge_label_report(args.out, args.split, teacher, emit, kept)
    print(report.summary())
    return 0


def _teacher_identity(args: argparse.Namespace) -> tuple[str, str]:
    """(``"--teacher /abs/path"`` or ``"--llm MODEL"``, what its column holds)."""
    from pathlib import Path

    if not args.teacher:
        return f"--llm {args.model}", "probs"
    path = Path(args.teacher)
    return f"--teacher {path.resolve() if path.exists() else args.teacher}", args.emit


def _run_teacher(args: argparse.Namespace) -> int:
    try:
        from zhcls.label.local import label_with_checkpoint
    except ModuleNotFoundError as exc:
        if exc.name != "zhcls.label.local":
            raise
        raise ZhclsError("labelling with a local checkpoint (--teacher) is not available in "
                         "this build; use --llm MODEL instead") from None
    cross = {} if args.cross_fit is None else {"cross_fit": args.cross_fit,
                                               "seed": args.cross_fit_seed}
    label_with_checkpoint(args.teacher, args.data, args.split, args.out, emit=args.emit,
                          batch_size=args.batch_size, device=args.device, **cross)
    return 0
