"""``zhcls evaluate CKPT --data DIR [--split test] [--out DIR]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-class metrics, confusion matrix, wrong samples")
    p.add_argument("checkpoint", help="checkpoint directory (e.g. runs/x/best), a `zhcls "
                   "baseline` directory or an ONNX export directory (`zhcls export`)")
    p.add_argument("--data", required=True, help="dataset directory with class.txt")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", help="output directory (default: CKPT/eval_SPLIT, which is not "
                   "replaced by the evaluation of another split file)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the checkpoint's train.eval_batch_size (as in training)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quantized", action="store_true",
                   help="ONNX export only: evaluate its int8 model (`--quantize int8`)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zhcls.errors import ZhclsError
    from zhcls.evaluation.evaluate import check_eval_out, evaluate_checkpoint, format_evaluation
    from zhcls.inference.backends import is_onnx_dir
    from zhcls.modeling.checkpoint import read_labels
    from zhcls.report.plots import plot_evaluation
    from zhcls.utils import check_at_least_one

    check_at_least_one(args, "batch_size")
    if args.out:  # before the model is loaded
        check_eval_out(args.out)
    common = {"split": args.split, "out_dir": args.out, "batch_size": args.batch_size,
              "device": args.device}
    if is_onnx_dir(args.checkpoint):
        from zhcls.inference.evaluate_export import evaluate_export

        metrics = evaluate_export(args.checkpoint, args.data, quantized=args.quantized, **common)
        what = f"ONNX export {args.checkpoint} ({'int8' if args.quantized else 'fp32'} model)"
    elif args.quantized:
        raise ZhclsError(f"--quantized: {args.checkpoint} is not an ONNX export directory; "
                         "export one with `zhcls export CKPT --format onnx --quantize int8`")
    else:
        metrics = evaluate_checkpoint(args.checkpoint, args.data, **common)
        what = f"checkpoint {args.checkpoint}"
    labels = read_labels(args.checkpoint)
    print(f"{args.split} split of {args.data}, {what}:")
    print(format_evaluation(metrics, labels))
    out = Path(args.out) if args.out else Path(args.checkpoint) / f"eval_{args.split}"
    plot_evaluation(metrics, labels, out)
    picture = ("label_cooccurrence.png" if metrics.get("task") == "multi_label"
               else "confusion_matrix.png")
    print(f"\nwritten: {out}/metrics.json, {picture}, wrong_samples.jsonl")
    return 0
