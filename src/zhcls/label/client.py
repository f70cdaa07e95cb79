"""The chat-completions client behind :func:`zhcls.label.llm.label_with_llm`.

:class:`ChatClient` sends ``POST {base_url}/chat/completions`` through a shared
``httpx.AsyncClient`` with client-side rate limits and retries (429, 5xx, timeouts,
connection errors; exponential backoff with jitter, ``Retry-After`` honoured) and asks for
``n`` samples in one request when the server supports it. :class:`Labeller` turns one text
into an :class:`~zhcls.label.cache.Answer`: it parses every sampled answer and asks again
when an answer cannot be repaired.

Failure kinds recorded per text: ``http_429_exhausted``, ``http_5xx_exhausted``,
``timeout``, ``connection_error``, ``bad_response``, ``empty_choices`` (an HTTP 200 whose
``choices`` list is empty; retries used up), ``http_<code>`` (other 4xx, not retried — e.g. a
provider's content filter), ``unparseable`` (every answer broken after ``parse_retries``
re-asks), ``unknown_class`` (every answer gave probability to a name that is no class),
``no_logprobs`` (``use_logprobs`` but the server sent none). HTTP 401/403/404 stop the whole
run: they mean a wrong key, model or URL.

``--tpm`` accounting: each attempt reserves its estimate (prompt estimate + ``max_tokens`` ×
samples asked) before it is sent; a response's ``usage.total_tokens`` then settles the
bucket (refund or extra charge). Attempts without usage keep their estimate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zhcls.errors import ZhclsError
from zhcls.label.cache import Answer
from zhcls.label.options import LLMOptions
from zhcls.label.parse import ParsedAnswer, average, choice_labels, parse_answer, parse_top_logprobs
from zhcls.label.ratelimit import RateLimiter, backoff_delay, estimate_tokens, parse_retry_after

logger = logging.getLogger(__name__)

FATAL_STATUS = {401: "the API key was rejected", 403: "access to the model is forbidden",
                404: "the endpoint or model does not exist"}


class RequestFailed(Exception):
    """One request gave up; ``kind`` is the failure kind recorded for the text."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


class FatalAPIError(ZhclsError):
    """The server rejects every request (wrong key, model or URL): stop the run."""


@dataclass
class RunStats:
    """What happened on the wire during one run."""

    http_requests: int = 0
    transient_errors: Counter = field(default_factory=Counter)
    parse_retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    supports_n: bool | None = None


@dataclass
class Reply:
    """The choices of one or more chat-completions responses for one prompt."""

    contents: list[str | None] = field(default_factory=list)
    top_logprobs: list[list[dict] | None] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0


