"""Error analysis: the most confused class pairs, with example sentences.

:func:`confused_pairs` ranks unordered class pairs ``{a, b}`` by how many examples of one
were predicted as the other (both directions added), from a confusion matrix
``cm[gold, predicted]``. :func:`attach_examples` fills in the most confident mistakes for
each direction from ``wrong_samples.jsonl`` (as written by :func:`zhcls.evaluation.evaluate.evaluate_model`),
and :func:`write_confused_pairs` writes ``confused_pairs.json`` and ``confused_pairs.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from zhcls.errors import DataError
from zhcls.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class ConfusedPair:
    """Classes ``a`` and ``b``: ``a_as_b`` gold-``a`` examples predicted as ``b`` and back.

    ``examples`` are wrong-sample rows (text, gold, predicted, probabilities, teacher, line),
    most confident mistakes first, both directions mixed.
    """

    a: str
    b: str
    a_as_b: int
    b_as_a: int
    support_a: int
    support_b: int
    examples: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a

    @property
    def rate(self) -> float:
        """Share of the two classes' examples that went to the other class of the pair."""
        support = self.support_a + self.support_b
        return self.total / support if support else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "rate": round(self.rate, 4)}


def confused_pairs(cm: np.ndarray, class_names: list[str], top: int = 10) -> list[ConfusedPair]:
    """The ``top`` unordered pairs with the most confusions (ties: by rate, then class order);
    pairs never confused are left out."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix must be ({len(class_names)}, {len(class_names)}) "
                         f"for {len(class_names)} class names; got shape {cm.shape}")
    support = cm.sum(axis=1)
    pairs = []
    n = len(class_names)
    for i in range(n):
        for j in range(i + 1, n):
            if cm[i, j] + cm[j, i] == 0:
                continue
            pairs.append(ConfusedPair(class_names[i], class_names[j], int(cm[i, j]), int(cm[j, i]),
                                      int(support[i]), int(support[j])))
    pairs.sort(key=lambda p: (-p.total, -p.rate))  # stable: class order breaks remaining ties
    return pairs[:top]


def read_wrong_samples(path: str | Path) -> list[dict]:
    """Rows of a ``wrong_samples.jsonl`` file (one JSON object per line)."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg}); expected one object per line as "
                                "written by `zhcls evaluate`", path, line_no) from None
            missing = [k for k in ("text", "gold", "predicted") if k not in row]
            if missing:
                raise DataError(f"wrong sample lacks {missing}; expected keys text, gold, "
                                "predicted, probabilities", path, line_no)
            rows.append(row)
    return rows


def attach_examples(pairs: list[ConfusedPair], wrong: list[dict], per_pair: int = 5
                    ) -> list[ConfusedPair]:
    """Give every pair up to ``per_pair`` wrong samples of either direction, those predicted
    with the highest probability first (the most confident mistakes)."""
    for pair in pairs:
        members = {(pair.a, pair.b), (pair.b, pair.a)}
        rows = [r for r in wrong if (r["gold"], r["predicted"]) in members]
        rows.sort(key=lambda r: -_prob(r, "probabilities", r["predicted"]))
        pair.examples = rows[:per_pair]
    return pairs


def _prob(row: dict, key: str, name: str) -> float:
    probs = row.get(key) or {}
    return float(probs.get(name, 0.0))


