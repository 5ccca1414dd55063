"""``GET /metrics`` of the query function, in Prometheus' text format, with the request store's status counts read at
scrape time."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from functions.common import store as stores
from functions.common.metrics import REGISTRY


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
    stored.register(_StoredRequests(await stores.per_loop.get().status_counts()))
    return Response(generate_latest(_samples()) + generate_latest(stored), media_type=CONTENT_TYPE_LATEST)
