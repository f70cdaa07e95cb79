"""``zhcls evaluate CKPT --data DIR [--split test] [--out DIR]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-class metrics, confusion matrix, wrong samples")
    p.add_argument("checkpoint", help="checkpoint directory (e.g. runs/x/best)")
    p.add_argument("--data", required=True, help="dataset directory with class.txt")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", help="output directory (default: CKPT/eval_SPLIT)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the checkpoint's train.eval_batch_size (as in training)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zhcls.evaluation.evaluate import evaluate_checkpoint, format_evaluation
    from zhcls.modeling.checkpoint import read_labels
    from zhcls.report.plots import plot_evaluation

    metrics = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, out_dir=args.out,
                                  batch_size=args.batch_size, device=args.device)
    labels = read_labels(args.checkpoint)
    print(format_evaluation(metrics, labels))
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval_{args.split}"
    plot_evaluation(metrics, labels, out)
    picture = ("label_cooccurrence.png" if metrics.get("task") == "multi_label"
               else "confusion_matrix.png")
    print(f"\nwritten: {out}/metrics.json, {picture}, wrong_samples.jsonl")
    return 0
