"""``zhcls report RUN_DIR [RUN_DIR ...]``: one HTML page per training run, or a comparison.

For one run, :func:`build_report` writes into ``RUN_DIR/report/``:

* ``curves.png`` — every train loss term, dev loss / accuracy and the learning rate from
  ``RUN_DIR/history.json``, epoch boundaries marked;
* ``confusion_matrix.png``, ``confusion_matrix_normalized.png``, ``per_class.png``,
  ``metrics.json``, ``report.txt``, ``wrong_samples.jsonl`` (gold, predicted, probabilities,
  teacher's probabilities when the split has them) and ``predictions.npz`` — the best
  checkpoint (``RUN_DIR/best``) evaluated on the dev split of the run's dataset;
* ``representation_map.png`` — t-SNE of the dev representations coloured by class, with the
  cosine silhouette score;
* ``confused_pairs.json`` / ``.md`` — the most confused class pairs with examples;
* multi-label runs (``data.task: multi_label``) instead: ``per_class.png``,
  ``label_cooccurrence.png`` (gold and predicted label sets), the per-class threshold table
  on the page, ``label_errors.json`` / ``.md`` (missed and extra labels per class, the most
  confident wrong label sets) and a map of the texts with exactly one gold label;
* ``report.json`` (what was computed, for reuse) and ``report.html`` (all of it on a page).

For several runs, each run's own report is built (or reused when it is up to date) and a
comparison page with side-by-side representation maps goes to ``out`` or
``RUN_A/report_vs_<B name>/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zhcls.errors import CheckpointError, ZhclsError
from zhcls.report.errors import ConfusedPair
from zhcls.report.split_identity import check_same_split, split_digest
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)

REPORT_FORMAT = 1
TOP_PAIRS = 10
EXAMPLES_PER_PAIR = 5
METHODS = ("tsne", "pca")
IMAGES = {
    "curves": "curves.png",
    "confusion": "confusion_matrix.png",
    "confusion_normalized": "confusion_matrix_normalized.png",
    "per_class": "per_class.png",
    "map": "representation_map.png",
    "cooccurrence": "label_cooccurrence.png",
}


@dataclass
class RunReport:
    """What a run's report computed; ``representations``/``labels`` are the plotted sample."""

    run_dir: Path
    report_dir: Path
    name: str
    split: str
    split_path: str
    class_names: list[str]
    config: dict
    split_metrics: dict
    run_metrics: dict | None
    silhouette: float | None
    n_points: int
    max_points: int
    method: str
    images: dict[str, str]
    pairs: list[ConfusedPair]
    has_history: bool
    representations: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=int))
    baseline_metrics: dict | None = None  # a ``zhcls baseline`` on the same split
    task: str = "single_label"
    label_errors: dict | None = None  # multi-label: :func:`zhcls.report.errors.write_label_errors`
    split_digest: str = ""  # SHA-256 of the split file as evaluated ("" when unknown)

    @property
    def html(self) -> Path:
        return self.report_dir / "report.html"

    @property
    def objective(self) -> str:
        from zhcls.config import objective_label

        o = self.config.get("objective", {})
        return objective_label(o.get("name", "?"), o.get("terms"))


