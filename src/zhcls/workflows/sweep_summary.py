"""The tables and plots of ``zhcls sweep`` (:mod:`zhcls.workflows.sweep`): ``runs.csv``,
``summary.csv``, ``summary.md`` and ``sweep_<key>.png``.

Columns are named for what they hold. A single-label run reports dev accuracy / macro-F1 / loss
and test accuracy / macro-F1; a multi-label run (its metrics.json says ``"task":
"multi_label"``) reports micro-F1, macro-F1, subset accuracy (the whole label set right; never
shown as "accuracy") and loss. The best setting is the one the runs' own checkpoint selection
prefers: the mean over seeds of the dev metric named by ``train.metric_for_best`` (higher is
better, lower for ``loss``), and summary.md names that metric. No best setting is named when
the runs selected on different metrics (``train.metric_for_best`` swept) or mix single- and
multi-label runs, whose numbers do not compare.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zhcls.workflows.sweep import SweepRun

logger = logging.getLogger(__name__)

SINGLE, MULTI = "single_label", "multi_label"
# (column, section of metrics.json, key in it, shown as, the tasks whose runs report it)
METRICS = (
    ("dev_accuracy", "dev", "accuracy", "dev accuracy", (SINGLE,)),
    ("dev_micro_f1", "dev", "micro_f1", "dev micro-F1", (MULTI,)),
    ("dev_macro_f1", "dev", "macro_f1", "dev macro-F1", (SINGLE, MULTI)),
    ("dev_subset_accuracy", "dev", "subset_accuracy", "dev subset accuracy", (MULTI,)),
    ("dev_loss", "dev", "loss", "dev loss", (SINGLE, MULTI)),
    ("test_accuracy", "test", "accuracy", "test accuracy", (SINGLE,)),
    ("test_micro_f1", "test", "micro_f1", "test micro-F1", (MULTI,)),
    ("test_macro_f1", "test", "macro_f1", "test macro-F1", (SINGLE, MULTI)),
    ("test_subset_accuracy", "test", "subset_accuracy", "test subset accuracy", (MULTI,)),
)
LABELS = {column: label for column, _, _, label, _ in METRICS}
# The panels of a sweep plot, those the table has (single-label: accuracy; multi: micro-F1).
PLOTTED = ("dev_accuracy", "dev_micro_f1", "dev_macro_f1", "test_accuracy", "test_micro_f1")
# train.metric_for_best -> the dev column it selects on, per task
SELECTED = {"loss": {SINGLE: "dev_loss", MULTI: "dev_loss"},
            "accuracy": {SINGLE: "dev_accuracy", MULTI: "dev_subset_accuracy"},
            "macro_f1": {SINGLE: "dev_macro_f1", MULTI: "dev_macro_f1"},
            "micro_f1": {MULTI: "dev_micro_f1"}}


def safe_name(text: str) -> str:
    """``text`` with ``/``, spaces and other characters paths cannot hold made ``_``."""
    return "".join("_" if c in '/\\ \t:*?"<>|' else c for c in text)


def run_task(metrics: dict[str, Any]) -> str:
    """``multi_label`` or ``single_label``: the task of a run, from its metrics.json."""
    split = metrics.get("dev") or metrics.get("test") or {}
    return MULTI if split.get("task") == MULTI or "subset_accuracy" in split else SINGLE


def collect(runs: list[SweepRun]) -> list[dict[str, Any]]:
    """One row per finished run: grid values, seed, the metrics of its task (a column of the
    other task is None) and the directory."""
    loaded = [(run, json.loads((run.run_dir / "metrics.json").read_text(encoding="utf-8")))
              for run in runs if run.finished]
    tasks = [run_task(metrics) for _, metrics in loaded]
    columns = [m for m in METRICS if set(m[4]) & set(tasks)]
    rows = []
    for (run, metrics), task in zip(loaded, tasks, strict=True):
        row: dict[str, Any] = {**run.values, "seed": run.seed}
        for column, section, key, _, reported_by in columns:
            value = (metrics.get(section) or {}).get(key) if task in reported_by else None
            row[column] = float(value) if value is not None else None
        row["run_dir"] = str(run.run_dir)
        rows.append(row)
    return rows


def aggregate(rows: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof 1; None with one seed) per combination, in grid order."""
    columns = [c for c, *_ in METRICS if rows and c in rows[0]]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    table = []
    for combo, members in groups.items():
        entry: dict[str, Any] = {**dict(zip(keys, combo, strict=True)), "seeds": len(members)}
        for column in columns:
            values = np.array([m[column] for m in members if m[column] is not None], dtype=float)
            entry[f"{column}_mean"] = float(values.mean()) if values.size else None
            entry[f"{column}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
        table.append(entry)
    return table


def selection_metric(runs: list[SweepRun]) -> str | None:
    """The ``train.metric_for_best`` every run selected its checkpoint on; None when they
    differ (or no run carries its config)."""
    chosen = {r.config.train.metric_for_best for r in runs if r.config is not None}
    return chosen.pop() if len(chosen) == 1 else None


def write_summary(runs: list[SweepRun], keys: list[str], out: Path,
                  not_in_grid: list[str] | None = None) -> list[Path]:
    """Write runs.csv, summary.csv, summary.md and one plot per swept key; return the paths.
    ``not_in_grid``: finished run directories in ``out`` that this grid does not hold (named
    in summary.md, not summarised)."""
    rows = collect(runs)
    table = aggregate(rows, keys)
    written = [_write_csv(out / "runs.csv", rows), _write_csv(out / "summary.csv", table)]
    md = format_summary_md(table, keys, len(runs), len(rows), selection_metric(runs),
                           not_in_grid)
    (out / "summary.md").write_text(md, encoding="utf-8")
    written.append(out / "summary.md")
    if table:
        written += [plot_sweep(table, keys, key, out / f"sweep_{safe_name(key)}.png")
                    for key in keys]
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
                      finished: int, metric_for_best: str | None = "loss",
                      not_in_grid: list[str] | None = None) -> str:
    """Markdown table: one row per combination, ``mean ± std`` over seeds per metric, then
    the best setting by the mean dev ``metric_for_best`` (the runs' checkpoint selection)."""
    columns = [c for c, *_ in METRICS if table and f"{c}_mean" in table[0]]
    head = [*keys, "seeds", *(LABELS[c] for c in columns)]
    lines = ["# Sweep summary", "",
             f"{finished} of {planned} runs finished; mean ± sample std over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in table:
        cells = [str(entry[k]) for k in keys] + [str(entry["seeds"])]
        cells += [_mean_std(entry[f"{c}_mean"], entry[f"{c}_std"]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    best = best_line(table, keys, metric_for_best)
    lines += ["", best] if best else []
    if not_in_grid:
        shown = ", ".join(not_in_grid[:10]) + (f" and {len(not_in_grid) - 10} more"
                                               if len(not_in_grid) > 10 else "")
        lines += ["", f"{len(not_in_grid)} other finished runs in this directory are not part "
                  f"of this grid ({shown}); this summary covers only this grid's runs. Rerun "
                  "with a grid and seeds that include them to summarise them too (finished "
                  "runs are not trained again)."]
    return "\n".join(lines) + "\n"


def best_line(table: list[dict[str, Any]], keys: list[str],
              metric_for_best: str | None) -> str | None:
    """``Best by mean dev micro-F1 (train.metric_for_best micro_f1, ...): k=v (m ± s).``, a
    line saying why no best is named, or None for an empty table."""
    if not table:
        return None
    if metric_for_best is None:
        return ("No best setting named: train.metric_for_best differs between runs, so they "
                "selected their checkpoints on different dev metrics.")
    tasks = {t for t, c in ((SINGLE, "dev_accuracy_mean"), (MULTI, "dev_subset_accuracy_mean"))
             if c in table[0]}
    if len(tasks) != 1:
        return ("No best setting named: the sweep mixes single-label and multi-label runs, "
                "whose metrics do not compare.")
    column = SELECTED.get(metric_for_best, {}).get(tasks.pop())
    scored = [e for e in table if column and e.get(f"{column}_mean") is not None]
    if not scored:
        return None
    lower = metric_for_best == "loss"
    pick = min if lower else max
    best = pick(scored, key=lambda e: e[f"{column}_mean"])
    return (f"Best by mean {LABELS[column]} (train.metric_for_best {metric_for_best}, the dev "
            f"metric the runs selected their checkpoints on; "
            f"{'lower' if lower else 'higher'} is better): "
            + ", ".join(f"{k}={best[k]}" for k in keys)
            + f" ({_mean_std(best[f'{column}_mean'], best[f'{column}_std'])}).")


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def plot_sweep(table: list[dict[str, Any]], keys: list[str], key: str, path: Path) -> Path:
    """Each metric of :data:`PLOTTED` the table has against the values of ``key``: mean with
    std error bars, one line per combination of the other keys."""
    from zhcls.report.fonts import cjk_font_context

    with cjk_font_context():
        return _plot_sweep(table, keys, key, path)


def _plot_sweep(table: list[dict[str, Any]], keys: list[str], key: str, path: Path) -> Path:
    from zhcls.report.plots import new_figure, save_figure

    metrics = [c for c in PLOTTED if any(e.get(f"{c}_mean") is not None for e in table)]
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
        ax.set_title(LABELS[column])
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
