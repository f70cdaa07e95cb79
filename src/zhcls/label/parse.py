"""Turn an LLM's free-form answer into a probability vector over the classes.

Pure functions, no I/O. LLM answers are dirty: JSON inside ```json fences or surrounded by
prose, class names with stray spaces, full-width punctuation or other case, probabilities
given as percentages (``85``, ``"85%"``), sums of 80 or 801, missing or misspelt classes.
:func:`parse_answer` repairs what can be repaired and says why when it cannot; an answer
that cannot be repaired (e.g. JSON cut off by ``max_tokens``) is *unparseable* and the
caller asks again.

Class names (:func:`match_class`): a name matches a class when their normalised forms
(:func:`normalize_name`) are equal. A name that matches none is *renamed* to a class only
when exactly one class is close to it: one normalised form contains the other (the shorter
at least 2 characters: ``体育类`` → ``体育``, ``stock`` → ``stocks``) or their
``difflib`` similarity ratio is at least :data:`RENAME_CUTOFF` (``finanse`` → ``finance``);
with two or more close classes, or none, the name is *unknown*. An unknown name with a
probability above 0 makes the whole answer unusable (``kind="unknown_class"``: the caller
asks again), because its mass may belong to any class — typically the true one. Unknown
names with probability 0 or a non-numeric value (``"理由": "..."``) are ignored and counted.

Multi-label (``parse_answer(..., multi_label=True)``): the values are C independent
per-class probabilities, never renormalised. Each must lie in [0, 1] (``"85%"`` reads as
0.85; when any bare value exceeds 1 and none exceeds 100, all are read as percentages); a
class the answer leaves out gets 0; an answer with every class at 0 is valid (no class
applies). Anything outside that range is an unusable answer naming the class and value.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zhcls.data.teacher import sum_reading

RENAME_CUTOFF = 0.8  # difflib ratio for renaming a misspelt class name (unique match only)
_STRIP_CHARS = " \t\r\n\"'`“”‘’「」『』《》【】[]()<>:;,.、。!?*-_#"
_NAME_FIELDS = ("label", "class", "category", "name", "类别", "标签", "类别名称")
_PROB_FIELDS = ("probability", "prob", "p", "score", "confidence", "概率", "置信度")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_PERCENT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*%$")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([^\s\"'{}\[\],:][^\"'{}\[\],:]*?)\s*:")
_BARE_PERCENT = re.compile(r"(:\s*)([+-]?\d+(?:\.\d+)?)\s*%")
_KV_LINE = re.compile(r"^[\s\-*•]*[\"'“]?([^:=\"'”\n]{1,40}?)[\"'”]?\s*[:=]\s*([+-]?[\d.]+\s*%?)",
                      re.MULTILINE)


@dataclass
class ParsedAnswer:
    """One answer turned into probabilities, or the reason it could not be.

    ``unknown`` lists answer keys that match no class; ``renamed`` the keys matched to a
    class by a unique close match; ``missing`` counts classes the answer left out (filled
    with 0); ``percent`` / ``renormalised`` say what was done to make the values sum to 1.
    ``kind`` is the failure kind of an unusable answer: ``unparseable``, or
    ``unknown_class`` when it gives probability to a name that is no class.
    """

    probs: list[float] | None
    error: str | None = None
    unknown: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    kind: str = "unparseable"
    missing: int = 0
    percent: bool = False
    renormalised: bool = False

    @property
    def ok(self) -> bool:
        return self.probs is not None


def normalize_name(name: str) -> str:
    """Canonical form of a class name for matching: NFKC, case-folded, no whitespace,
    no surrounding quotes / brackets / punctuation (full-width forms included)."""
    s = unicodedata.normalize("NFKC", str(name)).casefold()
    s = re.sub(r"\s+", "", s)
    return s.strip(_STRIP_CHARS)


def match_class(name: str, lookup: dict[str, int]) -> tuple[int | None, bool]:
    """(class index or None, whether it was renamed) for an answer key; ``lookup`` maps
    normalised class names to indices. See the module docstring for the rule."""
    key = normalize_name(name)
    if key in lookup:
        return lookup[key], False
    if not key:
        return None, False
    close = set()
    for cls, idx in lookup.items():
        shorter = key if len(key) <= len(cls) else cls
        contains = len(shorter) >= 2 and (key in cls or cls in key)
        if contains or difflib.SequenceMatcher(None, key, cls).ratio() >= RENAME_CUTOFF:
            close.add(idx)
    return (close.pop(), True) if len(close) == 1 else (None, False)


def parse_answer(raw: str, class_names: list[str], *, multi_label: bool = False
                 ) -> ParsedAnswer:
    """Parse one answer that should contain a JSON object ``{class name: probability}``
    (``multi_label``: independent per-class probabilities, see the module docstring).

    ``<think>...</think>`` reasoning blocks are dropped first. Then tries, in order: fenced
    blocks, the whole text, then every balanced ``{...}`` in the text (prose around it is
    ignored), each first as strict JSON and then with light repairs (curly quotes, single quotes, trailing commas, unquoted keys, bare ``85%``).
    Text with no ``{`` at all is read as ``name: value`` lines. A truncated object (no
    closing brace) is *not* repaired: it is reported unparseable so the caller retries.
    """
    if not isinstance(raw, str) or not raw.strip():
        return ParsedAnswer(None, "empty answer")
    text = _THINK.sub("", unicodedata.normalize("NFKC", raw))
    lookup = {normalize_name(n): i for i, n in enumerate(class_names)}
    first_error: ParsedAnswer | None = None
    for candidate in _json_candidates(text):
        obj = _loads_lenient(candidate)
        if obj is None:
            continue
        result = _from_object(obj, lookup, len(class_names), multi_label)
        if result.ok:
            return result
        first_error = first_error or result
    if first_error is not None:
        return first_error
    if "{" not in text:
        pairs = [(k, v) for k, v in _KV_LINE.findall(text)  # prose lines are no classes
                 if match_class(k, lookup)[0] is not None]
        if pairs:
            return _from_pairs(pairs, lookup, len(class_names), multi_label)
        return ParsedAnswer(None, "no JSON object and no 'class: probability' lines found")
    return ParsedAnswer(None, "no complete JSON object found (truncated or malformed answer)")


def _json_candidates(text: str) -> Iterable[str]:
    for match in _FENCE.finditer(text):
        yield match.group(1).strip()
    yield text.strip()
    yield from _balanced_objects(text)


def _balanced_objects(text: str, limit: int = 32) -> Iterable[str]:
    """Every ``{...}`` substring with balanced braces (string-aware), outermost first."""
    found = 0
    pos = text.find("{")
    while pos != -1 and found < limit:
        end = _match_brace(text, pos)
        if end is not None:
            found += 1
            yield text[pos:end + 1]
        pos = text.find("{", pos + 1)


def _match_brace(text: str, start: int) -> int | None:
    depth, in_str, escape = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _loads_lenient(candidate: str) -> Any:
    if not candidate or candidate[0] not in "{[":
        return None
    attempts = [candidate]
    fixed = candidate.replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    if '"' not in fixed:
        fixed = fixed.replace("'", '"')
    fixed = _TRAILING_COMMA.sub(r"\1", fixed)
    attempts.append(fixed)
    fixed = _BARE_PERCENT.sub(r'\1"\2%"', _BARE_KEY.sub(r'\1"\2":', fixed))
    attempts.append(fixed)
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            continue
    return None


def _from_object(obj: Any, lookup: dict[str, int], k: int, multi: bool = False
                 ) -> ParsedAnswer:
    if isinstance(obj, list):
        pairs = _pairs_from_list(obj)
        if pairs:
            return _from_pairs(pairs, lookup, k, multi)
        return ParsedAnswer(None, "JSON list without label/probability records")
    if not isinstance(obj, dict):
        return ParsedAnswer(None, f"expected a JSON object, found {type(obj).__name__}")
    if not any(match_class(key, lookup)[0] is not None for key in obj):
        for value in obj.values():  # {"probabilities": {...}} and similar wrappers
            if isinstance(value, (dict, list)):
                nested = _from_object(value, lookup, k, multi)
                if nested.ok:
                    return nested
    return _from_pairs(list(obj.items()), lookup, k, multi)


def _pairs_from_list(items: list) -> list[tuple[str, Any]]:
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        fields = {normalize_name(key): v for key, v in item.items()}
        name = next((fields[f] for f in _NAME_FIELDS if f in fields), None)
        prob = next((fields[f] for f in _PROB_FIELDS if f in fields), None)
        if isinstance(name, str) and prob is not None:
            pairs.append((name, prob))
    return pairs


def _from_pairs(pairs: list[tuple[Any, Any]], lookup: dict[str, int], k: int,
                multi: bool = False) -> ParsedAnswer:
    values: list[float | None] = [None] * k
    unknown: list[str] = []
    renamed: list[str] = []
    with_mass: list[str] = []  # unknown names given a probability above 0
    explicit_percent = False
    for key, raw_value in pairs:
        idx, was_renamed = match_class(str(key), lookup)
        number = to_number(raw_value)
        if idx is None:
            unknown.append(str(key))
            if number is not None and number[0] != 0:
                with_mass.append(str(key))
            continue
        if was_renamed:
            renamed.append(str(key))
        if number is None:
            return ParsedAnswer(None, f"value for class {key!r} is {raw_value!r}; expected a "
                                      "number or a percentage", unknown=unknown)
        value, was_percent = number
        explicit_percent |= was_percent
        values[idx] = value if values[idx] is None else max(values[idx], value)
    missing = sum(v is None for v in values)
    if with_mass:
        shown = ", ".join(repr(n) for n in with_mass[:5])
        what = ("no known class name in the answer" if missing == k
                else "the answer gives probability to names that are no class")
        return ParsedAnswer(None, f"{what}: {shown} (not in class.txt and no unique close "
                                  "match)", unknown=unknown, missing=missing,
                            kind="unknown_class")
    if missing == k:
        return ParsedAnswer(None, "no known class name in the answer", unknown=unknown,
                            missing=missing)
    probs = [0.0 if v is None else v for v in values]
    if multi:
        names = {i: key for key, i in lookup.items()}
        result = _independent(probs, [names[i] for i in range(k)], unknown, missing,
                              explicit_percent)
    else:
        result = _normalise(probs, unknown, missing, explicit_percent)
    result.renamed = renamed
    return result


def _independent(probs: list[float], names: list[str], unknown: list[str], missing: int,
                 explicit_percent: bool) -> ParsedAnswer:
    """Multi-label: per-class probabilities in [0, 1], kept as they are (no sum rule)."""
    percent = explicit_percent
    if not explicit_percent and 1.0 < max(probs) <= 100.0:
        probs, percent = [p / 100.0 for p in probs], True  # {"价格": 90, "动力": 10}
    for name, p in zip(names, probs, strict=True):
        if not 0.0 <= p <= 1.0:
            return ParsedAnswer(None, f"probability {p:g} for class {name!r} is outside [0, 1];"
                                      " expected an independent probability per class",
                                unknown=unknown, missing=missing)
    return ParsedAnswer(probs, unknown=unknown, missing=missing, percent=percent)


def _normalise(probs: list[float], unknown: list[str], missing: int,
               explicit_percent: bool) -> ParsedAnswer:
    if any(p < 0 for p in probs):
        return ParsedAnswer(None, f"negative probability {min(probs):g}", unknown=unknown)
    total = sum(probs)
    if total <= 0:
        return ParsedAnswer(None, "all probabilities are 0", unknown=unknown, missing=missing)
    reading = sum_reading(total)
    percent = explicit_percent or reading == "percent"
    renormalised = (not percent and reading != "probability") or (
        explicit_percent and reading != "probability")
    return ParsedAnswer([p / total for p in probs], unknown=unknown, missing=missing,
                        percent=percent, renormalised=renormalised)


def to_number(value: Any) -> tuple[float, bool] | None:
    """``0.85`` → (0.85, False); ``"85%"`` → (0.85, True); ``"0.85"`` → (0.85, False);
    anything else (bools, words, NaN, infinity) → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number, percent = float(value), False
    elif isinstance(value, str):
        s = unicodedata.normalize("NFKC", value).strip()
        match = _PERCENT.match(s)
        if match:
            number, percent = float(match.group(1)) / 100.0, True
        elif _NUMBER.match(s):
            number, percent = float(s), False
        else:
            return None
    else:
        return None
    return (number, percent) if math.isfinite(number) else None


def choice_labels(num_classes: int) -> list[str]:
    """Single-character answer codes for ``--use-logprobs``: digits for up to 10 classes,
    letters A-Z for up to 26 (each is one token in common tokenizers)."""
    if num_classes <= 10:
        return [str(i) for i in range(num_classes)]
    if num_classes <= 26:
        return [chr(ord("A") + i) for i in range(num_classes)]
    raise ValueError(
        f"--use-logprobs supports at most 26 classes (one single-token code each); "
        f"class.txt has {num_classes}. Label without --use-logprobs instead"
    )


def parse_top_logprobs(top: list[dict[str, Any]], codes: list[str]) -> ParsedAnswer:
    """Read the ``top_logprobs`` of the first answer token. Tokens are matched to the class
    codes after stripping spaces and punctuation (so ``" 3"`` and ``"3."`` count for code
    ``3``); probability mass outside the codes is dropped and the rest renormalised."""
    lookup = {normalize_name(c): i for i, c in enumerate(codes)}
    probs = [0.0] * len(codes)
    unknown: list[str] = []
    for entry in top or []:
        token, logprob = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)):
            continue
        idx = lookup.get(normalize_name(token))
        if idx is None:
            unknown.append(token)
        elif math.isfinite(logprob):
            probs[idx] += math.exp(min(float(logprob), 0.0))
    if sum(probs) <= 0:
        return ParsedAnswer(None, "no class code among the top_logprobs tokens", unknown=unknown)
    missing = sum(p == 0 for p in probs)
    return _normalise(probs, unknown, missing, False)


def average(rows: list[list[float]]) -> list[float]:
    """Mean of several probability vectors (self-consistency over ``--samples``)."""
    if not rows:
        raise ValueError("average() needs at least one probability vector")
    k = len(rows[0])
    return [sum(r[i] for r in rows) / len(rows) for i in range(k)]