def build_report(run_dirs: list[str | Path], out: str | Path | None = None, *,
                 data_dir: str | Path | None = None, split: str = "dev", max_points: int = 2000,
                 method: str = "tsne", device: str = "auto",
                 baseline: str | Path | None = None) -> Path:
    """Write the report of one run (``RUN/report/``) or compare several; returns report.html.

    ``data_dir`` overrides the dataset recorded in each run's config (``data.dir``);
    ``max_points`` caps the dev examples drawn (and scored) in the representation maps;
    ``method`` is their projection, ``"tsne"`` or the much faster linear ``"pca"``;
    ``baseline``: a ``zhcls baseline`` checkpoint whose numbers go beside the model's
    (default: ``RUN/baseline`` when ``train.baseline`` wrote one).
    """
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ZhclsError("report: give at least one run directory (the --out of zhcls train)")
    if max_points < 10:
        raise ZhclsError(f"report: max_points must be >= 10; got {max_points}")
    if method not in METHODS:
        raise ZhclsError(f"report: method must be one of {', '.join(METHODS)}; got {method!r}")
    if len(runs) == 1:
        target = Path(out) if out is not None else runs[0] / "report"
        return build_run_report(runs[0], target, data_dir=data_dir, split=split,
                                max_points=max_points, method=method, device=device,
                                baseline=baseline).html
    names = run_names(runs)
    reports = [build_run_report(run, run / "report", data_dir=data_dir, split=split,
                                max_points=max_points, method=method, device=device,
                                reuse=baseline is None, name=name, baseline=baseline)
               for run, name in zip(runs, names, strict=True)]
    target = Path(out) if out is not None else runs[0] / ("report_vs_" + "+".join(
        _safe(r.name) for r in runs[1:]))
    return build_comparison(reports, target, method=method)


