"""The HTTP service: ``POST /predict``, ``GET /health``, ``GET /labels``, ``GET /metrics``
(Prometheus text format) and OpenAPI docs at ``/docs``.

Every bad request gets a 4xx JSON body ``{"error": "<what is wrong>", "detail": [...]}``:
malformed JSON → 400; a body not sent as JSON (``Content-Type`` missing or other than
``application/json``, e.g. curl's default form type) → 415; wrong types, an empty ``texts``
list, too many texts, an empty or too long text, a bad ``top_k`` → 422; a body over the size
limit → 413 (counted as it arrives, chunked bodies too); a missing or wrong API key
(``--api-key-env``) → 401; a full queue → 503 with ``Retry-After``. Anything unexpected is a 500 with the same shape; the process keeps
serving. ``/docs`` serves Swagger UI from the installed ``fastapi-offline`` package (no CDN).

A multi-label model answers each text with its label set and every class's score
(:class:`MultiLabelPredictionOut`, the schema of ``/predict`` in that service's OpenAPI
document); ``/labels`` adds the per-class thresholds.
"""

from __future__ import annotations

import email.message
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhcls.inference.classifier import Classifier, InputTextError
from zhcls.serve.batcher import MicroBatcher, Overloaded, Unavailable
from zhcls.serve.metrics import ServiceMetrics
from zhcls.serve.middleware import ApiKeyMiddleware, BodyLimitMiddleware, ObserveMiddleware
from zhcls.serve.network import check_bindable, exposure_warning

logger = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """Request limits and micro-batching knobs."""

    max_texts: int = 64  # texts per request
    max_chars: int = 2000  # characters per text
    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    max_queue: int = 1024  # requests waiting for the model; more get 503 + Retry-After
    retry_after_s: int = 1  # the Retry-After of a 503
    api_key: str | None = field(default=None, repr=False)  # Bearer key for all but /health
    max_connections: int = 2048  # open connections + running requests (uvicorn's cap)
    backlog: int = 2048  # TCP connections waiting to be accepted
    keep_alive_s: float = 30.0  # idle keep-alive connections are closed after this

    @property
    def max_body_bytes(self) -> int:
        # UTF-8 Chinese is 3 bytes a character; JSON escapes (\uXXXX) take 6.
        return self.max_texts * (self.max_chars * 6 + 16) + 4096


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[StrictStr] = Field(description="texts to classify", examples=[["中超联赛第十轮主队逆转取胜"]])
    top_k: StrictInt = Field(1, description="how many ranked labels to return (1 = best only)")
    probs: StrictBool = Field(False, description="also return every label's probability")


class LabelScoreOut(BaseModel):
    label: str
    label_id: int
    score: float


WARNING_FIELD = Field(None, description="only when every token of the text is [UNK] (the "
                      "vocabulary knows none of its characters): the label is a guess")


class PredictionOut(BaseModel):
    label: str
    label_id: int
    score: float
    top_k: list[LabelScoreOut] | None = None
    warning: str | None = WARNING_FIELD
    probs: list[float] | None = None


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]
    labels: list[str] | None = Field(None, description="names of the probs columns")


class MultiLabelPredictionOut(BaseModel):
    labels: list[LabelScoreOut] = Field(
        description="the label set: every class whose sigmoid score is at or above its "
        "threshold (GET /labels lists them), best score first; may be empty")
    scores: dict[str, float] = Field(description="every class's sigmoid score by name "
                                     "(label-id order; they need not sum to 1)")
    top_k: list[LabelScoreOut] | None = Field(
        None, description="top_k > 1: the k best-scoring classes, whatever their threshold")
    warning: str | None = WARNING_FIELD
    probs: list[float] | None = Field(None, description="probs: true: the scores as a list "
                                      "in label-id order")


class MultiLabelPredictResponse(BaseModel):
    predictions: list[MultiLabelPredictionOut]
    labels: list[str] | None = Field(None, description="names of the probs columns")


class ErrorResponse(BaseModel):
    error: str
    detail: list | None = None


def error(status: int, message: str, detail: list | None = None) -> JSONResponse:
    body = {"error": message} if detail is None else {"error": message, "detail": detail}
    return JSONResponse(body, status_code=status)


