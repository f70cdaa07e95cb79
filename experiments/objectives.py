"""Objective comparison: ``ce``, ``ce+scl``, ``kd``, ``kd+scl`` × seeds, one tiny model, one budget.

    python experiments/objectives.py --data ../shared/data/thucnews --out runs/objectives \
        [--seeds 3] [--steps N] [-- --objective.representation mlp ...]

1. teacher: a larger tiny BERT (``--teacher-layers/--teacher-hidden``) trained on the data with
   ``--config`` for ``--teacher-epochs``, selected by dev (``OUT/teacher``);
2. labels the train split with it (``zhcls label --teacher``) into ``OUT/kd_data`` (train with a
   teacher column; dev/test/class.txt copied unchanged);
3. per seed, one randomly initialised student encoder (``OUT/init/student-seed{S}``, shared by
   the four objectives, so differences between objectives are paired), then the
   ``len(objectives) × seeds`` students on ``OUT/kd_data`` with the same config and budget
   (``OUT/students/{steps{N}|epochs}/{objective}/seed{S}``); checkpoints are selected on dev only;
4. aggregates test accuracy / macro-F1 (mean ± sample std over seeds), prints the table and
   writes it into ``--doc`` between the ``objectives`` markers (re-runs replace it).

Every stage is skipped when its output is complete (a run is finished when its
``metrics.json`` exists; an interrupted run resumes from its last Trainer checkpoint), so the
script can be re-run after an interruption or to only rebuild the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = ("ce", "ce+scl", "kd", "kd+scl")
SECTION = "objectives"
DEFAULT_VOCAB = REPO.parent / "shared" / "data" / "bert-base-chinese-vocab.txt"

logger = logging.getLogger("objectives")


@dataclass
class Row:
    """One objective aggregated over seeds (accuracies and F1 in [0, 1])."""

    objective: str
    n: int
    test_acc: tuple[float, float]
    test_f1: tuple[float, float]
    dev_acc: tuple[float, float]
    delta_acc: tuple[float, float] | None  # paired test-accuracy difference to ce, same seeds
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate; everything after ``--`` is passed to every student as overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="THUCNews-format dataset directory")
    p.add_argument("--out", required=True, help="experiment directory (created; reused)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per objective (default 3)")
    p.add_argument("--steps", type=int, default=-1,
                   help="optimizer steps per student (default: the config's epochs)")
    p.add_argument("--objectives", default=",".join(OBJECTIVES),
                   help="comma-separated subset of " + ", ".join(OBJECTIVES))
    p.add_argument("--config", default=str(REPO / "configs" / "tiny.yaml"))
    src = p.add_mutually_exclusive_group()
    src.add_argument("--vocab", default=None, help=f"vocab.txt (default {DEFAULT_VOCAB})")
    src.add_argument("--vocab-from", default=None, help="build a char vocab from this dataset")
    p.add_argument("--layers", type=int, default=1, help="student layers (configs/tiny.yaml)")
    p.add_argument("--hidden", type=int, default=128, help="student hidden size")
    p.add_argument("--heads", type=int, default=2, help="student attention heads")
    p.add_argument("--teacher-layers", type=int, default=2)
    p.add_argument("--teacher-hidden", type=int, default=256)
    p.add_argument("--teacher-heads", type=int, default=4)
    p.add_argument("--teacher-epochs", type=float, default=2.0)
    p.add_argument("--teacher-lr", type=float, default=1e-3)
    p.add_argument("--teacher-batch-size", type=int, default=64)
    p.add_argument("--doc", default=str(REPO / "docs" / "experiments.md"),
                   help="markdown file that receives the table ('' to skip)")
    p.add_argument("--section", default=SECTION,
                   help="marker name of the table's place in --doc (default: objectives)")
    args = p.parse_args(argv)
    args.overrides = extra
    _validate(p, args)
    return args


def _validate(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.seeds < 1:
        p.error(f"--seeds: expected at least 1, got {args.seeds}")
    if args.steps == 0 or args.steps < -1:
        p.error(f"--steps: expected -1 (use the config's epochs) or > 0, got {args.steps}")
    if args.teacher_epochs <= 0 or args.teacher_lr <= 0:
        p.error(f"--teacher-epochs/--teacher-lr: expected > 0, got {args.teacher_epochs}/"
                f"{args.teacher_lr}")
    for key in ("layers", "hidden", "heads", "teacher_layers", "teacher_hidden", "teacher_heads",
                "teacher_batch_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')}: expected a positive integer")
    if not args.section.replace("-", "").replace("_", "").isalnum():
        p.error(f"--section: expected letters, digits, '-' or '_', got {args.section!r}")
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        p.error(f"--objectives: expected a comma-separated subset of {', '.join(OBJECTIVES)}, "
                f"got {args.objectives!r}")
    args.objectives = objectives
    data = Path(args.data)
    missing = [n for n in ("class.txt", "train.txt", "dev.txt", "test.txt")
               if not (data / n).is_file()]
    if missing:
        p.error(f"--data {data}: expected a THUCNews-format directory with class.txt and "
                f"train/dev/test.txt; missing {', '.join(missing)}")
    if not Path(args.config).is_file():
        p.error(f"--config: file not found: {args.config}")
    if args.vocab is None and args.vocab_from is None:
        args.vocab = str(DEFAULT_VOCAB)
    if args.vocab is not None and not Path(args.vocab).is_file():
        p.error(f"--vocab: file not found: {args.vocab} (or pass --vocab-from DATA_DIR)")


# --------------------------------------------------------------------------- running


def init_model(out: Path, args: argparse.Namespace, *, layers: int, hidden: int, heads: int,
               seed: int) -> Path:
    """A random tiny BERT in ``out`` (reused when its weights are already there)."""
    from zhcls.modeling.tiny import init_tiny

    if not (out / "model.safetensors").is_file():
        init_tiny(out, vocab=args.vocab, vocab_from=args.vocab_from, layers=layers,
                  hidden=hidden, heads=heads, seed=seed)
    return out


def run_training(config_path: str, overrides: list[str], data: Path, out: Path) -> dict:
    """Train once into ``out`` unless ``out/metrics.json`` exists; return the metrics and the
    CPU/wall seconds of this process's training (0 when reused)."""
    from zhcls.config import load_config
    from zhcls.workflows.pipeline import train_and_report as train

    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        logger.info("reusing finished run %s", out)
        return json.loads(metrics_file.read_text(encoding="utf-8"))
    resume = out.is_dir() and any(out.iterdir())  # an interrupted run: continue it
    config = load_config(config_path, overrides + ["--train.resume", str(resume).lower()])
    wall, cpu = time.perf_counter(), time.process_time()
    train(config, data, out)
    seconds = {"wall": round(time.perf_counter() - wall, 1),
               "cpu": round(time.process_time() - cpu, 1), "resumed": resume}
    (out / "seconds.json").write_text(json.dumps(seconds) + "\n", encoding="utf-8")
    return json.loads(metrics_file.read_text(encoding="utf-8"))


