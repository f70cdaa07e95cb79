"""Prompt templates for LLM labelling.

A template is plain text with ``{placeholder}`` fields (``str.format`` style; ``{{`` and
``}}`` give literal braces, and braces that do not enclose a bare placeholder name, such as
a literal JSON example ``{"财经": 0.9}``, are kept as they are):

``{text}`` (required) the sentence to label; ``{classes}`` one ``- name：description`` line
per class; ``{class_names}`` the names joined by ``、``; ``{json_example}`` the expected JSON
shape with every class name; ``{num_classes}``; ``{examples}`` the few-shot block (empty
without ``--few-shot``); ``{choices}`` / ``{codes}`` numbered classes and their answer codes
(used by the ``--use-logprobs`` template).

The hash of the template rendered with everything but the text is part of the cache key,
so editing the template, the descriptions or the few-shot examples re-labels everything.

Multi-label data (``multi_label=True``) uses ``label_zh_multilabel.txt`` by default: it asks
for every class an independent probability that the text is about it (the values need not
sum to 1), and few-shot examples show all their classes (``类别：A、B``, or ``类别：无``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from zhcls.data.records import split_lines
from zhcls.errors import ConfigError, DataError
from zhcls.label.parse import choice_labels

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "label_zh.txt"
DEFAULT_LOGPROBS_TEMPLATE = "label_zh_logprobs.txt"
DEFAULT_MULTILABEL_TEMPLATE = "label_zh_multilabel.txt"
PLACEHOLDERS = ("text", "classes", "class_names", "json_example", "num_classes", "examples",
                "choices", "codes")
FEW_SHOT_MAX_CHARS = 200
_FIELD = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Prompt:
    """A template with every placeholder but ``{text}`` filled in."""

    template: str
    values: dict[str, str]
    source: str

    def render(self, text: str) -> str:
        """The full prompt for one sentence."""
        return _substitute(self.template, {**self.values, "text": text})

    @property
    def hash(self) -> str:
        """sha256 (16 hex digits) of the rendered template without the text."""
        return hashlib.sha256(self.render("{text}").encode("utf-8")).hexdigest()[:16]


def build_prompt(
    class_names: list[str],
    *,
    template_path: str | Path | None = None,
    descriptions: dict[str, str] | None = None,
    few_shot: Sequence[tuple[str, int | Sequence[int]]] = (),
    logprobs: bool = False,
    multi_label: bool = False,
) -> Prompt:
    """Load the template (the shipped Chinese default unless ``template_path``) and fill in
    the class list, descriptions and few-shot examples (label: a class id, or with
    ``multi_label`` a sequence of ids)."""
    if logprobs and multi_label:
        raise ConfigError("--use-logprobs reads the one class the answer token names; "
                          "multi-label data needs a probability per class: drop "
                          "--use-logprobs")
    template, source = load_template(template_path, logprobs=logprobs, multi_label=multi_label)
    check_template(template, source)
    descriptions = descriptions or {}
    codes = choice_labels(len(class_names)) if logprobs else [str(i) for i in
                                                             range(len(class_names))]
    lines = [f"- {n}：{descriptions[n]}" if descriptions.get(n) else f"- {n}" for n in class_names]
    choices = [f"{c}. {n}" + (f"：{descriptions[n]}" if descriptions.get(n) else "")
               for c, n in zip(codes, class_names, strict=True)]
    example_json = "{" + ", ".join(f"{json.dumps(n, ensure_ascii=False)}: 0.xx"
                                   for n in class_names) + "}"
    values = {
        "classes": "\n".join(lines),
        "class_names": "、".join(class_names),
        "json_example": example_json,
        "num_classes": str(len(class_names)),
        "examples": _render_examples(few_shot, class_names, codes if logprobs else None),
        "choices": "\n".join(choices),
        "codes": "、".join(codes),
    }
    return Prompt(template=template, values=values, source=source)


def load_template(path: str | Path | None, *, logprobs: bool = False,
                  multi_label: bool = False) -> tuple[str, str]:
    """Return (template text, where it came from)."""
    if path is None:
        name = (DEFAULT_LOGPROBS_TEMPLATE if logprobs else
                DEFAULT_MULTILABEL_TEMPLATE if multi_label else DEFAULT_TEMPLATE)
        res = resources.files("zhcls").joinpath("resources").joinpath("prompts").joinpath(name)
        return res.read_text(encoding="utf-8"), f"zhcls/resources/prompts/{name}"
    path = Path(path)
    if not path.is_file():
        raise DataError("prompt template not found; pass --prompt FILE with a UTF-8 text "
                        "file containing at least {text}", path)
    return path.read_text(encoding="utf-8"), str(path)


def check_template(template: str, source: str) -> None:
    """Reject templates without ``{text}`` or with unknown placeholders (typos)."""
    names = {m.group(1) for m in _FIELD.finditer(template) if m.group(1)}
    unknown = sorted(names - set(PLACEHOLDERS))
    if unknown:
        raise DataError(
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; known: "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} (write {{{{ and }}}} for "
            "literal braces)", source)
    if "text" not in names:
        raise DataError("template has no {text} placeholder; it must say where the sentence "
                        "to label goes", source)


def read_descriptions(path: str | Path, class_names: list[str]) -> dict[str, str]:
    """Class descriptions from a JSON object ``{name: description}`` or ``name<TAB>desc``
    lines. Every name must be in class.txt; classes without a description are fine."""
    path = Path(path)
    if not path.is_file():
        raise DataError("descriptions file not found; expected a JSON object {name: "
                        "description} or name<TAB>description lines", path)
    raw = path.read_text(encoding="utf-8-sig")
    if raw.lstrip().startswith("{"):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path, exc.lineno) from None
        items = [(str(k), str(v), None) for k, v in obj.items()]
    else:
        items = []
        for line_no, line in enumerate(split_lines(raw), start=1):
            if not line.strip():
                continue
            name, sep, desc = line.partition("\t")
            if not sep:
                raise DataError("expected name<TAB>description; found no tab", path, line_no)
            items.append((name.strip(), desc.strip(), line_no))
    known = set(class_names)
    for name, _, line_no in items:
        if name not in known:
            raise DataError(f"class {name!r} is not in class.txt ({'、'.join(class_names)}); "
                            "fix the name or remove it", path, line_no)
    return {name: desc for name, desc, _ in items}


def pick_few_shot(examples: Sequence[tuple[str, int]], k: int) -> list[tuple[str, int]]:
    """Choose ``k`` (text, label) pairs deterministically: order by sha256 of the text,
    then take one per class in label order, round-robin, so the classes are covered."""
    if k <= 0:
        return []
    by_label: dict[int, list[tuple[str, int]]] = {}
    for text, label in sorted(examples, key=lambda e: hashlib.sha256(e[0].encode()).hexdigest()):
        by_label.setdefault(label, []).append((text, label))
    chosen: list[tuple[str, int]] = []
    depth = 0
    while len(chosen) < k and any(depth < len(v) for v in by_label.values()):
        for label in sorted(by_label):
            if depth < len(by_label[label]) and len(chosen) < k:
                chosen.append(by_label[label][depth])
        depth += 1
    if len(chosen) < k:
        logger.warning("asked for %d few-shot examples, the training split has only %d",
                       k, len(chosen))
    return chosen


def _render_examples(few_shot: Sequence[tuple[str, int | Sequence[int]]],
                     class_names: list[str], codes: list[str] | None) -> str:
    if not few_shot:
        return ""
    parts = ["\n示例："]
    for text, label in few_shot:
        shown = text if len(text) <= FEW_SHOT_MAX_CHARS else text[:FEW_SHOT_MAX_CHARS] + "…"
        if isinstance(label, int):
            answer = f"答案：{codes[label]}" if codes else f"类别：{class_names[label]}"
        else:  # multi-label: every class of the example, or none
            answer = "类别：" + ("、".join(class_names[i] for i in label) or "无")
        parts.append(f"文本：{shown}\n{answer}\n")
    return "\n".join(parts)


def _substitute(template: str, values: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values.get(match.group(1), token)

    return _FIELD.sub(repl, template)
