"""``zhcls init-tiny --out DIR (--vocab FILE | --vocab-from DATA_DIR) [--layers 2 --hidden 128]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init-tiny", help="write a small random BERT + tokenizer (offline)",
                       description="Write a small randomly initialised BERT checkpoint with a "
                       "real tokenizer, so tests, demos and CPU benchmarks need no download.")
    p.add_argument("--out", required=True, help="output directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vocab", help="WordPiece vocab.txt (e.g. bert-base-chinese's)")
    src.add_argument("--vocab-from", help="dataset directory: character vocab from train split")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=None, help="default 4 × hidden")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty --out directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.modeling.tiny import init_tiny

    out = init_tiny(args.out, vocab=args.vocab, vocab_from=args.vocab_from, layers=args.layers,
                    hidden=args.hidden, heads=args.heads, intermediate=args.intermediate,
                    seed=args.seed, overwrite=args.overwrite)
    print(f"tiny model written to {out}")
    return 0