def train_teacher(args: argparse.Namespace, out: Path) -> dict:
    init = init_model(out / "init" / "teacher", args, layers=args.teacher_layers,
                      hidden=args.teacher_hidden, heads=args.teacher_heads, seed=0)
    overrides = ["--model.pretrained", str(init), "--train.epochs", str(args.teacher_epochs),
                 "--train.lr", str(args.teacher_lr), "--train.batch_size",
                 str(args.teacher_batch_size), "--train.max_steps", "-1", "--train.seed", "0",
                 "--train.tensorboard", "false"]
    return run_training(args.config, overrides, Path(args.data), out / "teacher")


def label_train_split(args: argparse.Namespace, out: Path) -> Path:
    """``zhcls label --teacher OUT/teacher/best --split train --out OUT/kd_data``."""
    from zhcls.label.local import label_with_checkpoint

    kd = out / "kd_data"
    if not (kd / "label_report.json").is_file():
        label_with_checkpoint(out / "teacher" / "best", args.data, "train", kd,
                              batch_size=256, device="cpu")
    return kd


def student_overrides(args: argparse.Namespace, init: Path, objective: str, seed: int
                      ) -> list[str]:
    overrides = ["--model.pretrained", str(init), "--objective.name", objective,
                 "--train.seed", str(seed), "--train.tensorboard", "false"]
    if args.steps > 0:
        overrides += ["--train.max_steps", str(args.steps)]
    return overrides + list(args.overrides)


