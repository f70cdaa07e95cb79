"""Which dev errors do two or more evaluated models share, and does averaging them help?
(docs/experiments.md section 7, "reviews: where the errors are").

    python experiments/shared_errors.py --split-file ../shared/data/reviews/dev.txt \
        --eval /tmp/bl_reviews/eval_dev /tmp/i21/oof-acc/eval_dev [more eval dirs] \
        --sample 20 --seed 0

Each ``--eval`` directory is one written by ``zhcls train`` / ``zhcls evaluate`` /
``zhcls baseline`` (``predictions.npz``: ``probs`` (N, C) and ``gold`` (N,) in the split file's
order). Single-label splits in THUCNews format with label ids (``text<TAB>id``) only; "line N"
is the line number in the split file.
Printed: each model's accuracy, the agreement of the first two, the share of rows both get
wrong / only one gets right, the accuracy of the mean of all models' probabilities, and a
seeded sample of the rows the first two both get wrong (gold id, then the text), to read.
Nothing here is imported by the package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _load(eval_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = eval_dir / "predictions.npz"
    if not path.is_file():
        sys.exit(f"{path}: no such file (expected an eval directory of zhcls "
                 "train / evaluate / baseline, e.g. RUN/eval_dev)")
    with np.load(path) as z:
        probs, gold = z["probs"], z["gold"]  # (N, C), (N,)
    if gold.ndim != 1:
        sys.exit(f"{path}: gold has shape {gold.shape}; this script handles single-label "
                 "predictions only")
    return probs, gold


def _read_split(path: Path) -> list[tuple[str, str, int]]:
    """(text, label id, line number) per non-blank line."""
    if not path.is_file():
        sys.exit(f"--split-file {path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            text, _, label = line.rpartition("\t")
            if not label.isdigit():
                sys.exit(f"{path}:{number}: expected a label id after a tab, got {label!r} "
                         "(class-name labels are not handled by this script)")
            rows.append((text, label, number))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split-file", type=Path, required=True, help="text<TAB>label file evaluated")
    p.add_argument("--eval", type=Path, nargs="+", required=True, help="eval directories")
    p.add_argument("--sample", type=int, default=20, help="both-wrong rows to print")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    args = p.parse_args(argv)
    if len(args.eval) < 2:
        p.error("--eval: give at least two eval directories")
    if args.sample < 0:
        p.error(f"--sample: expected a count >= 0, got {args.sample}")
    loaded = [_load(d) for d in args.eval]
    gold = loaded[0][1]
    if any(g.shape != gold.shape or (g != gold).any() for _, g in loaded):
        sys.exit("--eval: the directories hold different gold labels (not one split?)")
    rows = _read_split(args.split_file)
    if len(rows) != len(gold):
        sys.exit(f"{args.split_file}: {len(rows)} rows, the predictions {len(gold)}")
    if any(label != str(g) for (_, label, _), g in zip(rows, gold, strict=True)):
        sys.exit(f"{args.split_file}: its label ids differ from the predictions' gold ids "
                 "(not the split these models were evaluated on?)")
    right = [probs.argmax(1) == gold for probs, _ in loaded]  # each (N,)
    for d, r in zip(args.eval, right, strict=True):
        print(f"{d}: accuracy {100 * r.mean():.2f}%")
    a, b = right[0], right[1]
    first, second = loaded[0][0].argmax(1), loaded[1][0].argmax(1)
    print(f"first two: agree on {100 * (first == second).mean():.2f}% of rows; both wrong "
          f"{100 * (~a & ~b).mean():.2f}%, only the first right {100 * (a & ~b).mean():.2f}%, "
          f"only the second right {100 * (~a & b).mean():.2f}%")
    mean = np.mean([probs for probs, _ in loaded], axis=0)  # (N, C)
    print(f"mean of the {len(loaded)} models' probabilities: accuracy "
          f"{100 * (mean.argmax(1) == gold).mean():.2f}%")
    both = np.flatnonzero(~a & ~b)
    pick = np.random.default_rng(args.seed).choice(both, min(args.sample, len(both)),
                                                   replace=False)
    for i in pick:
        text, label, number = rows[i]
        print(f"line {number}\tgold {label}\t{text[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