def format_confused_pairs_md(pairs: list[ConfusedPair], title: str = "Most confused class pairs"
                             ) -> str:
    """A Markdown table of the pairs and, per pair, a table of its examples."""
    lines = [f"# {title}", ""]
    if not pairs:
        return "\n".join(lines + ["No confusions: every example was classified correctly.", ""])
    lines += ["| # | pair | a → b | b → a | total | rate |", "|---|---|---|---|---|---|"]
    for k, p in enumerate(pairs, start=1):
        lines.append(f"| {k} | {_md(p.a)} ↔ {_md(p.b)} | {p.a_as_b} | {p.b_as_a} | {p.total} | "
                     f"{p.rate:.2%} |")
    for k, p in enumerate(pairs, start=1):
        lines += ["", f"## {k}. {_md(p.a)} ↔ {_md(p.b)}", ""]
        if not p.examples:
            lines.append("(no examples in wrong_samples.jsonl)")
            continue
        has_teacher = any(r.get("teacher") for r in p.examples)
        head = "| line | text | gold → predicted | p(predicted) | p(gold) |"
        rule = "|---|---|---|---|---|"
        if has_teacher:
            head, rule = head + " teacher p(gold) |", rule + "---|"
        lines += [head, rule]
        for r in p.examples:
            row = (f"| {r.get('line', '')} | {_md(r['text'])} | {_md(r['gold'])} → "
                   f"{_md(r['predicted'])} | {_prob(r, 'probabilities', r['predicted']):.3f} | "
                   f"{_prob(r, 'probabilities', r['gold']):.3f} |")
            if has_teacher:
                teacher = r.get("teacher")
                row += f" {_prob(r, 'teacher', r['gold']):.3f} |" if teacher else " – |"
            lines.append(row)
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_confused_pairs(pairs: list[ConfusedPair], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``confused_pairs.json`` and ``confused_pairs.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "confused_pairs.json", out / "confused_pairs.md"
    atomic_write_json(json_path, [p.to_dict() for p in pairs])
    atomic_write_text(md_path, format_confused_pairs_md(pairs))
    return json_path, md_path


# --------------------------------------------------------------------------- multi-label
def label_error_counts(wrong: list[dict], class_names: list[str]) -> list[dict]:
    """Per class, how many texts of a multi-label ``wrong_samples.jsonl`` missed it (gold,
    not predicted) and got it extra (predicted, not gold); classes without errors are left
    out, the most errors first (ties: class order)."""
    missed = dict.fromkeys(class_names, 0)
    extra = dict.fromkeys(class_names, 0)
    for row in wrong:
        for name in row.get("missed", []):
            missed[name] += 1
        for name in row.get("extra", []):
            extra[name] += 1
    rows = [{"class": n, "missed": missed[n], "extra": extra[n], "total": missed[n] + extra[n]}
            for n in class_names if missed[n] + extra[n]]
    rows.sort(key=lambda r: -r["total"])  # stable: class order breaks ties
    return rows


def label_error_severity(row: dict) -> float:
    """How confident a multi-label mistake is: the highest score of an extra label or
    1 - the score of a missed label, whichever is larger."""
    scores = row.get("scores") or {}
    worst = [float(scores.get(n, 0.0)) for n in row.get("extra", [])]
    worst += [1.0 - float(scores.get(n, 0.0)) for n in row.get("missed", [])]
    return max(worst, default=0.0)


def write_label_errors(wrong: list[dict], class_names: list[str], out_dir: str | Path,
                       top: int = 20) -> dict:
    """``label_errors.json`` / ``.md``: the per-class missed / extra counts and the ``top``
    most confident wrong label sets (:func:`label_error_severity`); returns the JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples = sorted(wrong, key=lambda r: -label_error_severity(r))[:top]
    result = {"wrong_texts": len(wrong), "classes": label_error_counts(wrong, class_names),
              "examples": examples}
    atomic_write_json(out / "label_errors.json", result)
    atomic_write_text(out / "label_errors.md", format_label_errors_md(result))
    return result


def format_label_errors_md(errors: dict, title: str = "Multi-label errors") -> str:
    """A Markdown table of the missed / extra counts per class and of the examples."""
    lines = [f"# {title}", ""]
    if not errors["wrong_texts"]:
        return "\n".join(lines + ["No errors: every text got exactly its gold labels.", ""])
    lines += [f"{errors['wrong_texts']} texts with a wrong label set.", "",
              "| class | missed | extra | total |", "|---|---|---|---|"]
    lines += [f"| {_md(r['class'])} | {r['missed']} | {r['extra']} | {r['total']} |"
              for r in errors["classes"]]
    lines += ["", "## Most confident mistakes", "",
              "| line | text | gold | predicted | missed | extra |", "|---|---|---|---|---|---|"]
    for r in errors["examples"]:
        lines.append(f"| {r.get('line', '')} | {_md(r['text'])} | {_labels_md(r, 'gold')} | "
                     f"{_labels_md(r, 'predicted')} | {_labels_md(r, 'missed')} | "
                     f"{_labels_md(r, 'extra')} |")
    return "\n".join(lines) + "\n"


def _labels_md(row: dict, key: str) -> str:
    """``name (score)`` per label of ``row[key]``, or – for none."""
    scores = row.get("scores") or {}
    names = row.get(key) or []
    return ", ".join(f"{_md(n)} ({float(scores.get(n, 0.0)):.2f})" for n in names) or "–"
