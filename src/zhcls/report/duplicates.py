"""Exact-text duplicates for ``zhcls data-stats`` (:mod:`zhcls.report.stats`): inside one
split, and shared between splits (with the labels each side gives them)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from zhcls.data.formats import Example

MAX_EXAMPLES = 5  # examples shown per finding


def within_duplicates(examples: list[Example], class_names: list[str]) -> dict[str, Any]:
    """Exact-text duplicates inside one split (texts are already stripped by the reader)."""
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        groups[e.text].append(e)
    dups = {t: g for t, g in groups.items() if len(g) > 1}
    conflicting = [t for t, g in dups.items() if len({_label_key(e.label) for e in g}) > 1]
    shown = sorted(dups, key=lambda t: (t not in conflicting, dups[t][0].line))[:MAX_EXAMPLES]
    return {
        "duplicate_texts": len(dups),
        "extra_rows": sum(len(g) - 1 for g in dups.values()),
        "conflicting_labels": len(conflicting),
        "examples": [{"text": t, "lines": [e.line for e in dups[t]],
                      "labels": [label_name(e.label, class_names) for e in dups[t]]}
                     for t in shown],
    }


def cross_duplicates(by_split: dict[str, list[Example]], class_names: list[str]) -> dict[str, Any]:
    """Texts shared between splits: per pair, in total, and eval rows whose text is in train."""
    texts = {name: {e.text for e in exs} for name, exs in by_split.items()}
    labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for name, exs in by_split.items():
        for e in exs:
            labels[e.text][name].add(label_name(e.label, class_names))
    names = list(by_split)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = sorted(texts[a] & texts[b])
            conflict = [t for t in shared if labels[t][a] != labels[t][b]]
            pairs[f"{a}/{b}"] = {
                "shared_texts": len(shared), "conflicting_labels": len(conflict),
                "examples": [{"text": t, a: sorted(labels[t][a]), b: sorted(labels[t][b])}
                             for t in _conflicts_first(conflict, shared)]}
    in_many = sum(1 for t in labels if len(labels[t]) > 1)
    leaked = {n: sum(1 for e in by_split[n] if e.text in texts["train"])
              for n in names if n != "train" and "train" in texts}
    return {"pairs": pairs, "texts_in_several_splits": in_many, "eval_rows_in_train": leaked}


def _label_key(label: int | list[int]) -> int | tuple[int, ...]:
    return tuple(label) if isinstance(label, list) else label


def label_name(label: int | list[int], class_names: list[str]) -> str:
    """A class name; a multi-label set as its names joined by "," ("(none)" when empty)."""
    if isinstance(label, list):
        return ",".join(class_names[i] for i in label) or "(none)"
    return class_names[label]


def _conflicts_first(conflict: list[str], shared: list[str]) -> list[str]:
    rest = [t for t in shared if t not in set(conflict)]
    return (conflict + rest)[:MAX_EXAMPLES]
