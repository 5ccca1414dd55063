"""The query function: seed-compatible results, validation, and the same answers through Mangum."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from functions.common.contracts import InferenceResult
from functions.common.settings import reset_settings
from functions.common.store import RequestRow, open_store
from functions.query import app as query
from functions.query.service import results
from tests.helpers import load_event

SESSION = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"


async def _seed(url: str) -> None:
    store = open_store(url)
    await store.create_session(SESSION)
    for seq in range(4):
        await store.add_request(RequestRow(SESSION, seq, 2, f"{SESSION}/{seq}", f"{seq:064d}", "image/png"))
    await store.apply_result(
        InferenceResult(
            uuid=SESSION, seq=0, status="done", labels=["tabby", "tiger cat"], scores=[0.7, 0.2], model="resnet18:test"
        )
    )
    await store.apply_result(InferenceResult(uuid=SESSION, seq=1, status="failed", error="cannot decode image"))
    await store.close()


@pytest.fixture
async def client(app_settings: dict[str, Any], loop_resources: None) -> AsyncIterator[httpx.AsyncClient]:
    await _seed(app_settings["database_url"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=query.app), base_url="http://test") as c:
        yield c


EXPECTED = [
    {
        "seq": 0,
        "status": "done",
        "predictions": ["tabby", "tiger cat"],
        "scores": [0.7, 0.2],
        "error": None,
        "model": "resnet18:test",
    },
    {"seq": 1, "status": "failed", "predictions": [], "scores": [], "error": "cannot decode image", "model": None},
]


async def test_range_query_lists_finished_seqs_as_items_and_queued_ones_as_pending(client: httpx.AsyncClient) -> None:
    response = await client.get("/result", params={"uuid": SESSION, "seqStart": 0, "seqEnd": 9})
    assert response.status_code == 200
    assert response.json() == {"items": EXPECTED, "pending": [2, 3], "nextSeq": None}


async def test_a_page_that_would_not_fit_a_lambda_response_stops_at_next_seq(app_settings: dict[str, Any]) -> None:
    store = open_store(app_settings["database_url"])
    await _seed(app_settings["database_url"])
    try:
        whole = await results(store, SESSION, 0, 9, 1000)
        first = await results(store, SESSION, 0, 9, 1000, budget=len(whole.items[0].model_dump_json()) + 5)
        rest = await results(store, SESSION, first.nextSeq or 0, 9, 1000)
    finally:
        await store.close()
    assert (whole.nextSeq, [i.seq for i in whole.items], whole.pending) == (None, [0, 1], [2, 3])
    assert ([i.seq for i in first.items], first.pending, first.nextSeq) == ([0], [], 1)
    assert ([i.seq for i in rest.items], rest.pending, rest.nextSeq) == ([1], [2, 3], None)


async def test_a_range_wider_than_max_range_is_served_in_pages(app_settings: dict[str, Any]) -> None:
    store = open_store(app_settings["database_url"])
    await _seed(app_settings["database_url"])
    try:
        first = await results(store, SESSION, 0, 2**31 - 1, 3)
        rest = await results(store, SESSION, first.nextSeq or 0, 2**31 - 1, 3)
    finally:
        await store.close()
    assert ([i.seq for i in first.items], first.pending, first.nextSeq) == ([0, 1], [2], 3)
    assert ([i.seq for i in rest.items], rest.pending, rest.nextSeq) == ([], [3], None)  # nothing stored after 3


async def test_seed_client_fields_are_present(client: httpx.AsyncClient) -> None:
    items = (await client.get("/result", params={"uuid": SESSION, "seqStart": 0, "seqEnd": 0})).json()["items"]
    assert [{"seq": i["seq"], "predictions": i["predictions"]} for i in items] == [
        {"seq": 0, "predictions": ["tabby", "tiger cat"]}
    ]


BAD_QUERIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing uuid", {"seqStart": 0, "seqEnd": 1}, 400, "'uuid' is required"),
    ("malformed uuid", {"uuid": "zzz", "seqStart": 0, "seqEnd": 1}, 400, "not a valid UUID"),
    ("unknown uuid", {"uuid": "00000000-0000-4000-8000-000000000000", "seqStart": 0, "seqEnd": 1}, 404, "unknown"),
    ("missing seqStart", {"uuid": SESSION, "seqEnd": 1}, 400, "'seqStart' is required"),
    ("missing seqEnd", {"uuid": SESSION, "seqStart": 1}, 400, "'seqEnd' is required"),
    ("negative seqStart", {"uuid": SESSION, "seqStart": -1, "seqEnd": 1}, 400, "between 0 and"),
    ("text seqEnd", {"uuid": SESSION, "seqStart": 0, "seqEnd": "ten"}, 400, "must be an integer"),
    *[
        (f"seqStart {bad!r}", {"uuid": SESSION, "seqStart": bad, "seqEnd": 1}, 400, "'seqStart' must be an integer")
        for bad in ("²", "①", "+-5", "--5", "١٢", "1_000", "0x10", "1.0")
    ],
    ("seqEnd superscript", {"uuid": SESSION, "seqStart": 0, "seqEnd": "1²"}, 400, "'seqEnd' must be an integer"),
    ("inverted range", {"uuid": SESSION, "seqStart": 5, "seqEnd": 2}, 400, "must not be greater"),
]


@pytest.mark.parametrize(("case", "params", "status", "message"), BAD_QUERIES, ids=[c[0] for c in BAD_QUERIES])
async def test_bad_query_gets_a_clear_4xx(
    client: httpx.AsyncClient, case: str, params: dict[str, Any], status: int, message: str
) -> None:
    response = await client.get("/result", params=params)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_with_an_api_key_the_page_loads_and_the_api_needs_the_key(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", "s3cret")
    reset_settings()
    page = await client.get("/")
    params = {"uuid": SESSION, "seqStart": 0, "seqEnd": 1}
    without = await client.get("/result", params=params)
    wrong = await client.get("/result", params=params, headers={"x-api-key": "guess"})
    right = await client.get("/result", params=params, headers={"x-api-key": "s3cret"})
    assert page.status_code == 200 and "x-api-key" in page.text  # the page sends the key it is given
    assert without.status_code == 401 and wrong.status_code == 401 and right.status_code == 200
    assert (await client.get("/metrics")).status_code == 401
    described = await client.get("/openapi.json")  # the API's description is open, as its docs page needs it
    assert described.status_code == 200 and described.json()["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "in": "header", "name": "x-api-key"
    }  # fmt: skip


async def test_openapi_document_comes_from_the_models(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert set(document["paths"]) == {
        "/", "/register", "/image", "/images", "/classify", "/upload-url", "/image/confirm", "/result", "/health",
        "/metrics", "/openapi.json", "/docs",
    }  # fmt: skip
    assert "securitySchemes" not in document["components"]  # no API key configured: no locks on the docs page
    classify = document["paths"]["/classify"]["post"]
    assert set(classify["responses"]) >= {"200", "202", "400", "413", "415"}
    form = classify["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["wait"]["maximum"] == 25 and form["topk"]["default"] == 5 and "payload" in form
    result_item = document["components"]["schemas"]["ResultItem"]
    assert set(result_item["required"]) >= {"seq", "status", "predictions", "scores"}
    assert result_item["properties"]["status"]["enum"] == ["done", "failed"]  # queued seqs are `pending`
    assert set(document["components"]["schemas"]["ResultPage"]["properties"]) == {"items", "pending", "nextSeq"}


async def test_metrics_count_requests_and_stored_statuses(client: httpx.AsyncClient) -> None:
    await client.get("/result", params={"uuid": SESSION, "seqStart": 0, "seqEnd": 3})
    await client.get("/result", params={"uuid": SESSION, "seqStart": 3, "seqEnd": 0})
    text = (await client.get("/metrics")).text
    assert 'faasinfer_http_requests_total{function="query",method="GET",route="/result",status="200"}' in text
    assert 'faasinfer_http_requests_total{function="query",method="GET",route="/result",status="400"}' in text
    assert 'faasinfer_http_request_seconds_bucket{function="query",le="0.005",method="GET",route="/result"}' in text
    for status, count in (("queued", 2), ("done", 1), ("failed", 1)):
        assert f'faasinfer_requests{{status="{status}"}} {count}.0' in text


@pytest.mark.parametrize("event_name", ["apigw_v2_query_result", "apigw_v1_query_result"])
def test_mangum_handler_answers_gateway_events_like_asgi(
    app_settings: dict[str, Any], lambda_loop: Any, event_name: str
) -> None:
    lambda_loop.run_until_complete(_seed(app_settings["database_url"]))
    response = query.handler(load_event(event_name), _Context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"items": EXPECTED, "pending": [2, 3], "nextSeq": None}


def test_http_functions_never_import_torch() -> None:
    code = (
        "import sys, functions.upload.app, functions.query.app; "
        "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


class _Context:
    function_name = "QueryFunction"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_seed_like_range_is_inclusive_and_ordered(app_settings: dict[str, Any]) -> None:
    async def run() -> list[int]:
        await _seed(app_settings["database_url"])
        store = open_store(app_settings["database_url"])
        rows = await store.get_range(SESSION, 1, 2)
        await store.close()
        return [r.seq for r in rows]

    assert asyncio.run(run()) == [1, 2]
