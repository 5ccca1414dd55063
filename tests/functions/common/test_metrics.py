"""Metrics under the same names wherever the functions run: Prometheus locally, CloudWatch embedded metric format
(EMF) on Lambda."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from functions.common import metrics
from functions.query.app import app as query_app
from tests.helpers import apply_env

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ROUTE = {"function": "query", "method": "GET", "route": "/result", "status": "400"}


@pytest.fixture
async def client(configured: dict[str, Any], loop_resources: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=query_app), base_url="http://test") as c:
        yield c


def _emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def _requests_counted() -> float:
    return metrics.REGISTRY.get_sample_value("faasinfer_http_requests_total", ROUTE) or 0.0


async def test_with_emf_each_request_is_one_cloudwatch_metric_line(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    apply_env(monkeypatch, metrics_output="emf")
    before = _requests_counted()
    await client.get("/result", params={"uuid": "nope"})
    [line] = _emf_lines(capsys.readouterr().out)
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "faasinfer"
    assert set(directive["Dimensions"][0]) == set(ROUTE) and {k: line[k] for k in ROUTE} == ROUTE
    assert directive["Metrics"] == [
        {"Name": "faasinfer_http_requests", "Unit": "Count"},
        {"Name": "faasinfer_http_request_seconds", "Unit": "Seconds"},
    ]
    assert line["faasinfer_http_requests"] == [1.0] and 0 < line["faasinfer_http_request_seconds"][0] < 5
    assert _requests_counted() == before  # not counted twice: Prometheus is the local output


async def test_with_prometheus_nothing_is_written_to_the_log(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _requests_counted()
    await client.get("/result", params={"uuid": "nope"})
    assert _emf_lines(capsys.readouterr().out) == [] and _requests_counted() == before + 1


def test_stored_results_have_the_same_names_in_both_outputs(
    configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value = metrics.REGISTRY.get_sample_value
    classified = value("faasinfer_images_classified_total") or 0.0
    metrics.record_results(classified=3, failed=1)
    assert value("faasinfer_images_classified_total") == classified + 3
    apply_env(monkeypatch, metrics_output="emf")
    metrics.record_results(classified=2, failed=0)
    [line] = _emf_lines(capsys.readouterr().out)
    assert line["function"] == "collect"
    assert line["faasinfer_images_classified"] == [2.0] and line["faasinfer_results_failed"] == [0.0]
    assert value("faasinfer_images_classified_total") == classified + 3  # EMF only