def run_names(runs: list[Path]) -> list[str]:
    """Directory names, or ``parent/name`` where two runs share a name (e.g. sweep seeds)."""
    names = [r.resolve().name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{r.resolve().parent.name}/{r.resolve().name}" for r in runs]


def build_run_report(run_dir: str | Path, report_dir: str | Path, *,
                     data_dir: str | Path | None = None, split: str = "dev",
                     max_points: int = 2000, method: str = "tsne", device: str = "auto",
                     reuse: bool = False, name: str | None = None,
                     baseline: str | Path | None = None) -> RunReport:
    """Evaluate ``RUN/best`` on ``split`` and write every picture and the page into
    ``report_dir``. With ``reuse``, an up-to-date earlier report there is loaded instead."""
    from zhcls.modeling.checkpoint import check_checkpoint_dir, read_config, read_labels

    run, report_dir = Path(run_dir), Path(report_dir)
    if not run.is_dir():
        raise CheckpointError(f"{run}: run directory not found; expected the --out directory "
                              "of `zhcls train` (with best/, history.json, metrics.json)")
    if not (run / "best").is_dir():
        raise CheckpointError(f"{run}: no best/ checkpoint; expected the --out directory of a "
                              "finished `zhcls train` run (it writes RUN/best at the end)")
    best = check_checkpoint_dir(run / "best")
    config, class_names = read_config(best), read_labels(best)
    split_path = _split_file(run, config, data_dir, split)
    name = name or run.resolve().name
    stamp, digest = _checkpoint_stamp(best), split_digest(split_path)
    if reuse:
        cached = _load_cached(run, report_dir, split_path, digest, max_points, method, stamp,
                              name)
        if cached is not None:
            logger.info("reusing the up-to-date report in %s", report_dir)
            return cached
    report_dir.mkdir(parents=True, exist_ok=True)
    split_metrics = _evaluate(best, split_path, class_names, report_dir, device)
    task = split_metrics.get("task", "single_label")
    has_history = _plot_curves(run, report_dir, config.train.ema_decay)
    reps, labels = _sample(report_dir / "predictions.npz", max_points)
    title = f"{name} ({config.objective.label}): {split} representations, n={len(labels)}"
    if task == "multi_label":
        title += " (texts with one gold label)"
    score = _plot_map(reps, labels, class_names, report_dir / IMAGES["map"], title, method)
    pairs, label_errors = _write_errors(task, split_metrics, class_names, report_dir)
    images = {k: f for k, f in IMAGES.items() if (report_dir / f).is_file()}
    report = RunReport(run, report_dir, name, split, str(split_path), class_names,
                       config.to_dict(), split_metrics, _read_json(run / "metrics.json"), score,
                       len(labels), max_points, method, images, pairs, has_history, reps, labels,
                       _baseline_metrics(run, baseline, split_path, split, report_dir),
                       task, label_errors, digest)
    atomic_write_json(report_dir / "report.json", _summary(report, stamp))
    from zhcls.report.html import render_run_page

    report.html.write_text(render_run_page(report), encoding="utf-8")
    logger.info("report of %s written to %s (silhouette of the sentence representations by "
                "gold class, %d %s examples: %s)", run, report.html, len(labels), split,
                "–" if score is None else f"{score:.3f}")
    return report


def _plot_map(reps: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
              title: str, method: str) -> float | None:
    """The representation map; None (and no map) when the split cannot be scored, e.g.
    when it holds a single class."""
    from zhcls.report.embedding import plot_embedding_map

    try:
        return plot_embedding_map(reps, labels, class_names, path, title=title, method=method)
    except ValueError as exc:
        logger.warning("no representation map: %s", exc)
        path.unlink(missing_ok=True)
        return None


def build_comparison(reports: list[RunReport], out: str | Path, *, method: str = "tsne") -> Path:
    """Side-by-side representation maps (each with its silhouette score), metrics, config
    differences and every run's pictures on one page in ``out``; returns its report.html."""
    from zhcls.modeling.checkpoint import check_labels_match
    from zhcls.report.embedding import plot_embedding_maps
    from zhcls.report.html import render_comparison_page

    out = Path(out)
    first = reports[0]
    unscored = [str(r.run_dir) for r in reports if r.silhouette is None]
    if unscored:
        raise ZhclsError(f"cannot compare representation maps: no map for {unscored} (see "
                         "the warning above); the split needs at least 2 classes")
    for other in reports[1:]:
        check_labels_match(first.class_names, other.class_names,
                           f"{other.run_dir} (compared with {first.run_dir})")
        if other.task != first.task:
            raise ZhclsError(f"cannot compare {other.run_dir} ({other.task}) with "
                             f"{first.run_dir} ({first.task}); compare runs of one task")
    check_same_split(reports)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(f"{r.name} ({r.objective})", r.representations, r.labels) for r in reports]
    scores = plot_embedding_maps(runs, first.class_names, out / "representation_maps.png",
                                 method=method)
    for report, score in zip(reports, scores, strict=True):
        if abs(report.silhouette - score) > 1e-6:  # same points, so the same score
            logger.warning("%s: silhouette %.4f differs from its own report's %.4f",
                           report.name, score, report.silhouette)
    page = out / "report.html"
    page.write_text(render_comparison_page(reports, scores, out), encoding="utf-8")
    atomic_write_json(out / "comparison.json", {
        "runs": [str(r.run_dir) for r in reports], "split": first.split,
        "split_paths": {r.name: r.split_path for r in reports},
        "split_sha256": first.split_digest or None,
        "silhouette": {r.name: s for r, s in zip(reports, scores, strict=True)},
        # the baseline is evaluated on each run's own split, beside it on its run page
        "baseline": {r.name: r.baseline_metrics and {k: r.baseline_metrics.get(k) for k in (
            "accuracy", "macro_f1", "micro_f1", "subset_accuracy") if k in r.baseline_metrics}
            for r in reports} if any(r.baseline_metrics for r in reports) else None,
    })
    if any(r.baseline_metrics for r in reports):
        logger.info("baseline beside each run on its own page (%s) and in comparison.json",
                    ", ".join(str(r.run_dir / "report" / "report.html") for r in reports))
    logger.info("comparison of %d runs written to %s (silhouette of the sentence "
                "representations by gold class: %s)", len(reports), page,
                ", ".join(f"{r.name} {s:.3f}" for r, s in zip(reports, scores, strict=True)))
    return page


def _split_file(run: Path, config, data_dir: str | Path | None, split: str) -> Path:
    from zhcls.data.formats import find_split_file

    chosen = data_dir if data_dir is not None else config.data.dir
    if chosen is None:
        raise ZhclsError(f"{run}/best/zhcls.yaml records no data.dir; pass the dataset with "
                         "--data DIR")
    if not Path(chosen).is_dir():
        origin = "--data" if data_dir is not None else f"data.dir in {run}/best/zhcls.yaml"
        raise ZhclsError(f"dataset directory {chosen} ({origin}) not found; pass the dataset "
                         "the run was trained on with --data DIR")
    return find_split_file(chosen, split).absolute()


