"""``zhcls sweep --config X --data DIR --grid KEY=V1,V2 [--grid ...] [--seeds N] [--out DIR]
[--section.key value ...]``"""

from __future__ import annotations

import argparse

from zhcls.cli.config_options import add_config_options, overrides_of

# Options of `zhcls train` a sweep decides itself (see zhcls.workflows.sweep.RUN_CONTROL).
HIDDEN = {"--train.output_dir", "--train.resume", "--train.overwrite"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="train a grid of config values x seeds; summary table and plots",
        description="Train every combination of the --grid values, once per seed, each run in "
        "OUT/KEY=V,.../seed-S/. Resumable: runs with a metrics.json are skipped on restart. "
        "Writes OUT/summary.csv, summary.md (mean ± std over seeds of dev and test metrics; "
        "multi-label: micro-F1, macro-F1, subset accuracy; the best setting by the runs' "
        "train.metric_for_best), runs.csv and OUT/sweep_KEY.png per swept key. Other "
        "--section.key value options apply to every run, e.g. --train.max_steps 500; the "
        "sweep sets train.output_dir (use --out), train.resume and train.overwrite itself.",
        usage="zhcls sweep [--config FILE.yaml] [--data DIR] --grid KEY=V1,V2,... [--grid ...] "
        "[--seeds N] [--out DIR] [--section.key VALUE ...]",
        allow_abbrev=False,
    )
    p.add_argument("--data", help="dataset directory (train/dev/test + class.txt)")
    p.add_argument("--grid", action="append", default=[], required=True, metavar="KEY=V1,V2,...",
                   help="a config key and its values, e.g. objective.alpha=0.1,0.5,0.9 "
                   "(repeat for more keys)")
    p.add_argument("--seeds", default="1", metavar="N|S1,S2,...",
                   help="number of seeds (train.seed, +1, ...) or an explicit list (default: 1)")
    p.add_argument("--out", help="sweep directory (default: runs/sweep-<config name>)")
    add_config_options(p)
    for action in p._actions:  # parsed, and refused with a hint by run_sweep; not listed
        if set(action.option_strings) & HIDDEN:
            action.help = argparse.SUPPRESS
    p.set_defaults(func=run, accepts_overrides=True)


def parse_seeds(text: str) -> int | list[int]:
    from zhcls.errors import ConfigError

    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        return int(text)
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected a count such as 3 or a list such as "
                          "1,2,3") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zhcls.utils import check_out_not_file
    from zhcls.workflows.sweep import parse_grid, run_sweep

    out = args.out or f"runs/sweep-{Path(args.config).stem if args.config else 'defaults'}"
    check_out_not_file(out)
    grid = parse_grid(args.grid)
    result = run_sweep(args.config, args.data, grid, parse_seeds(args.seeds), out,
                       overrides_of(args))
    print((result / "summary.md").read_text(encoding="utf-8"))
    print(f"written: {result}/summary.csv, summary.md, runs.csv, "
          + ", ".join(f"sweep_{k}.png" for k in grid))
    return 0
