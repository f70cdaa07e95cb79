"""``zhcls demo [--out DIR] [--quick] [--seed N]``: train, evaluate and use a tiny Chinese
classifier on the dataset shipped in the package; offline, about a minute on 2 CPU cores."""

from __future__ import annotations

import argparse
import unicodedata


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="offline end-to-end demo: tiny model, shipped Chinese data (start here)",
        description="Copy the small Chinese news dataset shipped with zhcls (5 classes) to "
        "OUT/data, build a tiny BERT from its characters, train it with configs/demo.yaml, "
        "evaluate on the test split (metrics, confusion matrix PNG, wrong samples) and "
        "classify a few new sentences. No download, no GPU needed.",
    )
    p.add_argument("--out", default="zhcls-demo",
                   help="output directory (default: ./zhcls-demo; an earlier demo there is "
                   "replaced, any other non-empty directory is refused)")
    p.add_argument("--quick", action="store_true", help="train for fewer epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.workflows.demo import run_demo

    result = run_demo(args.out, seed=args.seed, quick=args.quick)
    print(format_summary(result))
    return 0


def format_summary(result) -> str:
    """The text ``zhcls demo`` prints: accuracy, the predictions table, the output paths."""
    dev, test = result.dev_metrics, result.test_metrics
    lines = [
        f"\nzhcls demo finished in {result.seconds:.0f} s"
        + (" (--quick)" if result.quick else ""),
        f"dev accuracy {dev['accuracy']:.4f}   test accuracy {test['accuracy']:.4f}   "
        f"test macro-F1 {test['macro_f1']:.4f}   ({result.num_classes} classes, chance "
        f"{result.chance:.2f})",
        "",
        "new sentences, classified by the trained model:",
        f"  {_pad('predicted', 10)} prob  {_pad('expected', 9)} text",
    ]
    for p in result.predictions:
        mark = " " if p.correct else "x"
        lines.append(f"{mark} {_pad(p.label, 10)} {p.score:.2f}  {_pad(p.expected, 9)} {p.text}")
    width = max(len(name) for name in result.outputs)
    lines += ["", "outputs:"]
    lines += [f"  {name:<{width}}  {path}" for name, path in result.outputs.items()]
    lines += ["", "try it:", f'  zhcls predict {result.outputs["checkpoint"]} "新赛季联赛明天开幕"']
    if "tensorboard" in result.outputs:
        lines.append(f"  tensorboard --logdir {result.outputs['tensorboard']}")
    return "\n".join(lines)


def _pad(text: str, width: int) -> str:
    """Left-align in ``width`` terminal columns (a CJK character takes two)."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(width - used, 0)
