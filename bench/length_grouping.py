"""Does length-grouped batching change what the model learns? Same tiny model, data and
budget, three seeds, batches drawn three ways:

* ``random``: ``train.group_by_length false`` (shuffled batches, padded to their longest);
* ``grouped``: ``train.group_by_length true``, zhcls's default (batches of similar length,
  randomly composed within mega-batches, visited in a random order);
* ``sorted-runs`` (reference): transformers' ``LengthGroupedSampler``, which walks each
  mega-batch of 50 batches from the longest to the shortest sentences.

    ZHCLS_CACHE=/tmp/zhcache .venv/bin/python bench/length_grouping.py \\
        --data ../shared/data/thucnews --vocab ../shared/data/bert-base-chinese-vocab.txt

The model and the rest of the recipe are configs/tiny.yaml's (init-tiny 1 layer, hidden 128;
its head and lr unless ``--head`` / ``--lr``); ``--steps`` optimisation steps of
``--batch-size``, one dev evaluation at the end. Prints dev accuracy mean ± std per arm, the
padded tokens per batch and the training time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/train_speed.py

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
ARMS = ("random", "grouped", "sorted-runs")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED / "thucnews"))
    p.add_argument("--vocab", default=str(SHARED / "bert-base-chinese-vocab.txt"))
    p.add_argument("--model", help="existing tiny encoder dir (default: init-tiny into --out)")
    p.add_argument("--layers", type=int, default=1, help="init-tiny layers (hidden 128)")
    p.add_argument("--head", help="model.head (default: configs/tiny.yaml's)")
    p.add_argument("--lr", type=float, help="train.lr (default: configs/tiny.yaml's)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--precision", default="auto", help="train.precision for every run")
    p.add_argument("--out", help="work dir (default: a temporary one)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def _use_sorted_runs(enabled: bool) -> None:
    """Swap zhcls's sampler for transformers' LengthGroupedSampler (the reference arm)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from zhcls.training.trainer import ZhclsTrainer

    if not hasattr(ZhclsTrainer, "_zhcls_sampler"):
        ZhclsTrainer._zhcls_sampler = ZhclsTrainer._get_train_sampler

    def sorted_runs(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return LengthGroupedSampler(self.args.train_batch_size, lengths=dataset.lengths,
                                    generator=torch.Generator().manual_seed(self.args.seed))

    ZhclsTrainer._get_train_sampler = sorted_runs if enabled else ZhclsTrainer._zhcls_sampler


def run(args: argparse.Namespace, model_dir: Path, work: Path, arm: str, seed: int) -> dict:
    from zhcls.config import load_config
    from zhcls.training.train import train

    config = load_config(REPO / "configs" / "tiny.yaml", [
        "--model.pretrained", str(model_dir), "--train.batch_size", str(args.batch_size),
        "--train.max_steps", str(args.steps), "--train.eval_steps", str(args.steps),
        "--train.seed", str(seed), "--train.group_by_length", str(arm != "random").lower(),
        "--train.precision", args.precision, "--train.evaluate_test", "false",
        "--train.report", "false", "--train.tensorboard", "false",
        *(["--model.head", args.head] if args.head else []),
        *(["--train.lr", str(args.lr)] if args.lr else [])])
    _use_sorted_runs(arm == "sorted-runs")
    try:
        result = train(config, args.data, work / f"{arm}-{seed}")
    finally:
        _use_sorted_runs(False)
    logs = json.loads((result.output_dir / "history.json").read_text("utf-8"))["log_history"]
    runtime = next(e["train_runtime"] for e in logs if "train_runtime" in e)
    return {"arm": arm, "seed": seed, "dev_accuracy": result.dev_metrics["accuracy"],
            "dev_loss": result.dev_metrics["loss"], "train_runtime_s": float(runtime)}


def padded_tokens_per_batch(model_dir: Path, data: str, batch_size: int) -> dict[str, float]:
    """Mean padded batch width (tokens per row) over one epoch, per arm."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from zhcls.data.dataset import encode_texts
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.data.samplers import ShuffledLengthGroupedSampler
    from zhcls.modeling.encoder import load_tokenizer

    split = read_split(Path(data) / "train.txt", read_class_names(Path(data) / "class.txt"))
    lengths = np.array([len(x) for x in encode_texts(load_tokenizer(str(model_dir)), split.texts, 32)])
    orders = {
        "random": np.random.default_rng(0).permutation(len(lengths)),
        "grouped": np.array(list(ShuffledLengthGroupedSampler(lengths, batch_size, seed=0))),
        "sorted-runs": np.array(list(LengthGroupedSampler(batch_size, lengths=lengths.tolist(),
                                                          generator=torch.Generator().manual_seed(0)))),
    }
    return {arm: float(np.mean([lengths[order[i:i + batch_size]].max()
                                for i in range(0, len(order), batch_size)]))
            for arm, order in orders.items()} | {"mean_length": float(lengths.mean())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="zhcls-length-grouping-") as tmp:
        work = Path(args.out or tmp)
        model_dir = Path(args.model) if args.model else None
        if model_dir is None:
            from zhcls.modeling.tiny import init_tiny

            model_dir = init_tiny(work / "model", vocab=args.vocab, layers=args.layers,
                                  hidden=128, heads=2)
        started = time.perf_counter()
        runs = [run(args, model_dir, work, arm, seed) for seed in args.seeds for arm in args.arms]
        widths = padded_tokens_per_batch(model_dir, args.data, args.batch_size)
    from zhcls.config import load_config

    tiny = load_config(REPO / "configs" / "tiny.yaml")
    head, lr = args.head or tiny.model.head, args.lr or tiny.train.lr
    print(f"\nlength grouping: configs/tiny.yaml with head {head}, lr {lr:g}, "
          f"{args.steps} steps x batch {args.batch_size}, seeds {args.seeds}, precision "
          f"{args.precision}, {time.perf_counter() - started:.0f} s in all")
    print(f"{'arm':<13}{'dev acc mean':>13}{'std':>8}{'per seed':>28}{'train s':>9}{'pad width':>10}")
    summary = {}
    for arm in args.arms:
        accs = [r["dev_accuracy"] for r in runs if r["arm"] == arm]
        secs = statistics.mean(r["train_runtime_s"] for r in runs if r["arm"] == arm)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary[arm] = {"mean": statistics.mean(accs), "std": std, "accuracies": accs,
                        "train_s": secs, "pad_width": widths[arm]}
        print(f"{arm:<13}{summary[arm]['mean']:>13.4f}{std:>8.4f}"
              f"{' '.join(f'{a:.4f}' for a in accs):>28}{secs:>9.1f}{widths[arm]:>10.1f}")
    print(f"(pad width: mean padded tokens per row over one epoch; mean true length "
          f"{widths['mean_length']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs,
                                               "summary": summary}, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
