"""Pure ASGI middleware of the service (no request buffering, no ``BaseHTTPMiddleware``):

* :class:`ObserveMiddleware` counts every answer in the Prometheus metrics (bounded labels);
* :class:`ApiKeyMiddleware` requires ``Authorization: Bearer <key>`` on every route but
  ``/health`` (constant-time compare);
* :class:`BodyLimitMiddleware` counts the body bytes actually received (``Content-Length``
  or not, chunked too), stops reading at the limit and answers 413.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from zhcls.serve.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, message: str,
                     headers: dict[str, str] | None = None) -> None:
    """A JSON error answer ``{"error": message}`` written straight to ``send``."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


# The app never reads past the limit. uvicorn then reads and discards the rest of the body
# (memory stays flat) so the connection stays usable and the sender gets its 413. Answering
# with "Connection: close" instead makes the kernel reset the connection over the unread
# bytes, and the client sees a transport error, not the 413 (bench/serve_load.py: every
# chunked oversize body and every refused Content-Length body failed that way).


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body is over the limit (the app stops reading)."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self, size: str) -> str:
        return (f"request body of {size} bytes is over the limit of {self.max_bytes}; send "
                "fewer or shorter texts")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, 413, self._too_large(declared.decode()))
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # whatever the app made of the cut body; the 413 goes out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if over and not started:
            await send_error(send, 413, self._too_large(f"more than {self.max_bytes}"))


class ApiKeyMiddleware:
    """Every route but ``open_paths`` needs ``Authorization: Bearer <key>``; 401 otherwise."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: tuple[str, ...] = ("/health",)):
        self.app, self.open_paths = app, open_paths
        self._expected = b"Bearer " + api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = header(scope, b"authorization") or b""
        if not hmac.compare_digest(given, self._expected):
            what = "missing" if not given else "wrong"
            await send_error(send, 401, f"{what} API key: send the header 'Authorization: "
                             "Bearer <key>' with the key in the server's --api-key-env "
                             "variable", {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class ObserveMiddleware:
    """Request count and latency by (method, endpoint, status) into ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.observe_request(scope["method"], scope["path"], status,
                                         time.perf_counter() - start)
