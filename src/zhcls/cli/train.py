"""``zhcls train [--config FILE.yaml] --data DIR [--out DIR] [--section.key value ...]
[--print-config]``"""

from __future__ import annotations

import argparse

from zhcls.cli.config_options import add_config_options, overrides_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune a classifier (best checkpoint in OUT/best)",
        description="Fine-tune a BERT-family classifier. Every config key below can be set in "
        "the YAML file or overridden with --section.key VALUE (or --section.key=VALUE), e.g. "
        "--train.lr 3e-5 --train.max_steps 50 --model.pretrained DIR_OR_HUB_NAME "
        "--objective.name ce+scl --objective.terms '{ce: 1, kd: 0.5, scl: 0.3}'. Values are "
        "read as YAML (true, null, [2,3] or 2,3 for lists).",
        usage="zhcls train [--config FILE.yaml] [--data DIR] [--out DIR] [--print-config] "
        "[--section.key VALUE ...]",
        allow_abbrev=False,
    )
    p.add_argument("--data", help="dataset directory (train/dev/test + class.txt); sets data.dir")
    p.add_argument("--out", help="output directory; sets train.output_dir. A non-empty one "
                   "needs --train.resume true (continue that run) or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="remove the earlier run's outputs in --out first (train.overwrite true); "
                   "refused when --out holds files zhcls did not write")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file + overrides + --data/--out) as YAML "
                   "and exit")
    add_config_options(p)
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from zhcls.config import load_config

    overrides = overrides_of(args) + (["--train.overwrite", "true"] if args.overwrite else [])
    config = load_config(args.config, overrides)
    if args.print_config:
        if args.data:
            config.data.dir = str(args.data)
        if args.out:
            config.train.output_dir = str(args.out)
        print(config.to_yaml(), end="")
        return 0
    from zhcls.evaluation.metrics import headline_text
    from zhcls.workflows.pipeline import train_and_report

    result = train_and_report(config, args.data, args.out)
    step = result.dev_metrics.get("step") if result.dev_metrics else None
    average = (f", weight average (train.ema_decay {config.train.ema_decay:g})"
               if config.train.ema_decay > 0 else "")
    print(f"best checkpoint (step {step}{average}): {result.best_dir}")
    for split, metrics in (("dev", result.dev_metrics), ("test", result.test_metrics)):
        if metrics:
            print(f"{split} {headline_text(metrics)} (best checkpoint, step {step}{average}; "
                  f"details in {result.output_dir / f'eval_{split}'})")
    return 0
