"""``zhcls sweep``: train every combination of a grid of config values, for several seeds.

``run_sweep("configs/tiny.yaml", DATA, {"objective.alpha": [0.1, 0.5], "objective.temperature":
[1, 4]}, seeds=2, out_dir=OUT)`` trains each combination once per seed into
``OUT/objective.alpha=0.1,objective.temperature=1/seed-1/`` (a normal ``zhcls train`` run
directory), then writes (:mod:`zhcls.workflows.sweep_summary`)

* ``runs.csv`` — one row per run (values, seed, dev and test metrics, directory);
* ``summary.csv`` / ``summary.md`` — mean ± std over seeds per combination of dev accuracy /
  macro-F1 / loss and test accuracy / macro-F1 (multi-label runs: micro-F1, macro-F1, subset
  accuracy and loss), and the best setting by the dev metric the runs selected their
  checkpoints on (``train.metric_for_best``; lower is better for ``loss``);
* ``sweep_<key>.png`` — each metric against each swept value, error bars over seeds, one
  line per value of the other keys.

A run is finished when its ``metrics.json`` exists (training writes it last), so a sweep that
was interrupted picks up where it stopped: finished runs are skipped and a run directory
without ``metrics.json`` (a crash) is resumed from its last complete checkpoint
(``train.resume``; the run-directory rules refuse it when its settings changed). The sweep
controls its runs' directories itself, so ``train.output_dir`` (use ``--out``),
``train.resume`` (it resumes by itself) and ``train.overwrite`` (it never deletes a run) are
refused as overrides, in the config file (resume / overwrite) and in the grid, as are grid keys
that do not change what a run learns (``train.threads``, ...: every value would train the same
model). Grid values are compared as the config reads them: ``train.lr=1e-3,0.001`` is one value
given twice. The config file is
read once, when the sweep is planned, so an edit of it while the sweep runs does not reach later
runs; a restart whose config file, overrides, data or encoder files would train a finished run
differently is refused (each run directory records its fingerprint), so a summary does not mix
two setups.

The summary covers the runs of this command's grid and seeds only: finished runs of another
grid in the same ``OUT`` (an earlier, larger sweep re-run with a subset of its values) are kept
on disk, not summarised, and named: a warning before training says how many there are, and
summary.md and sweep.json (``finished_not_in_grid``) list them. They are left out rather than
merged because nothing checks them against this command's settings, and a table must not mix
two setups; rerunning with the full grid summarises them all without training them again.

Every training runs in this
process through :func:`zhcls.training.train.train`; each one seeds itself and builds its own
model, Trainer and data, so nothing carries over from one run to the next (a re-run of a run
reproduces its metrics; see ``tests/test_sweep.py``).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhcls.config import Config, load_config
from zhcls.errors import ConfigError
from zhcls.utils import atomic_write_json
from zhcls.workflows.sweep_summary import (  # noqa: F401  (re-exported: the sweep's API)
    METRICS,
    PLOTTED,
    aggregate,
    collect,
    format_summary_md,
    plot_sweep,
    safe_name,
    write_summary,
)

logger = logging.getLogger(__name__)

# Objective keys and the presets whose loss uses them (the warning's hint; whether a run's
# objective reads a key is ObjectiveConfig.reads, which also knows explicit terms).
USED_BY = {
    "objective.alpha": ("kd+scl",), "objective.beta": ("kd", "kd+scl"),
    "objective.temperature": ("kd", "kd+scl"), "objective.teacher_input": ("kd", "kd+scl"),
    "objective.lam": ("ce+scl",), "objective.scl_temperature": ("ce+scl", "kd+scl"),
    "objective.positives": ("ce+scl", "kd+scl"),
}
# Keys a sweep sets for its runs itself: refused in the grid, with how to get what was meant.
# Those of RUN_CONTROL are refused as overrides too (--train.seed sets the first seed).
RESERVED = {"train.seed": "use --seeds",
            "train.output_dir": "every run gets its own directory OUT/KEY=V,.../seed-S/; "
                                "use --out DIR to choose OUT",
            "train.resume": "a sweep resumes by itself: finished runs are kept, unfinished "
                            "ones continue",
            "train.overwrite": "a sweep never deletes a run; to train one again, delete its "
                               "directory OUT/KEY=V,.../seed-S/ and rerun the sweep",
            "data.dir": "a sweep trains on one dataset (--data)"}
RUN_CONTROL = {
    "train.output_dir": "expected the sweep directory from --out (every run trains in "
                        "OUT/KEY=V,.../seed-S/), found train.output_dir among the overrides; "
                        "use --out DIR instead",
    "train.resume": "expected no train.resume (found it among the overrides): a sweep resumes "
                    "by itself: finished runs are kept, unfinished ones continue; drop the flag",
    "train.overwrite": "expected no train.overwrite (found it among the overrides): a sweep "
                       "never deletes a run; to rerun one from scratch, delete its directory "
                       "OUT/KEY=V,.../seed-S/ and restart the sweep, or use a new --out",
}


@dataclass
class SweepRun:
    """One training of the sweep: grid values (as text), seed, directory, overrides, and the
    config they gave when the sweep was planned (what the run trains with: an edit of the YAML
    file while the sweep runs does not reach later runs)."""

    values: dict[str, str]
    seed: int
    run_dir: Path
    overrides: list[str]
    config: Config | None = field(default=None, compare=False, repr=False)

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    def label(self) -> str:
        return f"{combo_name(self.values)} seed {self.seed}"


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["objective.alpha=0.1,0.5", "objective.temperature=1,2"]`` → ``{key: [values]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().removeprefix("--")
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key or any(not v for v in parts):
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,... such as "
                              "objective.alpha=0.1,0.3,0.5")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
        grid[key] = parts
    return grid


def value_text(value: Any) -> str:
    """How a grid value is written in directory names and passed as an override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def combo_name(values: dict[str, str]) -> str:
    """``objective.alpha=0.1,objective.temperature=1`` (``/`` and spaces made safe)."""
    return ",".join(f"{k}={safe_name(v)}" for k, v in values.items())


