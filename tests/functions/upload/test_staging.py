"""Presigned uploads against a real S3 API (moto's server, as the local runtime starts it): the client posts to S3
with the presigned policy, the confirmation takes the staged object through the checks of ``POST /image``; and the
form ``POST /upload-url`` hands out on AWS, in each region."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from functions.common.store import RequestRow, open_store
from functions.upload.app import app
from functions.upload.staging import Staging
from runtime.s3.local import BUCKET, LocalS3, PostPolicyGate
from tests.helpers import apply_env, photo

MB = 1024 * 1024
# The regions where botocore still presigns SigV2 unless told otherwise (their endpoints list "s3" beside "s3v4").
OLD_REGIONS = ("us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-1",
               "ap-southeast-2", "sa-east-1")  # fmt: skip
LAMBDA_KEY, LAMBDA_SECRET, LAMBDA_TOKEN = "ASIAEXAMPLEKEY", "example/secret", "example-session-token"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: what is tested here is the staging, not the store."""
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    local = LocalS3()
    try:
        yield local.start()
    finally:
        local.stop()


@pytest.fixture
async def client(
    app_settings: dict[str, Any], s3: dict[str, str], monkeypatch: pytest.MonkeyPatch, loop_resources: None
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


async def _rows(app_settings: dict[str, Any], session: str) -> list[RequestRow]:
    store = open_store(app_settings["database_url"])
    try:
        return await store.get_range(session, 0, 2**31 - 1)
    finally:
        await store.close()


def _blobs(app_settings: dict[str, Any], session: str) -> list[bytes]:
    folder = Path(app_settings["blob_url"].removeprefix("file://")) / session
    return [p.read_bytes() for p in folder.iterdir()] if folder.exists() else []


async def test_a_confirmed_upload_is_stored_queued_and_removed_from_staging(
    publishing_client: httpx.AsyncClient, configured: dict[str, Any], s3: dict[str, str]
) -> None:
    session = (await publishing_client.post("/register")).json()["uuid"]
    target = await _presigned(publishing_client, session, 4, photo("coffee.jpg"))
    assert target["key"].startswith(f"incoming/{session}/4-") and target["maxBytes"] == 10 * MB
    assert target["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # what the local S3 accepts, as S3 does
    assert target["key"] in _staged_keys(s3)

    form = {"uuid": session, "seq": "4", "topk": "2", "key": target["key"]}
    confirmed = await publishing_client.post("/image/confirm", data=form)
    assert confirmed.status_code == 202 and confirmed.json() == {"uuid": session, "seq": 4, "status": "queued"}
    assert target["key"] not in _staged_keys(s3)
    assert _blobs(configured, session) == [photo("coffee.jpg")]

    again = await publishing_client.post("/image/confirm", data=form)
    assert again.status_code == 404 and "nothing was uploaded to" in again.json()["error"]


async def test_a_confirmation_checks_the_image(client: httpx.AsyncClient, s3: dict[str, str]) -> None:
    session = (await client.post("/register")).json()["uuid"]
    bad = await _presigned(client, session, 0, b"not an image at all")
    refused = await client.post("/image/confirm", data={"uuid": session, "seq": "0", "topk": "1", "key": bad["key"]})
    assert refused.status_code == 415 and bad["key"] not in _staged_keys(s3)
    unknown = await client.post("/upload-url", data={"uuid": "00000000-0000-4000-8000-000000000000", "seq": "0"})
    assert unknown.status_code == 404


async def test_a_key_presigned_for_another_session_or_seq_or_forged_is_a_404_that_stores_nothing(
    client: httpx.AsyncClient, app_settings: dict[str, Any], s3: dict[str, str]
) -> None:
    owner, intruder = [(await client.post("/register")).json()["uuid"] for _ in range(2)]
    target = await _presigned(client, owner, 3, photo("coffee.jpg"))
    token = target["key"].rsplit("-", 1)[1]
    attempts = [
        (intruder, 3, target["key"]),  # the owner's staged upload, confirmed by another session
        (intruder, 3, f"incoming/{intruder}/3-{token}"),  # its token under the intruder's own prefix
        (intruder, 3, f"incoming/{intruder}/3-{token}/../../../{owner}/3-{token}"),
        (owner, 4, target["key"]),  # the owner's key for another seq
        (owner, 3, f"incoming/{owner}/3-{'A' * 22}"),  # a forged token: well formed, never presigned
        (owner, 3, f"{owner}/3-{token}"),  # outside the staging prefix
    ]
    for session, seq, key in attempts:
        form = {"uuid": session, "seq": str(seq), "topk": "1", "key": key}
        response = await client.post("/image/confirm", data=form)
        assert response.status_code == 404, (session == owner, seq, key, response.text)

    assert await _rows(app_settings, intruder) == [] and _blobs(app_settings, intruder) == []
    assert await _rows(app_settings, owner) == [] and _blobs(app_settings, owner) == []
    assert target["key"] in _staged_keys(s3)  # the owner's upload is untouched, still the owner's to confirm


async def test_without_a_staging_bucket_the_presigned_path_says_what_to_set(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, upload_staging_url="")
    session = (await client.post("/register")).json()["uuid"]
    response = await client.post("/upload-url", data={"uuid": session, "seq": "0"})
    assert response.status_code == 503 and "UPLOAD_STAGING_URL" in response.json()["error"]


async def test_an_unreachable_s3_is_a_503_not_a_500(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.kafka.broker import free_port

    apply_env(monkeypatch, s3_endpoint_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    session = (await client.post("/register")).json()["uuid"]
    form = {"uuid": session, "seq": "0", "topk": "1", "key": f"incoming/{session}/0-{'a' * 22}"}
    response = await client.post("/image/confirm", data=form)
    assert response.status_code == 503 and "EndpointConnectionError" in response.json()["error"]


def _on_lambda(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """What Lambda gives a function: its region and the role's session credentials, nothing from a profile."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": LAMBDA_KEY,
           "AWS_SECRET_ACCESS_KEY": LAMBDA_SECRET, "AWS_SESSION_TOKEN": LAMBDA_TOKEN,
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("region", [*OLD_REGIONS, "eu-central-1"])
def test_on_aws_the_form_is_sigv4_for_the_regional_endpoint_in_every_region(
    region: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _on_lambda(monkeypatch, region)
    session = "0b7f5a53-6a4c-4f44-9d55-3c2d8e7e2f10"
    post = Staging.from_url("s3://faasinfer-blobs/incoming").presign(session, 3, 10 * MB, 900)
    fields = post["fields"]

    assert not {"AWSAccessKeyId", "signature"} & fields.keys()  # SigV2, which S3 refuses for new buckets
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert fields["x-amz-credential"].split("/")[2:] == [region, "s3", "aws4_request"]
    assert fields["x-amz-credential"].startswith(LAMBDA_KEY + "/") and fields["x-amz-security-token"] == LAMBDA_TOKEN
    assert post["url"] == f"https://faasinfer-blobs.s3.{region}.amazonaws.com/"
    assert post["key"] == fields["key"] and post["key"].startswith(f"incoming/{session}/3-")
    # S3's own checks of the form (signature by the region's signing key, expiry, key, size range) accept it
    gate = PostPolicyGate(app=None, credentials={LAMBDA_KEY: LAMBDA_SECRET}, region=region)  # type: ignore[arg-type]
    assert gate.authorize("faasinfer-blobs", {k.lower(): v for k, v in fields.items()}, "a.jpg") == (1, 10 * MB)
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 1, 10 * MB] in policy["conditions"] and {"key": post["key"]} in policy["conditions"]