class ChatClient:
    """Sends chat-completions requests with rate limits and retries. ``opts`` must be
    :meth:`~zhcls.label.options.LLMOptions.resolved`; ``num_classes`` sizes
    ``top_logprobs``; ``api_key`` is only used to redact it from error texts (the
    ``Authorization`` header belongs to ``http``)."""

    def __init__(self, opts: LLMOptions, http: Any, limiter: RateLimiter, stats: RunStats, *,
                 num_classes: int = 0, api_key: str | None = None):
        self.opts, self.http, self.limiter, self.stats = opts, http, limiter, stats
        self.num_classes, self._api_key = num_classes, api_key
        self.url = opts.base_url.rstrip("/") + "/chat/completions"

    def redact(self, text: str | None) -> str | None:
        """``text`` with the API key replaced by ``***`` (for errors, logs and the cache)."""
        if text is None or not self._api_key:
            return text
        return text.replace(self._api_key, "***")

    def _body(self, prompt: str, n: int) -> dict[str, Any]:
        o = self.opts
        body: dict[str, Any] = {"model": o.model, "temperature": o.temperature,
                                "messages": [{"role": "user", "content": prompt}]}
        if o.max_tokens > 0:
            body["max_tokens"] = o.max_tokens
        if n > 1:
            body["n"] = n
        if o.use_logprobs:
            body.update(logprobs=True, top_logprobs=min(20, max(5, self.num_classes)))
        if o.json_mode:
            body["response_format"] = {"type": "json_object"}
        body.update(o.extra_body)
        return body

    async def complete(self, prompt: str, n: int) -> Reply:
        """``n`` sampled answers: one request with ``n=n`` when the server honours it, else
        (detected on the first short reply) ``n`` separate requests."""
        reply = Reply()
        prompt_estimate = estimate_tokens(prompt)
        while len(reply.contents) < n:
            want = n - len(reply.contents)
            ask = want if self.stats.supports_n is not False else 1
            reserve = prompt_estimate + max(self.opts.max_tokens, 1) * ask
            try:
                data = await self._post(self._body(prompt, ask), reserve)
            except RequestFailed as exc:
                if exc.kind == "n_rejected":
                    continue
                raise
            reply.requests += 1
            choices = data["choices"]  # a non-empty list (checked by _post)
            if ask > 1:
                self._note_n_support(len(choices) >= ask, ask)
            for choice in choices[:want]:
                reply.contents.append(_content(choice))
                reply.top_logprobs.append(_first_top_logprobs(choice))
            usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
            prompt_tokens = _int(usage.get("prompt_tokens"))
            completion_tokens = _int(usage.get("completion_tokens"))
            reply.prompt_tokens += prompt_tokens
            reply.completion_tokens += completion_tokens
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
        return reply

    def _note_n_support(self, supported: bool, n: int) -> None:
        if not supported and self.stats.supports_n is not False:
            logger.warning("the server ignores or rejects n=%d; sending one request per "
                           "sample instead", n)
        self.stats.supports_n = supported

    async def _post(self, body: dict[str, Any], tokens: int) -> dict:
        """The JSON body of a 200 response with a non-empty ``choices`` list; retries
        transient failures (an empty ``choices`` list is one) with backoff."""
        import httpx

        opts = self.opts
        for attempt in range(opts.max_retries + 1):
            await self.limiter.acquire(tokens)
            self.stats.http_requests += 1
            retry_after = None
            try:
                resp = await asyncio.wait_for(self.http.post(self.url, json=body), opts.timeout)
            except (httpx.TimeoutException, asyncio.TimeoutError):
                kind, detail = "timeout", f"no response within {opts.timeout:g}s"
            except httpx.TransportError as exc:
                kind, detail = "connection_error", f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    data, kind, detail = _read_body(resp)
                    if isinstance(data, dict):
                        self.limiter.settle(tokens, _used_tokens(data))
                    if kind is None:
                        return data
                else:
                    kind, detail, retry_after = self._http_error(resp, body)
            detail = self.redact(detail) or ""
            self.stats.transient_errors[kind] += 1
            if attempt == opts.max_retries:
                final = _final_kind(kind)
                raise RequestFailed(final, f"{detail} (after {attempt + 1} attempts)")
            delay = backoff_delay(attempt, opts.backoff_base, opts.backoff_max, retry_after)
            logger.debug("%s (attempt %d/%d); retrying in %.2fs", detail[:120], attempt + 1,
                         opts.max_retries + 1, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _http_error(self, resp: Any, body: dict) -> tuple[str, str, float | None]:
        code = resp.status_code
        text = self.redact(resp.text[:300].strip()) or ""
        if code in (408, 429) or code >= 500:
            return f"http_{code}", f"HTTP {code}: {text}", parse_retry_after(resp.headers)
        if code in FATAL_STATUS:
            raise FatalAPIError(
                f"{self.url}: HTTP {code}, {FATAL_STATUS[code]} (model {self.opts.model!r}); "
                f"server said: {text[:200]}. Check --base-url, --model and the API key "
                "environment variable (--api-key-env)")
        if body.get("n", 1) > 1 and self.stats.supports_n is None:
            self._note_n_support(False, body["n"])  # some servers reject n > 1
            raise RequestFailed("n_rejected", f"HTTP {code} for n={body['n']}: {text}")
        raise RequestFailed(f"http_{code}", f"HTTP {code}: {text}")


def _final_kind(kind: str) -> str:
    """The failure kind recorded when retries of ``kind`` run out."""
    if kind in ("timeout", "connection_error", "bad_response", "empty_choices"):
        return kind
    if kind.startswith("http_5"):
        return "http_5xx_exhausted"
    return f"{kind}_exhausted"  # http_429_exhausted, http_408_exhausted


def _read_body(resp: Any) -> tuple[Any, str | None, str]:
    """(JSON body, failure kind or None, detail) of an HTTP 200 response."""
    try:
        data = resp.json()
    except ValueError:
        return None, "bad_response", "HTTP 200 with a body that is not JSON"
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        return data, "bad_response", "HTTP 200 without a 'choices' list"
    if not choices:
        return data, "empty_choices", "HTTP 200 with an empty 'choices' list"
    return data, None, ""


def _used_tokens(data: dict) -> int | None:
    """``usage.total_tokens`` (or prompt + completion tokens); None when not reported."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    if isinstance(usage.get("total_tokens"), int) and not isinstance(usage["total_tokens"], bool):
        return usage["total_tokens"]
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if not any(isinstance(v, int) and not isinstance(v, bool) for v in parts):
        return None
    return sum(_int(v) for v in parts)


def _content(choice: Any) -> str | None:
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _first_top_logprobs(choice: Any) -> list[dict] | None:
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    tokens = logprobs.get("content") if isinstance(logprobs, dict) else None
    for token in tokens or []:
        if isinstance(token, dict) and str(token.get("token", "")).strip():
            return token.get("top_logprobs") or None
    return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Labeller:
    """Asks for one text until ``samples`` usable answers arrive or the retries run out."""

    def __init__(self, client: ChatClient, class_names: list[str], prompt_hash: str, *,
                 multi_label: bool = False):
        self.client, self.class_names, self.prompt_hash = client, class_names, prompt_hash
        self.multi_label = multi_label  # answers are independent per-class probabilities
        self.opts = client.opts
        self.codes = choice_labels(len(class_names)) if self.opts.use_logprobs else []

    def _parse(self, content: str | None, top: list[dict] | None) -> ParsedAnswer:
        if self.opts.use_logprobs:
            if top is None:
                return ParsedAnswer(None, "no_logprobs")
            return parse_top_logprobs(top, self.codes)
        return parse_answer(content or "", self.class_names, multi_label=self.multi_label)

    async def label(self, key: str, text: str, prompt: str) -> Answer:
        opts = self.opts
        answer = Answer(key=key, model=opts.model, prompt_hash=self.prompt_hash,
                        samples=opts.samples, temperature=opts.temperature, text=text,
                        status="failed")
        good: list[list[float]] = []
        notes: Counter = Counter()
        last: ParsedAnswer | None = None
        for attempt in range(opts.parse_retries + 1):
            try:
                reply = await self.client.complete(prompt, opts.samples - len(good))
            except RequestFailed as exc:
                answer.reason, answer.detail = exc.kind, exc.detail
                return answer
            answer.requests += reply.requests
            answer.prompt_tokens += reply.prompt_tokens
            answer.completion_tokens += reply.completion_tokens
            for content, top in zip(reply.contents, reply.top_logprobs, strict=True):
                last = self._parse(content, top)
                answer.raw = self.client.redact(content)
                if last.ok:
                    good.append(last.probs)
                    notes.update(percent=int(last.percent), renormalised=int(last.renormalised),
                                 missing_filled=last.missing, unknown_names=len(last.unknown),
                                 renamed=len(last.renamed))
            if len(good) >= opts.samples:
                break
            if attempt < opts.parse_retries:
                self.client.stats.parse_retries += 1
        if good:
            answer.status, answer.probs = "ok", average(good)
            answer.raw, answer.notes = None, {**dict(notes), "samples_used": len(good)}
            return answer
        no_lp = last is not None and last.error == "no_logprobs"
        answer.reason = "no_logprobs" if no_lp else (last.kind if last else "unparseable")
        answer.detail = ("the server returned no top_logprobs; drop --use-logprobs" if no_lp
                         else f"{last.error if last else 'no answer'} "
                              f"(after {opts.parse_retries + 1} tries)")
        return answer

