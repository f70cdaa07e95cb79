"""Which dev errors do two or more evaluated models share, and does averaging them help?
(docs/experiments.md section 7, "reviews: where the errors are").

    python experiments/shared_errors.py --data ../shared/data/reviews --split dev \
        --eval /tmp/bl_reviews/eval_dev /tmp/i21/oof-acc-s1/eval_dev [more eval dirs] \
        --sample 20 --seed 0

Each ``--eval`` directory is one written by ``zhcls train`` / ``zhcls evaluate`` /
``zhcls baseline`` (``predictions.npz``: ``probs`` (N, C) and ``gold`` (N,) in the split's
order). The split is read as zhcls reads it (any of its formats, ids or class names), single-
label only; "line N" is the line of the split file.
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

from zhcls.errors import ZhclsError
from zhcls.evaluation.metrics import headline_metrics
from zhcls.label.writer import read_label_data


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the data directory evaluated")
    p.add_argument("--split", default="dev", help="its split the eval directories are of")
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
    try:
        data = read_label_data(args.data, args.split, task="single_label")
    except ZhclsError as exc:
        sys.exit(str(exc))
    where, examples = data.path, data.examples
    if [e.label for e in examples] != gold.tolist():
        sys.exit(f"{where}: its {len(examples)} gold labels differ from the predictions' "
                 f"{len(gold)} (not the split these models were evaluated on?)")

    def accuracy(probs: np.ndarray) -> float:  # probs (N, C)
        return 100 * headline_metrics(gold, probs.argmax(1), probs.shape[1])["accuracy"]

    for d, (probs, _) in zip(args.eval, loaded, strict=True):
        print(f"{d}: {where.name} accuracy {accuracy(probs):.2f}%")
    right = [probs.argmax(1) == gold for probs, _ in loaded]  # each (N,)
    a, b = right[0], right[1]
    first, second = loaded[0][0].argmax(1), loaded[1][0].argmax(1)
    print(f"first two: agree on {100 * (first == second).mean():.2f}% of rows; both wrong "
          f"{100 * (~a & ~b).mean():.2f}%, only the first right {100 * (a & ~b).mean():.2f}%, "
          f"only the second right {100 * (~a & b).mean():.2f}%")
    mean = np.mean([probs for probs, _ in loaded], axis=0)  # (N, C)
    print(f"mean of the {len(loaded)} models' probabilities: {where.name} accuracy "
          f"{accuracy(mean):.2f}%")
    both = np.flatnonzero(~a & ~b)
    pick = np.random.default_rng(args.seed).choice(both, min(args.sample, len(both)),
                                                   replace=False)
    for i in pick:
        example = examples[i]
        print(f"{where.name}:{example.line}\tgold {data.class_names[example.label]}\t"
              f"{example.text[:110]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
