"""``zhcls evaluate EXPORT --data DIR``: evaluate an ONNX export directory as a checkpoint.

The export is run through the :class:`~zhcls.inference.classifier.Classifier` that
``zhcls predict`` and ``zhcls serve`` use (onnxruntime, the checkpoint's long-text rule and,
for multi-label, its thresholds), and its scores go through the same
:func:`~zhcls.evaluation.evaluate.write_evaluation` as a PyTorch checkpoint's, so the two
give the same files and the same numbers up to onnxruntime's float differences. An export
has no sentence representations, so its probabilities stand in for them in the maps (as for a
baseline checkpoint). This lives in ``inference``, not ``evaluation``, because it needs the
Classifier (a higher layer).
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def evaluate_export(export_dir: str | Path, data_dir: str | Path, *, split: str = "test",
                    out_dir: str | Path | None = None, batch_size: int | None = None,
                    device: str = "auto", quantized: bool = False) -> dict:
    """Metrics of the ONNX export ``export_dir`` on ``data_dir``'s ``split``; writes them into
    ``out_dir`` (default ``EXPORT/eval_SPLIT``) and returns them. ``quantized``: the int8 model
    of an export made with ``--quantize int8``."""
    from zhcls.data.formats import resolve_data_dir
    from zhcls.evaluation.evaluate import (
        eval_out_dir,
        read_eval_split,
        warn_if_tuned_on,
        write_evaluation,
    )
    from zhcls.inference.classifier import Classifier
    from zhcls.modeling.checkpoint import read_config

    data_dir = resolve_data_dir(data_dir)
    warn_if_tuned_on(export_dir, split)  # an export keeps the checkpoint's thresholds.json
    config = read_config(Path(export_dir))
    clf = Classifier.load(export_dir, device, quantized=quantized,
                          batch_size=batch_size or config.train.eval_batch_size)
    data = read_eval_split(config, clf.labels, data_dir, split, clf.task == "multi_label")
    class_names = clf.labels
    probs = clf.predict_proba(data.texts)  # (N, C): distributions or per-class scores
    out = eval_out_dir(export_dir, split, data, out_dir)
    logger.info("evaluated ONNX export %s (%s) on %s", export_dir, clf.source, data.path)
    if clf.task == "multi_label":
        return write_evaluation(probs, probs, data, class_names, out,
                                thresholds=clf.thresholds, at_least_one=clf.at_least_one)
    return write_evaluation(probs, probs, data, class_names, out)
