"""The upload function over ASGI: seed-compatible flow, idempotency, and a battery of bad input."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from functions.common import blobs, loops
from functions.common.blobs import blob_store_from_url
from functions.common.settings import reset_settings
from functions.common.store import open_store
from functions.upload.app import app, handler
from tests.helpers import apply_env, consume_all, image_bytes, load_event, photo

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


async def _session(client: httpx.AsyncClient) -> str:
    response = await client.post("/register")
    assert response.status_code == 200
    return str(response.json()["uuid"])


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")  # 144 Mpx in a few KB
    return buffer.getvalue()


async def test_register_returns_a_fresh_uuid4(client: httpx.AsyncClient) -> None:
    first, second = await _session(client), await _session(client)
    assert first != second and uuid.UUID(first).version == 4


async def test_accepted_image_is_stored_and_published(client: httpx.AsyncClient, configured: dict[str, Any]) -> None:
    session = await _session(client)
    response = await client.post(
        "/image",
        data={"uuid": session, "seq": "3", "topk": "5"},
        files={"payload": ("cat.jpg", photo("chelsea.jpg"), "image/jpeg")},
    )
    assert response.status_code == 202
    assert response.json() == {"uuid": session, "seq": 3, "status": "queued"}
    [record] = await consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 1)
    message = json.loads(record.value)
    assert record.key == f"{session}:3".encode()
    assert message["topk"] == 5 and message["content_type"] == "image/jpeg"
    assert message["blob"].startswith(f"{session}/3-") and message["blob"].endswith(".jpg")
    assert await blobs.per_loop.get().get(message["blob"]) == photo("chelsea.jpg")  # the bytes it points at
    store = open_store(configured["database_url"])
    try:
        row = await store.get_request(session, 3)
    finally:
        await store.close()
    assert row is not None and (row.status, row.topk, row.blob_key) == ("queued", 5, message["blob"])
    assert row.content_hash == hashlib.sha256(photo("chelsea.jpg")).hexdigest()


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "BMP", "TIFF", "PNG", "JPEG"])
async def test_every_supported_format_is_accepted_with_its_content_type(
    client: httpx.AsyncClient, configured: dict[str, Any], fmt: str
) -> None:
    session = await _session(client)
    data = image_bytes(fmt, (80, 60))
    response = await client.post(
        "/image", data={"uuid": session, "seq": "0", "topk": "1"}, files={"payload": ("x", data)}
    )
    assert response.status_code == 202, response.text
    [record] = await consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 1)
    assert json.loads(record.value)["content_type"] == Image.MIME[fmt]


@pytest.mark.parametrize(("seq", "topk"), [("0", "1"), (str(2**31 - 1), "1000")])
async def test_the_bounds_themselves_are_accepted(publishing_client: httpx.AsyncClient, seq: str, topk: str) -> None:
    session = await _session(publishing_client)
    form = {"uuid": session, "seq": seq, "topk": topk}
    response = await publishing_client.post("/image", data=form, files={"payload": ("a.jpg", photo())})
    assert response.status_code == 202 and response.json()["seq"] == int(seq)


async def test_more_pixels_than_max_pixels_is_refused_by_our_limit_not_pillows(client: httpx.AsyncClient) -> None:
    """50 Mpx: under Pillow's own bomb threshold (89 Mpx), over MAX_PIXELS (40 Mpx)."""
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 7072 * 7072
    session = await _session(client)
    buffer = io.BytesIO()
    Image.new("1", (7072, 7072)).save(buffer, format="PNG")
    form = {"uuid": session, "seq": "0", "topk": "1"}
    response = await client.post("/image", data=form, files={"payload": ("big.png", buffer.getvalue())})
    assert response.status_code == 413
    assert response.json()["error"] == "image has 50013184 pixels, more than the limit of 40000000"


