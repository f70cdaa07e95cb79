"""Training speed: a research-style loop vs ``zhcls train`` on the same model, data and steps.

    ZHCLS_CACHE=/tmp/zhcache .venv/bin/python bench/train_speed.py \\
        --data ../shared/data/thucnews --vocab ../shared/data/bert-base-chinese-vocab.txt

Both runs start from the same randomly initialised tiny BERT (``zhcls init-tiny``, 2 layers,
hidden 128) with the research code's head (pooled [CLS] -> linear; zhcls head ``bert``), train
``--steps`` optimisation steps of ``--batch-size`` sentences with the same learning rate,
and evaluate the whole dev set every ``--eval-every`` steps (3 times for 300/100). The
baseline (``bench/baseline_research_loop.py``) pads every sentence to 32, trains in fp32
with a per-parameter optimiser loop, turns Python lists into tensors batch by batch and
evaluates with the train batch size; zhcls runs ``zhcls.training.train.train`` as users do
(length-grouped dynamic padding, fused AdamW, SDPA attention, length-sorted evaluation
batches, Trainer checkpoints for resume). samples/s = steps x batch / wall time of the
training loop including its dev evaluations and checkpoint saves; the time split and the
one-off data preparation (tokenisation) are printed as well. ``--repeats N`` alternates
the two runs N times (the machine may be shared) and reports the median ratio.
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

# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads of an
# oversubscribed process make every op several times slower (both runs get the same setting;
# set OMP_WAIT_POLICY yourself to override).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline_research_loop import (  # noqa: E402
    BatchIterator,
    LoopResult,
    ResearchModel,
    evaluate,
    load_padded,
    train_research,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED / "thucnews"))
    p.add_argument("--vocab", default=str(SHARED / "bert-base-chinese-vocab.txt"))
    p.add_argument("--model", help="existing tiny encoder dir (default: init-tiny into --out)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3, help="the same for both runs")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", help="work dir (default: a temporary one)")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def prepare_model(args: argparse.Namespace, work: Path) -> Path:
    if args.model:
        return Path(args.model)
    from zhcls.modeling.tiny import init_tiny

    return init_tiny(work / "model", vocab=args.vocab, layers=args.layers, hidden=args.hidden,
                     heads=args.heads)


def time_data_prep(args: argparse.Namespace, model_dir: Path, work: Path) -> dict[str, float]:
    """Baseline per-line tokenisation vs zhcls's batched encode (cold, then cached)."""
    from zhcls.data.dataset import encode_split
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.modeling.encoder import load_tokenizer

    data = Path(args.data)
    tokenizer = load_tokenizer(str(model_dir))
    t0 = time.perf_counter()
    for split in ("train", "dev"):
        load_padded(data / f"{split}.txt", tokenizer)
    baseline = time.perf_counter() - t0
    classes = read_class_names(data / "class.txt")
    splits = [read_split(data / f"{s}.txt", classes) for s in ("train", "dev")]
    cache = work / "prep-cache"
    timings = {}
    for label in ("zhcls_cold", "zhcls_cached"):
        t0 = time.perf_counter()
        for split in splits:
            encode_split(split, tokenizer, 32, len(classes), cache)
        timings[label] = time.perf_counter() - t0
    return {"baseline": baseline, **timings}


def run_baseline(args: argparse.Namespace, model_dir: Path, work: Path) -> dict:
    from zhcls.data.formats import read_class_names
    from zhcls.modeling.encoder import load_tokenizer

    data = Path(args.data)
    tokenizer = load_tokenizer(str(model_dir))
    train_iter = BatchIterator(load_padded(data / "train.txt", tokenizer), args.batch_size)
    dev_iter = BatchIterator(load_padded(data / "dev.txt", tokenizer), args.batch_size)
    torch.manual_seed(1)
    model = ResearchModel(model_dir, len(read_class_names(data / "class.txt")))
    result: LoopResult = train_research(model, train_iter, dev_iter, args.steps, args.lr,
                                        args.eval_every, work / "baseline.ckpt")
    final_acc, _ = evaluate(model, dev_iter)  # not timed: how well it learned
    return {"steps": result.steps, "samples": result.samples, "loop_s": result.total_s,
            "train_s": result.train_s + result.save_s, "eval_s": result.eval_s,
            "save_s": result.save_s, "evals": result.evals,
            "samples_per_s": result.samples_per_s, "dev_acc": final_acc}