@dataclass(frozen=True)
class ScoredRows:
    """What one model call gives the service, one row per text (the batcher slices it per
    request): probabilities (N, C) and each text's warning (every token [UNK]) or None."""

    probs: np.ndarray
    warnings: list[str | None]

    def __len__(self) -> int:
        return len(self.warnings)

    def __getitem__(self, rows: slice) -> ScoredRows:
        return ScoredRows(self.probs[rows], self.warnings[rows])


def scorer(clf: Classifier) -> Callable[[list[str]], ScoredRows]:
    """The batcher's model call: the path ``Classifier.predict`` takes (the same numbers and
    the same [UNK] warnings as ``zhcls predict``), all texts in one chunk."""
    def score(texts: list[str]) -> ScoredRows:
        rows = list(clf.predict_iter(texts, chunk_size=max(len(texts), 1)))
        probs = np.stack([row for _, row in rows]) if rows else np.zeros((0, clf.num_labels))
        return ScoredRows(probs, [pred.warning for pred, _ in rows])
    return score


def require_json(request: Request) -> None:
    """415 for a body not sent as JSON, ``Content-Type`` missing included (FastAPI would not
    parse it and answer a misleading 422); ``application/json`` and ``application/*+json`` pass."""
    kind = request.headers.get("content-type", "")
    if not kind.strip():
        raise HTTPException(415, "no Content-Type header: send the body as JSON with the "
                            "header 'Content-Type: application/json'")
    parsed = email.message.Message()
    parsed["content-type"] = kind
    subtype = parsed.get_content_subtype()
    if parsed.get_content_maintype() == "application" and (subtype == "json"
                                                           or subtype.endswith("+json")):
        return
    hint = (" (curl -d sends this unless told otherwise)"
            if parsed.get_content_type() == "application/x-www-form-urlencoded" else "")
    raise HTTPException(415, f"unsupported Content-Type {kind!r}{hint}: send the body as JSON "
                        "with the header 'Content-Type: application/json'")


