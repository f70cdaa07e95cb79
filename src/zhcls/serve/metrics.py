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


class ServiceMetrics:
    """Request count and latency per endpoint and status; texts per model call (batch size)
    and time per model call."""

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

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)
        self.texts.inc(size)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
