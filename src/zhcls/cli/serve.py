"""``zhcls serve CKPT --host 127.0.0.1 --port 8000``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP prediction service (FastAPI + uvicorn)",
                       description="Serve a checkpoint or ONNX export: POST /predict, GET "
                       "/health, /labels, /metrics (Prometheus), OpenAPI docs at /docs.")
    p.add_argument("checkpoint", help="checkpoint directory or ONNX export directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quantized", action="store_true",
                   help="serve model.int8.onnx of an ONNX export made with --quantize int8")
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64)")
    p.add_argument("--max-chars", type=int, default=2000,
                   help="characters per text (default 2000)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="texts per model call when micro-batching (default 64; 1 = off)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests (default 5 ms)")
    p.add_argument("--max-queue", type=int, default=1024,
                   help="requests waiting for the model; more are answered 503 with "
                   "Retry-After (default 1024)")
    p.add_argument("--max-connections", type=int, default=2048,
                   help="open connections + running requests before uvicorn answers 503 "
                   "(default 2048)")
    p.add_argument("--api-key-env", metavar="NAME",
                   help="require 'Authorization: Bearer KEY' on every route but /health, KEY "
                   "read from the environment variable NAME; use it on any --host other than "
                   "127.0.0.1")
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: library "
                   "default)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.errors import ConfigError
    from zhcls.utils import check_at_least_one, require_extra

    require_extra("serve")
    from zhcls.serve.app import ServeSettings, serve
    from zhcls.serve.network import check_bindable

    check_at_least_one(args, "max_texts", "max_chars", "max_batch", "batch_size", "max_queue",
                       "max_connections", "threads")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {args.port}")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    settings = ServeSettings(max_texts=args.max_texts, max_chars=args.max_chars,
                             max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                             max_queue=args.max_queue, max_connections=args.max_connections,
                             api_key=api_key(args.api_key_env))
    check_bindable(args.host, args.port)  # before the banner and the model load
    print(f"zhcls serve: http://{args.host}:{args.port}  (docs: /docs, metrics: /metrics)",
          flush=True)
    serve(args.checkpoint, args.host, args.port, device=args.device, settings=settings,
          quantized=args.quantized, batch_size=args.batch_size, threads=args.threads,
          log_level=args.log_level)
    return 0


def api_key(env_name: str | None) -> str | None:
    """The key in the environment variable ``env_name`` (None without ``--api-key-env``)."""
    import os

    from zhcls.errors import ConfigError

    if env_name is None:
        return None
    key = os.environ.get(env_name, "").strip()
    if not key:
        raise ConfigError(f"--api-key-env {env_name}: the environment variable {env_name} is "
                          f"{'empty' if env_name in os.environ else 'not set'}; set it to the "
                          f"key clients will send (e.g. export {env_name}=$(openssl rand -hex "
                          "32)) or drop --api-key-env")
    return key
