"""``zhcls baseline --data DIR --out OUT``: fit the linear baseline
(:mod:`zhcls.modeling.ngram`) on the train split, evaluate it on dev and test like any
checkpoint (``OUT/eval_dev``, ``OUT/eval_test``) and save it as a checkpoint directory.

Multi-label data (``task="multi_label"``, or detected from train): one-vs-rest calibrated
models; the decision thresholds are ``threshold`` for every class (``thresholds="fixed"``),
tuned per class on out-of-fold predictions of train (``"cv"``, the default: dev stays an
honest estimate) or tuned on dev (``"dev"``: dev scores are then optimistic). Dev and test
are evaluated at the stored thresholds and at ``threshold``; see
:mod:`zhcls.workflows.baseline_multilabel`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass
class BaselineResult:
    """Where the baseline went, how long fitting took, and its dev/test metrics (None for a
    split the dataset lacks)."""

    checkpoint: Path
    fit_seconds: float
    dev_metrics: dict | None
    test_metrics: dict | None
    task: str = "single_label"


def train_baseline(data_dir: str | Path, out_dir: str | Path, *, classifier: str = "svm",
                   c: float = 1.0, ngram_max: int = 3, min_df: int = 1, seed: int = 0,
                   encoding: str = "utf-8", task: str = "auto", thresholds: str = "cv",
                   threshold: float = 0.5, at_least_one: bool = False,
                   cv_folds: int = 3) -> BaselineResult:
    """Fit, evaluate on dev and test (when present) and save; returns the result.
    ``task``: auto (detected from train) | single_label | multi_label; ``thresholds``,
    ``threshold``, ``at_least_one`` and ``cv_folds`` apply to multi-label only."""
    from zhcls.data.formats import find_split_file, read_class_names
    from zhcls.errors import DataError
    from zhcls.workflows import baseline_multilabel as ml

    data_dir, out = Path(data_dir), Path(out_dir)
    check_out(out)  # before any work
    if not data_dir.is_dir():
        raise DataError("dataset directory not found; pass --data DIR with class.txt and "
                        "train/dev/test files", data_dir)
    class_names = read_class_names(data_dir / "class.txt", encoding)
    train_file = find_split_file(data_dir, "train")
    task = ml.resolve_task(task, train_file, class_names, encoding)
    model = dict(classifier=classifier, c=c, ngram_max=ngram_max, min_df=min_df, seed=seed)
    if task == "multi_label":
        res = ml.train_multilabel(data_dir, out, class_names, train_file, model,
                                  ml.Decision(thresholds, threshold, at_least_one, cv_folds),
                                  encoding=encoding)
        return BaselineResult(out, res.fit_seconds, res.metrics.get("dev"),
                              res.metrics.get("test"), task)
    return _train_single_label(data_dir, out, class_names, train_file, model, encoding)


def check_out(out: Path) -> None:
    """``out`` must be new, empty, or an earlier ``zhcls baseline`` output (``model.skops``
    beside a ``meta.json`` of kind ``baseline``), which is replaced; anything else (a trained
    checkpoint, a run, a dataset) is refused with a one-line ConfigError."""
    from zhcls.modeling.ngram import KIND, MODEL_FILE
    from zhcls.utils import check_out_not_file, describe_dir, refuse_foreign_out

    check_out_not_file(out)
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
        own = (out / MODEL_FILE).is_file() and meta.get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        own = False
    if not own:
        found = describe_dir(out) or f"other files ({', '.join(entries[:3])})"
        refuse_foreign_out(out, found, "an earlier `zhcls baseline` output (model.skops with "
                           "a meta.json of kind 'baseline')")


def _train_single_label(data_dir: Path, out: Path, class_names: list[str], train_file: Path,
                        model: dict, encoding: str) -> BaselineResult:
    from zhcls.data.formats import find_split_file, read_split
    from zhcls.errors import DataError
    from zhcls.evaluation.evaluate import write_evaluation
    from zhcls.modeling.ngram import build_pipeline, fit_pipeline, predict_proba, save_baseline

    classifier, c, ngram_max = model["classifier"], model["c"], model["ngram_max"]
    min_df, seed = model["min_df"], model["seed"]
    train = read_split(train_file, class_names, teacher_policy="skip", encoding=encoding)
    pipeline = build_pipeline(classifier, c=c, ngram_max=ngram_max, min_df=min_df, seed=seed)
    start = time.perf_counter()
    fit_pipeline(pipeline, train.texts, train.labels)
    seconds = round(time.perf_counter() - start, 2)
    logger.info("baseline (%s) fitted on %d examples of %s in %.2f s", classifier,
                len(train.examples), train_file, seconds)
    metrics: dict[str, dict] = {}
    for split in ("dev", "test"):
        try:
            data = read_split(find_split_file(data_dir, split), class_names,
                              teacher_policy="skip", encoding=encoding)
        except DataError:
            logger.info("no %s split in %s; not evaluated", split, data_dir)
            continue
        probs = predict_proba(pipeline, data.texts, len(class_names))  # (N, C)
        metrics[split] = write_evaluation(probs, probs, data, class_names, out / f"eval_{split}")
        logger.info("baseline %s accuracy %.4f, macro-F1 %.4f (%d examples)", split,
                    metrics[split]["accuracy"], metrics[split]["macro_f1"],
                    metrics[split]["num_examples"])
    info = {"task": "single_label", "classifier": classifier, "C": c, "ngram_max": ngram_max,
            "min_df": min_df, "seed": seed, "train_file": str(train_file), "train_examples": len(train.examples),
            "fit_seconds": seconds,
            "metrics": {k: {f: v[f] for f in ("accuracy", "macro_f1", "num_examples")}
                        for k, v in metrics.items()}}
    save_baseline(out, pipeline, class_names, info)
    return BaselineResult(out, seconds, metrics.get("dev"), metrics.get("test"))
