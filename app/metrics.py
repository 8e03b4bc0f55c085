"""Prometheus metrics of one server: requests, latency, in-flight inferences, audio seconds, errors.

Each app gets its own registry, so several apps in one process (tests) never collide.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("stt_server_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("stt_server_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("stt_server_inference_seconds", "time an inference slot is held",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("stt_server_inflight", "inferences running now", registry=r)
        self.capacity = Gauge("stt_server_capacity", "inferences that may run at once", registry=r)
        self.engine_ready = Gauge("stt_server_engine_ready", "1 when the model is loaded", registry=r)
        self.audio_seconds = Counter("stt_server_audio_seconds", "seconds of audio transcribed", registry=r)
        self.transcripts = Counter("stt_server_transcripts", "transcripts made, by route", ["route"], registry=r)
        self.errors = Counter("stt_server_errors", "error responses by kind", ["kind"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
