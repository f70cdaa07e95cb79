"""``zhcls train --config configs/bert.yaml --data DIR [--out DIR] [--section.key value ...]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune a classifier (best checkpoint in OUT/best)",
        description="Fine-tune a BERT-family classifier. Any config key can be overridden with "
        "--section.key value, e.g. --train.lr 3e-5 --train.max_steps 50 "
        "--model.pretrained DIR_OR_HUB_NAME --objective.name ce+scl.",
    )
    p.add_argument("--config", help="YAML config (see configs/); defaults when omitted")
    p.add_argument("--data", help="dataset directory (train/dev/test + class.txt)")
    p.add_argument("--out", help="output directory (default: train.output_dir); a non-empty "
                   "one needs --train.resume true (continue that run) or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="remove the earlier run's outputs in --out first (train.overwrite true); "
                   "refused when --out holds files zhcls did not write")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from zhcls.config import load_config
    from zhcls.workflows.pipeline import train_and_report

    overrides = list(args.overrides) + (["--train.overwrite", "true"] if args.overwrite else [])
    config = load_config(args.config, overrides)
    result = train_and_report(config, args.data, args.out)
    print(f"best checkpoint: {result.best_dir}")
    if result.test_metrics:
        print(f"test accuracy {result.test_metrics['accuracy']:.4f}, "
              f"macro-F1 {result.test_metrics['macro_f1']:.4f} "
              f"(details in {result.output_dir / 'eval_test'})")
    return 0
