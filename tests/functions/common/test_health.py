"""``/health`` tells the truth: each dependency and the inference path, within 2 s, 503 with details when degraded."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from functions.common.store import RequestRow, open_store
from functions.query.app import app as query_app
from functions.upload.app import app as upload_app
from tests.helpers import apply_env, run_sql

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SESSION = "6a1d2f38-4e8b-4b57-9a53-0c8f4f1d2e90"


async def _client(name: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=upload_app if name == "upload" else query_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers={"x-app": name}) as c:
        yield c


@pytest.fixture
async def client(configured: dict[str, Any], loop_resources: None) -> AsyncIterator[httpx.AsyncClient]:
    """The upload function's app: ``GET /health`` is declared there (``functions/common/http_edge/routes.py``)."""
    async for c in _client("upload"):
        yield c


@pytest.fixture(params=["upload", "query"])
async def any_client(
    request: pytest.FixtureRequest, configured: dict[str, Any], loop_resources: None
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(request.param):
        yield c


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A port that accepts connections and never answers: a stalled broker."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


async def test_all_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "inference": "ok"}}


async def test_a_stalled_broker_is_reported_within_two_seconds(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, silent_broker: str
) -> None:
    apply_env(monkeypatch, kafka_bootstrap_servers=silent_broker)
    started = time.monotonic()
    response = await client.get("/health")
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and elapsed < 2.0
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "error: no answer within 1.5 s",
        "inference": "ok",
    }


async def test_requests_queued_too_long_make_inference_degraded(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    store = open_store(configured["database_url"])
    await store.create_session(SESSION)
    for seq, age in ((0, 900), (1, 130), (2, 10)):
        await store.add_request(RequestRow(SESSION, seq, 1, "k", "a" * 64, "image/png", submitted_at=time.time() - age))
    await store.close()

    response = await client.get("/health")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["broker"] == "ok"
    assert checks["inference"].startswith("error: 2 requests queued for more than 120 s (oldest 900 s)")


async def test_dropped_tables_are_recreated_and_said_so(
    client: httpx.AsyncClient, configured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    assert (await client.get("/health")).status_code == 200  # the function's store is connected
    await run_sql(configured["database_url"], "DROP TABLE requests", "DROP TABLE sessions")

    response = await client.get("/health")
    assert response.status_code == 200
    assert "database table missing" in caplog.text and "re-creating the schema" in caplog.text
    store = open_store(configured["database_url"])
    try:
        await store.create_session(SESSION)
        assert await store.session_exists(SESSION)
    finally:
        await store.close()


GUARDED = {
    "upload": [("POST", "/register"), ("POST", "/image"), ("POST", "/images"), ("POST", "/upload-url"),
               ("POST", "/image/confirm")],
    "query": [("GET", "/result"), ("GET", "/metrics")],
}  # fmt: skip
OPEN = {"upload": ["/health"], "query": ["/", "/openapi.json", "/docs", "/docs/swagger-ui.css"]}


async def test_the_api_key_guards_every_route_but_the_open_ones(
    any_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, api_key="s3cret")
    app_name = any_client.headers["x-app"]
    for method, path in GUARDED[app_name]:
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": "s3cret-but-longer"}):
            denied = await any_client.request(method, path, headers=headers)
            assert denied.status_code == 401, (method, path, headers)
            assert denied.json() == {"error": "missing or wrong x-api-key header"}
        allowed = await any_client.request(method, path, headers={"x-api-key": "s3cret"})
        assert allowed.status_code != 401, (method, path)
    for path in OPEN[app_name]:
        assert (await any_client.get(path)).status_code == 200, path
    if app_name == "query":
        page = await any_client.get("/")
        assert "x-api-key" in page.text  # the page asks for the key it sends
