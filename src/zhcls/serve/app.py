"""The HTTP service: ``POST /predict``, ``GET /health``, ``GET /labels``, ``GET /metrics``
(Prometheus text format) and OpenAPI docs at ``/docs``.

Every bad request gets a 4xx JSON body ``{"error": "<what is wrong>", "detail": [...]}``:
malformed JSON → 400; wrong types, an empty ``texts`` list, too many texts, an empty or too
long text, a bad ``top_k`` → 422; a body over the size limit → 413. Anything unexpected is a
500 with the same shape; the process keeps serving.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhcls.inference.classifier import Classifier, InputTextError
from zhcls.serve.batcher import MicroBatcher
from zhcls.serve.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

ENDPOINTS = ("/predict", "/health", "/labels", "/metrics", "/docs", "/openapi.json")


@dataclass
class ServeSettings:
    """Request limits and micro-batching knobs."""

    max_texts: int = 64  # texts per request
    max_chars: int = 2000  # characters per text
    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company

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


class PredictionOut(BaseModel):
    label: str
    label_id: int
    score: float
    top_k: list[LabelScoreOut] | None = None
    probs: list[float] | None = None


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]
    labels: list[str] | None = Field(None, description="names of the probs columns")


class ErrorResponse(BaseModel):
    error: str
    detail: list | None = None


def error(status: int, message: str, detail: list | None = None) -> JSONResponse:
    body = {"error": message} if detail is None else {"error": message, "detail": detail}
    return JSONResponse(body, status_code=status)


def create_app(clf: Classifier, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application around ``clf``."""
    settings = settings or ServeSettings()
    metrics = ServiceMetrics()
    batcher = MicroBatcher(clf.predict_proba, settings.max_batch, settings.max_wait_ms,
                           on_batch=metrics.observe_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        logger.info("serving %s (%s) with micro-batches of up to %d texts / %.1f ms",
                    clf.source, clf.backend.name, settings.max_batch, settings.max_wait_ms)
        yield
        await batcher.stop()

    app = FastAPI(title="zhcls", version=_version(), lifespan=lifespan,
                  description="Chinese text classification. Labels: " + ", ".join(clf.labels),
                  responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                             422: {"model": ErrorResponse}, 500: {"model": ErrorResponse}})
    app.state.classifier, app.state.settings, app.state.metrics = clf, settings, metrics
    app.state.started = time.time()
    _add_error_handlers(app)
    _add_middleware(app, metrics, settings)
    _add_routes(app, clf, settings, batcher, metrics)
    return app


def _add_routes(app: FastAPI, clf: Classifier, settings: ServeSettings, batcher: MicroBatcher,
                metrics: ServiceMetrics) -> None:
    @app.post("/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(req: PredictRequest):
        """Classify ``texts``; one prediction per text, in order."""
        problem = check_request(req, clf, settings)
        if problem is not None:
            return problem
        probs = await batcher.submit(req.texts)  # (N, C)
        preds = []
        for pred, row in zip(clf.to_predictions(probs, req.top_k), probs, strict=True):
            out = pred.to_dict()
            if req.probs:
                out["probs"] = [float(p) for p in row]
            preds.append(out)
        return {"predictions": preds, "labels": clf.labels if req.probs else None}

    @app.get("/health")
    async def health():
        """Liveness and what is loaded."""
        return {"status": "ok", "backend": clf.backend.name, "head": clf.head,
                "num_labels": clf.num_labels, "max_length": clf.max_length,
                "uptime_s": round(time.time() - app.state.started, 1)}

    @app.get("/labels")
    async def labels():
        """Label names in label-id order (the order of ``probs``)."""
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
                              f"{settings.max_chars}")
    try:
        clf.check_top_k(req.top_k)
        clf.check_texts(req.texts)
        if clf.long_text == "error":
            clf.encode(req.texts)
    except InputTextError as exc:
        where = f"texts[{exc.index}]: " if exc.index is not None else ""
        message = str(exc).split(": ", 1)[-1] if exc.index is not None else str(exc)
        return error(422, where + message)
    return None


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


def _add_middleware(app: FastAPI, metrics: ServiceMetrics, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in ENDPOINTS else "other"
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > settings.max_body_bytes:
            response = error(413, f"request body of {size} bytes is over the limit of "
                                  f"{settings.max_body_bytes}; send fewer or shorter texts")
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # errors outside route handlers
                logger.exception("unhandled error on %s %s", request.method, endpoint)
                response = error(500, f"internal error: {type(exc).__name__}")
        metrics.observe_request(request.method, endpoint, response.status_code,
                                time.perf_counter() - start)
        return response


def _version() -> str:
    from zhcls._version import __version__

    return __version__


def serve(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, *, device: str = "auto",
          settings: ServeSettings | None = None, quantized: bool = False,
          batch_size: int = 64, threads: int | None = None, log_level: str = "info") -> None:
    """Load ``checkpoint`` (or an ONNX export) and serve it with uvicorn until stopped."""
    import uvicorn

    clf = Classifier.load(checkpoint, device, quantized=quantized, batch_size=batch_size,
                          threads=threads)
    app = create_app(clf, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
