"""The generic config machinery behind :mod:`zhcls.config`: keys declared with :func:`opt`,
configs made of sections (:class:`Sections`), the YAML loader, ``--section.key value``
overrides, type coercion, validation and did-you-mean messages.

Nothing here knows :class:`zhcls.config.Config`: every function takes the config class
(``root``); :mod:`zhcls.config` re-exports them with ``root=Config`` as the default.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from zhcls.errors import ConfigError


def opt(default: Any, help: str, *, choices: tuple | None = None, positive: bool = False,
        low: float | None = None, high: float | None = None, high_open: bool = False) -> Any:
    """A config key: default, one-line ``help`` and the checks that validation applies."""
    meta = {"help": help, "choices": choices, "positive": positive, "low": low, "high": high,
            "high_open": high_open}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)

class Sections:
    """A config made of sections (dataclass fields whose types are section dataclasses):
    :class:`Config` for ``zhcls train``, ``PretrainConfig`` for ``zhcls pretrain``. The
    loader, overrides, validation and ``--help`` all work on any such class (``root``)."""

    def validate(self):
        names = list(sections_of(type(self)))
        for name in names:  # nan/inf first: range checks would misreport them
            _check_finite(getattr(self, name))
        for name in names:
            section = getattr(self, name)
            for key in config_keys(name, root=type(self)):
                key.check(getattr(section, key.name))
            section.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

def sections_of(root: type) -> dict[str, type]:
    """``{section name: section dataclass}`` of a config class, in declaration order."""
    return typing.get_type_hints(root)


class ConfigKey(NamedTuple):
    """One config key as declared with :func:`opt` (what ``--help`` shows)."""

    section: str
    name: str
    hint: Any
    default: Any
    help: str
    meta: dict

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    def check(self, value: Any) -> None:
        m, name = self.meta, self.dotted
        if value is None:  # an optional key left unset (typed `X | None`)
            return
        if m.get("choices") and value not in m["choices"]:
            shown = ", ".join("null" if c is None else c for c in m["choices"])
            raise ConfigError(f"{name}: expected one of {shown}; got {value!r}")
        if m.get("positive"):
            _positive(name, value)
        if m.get("low") is not None and m.get("high") is not None:
            _range(name, value, m["low"], m["high"], m.get("high_open", False))
        elif m.get("low") is not None and value < m["low"]:
            kind = "an integer" if isinstance(value, int) else "a number"
            raise ConfigError(f"{name}: expected {kind} >= {m['low']}, got {value}")


def config_keys(section: str | None = None, *, root: type) -> list[ConfigKey]:
    """Every key of ``section`` (or of all sections) of ``root``, in declaration order."""
    out = []
    sections = sections_of(root)
    for name in [section] if section else list(sections):
        cls = sections[name]
        hints = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            out.append(ConfigKey(name, f.name, hints[f.name], getattr(defaults, f.name),
                                 f.metadata.get("help", ""), dict(f.metadata)))
    return out


def config_from_dict(raw: dict[str, Any] | None, source: str = "<dict>", *, root: type):
    """Build a validated ``root`` from nested dicts; unknown sections or keys are errors."""
    return _from_dict(raw, source, root).validate()


def _from_dict(raw: dict[str, Any] | None, source: str, root: type):
    cfg = root()
    sections = sections_of(root)
    for section, values in (raw or {}).items():
        if section not in sections:
            raise ConfigError(f"{source}: unknown section {section!r}"
                              f"{_did_you_mean(section, sections)}; expected one of {list(sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping, got {values!r}")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, source)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *,
                root: type):
    """Load a YAML file (or the defaults) and apply ``--section.key value`` overrides; ``root``
    is the config class (a :class:`Sections`: ``Config``, ``PretrainConfig``)."""
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        if not Path(path).is_file():
            raise ConfigError(f"config file not found: {path}; see configs/ for the shipped ones")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(yaml_error_message(path, exc)) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    cfg = _from_dict(raw, source, root)
    apply_overrides(cfg, overrides or [])
    return cfg.validate()  # once, after the overrides: the file's values may be out of range


def apply_overrides(cfg: Sections, overrides: list[str]) -> Sections:
    """Apply ``["--train.lr", "3e-5", "--model.head=bert_CNN"]`` style overrides in place."""
    items = list(overrides)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or "." not in flag:
            raise ConfigError(f"unexpected argument {flag!r}; overrides look like --train.lr 3e-5")
        key, _, value = flag[2:].partition("=")
        if not _:
            if not items:
                raise ConfigError(f"--{key}: missing value")
            value = items.pop(0)
        set_value(cfg, key, _typed_value(cfg, key, value), f"--{key}")
    return cfg


def _typed_value(cfg: Sections, dotted: str, text: str) -> Any:
    """A command-line value: kept as typed for a text key (``--data.label_separator '|'``
    must not become YAML's block-scalar '' or a comment's None; ``null`` still unsets an
    optional one), parsed as YAML (:func:`parse_value`) for every other key."""
    section, _, key = dotted.partition(".")
    hints = typing.get_type_hints(type(getattr(cfg, section, None))) if hasattr(cfg, section) \
        else {}
    hint, optional = strip_optional(hints.get(key)) if key in hints else (None, False)
    if hint is str:
        return None if optional and text in ("null", "~") else text
    return parse_value(text)


def parse_value(text: str) -> Any:
    """A command-line value as YAML (``3e-5``, ``true``, ``null``, ``{ce: 1}``); '' stays ''."""
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_value(cfg: Sections, dotted: str, value: Any, source: str = "") -> None:
    """Set ``section.key`` on cfg after checking the key exists and coercing the type."""
    section_name, _, key = dotted.partition(".")
    flag = source.startswith("--")
    where = f"{source}: " if source and not flag else ""
    shown = source if flag else dotted
    root = type(cfg)
    sections = sections_of(root)
    if section_name not in sections or not key:
        raise ConfigError(f"{where}unknown key {shown!r}{_close_keys(dotted, flag, root)}; "
                          f"sections are {list(sections)}")
    section = getattr(cfg, section_name)
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        raise ConfigError(f"{where}unknown key {shown!r}{_close_keys(dotted, flag, root)}; "
                          f"{section_name} keys are: {', '.join(hints)}")
    setattr(section, key, _coerce(shown, value, hints[key], where))


def _close_keys(dotted: str, flag: bool, root: type) -> str:
    """`` (did you mean --train.lr?)``: close keys of the same section, else of any."""
    section, _, key = dotted.partition(".")
    prefix = "--" if flag else ""
    if section in sections_of(root):
        return _did_you_mean(key, [k.name for k in config_keys(section, root=root)],
                             f"{prefix}{section}.")
    return _did_you_mean(dotted, [k.dotted for k in config_keys(root=root)], prefix)


def _did_you_mean(word: str, options, prefix: str = "", cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=cutoff)
    return f" (did you mean {' or '.join(prefix + c for c in close)}?)" if close else ""


def strip_optional(hint: Any) -> tuple[Any, bool]:
    """``str | None`` → ``(str, True)``; ``int`` → ``(int, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args:
            return next(a for a in args if a is not type(None)), True
    return hint, False


def _coerce(name: str, value: Any, hint: Any, where: str) -> Any:
    hint, optional = strip_optional(hint)
    if value is None and optional:
        return None
    if typing.get_origin(hint) is list:
        return _coerce_list(name, value, typing.get_args(hint)[0], where)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}{name}: expected a mapping such as {{ce: 1.0, kd: 0.5}}, "
                              f"got {value!r}")
        key_t, value_t = typing.get_args(hint)
        return {_coerce(name, k, key_t, where): _coerce(f"{name}.{k}", v, value_t, where)
                for k, v in value.items()}
    if hint is bool and isinstance(value, bool):
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _coerce_list(name: str, value: Any, item: Any, where: str) -> list:
    """A list key; for a list of paths (str items) ``null`` and ``""`` clear it as ``[]``
    does, and an empty item (``a,,b``) is an error rather than the path ``''``."""
    if item is str and (value is None or (isinstance(value, str) and not value.strip())):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    if item is str and any(v is None or (isinstance(v, str) and not v.strip()) for v in items):
        raise ConfigError(f"{where}{name}: an empty path in {value!r}; give each path once, "
                          "separated by commas (or [] / null for none)")
    return [_coerce(name, v, item, where) for v in items]


def _check_finite(section: Any) -> None:
    """nan / inf are never a setting: every float key (and list of floats) must be finite."""
    name = type(section).__name__.removesuffix("Config").lower()
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"{name}.{f.name}: expected a finite number, got {value}")


def yaml_error_message(path: str | Path, exc: yaml.YAMLError) -> str:
    """One line: ``FILE:LINE:COL: invalid YAML: PROBLEM`` (PyYAML's own text spans lines)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    context = getattr(exc, "context", None)
    detail = f"{problem} ({' '.join(context.split())})" if context else problem
    return f"{where}: invalid YAML: {detail}; fix the file (YAML, e.g. `train: {{lr: 3e-5}}`)"


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}; got {value!r}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: expected a positive number, got {value}")


def _range(name: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name}: expected a value in [{low}, {high}{bracket}, got {value}")
