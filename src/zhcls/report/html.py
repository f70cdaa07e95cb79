"""HTML pages of run reports, rendered with the Jinja templates in
``zhcls/resources/templates/`` (autoescaped; images by relative path, so a report folder can
be copied with the run directory)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from zhcls.report.run_report import RunReport

METRIC_KEYS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("loss", "loss"))
MULTILABEL_METRIC_KEYS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"),
                          ("samples_f1", "samples-F1"), ("subset_accuracy", "subset accuracy"),
                          ("hamming_loss", "Hamming loss"), ("loss", "loss (BCE)"))


def environment():
    """The Jinja environment of the report templates (autoescape on, undefined is an error)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("zhcls", "resources/templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * float(v):.2f}%"
    return env


def href(target: str | Path, base: str | Path) -> str:
    """URL of ``target`` relative to the folder ``base`` (percent-encoded, ``/`` separated)."""
    rel = os.path.relpath(Path(target).resolve(), Path(base).resolve())
    return quote(Path(rel).as_posix())


def render_run_page(report: RunReport) -> str:
    """The single-run page: config, metrics, curves, confusion, per class, map, errors."""
    from zhcls._version import __version__

    base = report.report_dir
    test_dir = report.run_dir / "eval_test"
    multi = report.task == "multi_label"
    first = ("cooccurrence", "label_cooccurrence.png") if multi else \
        ("confusion_normalized", "confusion_matrix_normalized.png")
    test_images = {k: href(test_dir / f, base) for k, f in
                   (first, ("per_class", "per_class.png")) if (test_dir / f).is_file()}
    wrong = base / "wrong_samples.jsonl"
    return environment().get_template("report_run.html").render(
        r=report, version=__version__, generated=_now(),
        images={k: href(base / f, base) for k, f in report.images.items()},
        metric_rows=metric_rows(report), per_class=report.split_metrics["per_class"],
        config_yaml=_yaml(report.config), test_images=test_images,
        wrong_count=_count_lines(wrong), teacher_shown=_has_teacher(report),
        baseline_per_class=(report.baseline_metrics or {}).get("per_class"),
        multi_label=multi, metric_keys=MULTILABEL_METRIC_KEYS if multi else METRIC_KEYS,
        thresholds=(report.split_metrics.get("thresholds") or {}) if multi else {},
        at_least_one=bool(report.split_metrics.get("at_least_one")),
        label_errors=report.label_errors,
    )


def render_comparison_page(reports: list[RunReport], scores: list[float], out: Path) -> str:
    """The comparison page: metrics side by side, config differences, both maps with their
    silhouette scores, and each run's pictures."""
    from zhcls._version import __version__

    runs = []
    for r, score in zip(reports, scores, strict=True):
        runs.append({"r": r, "silhouette": score, "page": href(r.html, out),
                     "images": {k: href(r.report_dir / f, out) for k, f in r.images.items()},
                     "rows": metric_rows(r)})
    classes = reports[0].class_names
    f1 = [[r.split_metrics["per_class"][c]["f1"] for r in reports] for c in classes]
    return environment().get_template("report_compare.html").render(
        runs=runs, version=__version__, generated=_now(), split=reports[0].split,
        map_image=href(out / "representation_maps.png", out),
        differences=config_differences([r.config for r in reports]),
        headline=_headline(reports, scores), classes=classes, f1=f1,
        multi_label=reports[0].task == "multi_label",
    )


def metric_rows(report: RunReport) -> list[dict[str, Any]]:
    """Rows of the metrics table: the report's split, dev at the end of training, test
    (multi-label: the keys of ``MULTILABEL_METRIC_KEYS``)."""
    keys = MULTILABEL_METRIC_KEYS if report.task == "multi_label" else METRIC_KEYS
    rows = [{"set": f"{report.split} (this report)", "examples":
             report.split_metrics.get("num_examples"),
             **{k: report.split_metrics.get(k) for k, _ in keys}}]
    if report.baseline_metrics:
        rows.append({"set": f"{report.split}: linear baseline", "examples":
                     report.baseline_metrics.get("num_examples"),
                     **{k: report.baseline_metrics.get(k) for k, _ in keys}})
    run = report.run_metrics or {}
    for key, label in (("dev", "dev (end of training)"), ("test", "test")):
        values = run.get(key)
        if values:
            rows.append({"set": label, "examples": values.get("num_examples"),
                         **{k: values.get(k) for k, _ in keys}})
    return rows


def _headline(reports: list[RunReport], scores: list[float]) -> list[dict[str, Any]]:
    out = []
    for r, score in zip(reports, scores, strict=True):
        run = r.run_metrics or {}
        test = run.get("test") or {}
        out.append({"name": r.name, "objective": r.objective, "silhouette": score,
                    "split_accuracy": r.split_metrics.get("accuracy"),
                    "split_micro_f1": r.split_metrics.get("micro_f1"),
                    "split_macro_f1": r.split_metrics.get("macro_f1"),
                    "split_loss": r.split_metrics.get("loss"),
                    "test_accuracy": test.get("accuracy"), "test_macro_f1": test.get("macro_f1"),
                    "steps": run.get("global_step")})
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` → ``{"train.lr": 1e-3}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(configs: list[dict]) -> list[tuple[str, list[Any]]]:
    """Config keys whose values differ between runs, with each run's value."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats))
    return [(k, [f.get(k) for f in flats]) for k in keys
            if len({repr(f.get(k)) for f in flats}) > 1]


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False)


def _now() -> str:
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _count_lines(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _has_teacher(report: RunReport) -> bool:
    return any(ex.get("teacher") for p in report.pairs for ex in p.examples)