def plan_sweep(config_path: str | Path | None, grid: dict[str, list], seeds: int | list[int],
               out_dir: str | Path, overrides: list[str] | None = None) -> list[SweepRun]:
    """Every (combination, seed) run, each config built and validated now, so a wrong key
    or value fails before any training."""
    overrides = list(overrides or [])
    base = _load_base(config_path, overrides)
    texts = _check_grid(config_path, overrides, grid)
    seed_list = _seeds(seeds, base.train.seed)
    runs, objectives = [], []
    for combo in itertools.product(*texts.values()):
        values = dict(zip(texts, combo, strict=True))
        grid_args = [a for k, v in values.items() for a in (f"--{k}", v)]
        for seed in seed_list:
            args = overrides + grid_args + ["--train.seed", str(seed)]
            try:
                config = load_config(config_path, args)  # validates it
            except ConfigError as exc:
                raise ConfigError(f"--grid combination {combo_name(values)}: {exc}") from None
            objectives.append(config.objective)
            runs.append(SweepRun(values, seed, Path(out_dir) / combo_name(values) / f"seed-{seed}",
                                 args, config))
    _warn_unused(texts, objectives)
    return runs


def _warn_unused(texts: dict[str, list[str]], objectives: list) -> None:
    """Warn about swept objective keys that no run's loss reads (see ObjectiveConfig.reads)."""
    labels = sorted({o.label for o in objectives})
    for key in texts:
        if key in USED_BY and not any(o.reads(key.split(".", 1)[1]) for o in objectives):
            logger.warning("sweep: %s has no effect with objective %s (only %s use it); every "
                           "value will train the same model", key, " / ".join(labels),
                           " / ".join(USED_BY[key]))


def _load_base(config_path: str | Path | None, overrides: list[str]) -> Config:
    """The config file with the overrides, after refusing what the sweep would otherwise
    ignore (it sets each run's directory, resumes and never deletes by itself): those
    overrides (also ``zhcls train``'s ``--overwrite``), and resume / overwrite in the file."""
    items = list(overrides)
    while items:
        flag = items.pop(0)
        key, eq, value = flag.removeprefix("--").partition("=")
        key = {"overwrite": "train.overwrite", "resume": "train.resume"}.get(key, key)
        if not eq and items and "." in flag:  # a value follows, as apply_overrides reads it
            value = items.pop(0)
        if key in RUN_CONTROL:
            shown = f"{flag.partition('=')[0]} {value}".strip()
            raise ConfigError(f"sweep: {shown}: {RUN_CONTROL[key]}")
    base = load_config(config_path, overrides)
    for key in ("resume", "overwrite"):
        if getattr(base.train, key):
            raise ConfigError(f"sweep: train.{key} true in {config_path}: expected false (a "
                              f"sweep sets it for its runs: {RESERVED[f'train.{key}']}); "
                              "remove it from the file")
    return base


def _check_grid(config_path: str | Path | None, overrides: list[str],
                grid: dict[str, list]) -> dict[str, list[str]]:
    from zhcls.training.rundir import NEUTRAL_KEYS

    if not grid:
        raise ConfigError("sweep: the grid is empty; give at least one --grid KEY=V1,V2,...")
    texts = {}
    for key, values in grid.items():
        if key in RESERVED:
            raise ConfigError(f"--grid {key}: cannot be swept ({RESERVED[key]})")
        if key in NEUTRAL_KEYS:
            raise ConfigError(f"--grid {key}: cannot be swept (it does not change what a run "
                              "learns, so every value would train the same model); set one "
                              f"value for all runs with --{key} VALUE")
        shown = [value_text(v) for v in values]
        if not shown:
            raise ConfigError(f"--grid {key}: no values given")
        texts[key] = _distinct_values(config_path, overrides, key, shown)
    return texts


