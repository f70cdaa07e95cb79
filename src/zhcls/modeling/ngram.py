"""The linear baseline: character 1-3-gram TF-IDF + a linear classifier (scikit-learn), with
calibrated probabilities so it can also be a KD teacher.

A baseline checkpoint directory::

    model.skops    the fitted sklearn Pipeline (skops: loading runs no pickled code)
    labels.json    {"labels": [name of id 0, ...]}
    meta.json      {"kind": "baseline", "task": ..., "classifier": ..., "metrics": ...}
    thresholds.json  multi-label only: {"task": "multi_label", "thresholds": {name: float},
                   "default": 0.5, "at_least_one": bool, "tuned_on": ...} (the same file as
                   a neural multi-label checkpoint's)
    README.md      model card

Single-label: one calibrated multi-class model, probabilities sum to 1 over the classes.
Multi-label (``task="multi_label"``): one-vs-rest, one calibrated binary model per class
(sklearn ``OneVsRestClassifier``); the scores are C independent probabilities (N, C) in
[0, 1], and the decision is ``zhcls.evaluation.metrics.apply_thresholds(scores,
ckpt.thresholds, ckpt.at_least_one)``.

``zhcls evaluate``, ``zhcls predict``, ``zhcls label --teacher`` and
``zhcls.Classifier.load`` accept it like a neural checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zhcls._version import __version__
from zhcls.errors import CheckpointError, ConfigError
from zhcls.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

KIND = "baseline"
MODEL_FILE = "model.skops"
CLASSIFIERS = ("svm", "logreg")
TASKS = ("single_label", "multi_label")
THRESHOLDS_FILE = "thresholds.json"
MIN_PER_CLASS = 3  # the calibrated SVM's 3-fold sigmoid calibration
# The only types a baseline model.skops may contain (anything else is refused on load).
TRUSTED_TYPES = [
    "sklearn.pipeline.Pipeline",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.multiclass._ConstantPredictor",
    "sklearn.preprocessing._label.LabelBinarizer",
    "numpy.float64", "numpy.float32", "numpy.int64", "numpy.dtype",
    "builtins.slice",
]


@dataclass
class BaselineCheckpoint:
    """A loaded baseline checkpoint directory."""

    path: Path
    pipeline: Any  # sklearn.pipeline.Pipeline
    labels: list[str]
    meta: dict
    thresholds: np.ndarray | None = None  # (C,) multi-label decision thresholds
    at_least_one: bool = False

    @property
    def task(self) -> str:
        return self.meta.get("task", "single_label")


def build_pipeline(classifier: str = "svm", *, c: float = 1.0, ngram_max: int = 3,
                   min_df: int = 1, seed: int = 0, task: str = "single_label"):
    """TF-IDF over character 1..``ngram_max``-grams (sublinear tf) + a linear classifier.

    ``svm``: LinearSVC fitted on all of train, calibrated by sigmoid scaling of
    3-fold cross-validated scores (CalibratedClassifierCV, ensemble=False);
    ``logreg``: multinomial LogisticRegression, probabilistic by itself.
    ``task="multi_label"`` wraps that model in a ``OneVsRestClassifier``: one binary model
    (calibrated SVM or logistic) per class, fitted on an (N, C) 0/1 matrix."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    if classifier not in CLASSIFIERS:
        raise ConfigError(f"baseline classifier: expected one of {', '.join(CLASSIFIERS)}, "
                          f"got {classifier!r}")
    if task not in TASKS:
        raise ConfigError(f"baseline task: expected one of {', '.join(TASKS)}, got {task!r}")
    if ngram_max < 1 or c <= 0 or min_df < 1:
        raise ConfigError(f"baseline: need ngram_max >= 1, C > 0, min_df >= 1; got "
                          f"ngram_max={ngram_max}, C={c}, min_df={min_df}")
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, ngram_max), min_df=min_df,
                                 sublinear_tf=True, dtype=np.float32)
    if classifier == "svm":
        model = CalibratedClassifierCV(LinearSVC(C=c, random_state=seed), method="sigmoid",
                                       cv=3, ensemble=False)
    else:
        model = LogisticRegression(C=10 * c, max_iter=1000, random_state=seed)
    if task == "multi_label":
        model = OneVsRestClassifier(model)
    return Pipeline([("tfidf", vectorizer), ("clf", model)])


