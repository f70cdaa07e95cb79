"""The linear baseline: character 1-3-gram TF-IDF + a linear classifier (scikit-learn), with
calibrated probabilities so it can also be a KD teacher.

A baseline checkpoint directory::

    model.skops    the fitted sklearn Pipeline (skops: loading runs no pickled code)
    labels.json    {"labels": [name of id 0, ...]}
    meta.json      {"kind": "baseline", "classifier": ..., "ngram_range": ..., "metrics": ...}
    README.md      model card

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


def build_pipeline(classifier: str = "svm", *, c: float = 1.0, ngram_max: int = 3,
                   min_df: int = 1, seed: int = 0):
    """TF-IDF over character 1..``ngram_max``-grams (sublinear tf) + a linear classifier.

    ``svm``: LinearSVC fitted on all of train, calibrated by sigmoid scaling of
    3-fold cross-validated scores (CalibratedClassifierCV, ensemble=False);
    ``logreg``: multinomial LogisticRegression, probabilistic by itself."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    if classifier not in CLASSIFIERS:
        raise ConfigError(f"baseline classifier: expected one of {', '.join(CLASSIFIERS)}, "
                          f"got {classifier!r}")
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


def predict_proba(pipeline, texts: list[str], num_labels: int) -> np.ndarray:
    """Probabilities (N, C) float32 in label-id order; classes absent from training get 0."""
    probs = np.zeros((len(texts), num_labels), dtype=np.float32)
    if texts:
        probs[:, pipeline.classes_] = pipeline.predict_proba(texts)  # (N, C_seen)
    return probs


class BaselineBackend:
    """:class:`zhcls.inference.classifier.Backend` for a baseline: takes the texts themselves
    and returns log-probabilities as logits (softmax gives back the calibrated probabilities)."""

    name = "sklearn"
    takes_text = True

    def __init__(self, ckpt: BaselineCheckpoint):
        self.ckpt = ckpt

    def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
        probs = predict_proba(self.ckpt.pipeline, texts, len(self.ckpt.labels))  # (N, C)
        return np.log(np.clip(probs, 1e-30, 1.0)).astype(np.float32)


def save_baseline(path: str | Path, pipeline, labels: list[str], info: dict) -> Path:
    """Write a baseline checkpoint directory (see module docstring)."""
    import skops.io as sio

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, path / MODEL_FILE)
    atomic_write_json(path / "labels.json", {"labels": list(labels)})
    meta = {"kind": KIND, "format": 1, "zhcls_version": __version__,
            "num_labels": len(labels), **info}
    atomic_write_json(path / "meta.json", meta)
    atomic_write_text(path / "README.md", _model_card(meta, labels))
    return path


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
    return BaselineCheckpoint(path, pipeline, list(labels), meta)


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
    for split, m in (meta.get("metrics") or {}).items():
        lines.append(f"- {split}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
                     f"({m['num_examples']} examples)")
    return "\n".join(lines) + "\n"
