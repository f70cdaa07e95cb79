"""One call site each for the multi-label data functions of issue 13 (ML_CONTRACT.md):
:func:`detect_task`, :func:`read_multilabel_split` and :func:`label_matrix`.

They call the real ``zhcls.data.formats`` functions (``detect_task``, ``read_split(...,
task="multi_label")``, ``SplitData.label_matrix``) when those exist and otherwise fall back
to the small stand-ins below (JSONL ``{"text": ..., "labels": [names or ids]}`` only).

LEAD: at merge, once ``formats`` has them, the stand-ins are dead code: replace the callers
(``zhcls.workflows.baseline_multilabel``, ``zhcls.label.writer``) by the formats
functions and delete this module.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

import numpy as np

from zhcls.data import formats
from zhcls.data.formats import Example, SplitData, split_lines
from zhcls.errors import DataError

logger = logging.getLogger(__name__)


def detect_task(path: str | Path, class_names: list[str], *, label_separator: str = ",",
                encoding: str = "utf-8") -> str:
    """``"multi_label"`` when the file holds multi-label rows, else ``"single_label"``."""
    real = getattr(formats, "detect_task", None)
    if real is not None:
        return real(path, class_names, label_separator=label_separator, encoding=encoding)
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        return "single_label"
    for raw in split_lines(path.read_text(encoding=encoding)):
        try:
            obj = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("labels"), list):
            return "multi_label"
    return "single_label"


def read_multilabel_split(path: str | Path, class_names: list[str], *,
                          encoding: str = "utf-8", ignore_teacher: bool = True) -> SplitData:
    """A multi-label split: ``Example.label`` a sorted list of distinct class ids."""
    if "task" in inspect.signature(formats.read_split).parameters:
        return formats.read_split(path, class_names, task="multi_label", encoding=encoding,
                                  teacher_policy="skip", ignore_teacher=ignore_teacher)
    return _read_jsonl(Path(path), class_names, encoding)


def label_matrix(split: SplitData, num_classes: int) -> np.ndarray:
    """(N, C) float32 multi-hot of a multi-label split."""
    if hasattr(split, "label_matrix"):
        return np.asarray(split.label_matrix(num_classes), dtype=np.float32)
    out = np.zeros((len(split.examples), num_classes), dtype=np.float32)  # (N, C)
    for i, example in enumerate(split.examples):
        out[i, list(example.label)] = 1.0
    return out


def _read_jsonl(path: Path, class_names: list[str], encoding: str) -> SplitData:
    """Stand-in reader (see the module docstring); an empty ``labels`` list is allowed."""
    if path.suffix.lower() != ".jsonl":
        raise DataError('multi-label data must be JSONL rows {"text": ..., "labels": [...]} '
                        "in this build; convert the file", path)
    if not path.is_file():
        raise DataError("file not found", path)
    index = {n: i for i, n in enumerate(class_names)}
    split = SplitData(path=path, examples=[])
    for line, raw in enumerate(split_lines(path.read_text(encoding=encoding)), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path, line) from None
        text = obj.get("text") if isinstance(obj, dict) else None
        labels = obj.get("labels") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip() or not isinstance(labels, list):
            raise DataError('expected {"text": non-empty string, "labels": [class names]}',
                            path, line)
        ids = [index.get(x) if isinstance(x, str) else x for x in labels]
        bad = [x for x, i in zip(labels, ids, strict=True)
               if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(index)]
        if bad or len(set(ids)) != len(ids):
            what = f"unknown label {bad[0]!r}" if bad else "a label given twice"
            raise DataError(f"{what}; expected distinct names of class.txt "
                            f"({'、'.join(class_names)}) or ids 0..{len(index) - 1}", path, line)
        split.examples.append(Example(text=text.strip(), label=sorted(ids), line=line))
    if not split.examples:
        raise DataError("no usable examples in file", path)
    split.task = "multi_label"  # type: ignore[attr-defined]
    return split
