"""The options of ``zhcls label --llm``, declared once.

:class:`LLMOptions` is what :func:`zhcls.label.llm.label_with_llm` takes, and the ``zhcls
label`` flags are generated from its fields by :func:`add_arguments` (read back with
:func:`from_namespace`): the flag is ``--`` plus the field name with dashes unless the
field's metadata names another one, the type comes from the annotation, the help text, the
value check and the CLI parser from the metadata, and ``(default: ...)`` from the default.
A new option is one new field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

Check = tuple[Callable[[Any], bool], str]


def _opt(default: Any = dataclasses.MISSING, help: str = "", *,  # noqa: A002 - argparse's name
         factory: Callable[[], Any] | None = None, flag: str | None = None,
         metavar: str | None = None, check: Check | None = None,
         parse: Callable[[Any], Any] | None = None, show_default: bool = True) -> Any:
    """A dataclass field carrying its CLI declaration in ``metadata``."""
    meta = {"help": help, "flag": flag, "metavar": metavar, "check": check, "parse": parse,
            "show_default": show_default}
    meta = {k: v for k, v in meta.items() if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _at_least(low: float, strict: bool = False) -> Check:
    if strict:
        return (lambda v: v is None or v > low), f"> {low:g}"
    return (lambda v: v is None or v >= low), f">= {low:g}"


def _default_base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")


def _key_env(value: str) -> str | None:
    return None if value.strip().lower() in ("", "none") else value


def json_object(raw: str | None) -> dict | None:
    """``--extra-body`` text → dict (a one-line :class:`ZhclsError` when it is not one)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ZhclsError(f"--extra-body is not valid JSON ({exc.msg}); expected an object "
                         'such as \'{"enable_thinking": false}\'') from None
    if not isinstance(value, dict):
        raise ZhclsError(f"--extra-body must be a JSON object; found {type(value).__name__}")
    return value


_URL: Check = (lambda v: str(v).startswith(("http://", "https://")),
               "an http(s) URL such as https://api.deepseek.com/v1")


