"""``POST /classify``: one image in one call, through the same upload (stored, published to Kafka), answered with the
result once collect has stored it, else with where to poll; refused as ``POST /image`` refuses, storing nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from functions.common.contracts import InferenceResult
from functions.common.store import open_store
from tests.helpers import consume_all, photo

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def test_without_waiting_it_answers_202_with_where_to_poll(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    response = await client.post(
        "/classify", data={"topk": "3", "wait": "0"}, files={"payload": ("cat.jpg", photo("chelsea.jpg"), "image/jpeg")}
    )
    assert response.status_code == 202
    body = response.json()
    session = body["uuid"]
    assert body["status"] == "queued" and body["seq"] == 0
    assert body["poll"] == f"/result?uuid={session}&seqStart=0&seqEnd=0"
    [record] = await consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 1)
    assert record.key == f"{session}:0".encode() and json.loads(record.value)["topk"] == 3  # the same pipeline
    store = open_store(configured["database_url"])
    try:
        row = await store.get_request(session, 0)
    finally:
        await store.close()
    assert row is not None and row.status == "queued" and row.topk == 3


async def test_a_result_stored_while_it_waits_is_the_answer(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    """Collect stores the result (here: applied to the store as collect applies it) while the call waits."""

    async def collect_when_published() -> None:
        [record] = await consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 1)
        session = json.loads(record.value)["uuid"]
        store = open_store(configured["database_url"])
        try:
            await store.apply_result(
                InferenceResult(
                    uuid=session,
                    seq=0,
                    status="done",
                    labels=["tabby", "tiger cat"],
                    scores=[0.6, 0.3],
                    model="resnet18:test",
                )
            )
        finally:
            await store.close()

    collecting = asyncio.create_task(collect_when_published())
    response = await client.post(
        "/classify",
        data={"topk": "2", "wait": "20"},
        files={"payload": ("cat.jpg", photo("chelsea.jpg"), "image/jpeg")},
    )
    await collecting
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "done" and body["predictions"] == ["tabby", "tiger cat"] and body["scores"] == [0.6, 0.3]
    assert body["model"] == "resnet18:test" and body["poll"] is None


@pytest.mark.parametrize(
    ("form", "payload", "status", "error"),
    [
        ({"wait": "26"}, photo("chelsea.jpg"), 400, "field 'wait' must be between 0 and 25, got 26"),
        ({"wait": "-1"}, photo("chelsea.jpg"), 400, "field 'wait' must be between 0 and 25, got -1"),
        ({"topk": "0"}, photo("chelsea.jpg"), 400, "field 'topk' must be between 1 and 1000, got 0"),
        ({}, b"not an image at all", 415, None),
    ],
)
async def test_what_post_image_refuses_is_refused_the_same_way_and_nothing_is_stored(
    client: httpx.AsyncClient, configured: dict[str, Any], form: dict[str, str], payload: bytes, status: int,
    error: str | None,
) -> None:  # fmt: skip
    response = await client.post("/classify", data=form, files={"payload": ("x.jpg", payload, "image/jpeg")})
    assert response.status_code == status, response.text
    if error is None:  # the same wording as POST /image
        session = (await client.post("/register")).json()["uuid"]
        image = await client.post("/image", data={"uuid": session, "seq": "0", "topk": "5"},
                                  files={"payload": ("x.jpg", payload, "image/jpeg")})  # fmt: skip
        error = image.json()["error"]
    assert response.json() == {"error": error}
    store = open_store(configured["database_url"])
    try:
        assert sum((await store.status_counts()).values()) == 0  # no request row: the image never got in
    finally:
        await store.close()


async def test_without_a_payload_it_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/classify", data={"topk": "3"})
    assert response.status_code == 400 and "payload" in response.json()["error"]