async def test_batch_limits_are_named_and_nothing_is_stored(
    client: httpx.AsyncClient, configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, max_batch_files="2", max_batch_bytes=str(len(photo()) * 3))
    session = await _session(client)
    form = {"uuid": session, "seqStart": "0", "topk": "1"}
    three = [("payload", (f"{i}.jpg", image_bytes("JPEG"))) for i in range(3)]
    too_many = await client.post("/images", data=form, files=three)
    heavy = [("payload", ("a.jpg", photo())), ("payload", ("b.jpg", photo("coffee.jpg") * 4))]
    too_big = await client.post("/images", data=form, files=heavy)
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["error"]
    assert too_big.status_code == 413 and "exceeds" in too_big.json()["error"]
    store = open_store(configured["database_url"])
    try:
        assert await store.get_range(session, 0, 10) == []
    finally:
        await store.close()


async def test_a_conflict_keeps_the_stored_image_even_while_the_broker_is_down(
    client: httpx.AsyncClient, app_settings: dict[str, Any]
) -> None:
    """Kafka unreachable: the upload is stored and answered 503 (the sweeper publishes it later); another image for
    that seq is a 409 that leaves the stored one as it was."""
    session = await _session(client)
    form = {"uuid": session, "seq": "0", "topk": "1"}
    first = await client.post("/image", data=form, files={"payload": ("a.jpg", photo("chelsea.jpg"))})
    other = await client.post("/image", data=form, files={"payload": ("c.jpg", photo("coffee.jpg"))})
    assert (first.status_code, other.status_code) == (503, 409), (first.text, other.text)
    store, stored_blobs = open_store(app_settings["database_url"]), blob_store_from_url(app_settings["blob_url"])
    try:
        [row] = await store.get_range(session, 0, 0)
        assert (row.seq, row.status) == (0, "queued") and await stored_blobs.get(row.blob_key) == photo("chelsea.jpg")
    finally:
        await store.close()