@dataclass
class LLMOptions:
    """How ``zhcls label --llm`` asks the LLM (one field per flag; see docs/labelling.md)."""

    model: str = _opt(help="label with this LLM (the chat-completions model name)",
                      flag="--llm", metavar="MODEL",
                      check=(bool, "a model name such as deepseek-chat"))
    base_url: str = _opt(factory=_default_base_url, check=_URL, show_default=False,
                         metavar="URL",
                         help="OpenAI-compatible API root, up to /v1 (default: "
                              "$OPENAI_BASE_URL or https://api.openai.com/v1)")
    api_key_env: str | None = _opt("OPENAI_API_KEY", metavar="VAR", parse=_key_env,
                                   help="environment variable holding the API key; 'none' "
                                        "sends no key (local vLLM/Ollama)")
    concurrency: int = _opt(8, "requests in flight", check=_at_least(1))
    samples: int = _opt(1, "answers averaged per text (self-consistency)", check=_at_least(1))
    temperature: float | None = _opt(None, "sampling temperature (default 0, or 0.7 with "
                                           "--samples > 1)", check=_at_least(0))
    max_tokens: int | None = _opt(None, "answer length limit (default 512; 1 with "
                                        "--use-logprobs; 0 omits it)", check=_at_least(0))
    timeout: float = _opt(60.0, "seconds per request", metavar="SECONDS", check=_at_least(0, strict=True))
    rpm: float | None = _opt(None, "client-side requests per minute",
                             check=_at_least(0, strict=True))
    tpm: float | None = _opt(None, "client-side tokens per minute (each request reserves its "
                                   "estimate and is then charged its real usage)",
                             check=_at_least(0, strict=True))
    max_retries: int = _opt(5, "retries per request on 429/408/5xx, timeouts, connection "
                               "errors and empty answers", check=_at_least(0))
    parse_retries: int = _opt(2, "re-asks when an answer cannot be parsed or names an unknown "
                                 "class", check=_at_least(0))
    backoff_base: float = _opt(1.0, "first backoff in seconds", check=_at_least(0))
    backoff_max: float = _opt(60.0, "longest backoff in seconds", check=_at_least(0))
    prompt: str | Path | None = _opt(None, "prompt template (see docs/labelling.md)",
                                     metavar="FILE")
    descriptions: str | Path | None = _opt(None, "class descriptions: JSON {name: desc} or "
                                                 "name<TAB>desc lines", metavar="FILE")
    few_shot: int = _opt(0, "K labelled training examples in the prompt (deterministic)",
                         metavar="K", check=_at_least(0))
    task: str = _opt("auto", "single_label (one class a text: probabilities summing to 1), "
                             "multi_label (every applicable class: an independent probability "
                             "each) or auto (detected from the train file)",
                     check=(lambda v: v in ("auto", "single_label", "multi_label"),
                            "auto, single_label or multi_label"))
    use_logprobs: bool = _opt(False, "ask for a class code and read the token top_logprobs")
    json_mode: bool = _opt(False, 'send response_format={"type": "json_object"}')
    extra_body: dict[str, Any] | None = _opt(None, "JSON object merged into every request "
                                                   "body", metavar="JSON", parse=json_object)
    cache: str | Path | None = _opt(None, "answer cache (default OUT/"
                                          ".zhcls_label_cache.sqlite)", metavar="PATH")
    retry_failed: bool = _opt(True, "do not re-ask texts that failed in an earlier run",
                              flag="--no-retry-failed")
    wait_lock: bool = _opt(False, "when another run holds the cache lock, wait for it "
                                  "instead of stopping at once")
    price_in: float | None = _opt(None, "price per 1M prompt tokens (for the cost estimate)")
    price_out: float | None = _opt(None, "price per 1M completion tokens")
    abort_after_failures: int = _opt(100, "stop after N texts in a row failed (0: never)",
                                     metavar="N", check=_at_least(0))
    dry_run: bool = _opt(False, "print the first prompt and the request count, send nothing")
    progress: bool = _opt(True, "no progress bar", flag="--no-progress")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            if check is not None and not check[0](value):
                raise ZhclsError(f"{flag_of(f)} is {value!r}; expected {check[1]}")

    def resolved(self) -> LLMOptions:
        """A copy with the automatic defaults filled in: ``samples`` 1 with
        ``use_logprobs``, ``temperature`` 0 (0.7 with samples > 1), ``max_tokens`` 512 (1
        with ``use_logprobs``), ``extra_body`` {}."""
        samples, temperature = self.samples, self.temperature
        if self.use_logprobs and samples > 1:
            logger.warning("--use-logprobs reads the distribution directly; --samples %d is "
                           "ignored (using 1)", samples)
            samples = 1
        if temperature is None:
            temperature = 0.7 if samples > 1 else 0.0
        elif samples > 1 and temperature == 0:
            logger.warning("--samples %d at temperature 0 gives near-identical answers; "
                           "raise --temperature (e.g. 0.7)", samples)
        max_tokens = self.max_tokens
        if max_tokens is None:
            max_tokens = 1 if self.use_logprobs else 512
        return dataclasses.replace(self, samples=samples, temperature=float(temperature),
                                   max_tokens=max_tokens, extra_body=dict(self.extra_body or {}))


def flag_of(f: dataclasses.Field) -> str:
    """The CLI flag of an :class:`LLMOptions` field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return _base_type(args[0])
    return typing.get_origin(hint) or hint


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_arguments(group: argparse._ActionsContainer | None,
                  model_group: argparse._ActionsContainer | None) -> None:
    """Add one flag per :class:`LLMOptions` field to ``group``; ``model`` (``--llm``) goes
    to ``model_group`` (the CLI's mutually exclusive teacher choice). A ``None`` container
    is skipped, so the two may be added at different places. Unset flags stay out of the
    namespace, so the dataclass defaults apply."""
    hints = typing.get_type_hints(LLMOptions)
    for f in dataclasses.fields(LLMOptions):
        target = model_group if f.name == "model" else group
        if target is None:
            continue
        kind, meta = _base_type(hints[f.name]), f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": meta["help"]}
        if kind is bool:
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            kwargs["type"] = kind if kind in (int, float) else str
            kwargs["metavar"] = meta.get("metavar") or _METAVARS.get(kind, "TEXT")
            if meta.get("show_default", True) and f.default not in (None, dataclasses.MISSING):
                kwargs["help"] += f" (default: {f.default})"
        target.add_argument(flag_of(f), **kwargs)


def from_namespace(args: argparse.Namespace) -> LLMOptions:
    """The :class:`LLMOptions` that the flags added by :func:`add_arguments` describe."""
    values = {}
    for f in dataclasses.fields(LLMOptions):
        if hasattr(args, f.name):
            parse = f.metadata.get("parse")
            value = getattr(args, f.name)
            values[f.name] = parse(value) if parse else value
    return LLMOptions(**values)