def zhcls_variants() -> dict[str, str]:
    """{--train.precision value: what it runs as}: fp32, and ``auto`` when it means
    something else on this machine (bf16 autocast on a CPU with bf16 matmul units)."""
    from zhcls.training.train import cpu_has_native_bf16, resolve_precision

    auto = "bf16" if cpu_has_native_bf16() else resolve_precision("auto")
    return {"fp32": "fp32"} if auto == "fp32" else {"fp32": "fp32", "auto": auto}


def run_zhcls(args: argparse.Namespace, model_dir: Path, work: Path, tag: str,
              precision: str) -> dict:
    from zhcls.config import load_config
    from zhcls.training.train import train

    config = load_config(REPO / "configs" / "tiny.yaml", [
        "--model.pretrained", str(model_dir), "--model.head", "bert",  # the research model
        "--train.batch_size", str(args.batch_size),
        "--train.max_steps", str(args.steps), "--train.eval_steps", str(args.eval_every),
        "--train.lr", str(args.lr), "--train.precision", precision,
        "--train.evaluate_test", "false", "--train.tensorboard", "false", "--train.report", "false",
        "--train.require_improvement", str(10 * args.steps),
        "--data.cache_dir", str(work / "prep-cache")])
    t0 = time.perf_counter()
    result = train(config, args.data, work / f"zhcls-{precision}-{tag}")
    end_to_end = time.perf_counter() - t0
    logs = json.loads((result.output_dir / "history.json").read_text("utf-8"))["log_history"]
    summary = next(e for e in logs if "train_runtime" in e)
    evals = [e for e in logs if "eval_runtime" in e][:-1]  # the last one is after training
    loop_s = float(summary["train_runtime"])
    eval_s = sum(float(e["eval_runtime"]) for e in evals)
    samples = args.steps * args.batch_size
    return {"steps": int(summary["step"]), "samples": samples, "loop_s": loop_s,
            "train_s": loop_s - eval_s, "eval_s": eval_s, "evals": len(evals),
            "samples_per_s": samples / loop_s, "dev_acc": result.dev_metrics["accuracy"],
            "end_to_end_s": end_to_end}


def _row(name: str, r: dict) -> str:
    return (f"{name:<15}{r['samples_per_s']:>10.1f}{r['loop_s']:>9.1f}{r['train_s']:>9.1f}"
            f"{r['eval_s']:>8.1f}{r['evals']:>6}{r['dev_acc']:>9.4f}")


def report(runs: list[dict], variants: dict[str, str], prep: dict[str, float], args) -> dict:
    """Print one table per repeat and the median ratio per zhcls variant."""
    print(f"\ntraining speed: {args.steps} steps x batch {args.batch_size}, full dev eval every "
          f"{args.eval_every} steps, torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY')}")
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for i, run in enumerate(runs):
        b = run["baseline"]
        print(f"repeat {i + 1}\n{'run':<15}{'samples/s':>10}{'loop s':>9}{'train s':>9}"
              f"{'eval s':>8}{'evals':>6}{'dev acc':>9}\n{_row('baseline fp32', b)}")
        for v, effective in variants.items():
            z = run[v]
            ratios[v].append(z["samples_per_s"] / b["samples_per_s"])
            print(f"{_row(f'zhcls {effective}', z)}   {ratios[v][-1]:.2f}x (train part "
                  f"{b['train_s'] / z['train_s']:.2f}x, eval part {b['eval_s'] / z['eval_s']:.2f}x)")
    medians = {v: statistics.median(r) for v, r in ratios.items()}
    for v, effective in variants.items():
        print(f"samples/s ratio zhcls ({v} -> {effective}) / baseline: {medians[v]:.2f}x "
              f"(median of {len(ratios[v])})")
    print(f"data preparation (train+dev): baseline per-line {prep['baseline']:.1f} s, zhcls "
          f"{prep['zhcls_cold']:.1f} s first run, {prep['zhcls_cached']:.2f} s from the cache")
    return {"args": vars(args), "variants": variants, "runs": runs, "ratios": ratios,
            "median_ratio": medians, "data_prep_s": prep, "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (Path(args.data) / "train.txt").is_file():
        print(f"no dataset at {args.data} (expected train.txt, dev.txt, class.txt)", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = zhcls_variants()
    with tempfile.TemporaryDirectory(prefix="zhcls-train-speed-") as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = prepare_model(args, work)
        prep = time_data_prep(args, model_dir, work)
        runs = []
        for i in range(args.repeats):  # alternate, so a busy spell hits every variant alike
            run = {"baseline": run_baseline(args, model_dir, work)}
            for v in variants:
                run[v] = run_zhcls(args, model_dir, work, str(i), v)
            runs.append(run)
        results = report(runs, variants, prep, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