async def test_identical_resubmission_is_idempotent_and_different_bytes_conflict(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    session = await _session(client)
    form = {"uuid": session, "seq": "0", "topk": "1"}
    first = await client.post("/image", data=form, files={"payload": ("a.jpg", photo("chelsea.jpg"))})
    again = await client.post("/image", data=form, files={"payload": ("b.jpg", photo("chelsea.jpg"))})
    other = await client.post("/image", data=form, files={"payload": ("c.jpg", photo("coffee.jpg"))})
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert "already holds a different image" in other.json()["error"]
    # What is stored: one row, the first image's, its bytes intact after the replay and the conflict.
    store, stored_blobs = open_store(configured["database_url"]), blob_store_from_url(configured["blob_url"])
    try:
        [row] = await store.get_range(session, 0, 0)
        assert (row.seq, row.topk, row.status, row.content_type) == (0, 1, "queued", "image/jpeg")
        assert await stored_blobs.get(row.blob_key) == photo("chelsea.jpg")
        assert row.content_hash == hashlib.sha256(photo("chelsea.jpg")).hexdigest()
    finally:
        await store.close()


async def test_batch_upload_assigns_consecutive_seqs(publishing_client: httpx.AsyncClient) -> None:
    session = await _session(publishing_client)
    files = [("payload", (name, photo(name))) for name in ("chelsea.jpg", "coffee.jpg", "camera.png")]
    response = await publishing_client.post(
        "/images", data={"uuid": session, "seqStart": "10", "topk": "2"}, files=files
    )
    assert response.status_code == 202
    assert [i["seq"] for i in response.json()["items"]] == [10, 11, 12]


async def test_batch_reaching_past_the_last_seq_is_refused_before_anything_is_stored(
    client: httpx.AsyncClient, configured: dict[str, Any]
) -> None:
    session = await _session(client)
    files = [("payload", (name, photo(name))) for name in ("chelsea.jpg", "coffee.jpg", "camera.png")]
    form = {"uuid": session, "seqStart": str(2**31 - 2), "topk": "1"}
    response = await client.post("/images", data=form, files=files)
    # The document bounds seqStart so that its 64 files fit below 2**31 - 1: refused as it declares.
    assert response.status_code == 400
    assert response.json()["error"] == f"field 'seqStart' must be between 0 and {2**31 - 64}, got {2**31 - 2}"
    store = open_store(configured["database_url"])
    try:
        assert await store.get_range(session, 2**31 - 2, 2**31 - 1) == []
    finally:
        await store.close()


async def test_batch_upload_names_the_bad_file(client: httpx.AsyncClient) -> None:
    session = await _session(client)
    files = [("payload", ("ok.jpg", photo())), ("payload", ("bad.txt", b"not an image"))]
    response = await client.post("/images", data={"uuid": session, "seqStart": "0", "topk": "2"}, files=files)
    assert response.status_code == 415 and response.json()["error"].startswith("payload[1]")


async def test_oversized_streamed_body_is_cut_off(client: httpx.AsyncClient, configured: dict[str, Any]) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'--zz\r\nContent-Disposition: form-data; name="payload"; filename="a.jpg"\r\n\r\n'
        for _ in range(40):  # 40 x 512 KiB = 20 MiB of one file part, no Content-Length
            sent += 1
            yield b"x" * 512 * 1024

    response = await client.post("/image", content=body(), headers={"content-type": "multipart/form-data; boundary=zz"})
    assert response.status_code == 413
    assert sent < 40  # stopped reading once the limit was passed


def _form(session: str, **overrides: Any) -> tuple[dict[str, str], dict[str, Any] | None]:
    data: dict[str, str] = {"uuid": session, "seq": "1", "topk": "5"}
    files: dict[str, Any] | None = {"payload": ("p.jpg", photo())}
    for key, value in overrides.items():
        if key == "payload":
            files = None if value is None else {"payload": value}
        elif value is None:
            data.pop(key)
        else:
            data[key] = value
    return data, files


BAD_IMAGE_FORMS: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing uuid", {"uuid": None}, 400, "'uuid' is required"),
    ("malformed uuid", {"uuid": "not-a-uuid"}, 400, "not a valid UUID"),
    ("unknown uuid", {"uuid": "00000000-0000-4000-8000-000000000000"}, 404, "unknown session"),
    ("missing seq", {"seq": None}, 400, "'seq' is required"),
    ("non-integer seq", {"seq": "abc"}, 400, "must be an integer"),
    ("fractional seq", {"seq": "1.5"}, 400, "must be an integer"),
    ("negative seq", {"seq": "-1"}, 400, "between 0 and"),
    ("seq beyond int", {"seq": str(2**31)}, 400, "between 0 and"),
    ("absurdly long seq", {"seq": "9" * 40}, 400, "must be an integer"),
    ("superscript seq", {"seq": "²"}, 400, "'seq' must be an integer"),
    ("circled topk", {"topk": "①"}, 400, "'topk' must be an integer"),
    ("double-signed topk", {"topk": "+-5"}, 400, "'topk' must be an integer"),
    ("twice negative seq", {"seq": "--5"}, 400, "'seq' must be an integer"),
    ("missing topk", {"topk": None}, 400, "'topk' is required"),
    ("topk zero", {"topk": "0"}, 400, "between 1 and 1000"),
    ("topk over 1000", {"topk": "1001"}, 400, "between 1 and 1000"),
    ("topk text", {"topk": "ten"}, 400, "must be an integer"),
    ("missing payload", {"payload": None}, 400, "'payload'"),
    ("empty payload", {"payload": ("e.jpg", b"")}, 400, "empty"),
    ("text payload", {"payload": ("t.txt", b"hello world, not an image")}, 415, "not a supported image"),
    ("pdf payload", {"payload": ("d.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")}, 415, "not a supported image"),
    ("truncated jpeg", {"payload": ("t.jpg", photo("chelsea.jpg")[:4000])}, 400, "corrupt or truncated"),
    ("truncated png", {"payload": ("t.png", photo("camera.png")[:3000])}, 400, "corrupt or truncated"),
    ("header-only png", {"payload": ("h.png", image_bytes("PNG")[:33])}, 400, "corrupt or truncated"),
    ("decompression bomb", {"payload": ("b.png", _bomb())}, 413, "pixels"),
    ("absurd dimensions", {"payload": ("w.png", image_bytes("PNG", (25_000, 1), "L"))}, 413, "side limit"),
    ("payload over 10 MB", {"payload": ("big.jpg", b"\xff\xd8" + b"0" * (10 * 1024 * 1024 + 10))}, 413, "exceeds"),
]