def create_app(clf: Classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application around ``clf``."""
    settings = settings or ServeSettings()
    metrics = ServiceMetrics()
    batcher = MicroBatcher(scorer(clf), settings.max_batch, settings.max_wait_ms,
                           on_batch=metrics.observe_batch, max_queue=settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        logger.info("serving %s (%s) with micro-batches of up to %d texts / %.1f ms",
                    clf.source, clf.backend.name, settings.max_batch, settings.max_wait_ms)
        if settings.api_key:
            logger.info("API key required on every route but /health")
        yield
        await batcher.stop()

    errors = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 500, 503)}
    app = FastAPIOffline(title="zhcls", version=_version(), lifespan=lifespan, responses=errors,
                         description="Chinese text classification. Labels: "
                         + ", ".join(clf.labels) + ". Swagger UI is served locally (no CDN).")
    app.state.classifier, app.state.settings, app.state.metrics = clf, settings, metrics
    app.state.batcher = batcher
    app.state.started = time.time()
    _add_error_handlers(app)
    # add_middleware puts the last one outermost: metrics see every answer, 401s come before
    # any body is read, the body limit wraps the app's receive.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    _add_routes(app, clf, settings, batcher, metrics)
    return app


def _add_routes(app: FastAPI, clf: Classifier, settings: ServeSettings, batcher: MicroBatcher,
                metrics: ServiceMetrics) -> None:
    multi = clf.task == "multi_label"
    response = MultiLabelPredictResponse if multi else PredictResponse

    @app.post("/predict", response_model=response, response_model_exclude_none=True,
              dependencies=[Depends(require_json)])
    async def predict(req: PredictRequest):
        """Classify ``texts``; one prediction per text, in order (multi-label: the label set
        and every class's score)."""
        problem = check_request(req, clf, settings)
        if problem is not None:
            return problem
        try:
            scored = await batcher.submit(req.texts)  # ScoredRows: (N, C) + warnings
        except Overloaded as exc:
            metrics.rejected.inc()
            return JSONResponse({"error": f"overloaded: {exc}; retry after "
                                          f"{settings.retry_after_s} s"}, status_code=503,
                                headers={"Retry-After": str(settings.retry_after_s)})
        except Unavailable as exc:
            return JSONResponse({"error": f"unavailable: {exc}"}, status_code=503,
                                headers={"Retry-After": str(settings.retry_after_s)})
        except InputTextError as exc:  # e.g. a text the tokenizer drops entirely (U+FFFD)
            return _input_error(exc)
        preds = []
        ranked = clf.to_predictions(scored.probs, req.top_k, scored.warnings)
        for pred, row in zip(ranked, scored.probs, strict=True):
            out = pred.to_dict()
            if req.probs:
                out["probs"] = [float(p) for p in row]
            preds.append(out)
        return {"predictions": preds, "labels": clf.labels if req.probs else None}

    @app.get("/health", responses={503: {"description": "the batching worker is down"}})
    async def health():
        """Liveness and what is loaded; 503 with the reason when the batching worker is down
        (requests cannot be answered)."""
        body = {"status": "ok", "backend": clf.backend.name, "head": clf.head,
                "task": clf.task, "num_labels": clf.num_labels, "max_length": clf.max_length,
                "queued": batcher.waiting, "uptime_s": round(time.time() - app.state.started, 1)}
        if not batcher.alive:
            body.update(status="unhealthy", reason=batcher.death or "the batcher is stopped")
            return JSONResponse(body, status_code=503)
        return body

    @app.get("/labels")
    async def labels():
        """Label names in label-id order (the order of ``probs``); multi-label: also the
        task and each class's decision threshold."""
        if multi:
            return {"labels": clf.labels, "task": clf.task, "at_least_one": clf.at_least_one,
                    "thresholds": dict(zip(clf.labels, clf.thresholds.tolist(), strict=True))}
        return {"labels": clf.labels}

    @app.get("/metrics")
    async def prometheus():
        """Prometheus text format: requests, latency histogram, batch sizes."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


def check_request(req: PredictRequest, clf: Classifier, settings: ServeSettings
                  ) -> JSONResponse | None:
    """Limits the schema cannot express; None when the request is fine."""
    if not req.texts:
        return error(422, "texts is empty; send at least one text")
    if len(req.texts) > settings.max_texts:
        return error(422, f"too many texts: {len(req.texts)} > {settings.max_texts} per request; "
                          "split the request")
    for i, text in enumerate(req.texts):
        if len(text) > settings.max_chars:
            return error(422, f"texts[{i}] has {len(text)} characters, more than the limit of "
                              f"{settings.max_chars} (the server's --max-chars)")
    try:
        clf.check_top_k(req.top_k)
        clf.check_texts(req.texts)
        if clf.long_text == "error":
            clf.encode(req.texts)
    except InputTextError as exc:
        return _input_error(exc)
    return None


def _input_error(exc: InputTextError) -> JSONResponse:
    """422 naming ``texts[i]`` for a text that breaks the classifier's text rules."""
    where = f"texts[{exc.index}]: " if exc.index is not None else ""
    message = str(exc).split(": ", 1)[-1] if exc.index is not None else str(exc)
    return error(422, where + message)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return error(400, "malformed JSON body: " + errors[0]["msg"], errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                        for p in first["loc"] if p != "body").lstrip(".") or "body"
        return error(422, f"{where}: {first['msg']}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


def _version() -> str:
    from zhcls._version import __version__

    return __version__


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, *, device: str = "auto",
          settings: ServeSettings | None = None, quantized: bool = False,
          batch_size: int = 64, threads: int | None = None, log_level: str = "info") -> None:
    """Load ``checkpoint`` (or an ONNX export) and serve it with uvicorn until stopped.

    Before the model is loaded: a ``ConfigError`` if ``host``/``port`` cannot be bound (e.g.
    the port is in use), and a warning log line if ``host`` is reachable from other machines
    and ``settings`` has no API key."""
    import uvicorn

    settings = settings or ServeSettings()
    check_bindable(host, port)
    exposed = exposure_warning(host, settings.api_key)
    if exposed is not None:
        logger.warning("%s", exposed)
    clf = Classifier.load(checkpoint, device, quantized=quantized, batch_size=batch_size,
                          threads=threads)
    app = create_app(clf, settings)
    # timeout_keep_alive: above the idle expiry of client pools (httpx: 5 s, the same as
    # uvicorn's default, so a client could reuse a connection at the instant the server closed
    # it: a reset with no response). limit_concurrency: a hard cap on connections + tasks
    # (uvicorn answers 503 beyond it); the batcher's bounded queue sheds load first, with
    # Retry-After. backlog: pending TCP connections the kernel queues before accept.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                backlog=settings.backlog, limit_concurrency=settings.max_connections,
                timeout_keep_alive=settings.keep_alive_s, timeout_graceful_shutdown=30)