def _evaluate(best: Path, split_path: Path, class_names: list[str], out: Path,
              device: str) -> dict:
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.devices import resolve_device
    from zhcls.evaluation.evaluate import checkpoint_decision, evaluate_model
    from zhcls.modeling.checkpoint import check_labels_match, load_checkpoint
    from zhcls.report.plots import plot_evaluation

    ckpt = load_checkpoint(best, resolve_device(device))
    enc = ckpt.config.data.encoding
    check_labels_match(class_names, read_class_names(split_path.parent / "class.txt", enc),
                       str(split_path.parent / "class.txt"))
    kind = "logits" if ckpt.config.objective.teacher_input == "logits" else "probs"
    decision = checkpoint_decision(best, ckpt.config, class_names)
    task = {"task": "multi_label", "label_separator": ckpt.config.data.label_separator} \
        if decision is not None else {}  # single-label: read exactly as before
    data = read_split(split_path, class_names, teacher_kind=kind, teacher_policy="skip",
                      encoding=enc, on_bad_line=ckpt.config.data.on_bad_line,
                      label_format=ckpt.config.data.label_format, **task)
    thresholds, at_least_one = decision if decision is not None else (None, None)
    metrics = evaluate_model(ckpt.model, ckpt.tokenizer, data, class_names, out,
                             config=ckpt.config, batch_size=ckpt.config.train.eval_batch_size,
                             thresholds=thresholds, at_least_one=at_least_one)
    plot_evaluation(metrics, class_names, Path(out))
    return metrics


def _baseline_metrics(run: Path, baseline: str | Path | None, split_path: Path, split: str,
                      report_dir: Path) -> dict | None:
    """Evaluate the baseline (given, or ``RUN/baseline``) on the report's split into
    ``report_dir/baseline``; None without one."""
    from zhcls.evaluation.evaluate import evaluate_baseline
    from zhcls.modeling.ngram import is_baseline_dir

    chosen = Path(baseline) if baseline is not None else run / "baseline"
    if baseline is None and not chosen.is_dir():
        return None
    if not is_baseline_dir(chosen):
        raise CheckpointError(f"{chosen}: not a `zhcls baseline` checkpoint (meta.json kind "
                              "'baseline'); create one with `zhcls baseline --data DIR --out DIR`")
    return evaluate_baseline(chosen, split_path.parent, split=split,
                             out_dir=report_dir / "baseline")


def _plot_curves(run: Path, out: Path, ema_decay: float = 0.0) -> bool:
    from zhcls.report.plots import plot_training_curves

    history = _read_json(run / "history.json")
    if history is None:
        logger.warning("%s/history.json not found; the report has no training curves", run)
        (out / IMAGES["curves"]).unlink(missing_ok=True)
        return False
    log = history.get("log_history", [])
    plot_training_curves(log, out / IMAGES["curves"], epoch_steps=epoch_boundaries(history),
                         dev_of=f"weight average, train.ema_decay {ema_decay:g}" if ema_decay
                         else None)
    return True


def epoch_boundaries(history: dict) -> list[int] | None:
    """``history["epoch_steps"]`` without the end of training: the Trainer reports an epoch
    end when ``max_steps`` stops it mid-epoch, which is no boundary (None: infer from the
    ``epoch`` field of the log)."""
    steps = history.get("epoch_steps")
    if steps is None:
        return None
    last = max((int(e["step"]) for e in history.get("log_history", []) if "step" in e),
               default=0)
    return [int(s) for s in steps if int(s) < last]