def budget_tag(args: argparse.Namespace) -> str:
    """Students of different budgets live side by side: ``steps600`` or ``epochs`` (the
    config's)."""
    return f"steps{args.steps}" if args.steps > 0 else "epochs"


def train_students(args: argparse.Namespace, out: Path, kd: Path) -> dict[str, list[dict]]:
    """Every (objective, seed) student; returns per objective the list of run metrics."""
    results: dict[str, list[dict]] = {o: [] for o in args.objectives}
    for seed in range(1, args.seeds + 1):
        init = init_model(out / "init" / f"student-seed{seed}", args, layers=args.layers,
                          hidden=args.hidden, heads=args.heads, seed=seed)
        for objective in args.objectives:
            run = out / "students" / budget_tag(args) / objective / f"seed{seed}"
            logger.info("student %s seed %d -> %s", objective, seed, run)
            metrics = run_training(args.config, student_overrides(args, init, objective, seed),
                                   kd, run)
            results[objective].append(metrics | {"seed": seed, "seconds": _seconds(run)})
    return results


def _seconds(run: Path) -> dict:
    path = run / "seconds.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# --------------------------------------------------------------------------- table


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        raise ValueError("mean_std: no values")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(results: dict[str, list[dict]]) -> list[Row]:
    """Rows in ``results`` order; the accuracy delta is paired by seed against ``ce``."""
    base = {r["seed"]: r["test"]["accuracy"] for r in results.get("ce", [])}
    rows = []
    for objective, runs in results.items():
        if not runs:
            continue
        paired = [r["test"]["accuracy"] - base[r["seed"]] for r in runs if r["seed"] in base]
        delta = mean_std(paired) if paired and objective != "ce" else None
        rows.append(Row(
            objective=objective, n=len(runs),
            test_acc=mean_std([r["test"]["accuracy"] for r in runs]),
            test_f1=mean_std([r["test"]["macro_f1"] for r in runs]),
            dev_acc=mean_std([r["dev"]["accuracy"] for r in runs]),
            delta_acc=delta,
            seconds=_mean_cpu(runs)))
    return rows


def _mean_cpu(runs: list[dict]) -> float:
    """Mean CPU seconds of the runs trained in one go (resumed runs only timed their tail)."""
    cpu = [r["seconds"]["cpu"] for r in runs
           if r.get("seconds", {}).get("cpu") and not r["seconds"].get("resumed")]
    return statistics.fmean(cpu) if cpu else 0.0


def _cpu(seconds: float | None) -> str:
    return f"{seconds:.0f}" if seconds else "–"


def _pm(value: tuple[float, float]) -> str:
    return f"{100 * value[0]:.2f} ± {100 * value[1]:.2f}"


