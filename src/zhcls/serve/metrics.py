"""Prometheus metrics of the service (``GET /metrics``), kept in a registry of their own so
several apps in one process (tests) do not collide."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
ENDPOINTS = frozenset({"/predict", "/health", "/labels", "/metrics", "/docs", "/redoc",
                       "/openapi.json", "/docs/oauth2-redirect"})
STATIC_PREFIX = "/static-offline-docs/"  # the Swagger UI / ReDoc assets
OTHER = "other"


def method_label(method: str) -> str:
    """``method`` if it is a standard HTTP method, else ``"other"`` (bounded label values)."""
    return method if method in METHODS else OTHER


def endpoint_label(path: str) -> str:
    """``path`` if it is one of the service's routes, else ``"other"``."""
    if path in ENDPOINTS:
        return path
    return STATIC_PREFIX.rstrip("/") if path.startswith(STATIC_PREFIX) else OTHER


class ServiceMetrics:
    """Request count and latency per endpoint and status; texts per model call (batch size)
    and time per model call. Label values are bounded: a method or path the service does not
    know is counted as ``"other"``, so random methods or URLs cannot grow the series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("zhcls_requests", "HTTP requests handled",
                                ("method", "endpoint", "status"), registry=self.registry)
        self.latency = Histogram("zhcls_request_latency_seconds", "HTTP request latency",
                                 ("method", "endpoint"), buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.batch_size = Histogram("zhcls_batch_size", "texts per model call (micro-batch)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_latency = Histogram("zhcls_batch_latency_seconds", "time per model call",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("zhcls_texts", "texts classified", registry=self.registry)
        self.rejected = Counter("zhcls_overload_rejections", "requests answered 503 because "
                                "the queue was full", registry=self.registry)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        method, endpoint = method_label(method), endpoint_label(path)
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)
        self.texts.inc(size)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
