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
