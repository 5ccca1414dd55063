"""Presigned uploads against a real S3 API (moto's server, as the local runtime starts it): the client posts to S3
with the presigned policy, the confirmation takes the staged object through the checks of ``POST /image``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from functions.upload.app import app
from runtime.local_s3 import BUCKET, LocalS3
from tests.helpers import apply_env, photo

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    local = LocalS3()
    try:
        yield local.start()
    finally:
        local.stop()


@pytest.fixture
async def client(
    configured: dict[str, Any], s3: dict[str, str], monkeypatch: pytest.MonkeyPatch, loop_resources: None
) -> AsyncIterator[httpx.AsyncClient]:
    apply_env(monkeypatch, upload_staging_url=s3["UPLOAD_STAGING_URL"], s3_endpoint_url=s3["S3_ENDPOINT_URL"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


def _staged_keys(s3: dict[str, str]) -> list[str]:
    client = boto3.client(
        "s3", endpoint_url=s3["S3_ENDPOINT_URL"], aws_access_key_id="x", aws_secret_access_key="x",
        region_name="us-east-1",
    )  # fmt: skip
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


async def _presigned(client: httpx.AsyncClient, session: str, seq: int, data: bytes) -> dict[str, Any]:
    target = (await client.post("/upload-url", data={"uuid": session, "seq": str(seq)})).json()
    async with httpx.AsyncClient() as direct:
        sent = await direct.post(target["url"], data=target["fields"], files={"file": ("a.jpg", data)})
    assert sent.status_code == 204, sent.text
    return dict(target)


async def test_a_confirmed_upload_is_stored_queued_and_removed_from_staging(
    client: httpx.AsyncClient, configured: dict[str, Any], s3: dict[str, str]
) -> None:
    session = (await client.post("/register")).json()["uuid"]
    target = await _presigned(client, session, 4, photo("coffee.jpg"))
    assert target["key"].startswith(f"incoming/{session}/4-") and target["maxBytes"] == 10 * 1024 * 1024
    assert target["key"] in _staged_keys(s3)

    form = {"uuid": session, "seq": "4", "topk": "2", "key": target["key"]}
    confirmed = await client.post("/image/confirm", data=form)
    assert confirmed.status_code == 202 and confirmed.json() == {"uuid": session, "seq": 4, "status": "queued"}
    assert target["key"] not in _staged_keys(s3)
    stored = list((Path(configured["blob_url"].removeprefix("file://")) / session).iterdir())
    assert [p.read_bytes() for p in stored] == [photo("coffee.jpg")]

    again = await client.post("/image/confirm", data=form)
    assert again.status_code == 404 and "nothing was uploaded to" in again.json()["error"]


async def test_a_confirmation_checks_the_image_and_the_key(client: httpx.AsyncClient, s3: dict[str, str]) -> None:
    session = (await client.post("/register")).json()["uuid"]
    bad = await _presigned(client, session, 0, b"not an image at all")
    refused = await client.post("/image/confirm", data={"uuid": session, "seq": "0", "topk": "1", "key": bad["key"]})
    assert refused.status_code == 415 and bad["key"] not in _staged_keys(s3)

    good = await _presigned(client, session, 1, photo())
    other_seq = await client.post("/image/confirm", data={"uuid": session, "seq": "2", "topk": "1", "key": good["key"]})
    assert other_seq.status_code == 404 and "not an upload key of session" in other_seq.json()["error"]
    unknown = await client.post("/upload-url", data={"uuid": "00000000-0000-4000-8000-000000000000", "seq": "0"})
    assert unknown.status_code == 404


async def test_without_a_staging_bucket_the_presigned_path_says_what_to_set(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, upload_staging_url="")
    session = (await client.post("/register")).json()["uuid"]
    response = await client.post("/upload-url", data={"uuid": session, "seq": "0"})
    assert response.status_code == 503 and "UPLOAD_STAGING_URL" in response.json()["error"]


async def test_an_unreachable_s3_is_a_503_not_a_500(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.broker import free_port

    apply_env(monkeypatch, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    session = (await client.post("/register")).json()["uuid"]
    form = {"uuid": session, "seq": "0", "topk": "1", "key": f"incoming/{session}/0-{'a' * 22}"}
    response = await client.post("/image/confirm", data=form)
    assert response.status_code == 503 and "EndpointConnectionError" in response.json()["error"]
