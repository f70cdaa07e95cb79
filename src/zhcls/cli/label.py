"""``zhcls label``: write teacher soft labels for knowledge distillation.

Two teachers: ``--llm MODEL`` asks an LLM over an OpenAI-compatible chat-completions API
(:func:`zhcls.label.llm.label_with_llm`); ``--teacher CKPT`` runs a trained zhcls checkpoint
(:func:`zhcls.label.local.label_with_checkpoint`). Both write ``OUT/{split}.txt`` with a
teacher column plus the other splits and ``class.txt``, ready for ``zhcls train``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  DEEPSEEK_API_KEY=... zhcls label --llm deepseek-chat --base-url https://api.deepseek.com/v1 \\
      --api-key-env DEEPSEEK_API_KEY --data data/thucnews --split train --out data/thucnews_kd
  zhcls label --llm qwen2.5:7b --base-url http://127.0.0.1:11434/v1 --api-key-env none \\
      --data data/thucnews --out data/kd --dry-run
  zhcls label --teacher runs/teacher/best --data data/thucnews --out data/kd
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label", help="write teacher soft labels (LLM or local checkpoint) for distillation",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--llm", metavar="MODEL", help="label with this LLM (chat-completions)")
    mode.add_argument("--teacher", metavar="CKPT", help="label with a trained zhcls checkpoint")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="dataset directory with class.txt and {train,dev,test}.{txt,csv,jsonl}")
    p.add_argument("--split", default="train", help="split to label (default: train)")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")
    local = p.add_argument_group("--teacher options")
    local.add_argument("--emit", choices=("probs", "logits"), default="probs",
                       help="teacher column: probabilities or raw logits (default: probs)")
    local.add_argument("--batch-size", type=int, default=64)
    local.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    _add_llm_arguments(p.add_argument_group("--llm options"))
    p.set_defaults(func=run)


def _add_llm_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL",
                                                        "https://api.openai.com/v1"),
                   help="OpenAI-compatible API root, up to /v1 (default: $OPENAI_BASE_URL or "
                        "https://api.openai.com/v1)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the API key; 'none' sends no key")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    g.add_argument("--samples", type=int, default=1,
                   help="answers averaged per text (self-consistency; default 1)")
    g.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default 0, or 0.7 with --samples > 1)")
    g.add_argument("--max-tokens", type=int, default=None,
                   help="answer length limit (default 512; 1 with --use-logprobs; 0 omits it)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    g.add_argument("--rpm", type=float, default=None, help="client-side requests per minute")
    g.add_argument("--tpm", type=float, default=None,
                   help="client-side tokens per minute (estimated from prompt length)")
    g.add_argument("--max-retries", type=int, default=5,
                   help="retries per request on 429/5xx/timeouts/connection errors")
    g.add_argument("--parse-retries", type=int, default=2,
                   help="re-asks when an answer cannot be parsed (default 2)")
    g.add_argument("--backoff-base", type=float, default=1.0, help="first backoff in seconds")
    g.add_argument("--backoff-max", type=float, default=60.0, help="longest backoff")
    g.add_argument("--prompt", metavar="FILE", help="prompt template (see docs/labelling.md)")
    g.add_argument("--descriptions", metavar="FILE",
                   help="class descriptions: JSON {name: desc} or name<TAB>desc lines")
    g.add_argument("--few-shot", type=int, default=0, metavar="K",
                   help="K labelled training examples in the prompt (deterministic)")
    g.add_argument("--use-logprobs", action="store_true",
                   help="ask for a class code and read the token top_logprobs")
    g.add_argument("--json-mode", action="store_true",
                   help='send response_format={"type": "json_object"}')
    g.add_argument("--extra-body", metavar="JSON", default=None,
                   help="JSON object merged into every request body")
    g.add_argument("--cache", metavar="PATH", help="answer cache (default OUT/"
                   ".zhcls_label_cache.sqlite)")
    g.add_argument("--no-retry-failed", dest="retry_failed", action="store_false",
                   help="do not re-ask texts that failed in an earlier run")
    g.add_argument("--price-in", type=float, default=None, help="price per 1M prompt tokens")
    g.add_argument("--price-out", type=float, default=None,
                   help="price per 1M completion tokens")
    g.add_argument("--abort-after-failures", type=int, default=100, metavar="N",
                   help="stop after N texts in a row failed (0: never)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the first prompt and the request count, send nothing")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.teacher:
        return _run_teacher(args)
    if not getattr(args, "verbose", False):
        logging.getLogger("httpx").setLevel(logging.WARNING)
    from zhcls.label.llm import label_with_llm

    api_key_env = None if args.api_key_env.lower() in ("", "none") else args.api_key_env
    report = label_with_llm(
        args.data, args.split, args.out, model=args.llm, base_url=args.base_url,
        api_key_env=api_key_env, concurrency=args.concurrency, samples=args.samples,
        temperature=args.temperature, max_tokens=args.max_tokens, timeout=args.timeout,
        rpm=args.rpm, tpm=args.tpm, max_retries=args.max_retries,
        parse_retries=args.parse_retries, backoff_base=args.backoff_base,
        backoff_max=args.backoff_max, prompt=args.prompt, descriptions=args.descriptions,
        few_shot=args.few_shot, use_logprobs=args.use_logprobs, json_mode=args.json_mode,
        extra_body=_extra_body(args.extra_body), cache=args.cache,
        retry_failed=args.retry_failed, price_in=args.price_in, price_out=args.price_out,
        dry_run=args.dry_run, progress=args.progress,
        abort_after_failures=args.abort_after_failures,
    )
    if report.dry_run:
        print("----- first prompt -----")
        print(report.prompt_preview)
        print("------------------------")
    print(report.summary())
    return 0


def _run_teacher(args: argparse.Namespace) -> int:
    try:
        from zhcls.label.local import label_with_checkpoint
    except ModuleNotFoundError as exc:
        if exc.name != "zhcls.label.local":
            raise
        raise ZhclsError("labelling with a local checkpoint (--teacher) is not available in "
                         "this build; use --llm MODEL instead") from None
    label_with_checkpoint(args.teacher, args.data, args.split, args.out, emit=args.emit,
                          batch_size=args.batch_size, device=args.device)
    return 0


def _extra_body(raw: str | None) -> dict | None:
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
