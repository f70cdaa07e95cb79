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
    p.add_argument("--threads", type=int, help="CPU threads for the model (default: library "
                   "default)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.errors import ZhclsError
    from zhcls.serve.app import ServeSettings, serve

    for name in ("max_texts", "max_chars", "max_batch", "batch_size"):
        if getattr(args, name) < 1:
            raise ZhclsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 1 <= args.port <= 65535:
        raise ZhclsError(f"--port must be from 1 to 65535, got {args.port}")
    if args.max_wait_ms < 0:
        raise ZhclsError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    settings = ServeSettings(max_texts=args.max_texts, max_chars=args.max_chars,
                             max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    print(f"zhcls serve: http://{args.host}:{args.port}  (docs: /docs, metrics: /metrics)",
          flush=True)
    serve(args.checkpoint, args.host, args.port, device=args.device, settings=settings,
          quantized=args.quantized, batch_size=args.batch_size, threads=args.threads,
          log_level=args.log_level)
    return 0
