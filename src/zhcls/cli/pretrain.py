"""``zhcls pretrain [--config FILE.yaml] --model.pretrained ENCODER [--out DIR]
[--corpus.text ...] [--corpus.data ...] [--section.key value ...] [--print-config]``"""

from __future__ import annotations

import argparse

from zhcls.cli.config_options import add_config_options, overrides_of


def register(sub: argparse._SubParsersAction) -> None:
    from zhcls.training.pretrain_config import PretrainConfig

    p = sub.add_parser(
        "pretrain", help="continue masked-LM pretraining of an encoder on unlabelled text",
        description="Continued masked-language-model pretraining (domain adaptation) of a "
        "BERT encoder on unlabelled text: plain files (one text a line), pre-segmented files "
        "(for whole-word masking) and/or the texts of zhcls datasets. OUT/encoder is an "
        "encoder directory for `zhcls train --model.pretrained OUT/encoder`. Every key below "
        "can be set in the YAML file (configs/pretrain_tiny.yaml) or with --section.key VALUE;"
        " lists as a,b or [a, b].",
        usage="zhcls pretrain [--config FILE.yaml] [--out DIR] [--overwrite] [--print-config] "
        "[--section.key VALUE ...]",
        allow_abbrev=False,
    )
    p.add_argument("--out", help="output directory; sets train.output_dir. A non-empty one "
                   "needs --train.resume true (continue that run) or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="remove the earlier run's outputs in --out first (train.overwrite true)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit")
    add_config_options(p, PretrainConfig)
    p.set_defaults(func=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from zhcls.config import load_config
    from zhcls.training.pretrain_config import PretrainConfig

    overrides = overrides_of(args) + (["--train.overwrite", "true"] if args.overwrite else [])
    config = load_config(args.config, overrides, root=PretrainConfig)
    if args.out:
        config.train.output_dir = str(args.out)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    from zhcls.training.pretrain import loss_summary, pretrain

    result = pretrain(config)
    print(f"encoder (step {result.metrics['global_step']}): {result.encoder_dir}; "
          f"{loss_summary(result.metrics)}")
    return 0