def fit_pipeline(pipeline, texts: list[str], labels: list[int]):
    """Fit on texts and label ids; every class must occur at least 3 times (calibration)."""
    counts = np.bincount(np.asarray(labels))
    if len(set(labels)) < 2:
        raise CheckpointError("baseline: the training split holds a single class; need >= 2")
    if counts[counts > 0].min() < 3:
        raise CheckpointError(f"baseline: a class has {counts[counts > 0].min()} training "
                              "example(s); the calibrated SVM needs >= 3 per class (or use "
                              "--classifier logreg)")
    return pipeline.fit(texts, labels)


def fit_multilabel(pipeline, texts: list[str], gold: np.ndarray,
                   class_names: list[str] | None = None):
    """Fit a ``task="multi_label"`` pipeline on texts and their (N, C) 0/1 label matrix.
    The calibrated SVM needs every class to be present in at least 3 rows and absent from
    at least 3 (logistic: any class that occurs at all)."""
    gold = np.asarray(gold)
    if gold.ndim != 2 or len(gold) != len(texts):
        raise ValueError(f"fit_multilabel: expected gold of shape ({len(texts)}, C), got "
                         f"{gold.shape}")
    gold = (gold > 0).astype(np.int64)  # (N, C)
    names = class_names or [str(i) for i in range(gold.shape[1])]
    positives = gold.sum(axis=0)  # (C,)
    need = MIN_PER_CLASS if _is_svm(pipeline) else 1
    for c, (name, pos) in enumerate(zip(names, positives, strict=True)):
        if min(pos, len(gold) - pos) < need:
            raise CheckpointError(
                f"baseline: class {name!r} (id {c}) is in {pos} of {len(gold)} training rows; "
                f"the one-vs-rest {'calibrated SVM' if need > 1 else 'logistic model'} needs "
                f"it in >= {need} and absent from >= {need}"
                + (" (or use --classifier logreg)" if need > 1 else ""))
    return pipeline.fit(texts, gold)


def _is_svm(pipeline) -> bool:
    from sklearn.calibration import CalibratedClassifierCV

    clf = pipeline.named_steps["clf"]
    return isinstance(getattr(clf, "estimator", clf), CalibratedClassifierCV)


def predict_proba(pipeline, texts: list[str], num_labels: int) -> np.ndarray:
    """Probabilities (N, C) float32 in label-id order; classes absent from training get 0.
    Single-label: a distribution per row. Multi-label (one-vs-rest pipeline): C independent
    per-class probabilities per row, each in [0, 1]."""
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)
    if texts:
        probs[:, pipeline.classes_] = pipeline.predict_proba(texts)  # (N, C_seen)
    return probs


class BaselineBackend:
    """:class:`zhcls.inference.classifier.Backend` for a baseline: takes the texts themselves.

    :meth:`probs` gives the calibrated scores (N, C). :meth:`logits` gives them back as
    logits: single-label log-probabilities (softmax returns the probabilities), multi-label
    log-odds ``log p - log(1 - p)`` (sigmoid returns the per-class probabilities)."""

    name = "sklearn"
    takes_text = True

    def __init__(self, ckpt: BaselineCheckpoint):
        self.ckpt = ckpt
        self.task = ckpt.task

    def probs(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return predict_proba(self.ckpt.pipeline, texts, len(self.ckpt.labels))  # (N, C)

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        probs = self.probs(texts).astype(np.float64)  # (N, C)
        if self.task == "multi_label":
            p = np.clip(probs, 1e-7, 1 - 1e-7)
            return (np.log(p) - np.log1p(-p)).astype(np.float32)
        return np.log(np.clip(probs, 1e-30, 1.0)).astype(np.float32)


def save_baseline(path: str | Path, pipeline, labels: list[str], info: dict,
                  thresholds: dict | None = None) -> Path:
    """Write a baseline checkpoint directory (see module docstring); ``thresholds`` (from
    :func:`thresholds_record`) becomes ``thresholds.json``."""
    import skops.io as sio

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, path / MODEL_FILE)
    atomic_write_json(path / "labels.json", {"labels": list(labels)})
    meta = {"kind": KIND, "format": 1, "zhcls_version": __version__,
            "num_labels": len(labels), **info}
    atomic_write_json(path / "meta.json", meta)
    if thresholds is not None:
        atomic_write_json(path / THRESHOLDS_FILE, thresholds)
    atomic_write_text(path / "README.md", _model_card(meta, labels))
    return path


