"""``zhcls sweep``: train every combination of a grid of config values, for several seeds.

``run_sweep("configs/tiny.yaml", DATA, {"objective.alpha": [0.1, 0.5], "objective.temperature":
[1, 4]}, seeds=2, out_dir=OUT)`` trains each combination once per seed into
``OUT/objective.alpha=0.1,objective.temperature=1/seed-1/`` (a normal ``zhcls train`` run
directory), then writes

* ``runs.csv`` — one row per run (values, seed, dev and test metrics, directory);
* ``summary.csv`` / ``summary.md`` — mean ± std over seeds of dev accuracy / macro-F1 / loss
  and test accuracy / macro-F1 per combination;
* ``sweep_<key>.png`` — each metric against each swept value, error bars over seeds, one
  line per value of the other keys.

A run is finished when its ``metrics.json`` exists (training writes it last), so a sweep that
was interrupted picks up where it stopped: finished runs are skipped and a run directory
without ``metrics.json`` (a crash) is resumed from its last complete checkpoint
(``train.resume``; the run-directory rules refuse it when its settings changed). The config file is
read once, when the sweep is planned, so an edit of it while the sweep runs does not reach later
runs; a restart whose config file, overrides, data or encoder files would train a finished run
differently is refused (each run directory records its fingerprint), so a summary does not mix
two setups. Every training runs in this
process through :func:`zhcls.training.train.train`; each one seeds itself and builds its own
model, Trainer and data, so nothing carries over from one run to the next (a re-run of a run
reproduces its metrics; see ``tests/test_sweep.py``).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zhcls.config import Config, load_config
from zhcls.errors import ConfigError
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)

# (column, source section of metrics.json, key in it, shown as)
METRICS = (
    ("dev_accuracy", "dev", "accuracy", "dev accuracy"),
    ("dev_macro_f1", "dev", "macro_f1", "dev macro-F1"),
    ("dev_loss", "dev", "loss", "dev loss"),
    ("test_accuracy", "test", "accuracy", "test accuracy"),
    ("test_macro_f1", "test", "macro_f1", "test macro-F1"),
)
PLOTTED = ("dev_accuracy", "dev_macro_f1", "test_accuracy")
# Objective keys and the presets whose loss uses them (the warning's hint; whether a run's
# objective reads a key is ObjectiveConfig.reads, which also knows explicit terms).
USED_BY = {
    "objective.alpha": ("kd+scl",), "objective.beta": ("kd", "kd+scl"),
    "objective.temperature": ("kd", "kd+scl"), "objective.teacher_input": ("kd", "kd+scl"),
    "objective.lam": ("ce+scl",), "objective.scl_temperature": ("ce+scl", "kd+scl"),
    "objective.positives": ("ce+scl", "kd+scl"),
}
RESERVED = {"train.seed": "use --seeds", "train.output_dir": "every run gets its own directory",
            "data.dir": "a sweep trains on one dataset (--data)"}


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
    return ",".join(f"{k}={_safe(v)}" for k, v in values.items())


def _safe(text: str) -> str:
    return "".join("_" if c in '/\\ \t:*?"<>|' else c for c in text)


def plan_sweep(config_path: str | Path | None, grid: dict[str, list], seeds: int | list[int],
               out_dir: str | Path, overrides: list[str] | None = None) -> list[SweepRun]:
    """Every (combination, seed) run, each config built and validated now, so a wrong key
    or value fails before any training."""
    overrides = list(overrides or [])
    base = load_config(config_path, overrides)
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


def _check_grid(config_path: str | Path | None, overrides: list[str],
                grid: dict[str, list]) -> dict[str, list[str]]:
    if not grid:
        raise ConfigError("sweep: the grid is empty; give at least one --grid KEY=V1,V2,...")
    texts = {}
    for key, values in grid.items():
        if key in RESERVED:
            raise ConfigError(f"--grid {key}: cannot be swept ({RESERVED[key]})")
        shown = [value_text(v) for v in values]
        if not shown:
            raise ConfigError(f"--grid {key}: no values given")
        if len(set(shown)) != len(shown):
            raise ConfigError(f"--grid {key}: repeated values in {shown}")
        for text in shown:
            try:
                load_config(config_path, [*overrides, f"--{key}", text])
            except ConfigError as exc:
                raise ConfigError(f"--grid {key}={text}: {exc}") from None
        texts[key] = shown
    return texts


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
    base = load_config(config_path, overrides)
    runs = plan_sweep(config_path, grid, seeds, out, overrides)
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
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", {
        "config": str(config_path) if config_path else None, "data": str(data_dir),
        "grid": {k: [value_text(v) for v in vs] for k, vs in grid.items()},
        "seeds": sorted({r.seed for r in runs}), "overrides": list(overrides or [])})
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
    write_summary(runs, list(grid), out)
    return out


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


def collect(runs: list[SweepRun]) -> list[dict[str, Any]]:
    """One row per finished run: grid values, seed, the metrics and the directory."""
    rows = []
    for run in runs:
        if not run.finished:
            continue
        metrics = json.loads((run.run_dir / "metrics.json").read_text(encoding="utf-8"))
        row: dict[str, Any] = {**run.values, "seed": run.seed}
        for column, section, key, _ in METRICS:
            value = (metrics.get(section) or {}).get(key)
            row[column] = float(value) if value is not None else None
        row["run_dir"] = str(run.run_dir)
        rows.append(row)
    return rows


def aggregate(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof 1; None with one seed) per combination, in grid order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    table = []
    for combo, members in groups.items():
        entry: dict[str, Any] = {**dict(zip(keys, combo, strict=True)), "seeds": len(members)}
        for column, *_ in METRICS:
            values = np.array([m[column] for m in members if m[column] is not None], dtype=float)
            entry[f"{column}_mean"] = float(values.mean()) if values.size else None
            entry[f"{column}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
        table.append(entry)
    return table


def write_summary(runs: list[SweepRun], keys: list[str], out: Path) -> list[Path]:
    """Write runs.csv, summary.csv, summary.md and one plot per swept key; return the paths."""
    rows = collect(runs)
    table = aggregate(rows, keys)
    written = [_write_csv(out / "runs.csv", rows), _write_csv(out / "summary.csv", table)]
    (out / "summary.md").write_text(format_summary_md(table, keys, len(runs), len(rows)),
                                    encoding="utf-8")
    written.append(out / "summary.md")
    if table:
        written += [plot_sweep(table, keys, key, out / f"sweep_{_safe(key)}.png") for key in keys]
    logger.info("sweep summary: %s", ", ".join(str(p) for p in written))
    return written


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{k: _cell(v) for k, v in r.items()} for r in rows])
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return round(value, 6) if isinstance(value, float) else value


def format_summary_md(table: list[dict[str, Any]], keys: list[str], planned: int,
                      finished: int) -> str:
    """Markdown table: one row per combination, ``mean ± std`` over seeds per metric."""
    head = [*keys, "seeds", *(label for *_, label in METRICS)]
    lines = ["# Sweep summary", "",
             f"{finished} of {planned} runs finished; mean ± sample std over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table:
        cells = [str(entry[k]) for k in keys] + [str(entry["seeds"])]
        cells += [_mean_std(entry[f"{c}_mean"], entry[f"{c}_std"]) for c, *_ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    scored = [e for e in table if e["dev_accuracy_mean"] is not None]
    if scored:
        best = max(scored, key=lambda e: e["dev_accuracy_mean"])
        lines += ["", "Best by mean dev accuracy: " + ", ".join(f"{k}={best[k]}" for k in keys)
                  + f" ({_mean_std(best['dev_accuracy_mean'], best['dev_accuracy_std'])})."]
    return "\n".join(lines) + "\n"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def plot_sweep(table: list[dict[str, Any]], keys: list[str], key: str, path: Path) -> Path:
    """Each metric of :data:`PLOTTED` against the values of ``key``: mean with std error bars,
    one line per combination of the other keys."""
    from zhcls.report.fonts import cjk_font_context

    with cjk_font_context():
        return _plot_sweep(table, keys, key, path)


def _plot_sweep(table: list[dict[str, Any]], keys: list[str], key: str, path: Path) -> Path:
    from zhcls.report.plots import new_figure, save_figure

    metrics = [c for c in PLOTTED if any(e[f"{c}_mean"] is not None for e in table)]
    x_values = list(dict.fromkeys(e[key] for e in table))
    numeric = all(_is_number(v) for v in x_values)
    if numeric:
        x_values.sort(key=float)
    others = [k for k in keys if k != key]
    fig = new_figure(4.6 * len(metrics) + 1.0, 4.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    lines = list(dict.fromkeys(tuple(e[k] for k in others) for e in table))
    span = (float(x_values[-1]) - float(x_values[0]) if numeric else len(x_values) - 1) or 1.0
    for ax, column in zip(axes, metrics, strict=True):
        for i, rest in enumerate(lines):
            dodge = (i - (len(lines) - 1) / 2) * 0.01 * span  # keep error bars apart
            points = [e for e in table if tuple(e[k] for k in others) == rest
                      and e[f"{column}_mean"] is not None]
            points.sort(key=lambda e: x_values.index(e[key]))
            xs = [(float(e[key]) if numeric else x_values.index(e[key])) + dodge for e in points]
            ys = [e[f"{column}_mean"] for e in points]
            err = [e[f"{column}_std"] or 0.0 for e in points]
            label = ", ".join(f"{k}={v}" for k, v in zip(others, rest, strict=True)) or "mean"
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, linewidth=1.5, label=label)
        if not numeric:
            ax.set_xticks(range(len(x_values)), x_values)
        ax.set_xlabel(key)
        ax.set_title(dict((c, lbl) for c, *_, lbl in METRICS)[column])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (mean ± std over seeds)")
    handles, labels = axes[0].get_legend_handles_labels()
    if len(handles) > 1:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 5),
                   fontsize=8, frameon=False)
    fig.suptitle(f"Sweep over {key}")
    return save_figure(fig, path)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