@pytest.mark.parametrize(
    ("case", "overrides", "status", "message"), BAD_IMAGE_FORMS, ids=[c[0] for c in BAD_IMAGE_FORMS]
)
async def test_bad_image_upload_gets_a_clear_4xx(
    client: httpx.AsyncClient, case: str, overrides: dict[str, Any], status: int, message: str
) -> None:
    session = await _session(client)
    data, files = _form(session, **overrides)
    response = await client.post("/image", data=data, files=files)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


async def test_payload_sent_as_plain_field_is_refused(client: httpx.AsyncClient) -> None:
    session = await _session(client)
    response = await client.post("/image", data={"uuid": session, "seq": "1", "topk": "1", "payload": "abc"})
    assert response.status_code == 400 and "must be a file part" in response.json()["error"]


async def test_two_files_on_single_image_endpoint_are_refused(client: httpx.AsyncClient) -> None:
    session = await _session(client)
    files = [("payload", ("a.jpg", photo())), ("payload", ("b.jpg", photo()))]
    response = await client.post("/image", data={"uuid": session, "seq": "1", "topk": "1"}, files=files)
    assert response.status_code == 400 and "error" in response.json()


async def test_json_body_instead_of_multipart_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/image", json={"uuid": "x", "seq": 1})
    assert response.status_code == 400 and "'uuid' is required" in response.json()["error"]


async def test_oversized_text_field_is_refused(client: httpx.AsyncClient) -> None:
    session = await _session(client)
    response = await client.post(
        "/image",
        data={"uuid": session, "seq": "1", "topk": "1", "note": "x" * 70_000},
        files={"payload": ("a.jpg", photo())},
    )
    assert response.status_code == 400


async def test_wrong_method_and_path(client: httpx.AsyncClient) -> None:
    assert (await client.get("/register")).status_code == 405
    missing = await client.get("/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


async def test_api_key_guards_everything_but_health(
    publishing_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", "s3cret")
    reset_settings()
    denied = await publishing_client.post("/register")
    allowed = await publishing_client.post("/register", headers={"x-api-key": "s3cret"})
    health = await publishing_client.get("/health")
    assert denied.status_code == 401 and "x-api-key" in denied.json()["error"]
    assert allowed.status_code == 200 and health.status_code == 200


async def test_upload_while_database_is_unreachable_is_503(
    monkeypatch: pytest.MonkeyPatch, configured: dict[str, Any], loop_resources: None
) -> None:
    apply_env(monkeypatch, database_url="mysql+asyncmy://root@127.0.0.1:1/none")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        response = await c.post("/register")
    assert response.status_code == 503 and "unavailable" in response.json()["error"]


def test_concurrent_identical_uploads_all_succeed(configured: dict[str, Any]) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            session = await _session(c)
            form = {"uuid": session, "seq": "1", "topk": "1"}
            responses = await asyncio.gather(
                *(c.post("/image", data=form, files={"payload": ("a.jpg", photo())}) for _ in range(5))
            )
        await loops.aclose()
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [202] * 5


class _Context:
    function_name = "UploadFunction"
    aws_request_id = "JKJaXmPLvHcESHA="

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_mangum_handler_accepts_base64_multipart_from_http_api(configured: dict[str, Any], lambda_loop: Any) -> None:
    register = handler(load_event("apigw_v2_upload_register"), _Context())
    assert register["statusCode"] == 200 and uuid.UUID(json.loads(register["body"])["uuid"]).version == 4

    session = "3f1c9b2e-7a4d-4c1e-9f0a-2b6d8e5c1a47"  # the uuid inside the fixture's multipart body
    store = open_store(configured["database_url"])
    lambda_loop.run_until_complete(store.create_session(session))
    lambda_loop.run_until_complete(store.close())
    response = handler(load_event("apigw_v2_upload_image"), _Context())
    assert response["statusCode"] == 202
    assert json.loads(response["body"]) == {"uuid": session, "seq": 7, "status": "queued"}
    [record] = asyncio.run(consume_all(configured["kafka_bootstrap_servers"], configured["request_topic"], 1))
    assert json.loads(record.value)["topk"] == 3