def _distinct_values(config_path: str | Path | None, overrides: list[str], key: str,
                     shown: list[str]) -> list[str]:
    """Each value of ``key`` validated, and compared as the config reads it (``1e-3`` and
    ``0.001`` are one learning rate)."""
    section, _, name = key.partition(".")
    typed: list[tuple[str, Any]] = []
    for text in shown:
        try:
            config = load_config(config_path, [*overrides, f"--{key}", text])
        except ConfigError as exc:
            raise ConfigError(f"--grid {key}={text}: {exc}") from None
        value = getattr(getattr(config, section), name)
        same = next((t for t, v in typed if v == value), None)
        if same is not None:
            raise ConfigError(f"--grid {key}: repeated values: {same} and {text} are the same "
                              f"value ({value_text(value)}) in {shown}; give each value once")
        typed.append((text, value))
    return shown


def _seeds(seeds: int | list[int], base_seed: int) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"sweep: --seeds must be >= 1; got {seeds}")
        return [base_seed + i for i in range(seeds)]
    seed_list = [int(s) for s in seeds]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"sweep: seeds must be a non-empty list of distinct ints; got {seeds}")
    return seed_list


def run_sweep(config_path: str | Path | None, data_dir: str | Path | None,
              grid: dict[str, list], seeds: int | list[int], out_dir: str | Path,
              overrides: list[str] | None = None) -> Path:
    """Train every run of the grid that is not finished yet, then write the summary table and
    plots into ``out_dir`` (returned). See the module docstring for the layout."""
    from zhcls.workflows.pipeline import train_and_report as train

    out = Path(out_dir)
    runs = plan_sweep(config_path, grid, seeds, out, overrides)
    base = load_config(config_path, overrides)
    data = data_dir or base.data.dir
    if data is None or not Path(data).is_dir():
        raise ConfigError(f"sweep: dataset directory {data} not found; pass --data DIR (a "
                          "folder with train/dev/test and class.txt)" if data else
                          "sweep: no dataset given; pass --data DIR")
    todo = [r for r in runs if not r.finished]
    n_seeds = len({r.seed for r in runs})
    logger.info("sweep: %d runs (%d combinations x %d seeds), %d finished, %d to train, in %s",
                len(runs), len(runs) // n_seeds, n_seeds, len(runs) - len(todo), len(todo), out)
    _refuse_changed_runs(runs, data)
    elsewhere = finished_not_in_grid(runs, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", {
        "config": str(config_path) if config_path else None, "data": str(data_dir),
        "grid": {k: [value_text(v) for v in vs] for k, vs in grid.items()},
        "seeds": sorted({r.seed for r in runs}), "overrides": list(overrides or []),
        "finished_not_in_grid": elsewhere})
    for k, run in enumerate(todo, start=1):
        assert run.config is not None  # plan_sweep sets it
        config = run.config
        if run.run_dir.is_dir() and any(run.run_dir.iterdir()):
            logger.warning("sweep: %s has no metrics.json (an interrupted run); resuming it",
                           run.run_dir)
            config.train.resume = True
        logger.info("sweep: training %d/%d: %s", k, len(todo), run.label())
        try:
            train(config, data_dir, run.run_dir)
        except BaseException:
            logger.error("sweep: run %s failed; it is resumed from its last checkpoint "
                         "when the sweep is restarted", run.run_dir)
            raise
    write_summary(runs, list(grid), out, elsewhere)
    return out


def finished_not_in_grid(runs: list[SweepRun], out: Path) -> list[str]:
    """The finished run directories in ``out`` (``KEY=V,.../seed-S``, relative) that are not
    runs of this grid, e.g. of an earlier sweep with more values or seeds; logged as a
    warning, since the summary leaves them out (see the module docstring)."""
    planned = {r.run_dir.resolve() for r in runs}
    found = sorted(p.parent for p in out.glob("*/seed-*/metrics.json")
                   if p.parent.resolve() not in planned)
    names = [p.relative_to(out).as_posix() for p in found]
    if names:
        logger.warning("sweep: %d finished runs in %s are not part of this grid (%s%s); they "
                       "are kept, but the summary covers only this grid. To summarise them "
                       "too, rerun with a grid and seeds that include them (finished runs are "
                       "not trained again)", len(names), out, ", ".join(names[:5]),
                       f" and {len(names) - 5} more" if len(names) > 5 else "")
    return names


def _refuse_changed_runs(runs: list[SweepRun], data: str | Path) -> None:
    """A restarted sweep must train its remaining runs with the settings its finished runs had,
    or one table would mix two setups: each finished run's recorded fingerprint (its settings,
    data files and encoder files; :mod:`zhcls.training.rundir`) must be what its planned config
    gives now."""
    from zhcls.training.rundir import fingerprint_differences, read_record, run_fingerprint
    from zhcls.training.train import resolve_run_config

    for run in runs:
        record = read_record(run.run_dir) if run.finished else None
        if record is None:  # unfinished (resume checks it), or written without a record
            continue
        config, data_dir, _ = resolve_run_config(run.config, data, run.run_dir)  # as train does
        diffs = fingerprint_differences(record.get("fingerprint") or {},
                                        run_fingerprint(config, data_dir))
        if diffs:
            raise ConfigError(
                f"sweep: the finished run {run.run_dir} was trained with other settings than "
                "this command gives (config file, overrides, --data or encoder files): "
                + "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8
                                          else "")
                + ". Restore them to continue this sweep, or use a new --out for a new one")
