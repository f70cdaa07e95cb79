"""Long-text table for docs/experiments.md: test accuracy overall and on the long texts of a
``zhcls sweep --grid data.long_text=...`` directory, mean ± sample std over seeds.

    python experiments/long_text.py --sweep runs/long_text --data ../shared/data/reviews \
        --min-chars 150

Each run's ``eval_test/predictions.npz`` (written by training's final evaluation of the best
checkpoint, selected on dev) holds the test probabilities in test-file order; the long texts
are those with more than ``--min-chars`` characters. Nothing is retrained or re-evaluated.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

import numpy as np

from zhcls.data.formats import find_split_file, read_class_names, read_split


def run_accuracies(run: Path, long_mask: np.ndarray) -> tuple[float, float, float]:
    """(dev accuracy, test accuracy, test accuracy on the long texts) of one run."""
    import json

    pred = np.load(run / "eval_test" / "predictions.npz")
    probs, gold = pred["probs"], pred["gold"]
    if len(gold) != len(long_mask):
        raise SystemExit(f"{run}: {len(gold)} test predictions, the test file has "
                         f"{len(long_mask)} lines: not this dataset's run")
    correct = probs.argmax(axis=1) == gold
    dev = json.loads((run / "metrics.json").read_text())["dev"]["accuracy"]
    return dev, float(correct.mean()), float(correct[long_mask].mean())


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, type=Path, help="zhcls sweep output directory")
    parser.add_argument("--data", required=True, type=Path, help="dataset of the sweep")
    parser.add_argument("--min-chars", type=int, default=150, help="long: more characters")
    args = parser.parse_args(argv)
    names = read_class_names(args.data / "class.txt")
    test = read_split(find_split_file(args.data, "test"), names, teacher_policy="skip")
    long_mask = np.array([len(t) > args.min_chars for t in test.texts])
    settings: dict[str, list[tuple[float, float, float]]] = {}
    for metrics in sorted(args.sweep.glob("*/seed-*/metrics.json")):
        run = metrics.parent
        settings.setdefault(run.parent.name, []).append(run_accuracies(run, long_mask))
    if not settings:
        raise SystemExit(f"{args.sweep}: no finished runs (*/seed-*/metrics.json)")
    print(f"test: {len(long_mask)} texts, {int(long_mask.sum())} longer than {args.min_chars} "
          "characters\n")
    print("| setting | seeds | dev acc | test acc | test acc, long texts |")
    print("| --- | --- | --- | --- | --- |")
    for name, rows in settings.items():
        dev, acc, long = zip(*rows, strict=True)
        label = re.sub(r"^data\.long_text=", "", name)
        print(f"| {label} | {len(rows)} | {mean_std(list(dev))} | {mean_std(list(acc))} | "
              f"{mean_std(list(long))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
