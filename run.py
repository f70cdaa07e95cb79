"""The research repos' entry point, mapped onto zhcls.

    python run.py --model bert_CNN [--dataset THUCNews] [--section.key value ...]

As in Bert-Chinese-Text-Classification-Pytorch: the dataset directory is ``THUCNews/``
(``THUCNews/data/{train,dev,test,class}.txt`` or the files directly in ``THUCNews/``), the
pretrained weights are ``./bert_pretrain`` (``./ERNIE_pretrain`` for ERNIE) in the legacy
layout (pytorch_model.bin + bert_config.json + vocab.txt) when that folder exists, else the
hub name from ``configs/<model>.yaml``; outputs go to ``<dataset>/saved_dict/<model>``.
Everything else is ``zhcls train`` with ``configs/<model>.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    from zhcls.config import HEADS

    parser = argparse.ArgumentParser(description="Chinese Text Classification (zhcls)")
    parser.add_argument("--model", required=True, choices=HEADS, help=", ".join(HEADS))
    parser.add_argument("--dataset", default="THUCNews", help="dataset directory (default THUCNews)")
    args, overrides = parser.parse_known_args(argv)
    dataset = Path(args.dataset)
    data_dir = dataset / "data" if (dataset / "data" / "train.txt").is_file() else dataset
    extra = ["--out", str(dataset / "saved_dict" / args.model)]
    local = Path("ERNIE_pretrain" if args.model == "ERNIE" else "bert_pretrain")
    if local.is_dir() and not any(o.startswith("--model.pretrained") for o in overrides):
        extra += ["--model.pretrained", str(local)]
    from zhcls.cli import main as zhcls_main

    return zhcls_main(["train", "--config", str(ROOT / "configs" / f"{args.model}.yaml"),
                       "--data", str(data_dir), *extra, *overrides])


if __name__ == "__main__":
    sys.exit(main())
