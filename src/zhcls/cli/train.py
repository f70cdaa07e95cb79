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
    p.add_argument("--out", help="output directory (default: train.output_dir)")
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from zhcls.config import load_config
    from zhcls.workflows.pipeline import train_and_report

    config = load_config(args.config, args.overrides)
    result = train_and_report(config, args.data, args.out)
    step = result.dev_metrics.get("step") if result.dev_metrics else None
    print(f"best checkpoint (step {step}): {result.best_dir}")
    for split, metrics in (("dev", result.dev_metrics), ("test", result.test_metrics)):
        if metrics:
            print(f"{split} accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
                  f" (best checkpoint, step {step}; details in "
                  f"{result.output_dir / f'eval_{split}'})")
    return 0