def _sample(predictions: Path, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic subsample of (representations (M, R), gold (M,)) drawn in maps.
    Multi-label gold (N, C): the texts with exactly one gold label, coloured by it."""
    from zhcls.report.embedding import subsample_indices

    with np.load(predictions) as npz:
        reps, gold = npz["representations"], npz["gold"].astype(np.int64)
    if gold.ndim == 2:
        single = gold.sum(axis=1) == 1  # (N,)
        reps, gold = reps[single], gold[single].argmax(axis=1)
    idx = subsample_indices(len(gold), max_points, seed=0)
    return reps[idx], gold[idx]


def _write_pairs(metrics: dict, class_names: list[str], out: Path) -> list[ConfusedPair]:
    from zhcls.report.errors import (
        attach_examples,
        confused_pairs,
        read_wrong_samples,
        write_confused_pairs,
    )

    pairs = confused_pairs(np.asarray(metrics["confusion_matrix"]), class_names, top=TOP_PAIRS)
    attach_examples(pairs, read_wrong_samples(out / "wrong_samples.jsonl"), EXAMPLES_PER_PAIR)
    write_confused_pairs(pairs, out)
    return pairs


def _write_errors(task: str, metrics: dict, class_names: list[str], out: Path
                  ) -> tuple[list[ConfusedPair], dict | None]:
    """Single-label: the confused pairs; multi-label: the missed / extra label errors."""
    if task != "multi_label":
        return _write_pairs(metrics, class_names, out), None
    from zhcls.report.errors import read_wrong_samples, write_label_errors

    wrong = read_wrong_samples(out / "wrong_samples.jsonl")
    return [], write_label_errors(wrong, class_names, out)


def _checkpoint_stamp(best: Path) -> list[int]:
    stat = (best / "model.safetensors").stat()
    return [stat.st_mtime_ns, stat.st_size]


def _summary(report: RunReport, stamp: list[int]) -> dict:
    task = {"task": report.task} if report.task != "single_label" else {}
    return {**task, "format": REPORT_FORMAT, "run_dir": str(report.run_dir.resolve()),
            "split": report.split, "split_path": report.split_path,
            "split_digest": report.split_digest,
            "max_points": report.max_points, "method": report.method, "checkpoint_stamp": stamp,
            "silhouette": report.silhouette, "n_points": report.n_points,
            "objective": report.objective, "class_names": report.class_names,
            "images": report.images, "has_history": report.has_history}


def _load_cached(run: Path, report_dir: Path, split_path: Path, digest: str, max_points: int,
                 method: str, stamp: list[int], name: str) -> RunReport | None:
    from zhcls.modeling.checkpoint import read_config

    summary = _read_json(report_dir / "report.json")
    wanted = {"format": REPORT_FORMAT, "split_path": str(split_path), "split_digest": digest,
              "max_points": max_points, "method": method, "checkpoint_stamp": stamp}
    if summary is None or any(summary.get(k) != v for k, v in wanted.items()):
        return None
    task = summary.get("task", "single_label")
    errors_file = "label_errors.json" if task == "multi_label" else "confused_pairs.json"
    needed = ["metrics.json", "predictions.npz", errors_file, "report.html",
              *summary["images"].values()]
    if not all((report_dir / f).is_file() for f in needed):
        return None
    reps, labels = _sample(report_dir / "predictions.npz", max_points)
    pair_keys = ("a", "b", "a_as_b", "b_as_a", "support_a", "support_b", "examples")
    label_errors = _read_json(report_dir / errors_file) if task == "multi_label" else None
    pairs = [] if task == "multi_label" else [ConfusedPair(**{k: p[k] for k in pair_keys})
                                              for p in _read_json(report_dir / errors_file)]
    return RunReport(run, report_dir, name, summary["split"], summary["split_path"],
                     summary["class_names"], read_config(run / "best").to_dict(),
                     _read_json(report_dir / "metrics.json"), _read_json(run / "metrics.json"),
                     summary["silhouette"], int(summary["n_points"]), max_points, method,
                     summary["images"], pairs, bool(summary["has_history"]), reps, labels,
                     _read_json(report_dir / "baseline" / "metrics.json"), task, label_errors,
                     digest)


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ZhclsError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); the file is damaged, "
                         "delete it and re-run the command that writes it") from None



def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in name)