def thresholds_record(labels: list[str], thresholds: np.ndarray, *, default: float = 0.5,
                      at_least_one: bool = False, tuned_on: str | None = None) -> dict:
    """The ``thresholds.json`` object of a multi-label checkpoint (see module docstring)."""
    if len(thresholds) != len(labels):
        raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} classes")
    return {"task": "multi_label",
            "thresholds": {n: round(float(t), 6) for n, t in zip(labels, thresholds, strict=True)},
            "default": float(default), "at_least_one": bool(at_least_one), "tuned_on": tuned_on}


def read_kind(path: str | Path) -> str:
    """``meta.json``'s ``kind`` (a neural checkpoint has none: ``"neural"``)."""
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        return "neural"
    try:
        kind = json.loads(meta.read_text(encoding="utf-8")).get("kind", "neural")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{meta}: not a JSON object; the checkpoint is damaged") from None
    if kind not in ("neural", KIND):
        raise CheckpointError(f"{meta}: unknown checkpoint kind {kind!r}; expected 'baseline' "
                              "(from `zhcls baseline`) or none (a `zhcls train` checkpoint)")
    return kind


def is_baseline_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and read_kind(path) == KIND


def load_baseline(path: str | Path) -> BaselineCheckpoint:
    """Load a baseline checkpoint; refuses any type outside :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    path = Path(path)
    if not (path / MODEL_FILE).is_file() or not (path / "labels.json").is_file():
        raise CheckpointError(f"{path}: baseline checkpoint without {MODEL_FILE} or labels.json;"
                              " re-create it with `zhcls baseline --data DIR --out DIR`")
    untrusted = [t for t in sio.get_untrusted_types(file=path / MODEL_FILE)
                 if t not in TRUSTED_TYPES]
    if untrusted:
        raise CheckpointError(f"{path}/{MODEL_FILE} holds types a zhcls baseline never writes "
                              f"({', '.join(untrusted[:4])}); refusing to load it")
    pipeline = sio.load(path / MODEL_FILE, trusted=TRUSTED_TYPES)
    labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))["labels"]
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    ckpt = BaselineCheckpoint(path, pipeline, list(labels), meta)
    if ckpt.task == "multi_label":  # the rule every multi-label checkpoint is read by
        from zhcls.modeling.checkpoint import read_thresholds

        ckpt.thresholds, ckpt.at_least_one = read_thresholds(path, ckpt.labels, "multi_label")
    return ckpt


def _model_card(meta: dict, labels: list[str]) -> str:
    lines = [f"# zhcls baseline: character 1-{meta.get('ngram_max', 3)}-gram TF-IDF + "
             f"{meta.get('classifier', 'svm')}", "",
             "A linear baseline written by `zhcls baseline` (scikit-learn, saved with skops). "
             "Load it with `zhcls.Classifier.load(DIR)`, `zhcls predict DIR`, "
             "`zhcls evaluate DIR --data D` or use it as a teacher: `zhcls label --teacher DIR`.",
             "", f"- trained on: `{meta.get('train_file', '?')}` "
             f"({meta.get('train_examples', '?')} examples, {meta.get('fit_seconds', '?')} s)",
             f"- labels ({len(labels)}): {', '.join(labels)}",
             "- probabilities: " + ("sigmoid-calibrated (3-fold CalibratedClassifierCV)"
                                    if meta.get("classifier") == "svm" else "logistic"), ""]
    multi = meta.get("task") == "multi_label"
    if multi:
        lines[-1:] = [f"- task: multi-label, one-vs-rest; decision thresholds in "
                      f"{THRESHOLDS_FILE} (tuned on: {meta.get('thresholds_tuned_on')})", ""]
    for split, m in (meta.get("metrics") or {}).items():
        if multi:
            lines.append(f"- {split}: micro-F1 {m['micro_f1']:.4f}, macro-F1 {m['macro_f1']:.4f} "
                         f"at the checkpoint's thresholds; micro-F1 {m['micro_f1_at_default']:.4f}"
                         f", macro-F1 {m['macro_f1_at_default']:.4f} at "
                         f"{meta.get('threshold_default', 0.5)} ({m['num_examples']} examples)")
        else:
            lines.append(f"- {split}: accuracy {m['accuracy']:.4f}, macro-F1 "
                         f"{m['macro_f1']:.4f} ({m['num_examples']} examples)")
    return "\n".join(lines) + "\n"
