"""The functions' metrics, under the same names wherever they run.

``METRICS_OUTPUT=prometheus`` (the local runtime): counters and histograms of prometheus-client, served at
``/metrics``; the runtime runs prometheus-client's multiprocess mode, so every HTTP and worker process is added up
(``runtime/shared_metrics.py``). ``METRICS_OUTPUT=emf`` (the template's default, on Lambda): one line of CloudWatch
embedded metric format per request or batch in the function's log, which CloudWatch turns into metrics of namespace
``faasinfer`` with the same names and dimensions (powertools' ``EphemeralMetrics``); a ``/metrics`` route of one
Lambda instance would show only that instance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from prometheus_client import CollectorRegistry, Counter, Histogram

from .settings import get_settings

NAMESPACE = "faasinfer"
HTTP_REQUESTS = "faasinfer_http_requests"
HTTP_SECONDS = "faasinfer_http_request_seconds"
CLASSIFIED = "faasinfer_images_classified"
FAILED = "faasinfer_results_failed"

REGISTRY = CollectorRegistry()
_REQUESTS = Counter(HTTP_REQUESTS, "HTTP requests", ["function", "method", "route", "status"], registry=REGISTRY)
_LATENCY = Histogram(
    HTTP_SECONDS,
    "HTTP request latency",
    ["function", "method", "route"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_CLASSIFIED = Counter(CLASSIFIED, "Images whose labels were stored (collect)", registry=REGISTRY)
_FAILED = Counter(FAILED, "Requests stored as failed (collect)", registry=REGISTRY)


def _emf(dimensions: Mapping[str, str], values: Sequence[tuple[str, MetricUnit, float]]) -> None:
    metrics = EphemeralMetrics(namespace=NAMESPACE)
    for name, value in dimensions.items():
        metrics.add_dimension(name, value)
    for name, unit, number in values:
        metrics.add_metric(name=name, unit=unit, value=number)
    metrics.flush_metrics()  # one JSON line on stdout: the function's log


def record_request(function: str, method: str, route: str, status: int, seconds: float) -> None:
    if get_settings().metrics_output == "emf":
        dimensions = {"function": function, "method": method, "route": route, "status": str(status)}
        _emf(dimensions, [(HTTP_REQUESTS, MetricUnit.Count, 1), (HTTP_SECONDS, MetricUnit.Seconds, seconds)])
        return
    _REQUESTS.labels(function, method, route, str(status)).inc()
    _LATENCY.labels(function, method, route).observe(seconds)


def record_results(classified: int, failed: int) -> None:
    """Results collect stored (duplicates and stale answers are not counted again)."""
    if not (classified or failed):
        return
    if get_settings().metrics_output == "emf":
        _emf({"function": "collect"}, [(CLASSIFIED, MetricUnit.Count, classified), (FAILED, MetricUnit.Count, failed)])
        return
    _CLASSIFIED.inc(classified)
    _FAILED.inc(failed)