def format_table(rows: list[Row], teacher: dict | None = None) -> str:
    """Markdown table (percentages); the teacher, when given, is the first line, for context."""
    lines = ["| objective | runs | test accuracy (%) | test macro-F1 (%) | dev accuracy (%) "
             "| Δ test acc. vs ce (pp, paired) | CPU s / run |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    if teacher is not None:
        lines.append(f"| teacher (ce) | 1 | {100 * teacher['test']['accuracy']:.2f} | "
                     f"{100 * teacher['test']['macro_f1']:.2f} | "
                     f"{100 * teacher['dev']['accuracy']:.2f} | – | "
                     f"{_cpu(teacher.get('seconds', {}).get('cpu'))} |")
    for r in rows:
        delta = "–" if r.delta_acc is None else (
            f"{100 * r.delta_acc[0]:+.2f} ± {100 * r.delta_acc[1]:.2f}")
        cpu = _cpu(r.seconds)
        lines.append(f"| {r.objective} | {r.n} | {_pm(r.test_acc)} | {_pm(r.test_f1)} | "
                     f"{_pm(r.dev_acc)} | {delta} | {cpu} |")
    return "\n".join(lines)


def markers(section: str = SECTION) -> tuple[str, str]:
    """The HTML comments that delimit a generated table in the doc."""
    return (f"<!-- {section}:begin (written by experiments/objectives.py; edits here are lost) -->",
            f"<!-- {section}:end -->")


def replace_section(text: str, block: str, section: str = SECTION) -> str:
    """``text`` with the part between the section's markers replaced by ``block`` (appended
    with the markers when they are absent)."""
    begin_marker, end_marker = markers(section)
    begin, end = text.find(begin_marker), text.find(end_marker)
    if (begin == -1) != (end == -1) or (begin != -1 and end < begin):
        raise ValueError(f"the markers {begin_marker!r} and {end_marker!r} must both appear, "
                         "in that order")
    wrapped = f"{begin_marker}\n{block.strip()}\n{end_marker}"
    if begin == -1:
        return (text.rstrip() + "\n\n" if text.strip() else "") + wrapped + "\n"
    return text[:begin] + wrapped + text[end + len(end_marker):]


def describe(args: argparse.Namespace, label_report: dict | None) -> str:
    """The settings under the table, so the numbers can be reproduced."""
    from zhcls.config import load_config

    config = load_config(args.config)
    t, head = config.train, config.model.head
    budget = f"{args.steps} optimizer steps" if args.steps > 0 else f"{t.epochs:g} epochs"
    vocab = f"vocab {Path(args.vocab).name}" if args.vocab else f"char vocab of {args.vocab_from}"
    lines = [f"Students: {_layers(args.layers)}, hidden {args.hidden}, {vocab}, head {head}, "
             f"`{Path(args.config).name}` (lr {t.lr:g}, batch {t.batch_size}, warmup ratio "
             f"{t.warmup_ratio:g}), {budget}, seeds 1..{args.seeds} (seed = encoder init + data "
             f"order); checkpoint selected on dev {t.metric_for_best}.",
             f"Teacher: {_layers(args.teacher_layers)}, hidden {args.teacher_hidden}, "
             f"{args.teacher_epochs:g} epochs, lr {args.teacher_lr:g}, batch "
             f"{args.teacher_batch_size}, objective ce, same config otherwise."]
    if label_report:
        lines.append(f"Teacher argmax agrees with the train labels on "
                     f"{100 * label_report['agreement']:.2f}% of the train split (mean "
                     f"confidence {label_report['mean_confidence']:.3f}).")
    if args.overrides:
        lines.append(f"Extra student overrides: `{' '.join(args.overrides)}`.")
    return "\n".join(lines)


def _layers(n: int) -> str:
    return f"{n} layer" + ("s" if n != 1 else "")


def write_doc(path: str | Path, block: str, section: str = SECTION) -> None:
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, block, section), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = train_teacher(args, out) | {"seconds": _seconds(out / "teacher")}
    logger.info("teacher test accuracy %.4f", teacher["test"]["accuracy"])
    kd = label_train_split(args, out)
    report = json.loads((kd / "label_report.json").read_text(encoding="utf-8"))
    results = train_students(args, out, kd)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n",
                                      encoding="utf-8")
    block = format_table(aggregate(results), teacher) + "\n\n" + describe(args, report)
    if args.doc:
        write_doc(args.doc, block, args.section)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
