"""Teacher soft labels from an LLM over an OpenAI-compatible chat-completions API.

:func:`label_with_llm` renders one prompt per distinct sentence, sends them with bounded
concurrency through :class:`~zhcls.label.client.ChatClient` (rate limits, retries), parses
each answer into probabilities (:mod:`zhcls.label.parse`), commits every outcome to the
SQLite cache (:mod:`zhcls.label.cache`) the moment it arrives and finally writes
``OUT/{split}.txt`` plus ``OUT/label_report.json``. Re-running the same command resumes
where it stopped and makes no request for a text already answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from zhcls.errors import ZhclsError
from zhcls.label.cache import Answer, AnswerCache, BackgroundWriter, cache_key
from zhcls.label.client import ChatClient, Labeller, LLMOptions, RunStats
from zhcls.label.prompt import Prompt, build_prompt, pick_few_shot, read_descriptions
from zhcls.label.ratelimit import RateLimiter, estimate_tokens
from zhcls.label.writer import (
    LabelReport,
    read_label_split,
    teacher_quality,
    write_json_atomic,
    write_labelled_dataset,
)

logger = logging.getLogger(__name__)


CACHE_NAME = ".zhcls_label_cache.sqlite"
REPORT_NAME = "label_report.json"


def label_with_llm(
    data_dir: str | Path, split: str, out_dir: str | Path, *, model: str, base_url: str,
    api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 8, samples: int = 1,
    temperature: float | None = None, max_tokens: int | None = None, timeout: float = 60.0,
    rpm: float | None = None, tpm: float | None = None, max_retries: int = 5,
    parse_retries: int = 2, backoff_base: float = 1.0, backoff_max: float = 60.0,
    prompt: str | Path | None = None, descriptions: str | Path | None = None,
    few_shot: int = 0, use_logprobs: bool = False, json_mode: bool = False,
    extra_body: dict[str, Any] | None = None, cache: str | Path | None = None,
    retry_failed: bool = True, price_in: float | None = None, price_out: float | None = None,
    dry_run: bool = False, progress: bool = True, abort_after_failures: int = 100,
) -> LabelReport:
    """Label ``DATA/{split}`` with an LLM teacher and write the KD dataset to ``out_dir``.

    ``model``/``base_url`` name an OpenAI-compatible server (``base_url`` up to ``/v1``);
    the key is read from the environment variable ``api_key_env`` (None or unset: no
    ``Authorization`` header, for local vLLM/Ollama). ``samples`` answers are averaged
    (``temperature`` defaults to 0, or 0.7 when ``samples > 1``). ``max_tokens`` defaults to
    512 (1 with ``use_logprobs``; 0 omits the field). ``timeout`` is per request in seconds;
    ``rpm``/``tpm`` are client-side limits; ``max_retries`` bounds the retries of one request
    (backoff ``backoff_base * 2**attempt`` capped at ``backoff_max``, or ``Retry-After``);
    an unparseable answer is asked again ``parse_retries`` times. ``prompt``,
    ``descriptions`` and ``few_shot`` shape the prompt (:mod:`zhcls.label.prompt`);
    ``json_mode`` sends ``response_format={"type": "json_object"}``; ``extra_body`` is
    merged into every request. ``cache`` defaults to ``OUT/.zhcls_label_cache.sqlite``;
    cached failures are asked again unless ``retry_failed=False``. ``price_in``/``price_out``
    (per 1M tokens) give a cost estimate. ``dry_run`` renders the first prompt and counts the
    requests needed without sending any. The run stops with an error after
    ``abort_after_failures`` consecutive failed texts (0: never).
    """
    started = time.monotonic()
    opts = _make_options(model, base_url, concurrency, samples, temperature, max_tokens,
                         timeout, max_retries, parse_retries, backoff_base, backoff_max,
                         use_logprobs, json_mode, extra_body)
    if Path(out_dir).resolve() == Path(data_dir).resolve():
        raise ZhclsError(f"--out {out_dir} is the input dataset directory; pass a new "
                         "directory so the original data is not overwritten")
    class_names, split_path, examples = read_label_split(data_dir, split)
    opts.num_classes, opts.rpm, opts.tpm = len(class_names), rpm, tpm
    prompt_obj = _make_prompt(data_dir, class_names, prompt, descriptions, few_shot, use_logprobs)
    prompt_hash = _settings_hash(prompt_obj.hash, opts)
    keys = [cache_key(opts.model, prompt_hash, opts.samples, opts.temperature, e.text)
            for e in examples]
    cache_path = Path(cache) if cache else Path(out_dir) / CACHE_NAME
    report = LabelReport(split=split, model=model, output=None, cache=str(cache_path),
                         rows=len(examples), unique_texts=len(set(keys)))
    if dry_run and not cache_path.exists():  # a dry run leaves no files behind
        todo = _pending(examples, keys, {}, retry_failed)
        return _dry_run_report(report, todo, prompt_obj, examples, opts)
    with AnswerCache(cache_path) as store:
        before = store.get_many(keys)
        todo = _pending(examples, keys, before, retry_failed)
        logger.info("%s: %d rows, %d distinct texts, %d cached, %d to request (prompt %s, "
                    "hash %s)", split_path, len(examples), report.unique_texts,
                    report.unique_texts - len(todo), len(todo), prompt_obj.source, prompt_hash)
        if dry_run:
            return _dry_run_report(report, todo, prompt_obj, examples, opts)
        opts.api_key = _read_api_key(api_key_env)
        stats = RunStats()
        try:
            _run(todo, prompt_obj, opts, class_names, prompt_hash, store, stats,
                 progress, abort_after_failures)
        except KeyboardInterrupt:
            logger.warning("interrupted; %d answers are safe in %s — run the same command "
                           "again to resume", store.count("ok"), cache_path)
            raise
        after = store.get_many(keys)
    rows = [after[k].probs if k in after and after[k].ok else None for k in keys]
    report.output = str(write_labelled_dataset(data_dir, split, out_dir, rows))
    _fill_report(report, examples, keys, before, after, rows, stats, {k for k, _ in todo})
    report.wall_seconds = time.monotonic() - started
    report.requests_per_second = report.http_requests / max(report.wall_seconds, 1e-9)
    if price_in is not None or price_out is not None:
        report.estimated_cost = (report.prompt_tokens * (price_in or 0.0)
                                 + report.completion_tokens * (price_out or 0.0)) / 1e6
    write_json_atomic(Path(out_dir) / REPORT_NAME, report.to_dict())
    for line in report.summary().splitlines():
        logger.info("%s", line)
    return report


def _make_options(model: str, base_url: str, concurrency: int, samples: int,
                  temperature: float | None, max_tokens: int | None, timeout: float,
                  max_retries: int, parse_retries: int, backoff_base: float,
                  backoff_max: float, use_logprobs: bool, json_mode: bool,
                  extra_body: dict[str, Any] | None) -> LLMOptions:
    checks = [(concurrency >= 1, "concurrency", concurrency, ">= 1"),
              (samples >= 1, "samples", samples, ">= 1"),
              (timeout > 0, "timeout", timeout, "> 0 seconds"),
              (max_retries >= 0, "max_retries", max_retries, ">= 0"),
              (parse_retries >= 0, "parse_retries", parse_retries, ">= 0"),
              (backoff_base >= 0 and backoff_max >= 0, "backoff", backoff_base, ">= 0"),
              (bool(model), "model", model, "a model name such as deepseek-chat"),
              (base_url.startswith(("http://", "https://")), "base_url", base_url,
               "an http(s) URL such as https://api.deepseek.com/v1")]
    for ok, name, value, expected in checks:
        if not ok:
            raise ZhclsError(f"--{name.replace('_', '-')} is {value!r}; expected {expected}")
    if use_logprobs and samples > 1:
        logger.warning("--use-logprobs reads the distribution directly; --samples %d is "
                       "ignored (using 1)", samples)
        samples = 1
    if temperature is None:
        temperature = 0.7 if samples > 1 else 0.0
    elif samples > 1 and temperature == 0:
        logger.warning("--samples %d at temperature 0 gives near-identical answers; "
                       "raise --temperature (e.g. 0.7)", samples)
    if max_tokens is None:
        max_tokens = 1 if use_logprobs else 512
    return LLMOptions(model=model, base_url=base_url, concurrency=concurrency, samples=samples,
                      temperature=float(temperature), max_tokens=max_tokens, timeout=timeout,
                      max_retries=max_retries, parse_retries=parse_retries,
                      backoff_base=backoff_base, backoff_max=backoff_max,
                      use_logprobs=use_logprobs, json_mode=json_mode,
                      extra_body=dict(extra_body or {}))


def _make_prompt(data_dir: str | Path, class_names: list[str], template: str | Path | None,
                 descriptions: str | Path | None, few_shot: int, logprobs: bool) -> Prompt:
    descs = read_descriptions(descriptions, class_names) if descriptions else None
    shots: list[tuple[str, int]] = []
    if few_shot > 0:
        _, _, train = read_label_split(data_dir, "train")
        shots = pick_few_shot([(e.text, e.label) for e in train], few_shot)
    return build_prompt(class_names, template_path=template, descriptions=descs,
                        few_shot=shots, logprobs=logprobs)


def _settings_hash(template_hash: str, opts: LLMOptions) -> str:
    """The template hash, extended by the request options that change answers."""
    if not (opts.use_logprobs or opts.json_mode or opts.extra_body):
        return template_hash
    extra = json.dumps([template_hash, opts.use_logprobs, opts.json_mode, opts.extra_body],
                       sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(extra.encode("utf-8")).hexdigest()[:16]


def _pending(examples: list, keys: list[str], cached: dict[str, Answer],
             retry_failed: bool) -> list[tuple[str, str]]:
    todo: dict[str, str] = {}
    for example, key in zip(examples, keys, strict=True):
        hit = cached.get(key)
        if hit is not None and (hit.ok or not retry_failed):
            continue
        todo.setdefault(key, example.text)
    return list(todo.items())


def _read_api_key(env_name: str | None) -> str | None:
    if not env_name:
        return None
    key = os.environ.get(env_name, "").strip()
    if not key:
        logger.warning("environment variable %s is not set: sending no API key (fine for "
                       "local vLLM/Ollama servers; set it, or --api-key-env, for hosted APIs)",
                       env_name)
    return key or None


def _run(todo: list[tuple[str, str]], prompt: Prompt, opts: LLMOptions, class_names: list[str],
         prompt_hash: str, store: AnswerCache, stats: RunStats, progress: bool,
         abort_after: int) -> None:
    if not todo:
        return
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="labelling", unit="text", disable=not progress,
              dynamic_ncols=True) as bar:
        asyncio.run(_run_async(todo, prompt, opts, class_names, prompt_hash, store, stats,
                               bar, abort_after))


async def _run_async(todo: list[tuple[str, str]], prompt: Prompt, opts: LLMOptions,
                     class_names: list[str], prompt_hash: str, store: AnswerCache,
                     stats: RunStats, bar: Any, abort_after: int) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
    limits = httpx.Limits(max_connections=opts.concurrency,
                          max_keepalive_connections=opts.concurrency)
    writer = BackgroundWriter(store)
    try:
        async with httpx.AsyncClient(timeout=opts.timeout, headers=headers, limits=limits,
                                     trust_env=False) as http:
            client = ChatClient(opts, http, RateLimiter(opts.rpm, opts.tpm), stats)
            labeller = Labeller(client, class_names, prompt_hash)
            await _work(todo, prompt, labeller, writer, bar, opts.concurrency, abort_after)
    finally:
        writer.close()


async def _work(todo: list[tuple[str, str]], prompt: Prompt, labeller: Labeller,
                writer: BackgroundWriter, bar: Any, concurrency: int, abort_after: int) -> None:
    """``concurrency`` workers take texts from one shared iterator; each answer is on disk
    before its worker moves on."""
    jobs = iter(todo)
    state = {"streak": 0, "failed": 0}

    async def worker() -> None:
        for key, text in jobs:
            answer = await labeller.label(key, text, prompt.render(text))
            await writer.put(answer)
            state["streak"] = 0 if answer.ok else state["streak"] + 1
            state["failed"] += not answer.ok
            bar.update(1)
            if not answer.ok:
                bar.set_postfix(failed=state["failed"], refresh=False)
            if abort_after and state["streak"] >= abort_after:
                raise ZhclsError(
                    f"{abort_after} texts in a row failed (last: {answer.reason}: "
                    f"{answer.detail}); stopping. Fix the cause and run the same command "
                    "again: answers so far are cached (--abort-after-failures 0 never stops)")

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()


def _dry_run_report(report: LabelReport, todo: list[tuple[str, str]], prompt: Prompt,
                    examples: list, opts: LLMOptions) -> LabelReport:
    first_text = todo[0][1] if todo else examples[0].text
    report.dry_run = True
    report.prompt_preview = prompt.render(first_text)
    report.estimated_requests = len(todo)
    report.estimated_prompt_tokens = sum(estimate_tokens(prompt.render(t)) for _, t in todo)
    if opts.samples > 1:
        logger.info("--samples %d: %d requests if the server honours n, else up to %d",
                    opts.samples, len(todo), len(todo) * opts.samples)
    logger.info("%s", report.summary())
    return report


def _fill_report(report: LabelReport, examples: list, keys: list[str],
                 before: dict[str, Answer], after: dict[str, Answer],
                 rows: list[list[float] | None], stats: RunStats, requested: set[str]) -> None:
    kinds: dict[str, int] = {}
    repairs: dict[str, int] = {}
    for example, key, row in zip(examples, keys, rows, strict=True):
        answer = after.get(key)
        if row is not None:
            report.labelled += 1
            report.from_cache += key not in requested and key in before
        else:
            reason = answer.reason if answer is not None else "not_requested"
            kinds[reason] = kinds.get(reason, 0) + 1
            if len(report.failed_lines) < 20:
                report.failed_lines.append(example.line)
    for key in dict.fromkeys(keys):
        answer = after.get(key)
        for name, count in (answer.notes if answer is not None and answer.ok else {}).items():
            if name != "samples_used" and count:
                repairs[name] = repairs.get(name, 0) + int(count)
    report.failed = report.rows - report.labelled
    report.failure_kinds = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    report.requested = len(requested)
    report.agreement, report.mean_confidence = teacher_quality(
        [e.label for e in examples], rows)
    report.prompt_tokens, report.completion_tokens = stats.prompt_tokens, stats.completion_tokens
    report.http_requests, report.parse_retries = stats.http_requests, stats.parse_retries
    report.transient_errors = dict(stats.transient_errors)
    report.repairs = repairs
