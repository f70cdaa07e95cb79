"""Multi-label table for docs/experiments.md (issue 13, acceptance 1): the TF-IDF one-vs-rest
SVM baseline and tiny zhcls models on ``../shared/data/car_aspects``, in one table.

    python experiments/car_aspects.py --data ../shared/data/car_aspects --out runs/car_aspects

car_aspects has no test split, so the 1,000 dev comments are cut in two by line number:
lines 1-500 are **dev-a** (model selection and threshold tuning: its numbers flatter every
tuned setting) and lines 501-1000 are **dev-b** (held out: touched once per run, never used
for a decision). Every stage is a ``zhcls`` command (printed), skipped when its output is
complete, so an interrupted run continues:

1. ``OUT/data``: class.txt, train.jsonl and the two dev halves (as dev.jsonl / test.jsonl);
2. ``zhcls baseline`` (thresholds tuned by cross-validation on train) into ``OUT/baseline``;
3. ``zhcls label --teacher OUT/baseline`` (its calibrated per-class probabilities on train,
   the local teacher of the KD rows) into ``OUT/kd_data``;
4. one random tiny encoder per seed (``zhcls init-tiny``, configs/tiny.yaml's size);
5. students, each ``zhcls train --config configs/tiny.yaml`` + the setting's flags.

A student's row "tuned" uses the thresholds tuned on dev-a and saved in its checkpoint; its
row "at 0.5" re-decides the same saved dev-b scores with 0.5 for every class.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

STUDENT = ["--config", "configs/tiny.yaml", "--data.max_length", "128", "--train.epochs", "8",
           "--train.eval_steps", "50", "--train.report", "false", "--train.threads", "1"]
SETTINGS = {  # name: (dataset, extra flags)
    "bce": ("data", ["--objective.name", "bce"]),
    "bce, pos_weight_auto": ("data", ["--objective.name", "bce",
                                      "--objective.pos_weight_auto", "true"]),
    "kd (teacher: baseline)": ("kd_data", ["--objective.name", "kd"]),
}


def sh(cmd: list[str], done: Path) -> None:
    if done.exists():
        return
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def split_data(src: Path, out: Path) -> Path:
    data = out / "data"
    if (data / "test.jsonl").is_file():
        return data
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "class.txt", data / "class.txt")
    shutil.copy(src / "train.jsonl", data / "train.jsonl")
    dev = (src / "dev.jsonl").read_text("utf-8").splitlines()
    (data / "dev.jsonl").write_text("\n".join(dev[:500]) + "\n", "utf-8")
    (data / "test.jsonl").write_text("\n".join(dev[500:]) + "\n", "utf-8")
    return data


def run_all(args: argparse.Namespace) -> dict[str, list[dict]]:
    out = args.out
    data = split_data(args.data, out)
    sh(["zhcls", "baseline", "--data", str(data), "--out", str(out / "baseline")],
       out / "baseline" / "meta.json")
    sh(["zhcls", "label", "--teacher", str(out / "baseline"), "--data", str(data),
        "--out", str(out / "kd_data")], out / "kd_data" / "label_report.json")
    for seed in args.seeds:
        sh(["zhcls", "init-tiny", "--vocab", str(args.vocab), "--layers", "1", "--hidden", "128",
            "--heads", "2", "--seed", str(seed), "--out", str(out / "init" / f"seed{seed}")],
           out / "init" / f"seed{seed}" / "model.safetensors")
    runs: dict[str, list[dict]] = {}
    for name, (dataset, flags) in SETTINGS.items():
        for seed in args.seeds:
            run = out / "runs" / _slug(name) / f"seed{seed}"
            resume = "true" if run.exists() else "false"
            sh(["zhcls", "train", *STUDENT, *flags, "--model.pretrained",
                str(out / "init" / f"seed{seed}"), "--data", str(out / dataset), "--out",
                str(run), "--train.seed", str(seed), "--train.resume", resume],
               run / "metrics.json")
            runs.setdefault(name, []).append(student_numbers(run))
    return runs


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def student_numbers(run: Path) -> dict:
    from zhcls.evaluation.metrics import apply_thresholds, multilabel_metrics

    metrics = json.loads((run / "metrics.json").read_text("utf-8"))
    names = json.loads((run / "best" / "labels.json").read_text("utf-8"))["labels"]
    half = {}
    for split in ("dev", "test"):  # the same saved scores, every class decided at 0.5
        pred = np.load(run / f"eval_{split}" / "predictions.npz")
        half[split] = multilabel_metrics(pred["gold"] > 0.5, apply_thresholds(pred["probs"], 0.5),
                                         names)
    return {"dev_micro": metrics["dev"]["micro_f1"], "dev_macro": metrics["dev"]["macro_f1"],
            "micro": metrics["test"]["micro_f1"], "macro": metrics["test"]["macro_f1"],
            "dev_micro_05": half["dev"]["micro_f1"], "dev_macro_05": half["dev"]["macro_f1"],
            "micro_05": half["test"]["micro_f1"], "macro_05": half["test"]["macro_f1"]}


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(args: argparse.Namespace, runs: dict[str, list[dict]]) -> str:
    base = json.loads((args.out / "baseline" / "meta.json").read_text("utf-8"))["metrics"]
    lines = ["| setting | seeds | dev-a micro-F1 | dev-a macro-F1 | dev-b micro-F1 | "
             "dev-b macro-F1 |", "| --- | --- | --- | --- | --- | --- |",
             f"| TF-IDF + one-vs-rest SVM (`zhcls baseline`, CV thresholds) | — | "
             f"{base['dev']['micro_f1']:.4f} | {base['dev']['macro_f1']:.4f} | "
             f"{base['test']['micro_f1']:.4f} | {base['test']['macro_f1']:.4f} |"]
    for name, rows in runs.items():
        col = {k: [r[k] for r in rows] for k in rows[0]}
        lines.append(f"| {name}, at 0.5 | {len(rows)} | {cell(col['dev_micro_05'])} | "
                     f"{cell(col['dev_macro_05'])} | {cell(col['micro_05'])} | "
                     f"{cell(col['macro_05'])} |")
        lines.append(f"| {name}, thresholds tuned on dev-a | {len(rows)} | "
                     f"{cell(col['dev_micro'])} | {cell(col['dev_macro'])} | "
                     f"{cell(col['micro'])} | {cell(col['macro'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/car_aspects"))
    parser.add_argument("--out", type=Path, default=Path("runs/car_aspects"))
    parser.add_argument("--vocab", type=Path,
                        default=Path("../shared/data/bert-base-chinese-vocab.txt"))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 3])
    args = parser.parse_args(argv)
    print(table(args, run_all(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
