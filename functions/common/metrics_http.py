"""Metrics of the HTTP functions: every request counted and timed by route (``metrics.record_request``), and
``GET /metrics`` in Prometheus' text format, with the request store's status counts read at scrape time."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import resources
from .api import HttpFunction, endpoints
from .metrics import REGISTRY, record_request


class MetricsMiddleware:
    """Counts and times every request by route (the path of a route ``api`` declares for ``function``, else
    "other")."""

    def __init__(self, app: ASGIApp, function: HttpFunction) -> None:
        self.app = app
        self.function = function
        self.routes = frozenset(e.path for e in endpoints(function))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            record_request(self.function, scope["method"], route, status, time.perf_counter() - started)


class _StoredRequests:
    """``faasinfer_requests{status}``: the store's counts, read for this scrape (no process holds them)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("faasinfer_requests", "Stored image requests by status", labels=["status"])
        for status in ("queued", "done", "failed"):
            family.add_metric([status], self.counts.get(status, 0))
        yield family


def _samples() -> CollectorRegistry:
    """This process's metrics; under the local runtime (prometheus-client's multiprocess mode, which that library
    switches on by this one variable) every process's, added up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


async def metrics(request: Request) -> Response:
    stored = CollectorRegistry()
    stored.register(_StoredRequests(await resources.store.get().status_counts()))
    return Response(generate_latest(_samples()) + generate_latest(stored), media_type=CONTENT_TYPE_LATEST)
