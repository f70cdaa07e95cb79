"""Teacher soft labels from an LLM over an OpenAI-compatible chat-completions API.

:func:`label_with_llm` renders one prompt per distinct sentence, sends them with bounded
concurrency through :class:`~zhcls.label.client.ChatClient` (rate limits, retries), parses
each answer into probabilities (:mod:`zhcls.label.parse`), commits every outcome to the
SQLite cache (:mod:`zhcls.label.cache`) the moment it arrives and finally writes
``OUT/{split}.txt`` plus ``OUT/label_report.json``. Re-running the same command resumes
where it stopped and makes no request for a text already answered. The options are
declared once, in :class:`~zhcls.label.options.LLMOptions`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhcls.errors import ZhclsError
from zhcls.label.cache import Answer, AnswerCache, BackgroundWriter, CacheLock, cache_key
from zhcls.label.client import ChatClient, Labeller, RunStats
from zhcls.label.options import LLMOptions
from zhcls.label.prompt import Prompt, build_prompt, pick_few_shot, read_descriptions
from zhcls.label.ratelimit import RateLimiter, estimate_tokens
from zhcls.label.writer import (
    REPORT_NAME,
    LabelReport,
    read_label_data,
    teacher_quality,
    write_json_atomic,
    write_labelled_dataset,
)

logger = logging.getLogger(__name__)


CACHE_NAME = ".zhcls_label_cache.sqlite"


def label_with_llm(data_dir: str | Path, split: str, out_dir: str | Path,
                   options: LLMOptions | None = None, **fields: Any) -> LabelReport:
    """Label ``DATA/{split}`` with an LLM teacher and write the KD dataset to ``out_dir``.

    ``options`` says how to ask (:class:`~zhcls.label.options.LLMOptions`: one field per
    ``zhcls label --llm`` flag, with its help text). Keyword ``fields`` named like its fields
    build it (``model=..., base_url=...``) or override fields of ``options``. The key is read
    from the environment variable ``api_key_env`` (None or unset: no ``Authorization``
    header). The run holds an exclusive lock on the cache (``<cache>.lock``): a second run
    on the same cache stops at once with the holder's PID, or waits with ``wait_lock``.
    """
    started = time.monotonic()
    opts = _options(options, fields).resolved()
    if Path(out_dir).resolve() == Path(data_dir).resolve():
        raise ZhclsError(f"--out {out_dir} is the input dataset directory; pass a new "
                         "directory so the original data is not overwritten")
    data = read_label_data(data_dir, split, opts.task)
    class_names, split_path, examples = data.class_names, data.path, data.examples
    prompt_obj = _make_prompt(data_dir, class_names, opts, data.task)
    prompt_hash = _settings_hash(prompt_obj.hash, opts)
    keys = [cache_key(opts.model, prompt_hash, opts.samples, opts.temperature, e.text)
            for e in examples]
    cache_path = Path(opts.cache) if opts.cache else Path(out_dir) / CACHE_NAME
    report = LabelReport(split=split, model=opts.model, output=None, cache=str(cache_path),
                         rows=len(examples), unique_texts=len(set(keys)))
    if opts.dry_run:
        return _dry_run(report, examples, keys, prompt_obj, opts, cache_path)
    with CacheLock(cache_path, wait=opts.wait_lock), AnswerCache(cache_path) as store:
        before = store.get_many(keys)
        todo = _pending(examples, keys, before, opts.retry_failed)
        logger.info("%s: %d rows, %d distinct texts, %d cached, %d to request (prompt %s, "
                    "hash %s)", split_path, len(examples), report.unique_texts,
                    report.unique_texts - len(todo), len(todo), prompt_obj.source, prompt_hash)
        stats = RunStats()
        try:
            _run(todo, _Job(prompt_obj, opts, class_names, prompt_hash, store, stats,
                            _read_api_key(opts.api_key_env), data.task))
        except KeyboardInterrupt:
            logger.warning("interrupted; %d answers are safe in %s — run the same command "
                           "again to resume", store.count("ok"), cache_path)
            raise
        after = store.get_many(keys)
        rows = [after[k].probs if k in after and after[k].ok else None for k in keys]
        report.output = str(write_labelled_dataset(data_dir, split, out_dir, rows,
                                                   task=data.task))
        _fill_report(report, examples, keys, before, after, rows, stats, {k for k, _ in todo})
        _finish_report(report, opts, started, Path(out_dir) / REPORT_NAME)
    return report


def _options(options: LLMOptions | None, fields: dict[str, Any]) -> LLMOptions:
    if options is None:
        return LLMOptions(**fields)
    try:
        return dataclasses.replace(options, **fields)
    except TypeError as exc:
        raise TypeError(f"label_with_llm(): {exc}; keywords must be LLMOptions fields") from None


def _finish_report(report: LabelReport, opts: LLMOptions, started: float, path: Path) -> None:
    report.wall_seconds = time.monotonic() - started
    report.requests_per_second = report.http_requests / max(report.wall_seconds, 1e-9)
    if opts.price_in is not None or opts.price_out is not None:
        report.estimated_cost = (report.prompt_tokens * (opts.price_in or 0.0)
                                 + report.completion_tokens * (opts.price_out or 0.0)) / 1e6
    write_json_atomic(path, report.to_dict())
    for line in report.summary().splitlines():
        logger.info("%s", line)


def _make_prompt(data_dir: str | Path, class_names: list[str], opts: LLMOptions,
                 task: str = "single_label") -> Prompt:
    descs = read_descriptions(opts.descriptions, class_names) if opts.descriptions else None
    multi = task == "multi_label"
    shots: list = []
    if opts.few_shot > 0:
        train = read_label_data(data_dir, "train", task).examples
        shots = pick_few_shot([(e.text, tuple(e.label) if multi else e.label) for e in train],
                              opts.few_shot)
    return build_prompt(class_names, template_path=opts.prompt, descriptions=descs,
                        few_shot=shots, logprobs=opts.use_logprobs, multi_label=multi)


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


@dataclass
class _Job:
    """What one labelling run needs besides the texts."""

    prompt: Prompt
    opts: LLMOptions
    class_names: list[str]
    prompt_hash: str
    store: AnswerCache
    stats: RunStats
    api_key: str | None = field(default=None, repr=False)
    task: str = "single_label"


def _run(todo: list[tuple[str, str]], job: _Job) -> None:
    if not todo:
        return
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="labelling", unit="text", disable=not job.opts.progress,
              dynamic_ncols=True) as bar:
        asyncio.run(_run_async(todo, job, bar))


async def _run_async(todo: list[tuple[str, str]], job: _Job, bar: Any) -> None:
    import httpx

    opts = job.opts
    headers = {"Authorization": f"Bearer {job.api_key}"} if job.api_key else {}
    limits = httpx.Limits(max_connections=opts.concurrency,
                          max_keepalive_connections=opts.concurrency)
    writer = BackgroundWriter(job.store)
    try:
        async with httpx.AsyncClient(timeout=opts.timeout, headers=headers, limits=limits,
                                     trust_env=False) as http:
            client = ChatClient(opts, http, RateLimiter(opts.rpm, opts.tpm), job.stats,
                                num_classes=len(job.class_names), api_key=job.api_key)
            labeller = Labeller(client, job.class_names, job.prompt_hash,
                                multi_label=job.task == "multi_label")
            await _work(todo, job.prompt, labeller, writer, bar, opts.concurrency,
                        opts.abort_after_failures)
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


def _dry_run(report: LabelReport, examples: list, keys: list[str], prompt: Prompt,
             opts: LLMOptions, cache_path: Path) -> LabelReport:
    """Count the requests still needed and render the first prompt; sends nothing and
    writes nothing (an existing cache is only read)."""
    cached: dict[str, Answer] = {}
    if cache_path.exists():
        with AnswerCache(cache_path) as store:
            cached = store.get_many(keys)
    todo = _pending(examples, keys, cached, opts.retry_failed)
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
